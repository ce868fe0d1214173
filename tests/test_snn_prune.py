"""snn.prune: masks, global/per-layer magnitude pruning, sparsity, exact rewinding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snn.data import load_dataset
from snn.models import ModelConfig, SpikingNet, build_model
from snn.prune import (
    apply_masks,
    dense_masks,
    layer_sparsity,
    magnitude_prune,
    rewind,
    sparsity,
    threshold_prune,
    to_numpy_masks,
)
from snn.train import TrainConfig, clone_state, train


def _model(seed: int = 0) -> SpikingNet:
    return build_model(
        ModelConfig(name="convnet", width=0.5, timesteps=2), (1, 8, 8), 10, seed=seed
    )


def test_dense_masks_and_apply() -> None:
    model = _model()
    masks = dense_masks(model)
    assert list(masks) == ["conv1", "conv2", "fc"]
    assert all(m.dtype == torch.bool and bool(m.all()) for m in masks.values())
    assert sparsity(masks) == 0.0
    masks["conv1"][0] = False
    apply_masks(model, to_numpy_masks(masks))  # numpy masks are accepted too
    w = model.prunable()["conv1"].weight
    assert bool((w[0] == 0).all()) and bool((w[1] != 0).all())
    with pytest.raises(ValueError, match="shape"):
        apply_masks(model, {"conv1": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(KeyError):
        apply_masks(model, {"nope": torch.ones(3, dtype=torch.bool)})


def test_global_prune_removes_rate_of_survivors_smallest_first() -> None:
    model = _model()
    masks = dense_masks(model)
    total = sum(m.numel() for m in masks.values())
    new = magnitude_prune(model, masks, 0.25)
    assert sum(int(m.sum()) for m in new.values()) == total - round(0.25 * total)
    kept = torch.cat(
        [model.prunable()[n].weight.detach().abs()[m].flatten() for n, m in new.items()]
    )
    gone = torch.cat(
        [model.prunable()[n].weight.detach().abs()[~m].flatten() for n, m in new.items()]
    )
    assert float(gone.max()) <= float(kept.min())
    # the input masks are not modified
    assert all(bool(m.all()) for m in masks.values())


def test_sparsity_after_n_rounds() -> None:
    model = _model()
    masks = dense_masks(model)
    total = sum(m.numel() for m in masks.values())
    p = 0.25
    for n in range(1, 9):
        masks = magnitude_prune(model, masks, p)
        apply_masks(model, masks)
        assert sparsity(masks) == pytest.approx(1 - (1 - p) ** n, abs=n / total)


def test_layer_scope_prunes_each_layer_by_rate() -> None:
    model = _model()
    masks = magnitude_prune(model, dense_masks(model), 0.5, scope="layer")
    for name, s in layer_sparsity(masks).items():
        n = masks[name].numel()
        assert s == pytest.approx(round(0.5 * n) / n)
    with pytest.raises(ValueError, match="scope"):
        magnitude_prune(model, masks, 0.5, scope="filter")  # type: ignore[arg-type]


def test_ties_broken_deterministically_by_position() -> None:
    weights = {"a": torch.ones(2, 3), "b": torch.ones(4)}
    masks = {k: torch.ones_like(v, dtype=torch.bool) for k, v in weights.items()}
    new = magnitude_prune(weights, masks, 0.5)
    assert new["a"].flatten().tolist() == [False] * 5 + [True]
    assert new["b"].tolist() == [True] * 4
    again = magnitude_prune(weights, masks, 0.5)
    assert all(torch.equal(new[k], again[k]) for k in new)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=4),
    rate=st.floats(0.0, 1.0),
    seed=st.integers(0, 10_000),
    scope=st.sampled_from(["global", "layer"]),
)
def test_prune_properties(sizes: list[int], rate: float, seed: int, scope: str) -> None:
    """Only survivors are removed; global counts are exact; removed never beat kept by |w|."""
    rng = np.random.default_rng(seed)
    weights = {f"l{i}": torch.from_numpy(rng.normal(size=n)) for i, n in enumerate(sizes)}
    masks = {k: torch.from_numpy(rng.random(len(v)) < 0.7) for k, v in weights.items()}
    new = magnitude_prune(weights, masks, rate, scope=scope)  # type: ignore[arg-type]
    assert all(not bool((new[k] & ~masks[k]).any()) for k in new)
    if scope == "global":
        alive = sum(int(m.sum()) for m in masks.values())
        assert sum(int(m.sum()) for m in new.values()) == alive - round(rate * alive)
        removed = torch.cat([weights[k][masks[k] & ~new[k]].abs() for k in new])
        kept = torch.cat([weights[k][new[k]].abs() for k in new])
        if len(removed) and len(kept):
            assert float(removed.max()) <= float(kept.min())
    else:
        for k in new:
            alive = int(masks[k].sum())
            assert int(new[k].sum()) == alive - round(rate * alive)


def test_rewind_restores_checkpoint_exactly() -> None:
    splits = load_dataset("digits", seed=0)
    model = _model()
    cfg = TrainConfig(epochs=2, batch_size=128, num_threads=1)
    res = train(model, splits, cfg, seed=0, snapshot_epochs={1})
    snap = res.snapshots[1]
    after = clone_state(model)
    assert not torch.equal(after["conv1.weight"], snap["conv1.weight"])
    rewind(model, snap, None)
    state = model.state_dict()
    assert state.keys() == snap.keys()
    assert all(torch.equal(state[k], snap[k]) for k in snap)  # BN running stats included
    trained = {n: after[f"{n}.weight"] for n in model.prunable()}
    masks = magnitude_prune(trained, dense_masks(model), 0.5)
    rewind(model, snap, masks)
    state = model.state_dict()
    for k in snap:
        name = k.removesuffix(".weight")
        if k.endswith(".weight") and name in masks:
            assert torch.equal(state[k], snap[k] * masks[name])
        else:
            assert torch.equal(state[k], snap[k])


def test_threshold_prune_worked_example() -> None:
    """The authors' rule on a hand-worked case.

    Trained weights after a u-Ticket round (the network trained with the *balanced* mask):
    a[0, 1] was in the pre-balance mask but balancing removed it (trained weight exactly 0);
    a[1, 0] was not in it but balancing recovered it (non-zero); b[2] was pruned earlier.

    Non-zero |w|: a -> 0.9, 0.3, 0.5, 0.1, 0.6; b -> 0.2, 0.7, 0.4 (N = 8), sorted
    0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.9; rate 0.25: index floor(8 * 0.25) = 2 -> threshold 0.3.
    Keep = pre-balance mask and |w| >= 0.3:
      a: 0.9 keep; removed 0 drop; 0.3 keep (tie stays); recovered 0.5 drop (not in pre);
         0.1 drop; 0.6 keep
      b: 0.2 drop; 0.7 keep; pruned drop; 0.4 keep.
    5 of the 8 pre-balance weights stay, where removing round(0.25 * 8) = 2 of the pre-balance
    mask by rank (``magnitude_prune``, carry ``pre_balance``) keeps 6 (0.2 survives).
    Per layer (numpy's interpolated 25th percentile): a: 0.1 0.3 0.5 0.6 0.9 -> 0.3;
    b: 0.2 0.4 0.7 -> 0.3; the same weights stay.
    """
    weights = {
        "a": torch.tensor([[0.9, 0.0, 0.3], [0.5, -0.1, 0.6]]),
        "b": torch.tensor([-0.2, 0.7, 0.0, 0.4]),
    }
    pre = {
        "a": torch.tensor([[True, True, True], [False, True, True]]),
        "b": torch.tensor([True, True, False, True]),
    }
    expected = {
        "a": [[True, False, True], [False, False, True]],
        "b": [False, True, False, True],
    }
    for scope in ("global", "layer"):
        out = threshold_prune(weights, pre, 0.25, scope)  # type: ignore[arg-type]
        assert {n: m.tolist() for n, m in out.items()} == expected, scope
    by_rank = magnitude_prune(weights, pre, 0.25)
    assert sum(int(m.sum()) for m in by_rank.values()) == 6
    assert bool(by_rank["b"][0])
    # nothing alive: masks unchanged; bad rate and shapes are errors
    zeros = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    assert threshold_prune(zeros, pre, 0.25)["a"].tolist() == pre["a"].tolist()
    with pytest.raises(ValueError, match="rate"):
        threshold_prune(weights, pre, 1.0)
    with pytest.raises(ValueError, match="shape"):
        threshold_prune({"a": torch.ones(3, 2), "b": weights["b"]}, pre, 0.25)
