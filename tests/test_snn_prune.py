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
