"""u-Ticket balancing: equal workloads in every group, only off-target PEs change, seeded."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelerator import AcceleratorConfig, evaluate, pe_index
from snn.uticket import BalanceError, balance


def cfg(rows: int, cols: int, flow: str) -> AcceleratorConfig:
    return AcceleratorConfig(pe_array={"rows": rows, "cols": cols}, dataflow=flow)


def per_pe(mask: np.ndarray, index: np.ndarray, n_pe: int) -> tuple[np.ndarray, np.ndarray]:
    """(work, capacity) as (groups, n_pe) tables, by brute force over the dense index."""
    idx = np.array(index).ravel()
    size = (idx.max() // n_pe + 1) * n_pe
    work = np.bincount(idx[mask.ravel()], minlength=size).reshape(-1, n_pe)
    cap = np.bincount(idx, minlength=size).reshape(-1, n_pe)
    return work, cap


def expected_targets(work: np.ndarray, cap: np.ndarray) -> np.ndarray:
    mapped = (cap > 0).sum(axis=1)
    target = np.ceil(work.sum(axis=1) / np.maximum(mapped, 1)).astype(int)
    return np.minimum(target[:, None], cap)


SHAPES = [(40, 24, 3, 3), (16, 3, 3, 3), (10, 100), (33, 17, 1, 1)]


@pytest.mark.parametrize("flow", ["K", "C", "KC"])
@pytest.mark.parametrize("mode", ["random", "magnitude"])
def test_every_group_ends_equal_and_on_target(flow: str, mode: str) -> None:
    rng = np.random.default_rng(0)
    config = cfg(2, 3, flow)
    masks = {f"l{i}": rng.random(s) < rng.uniform(0.02, 0.6) for i, s in enumerate(SHAPES)}
    weights = {n: rng.normal(size=m.shape) for n, m in masks.items()}
    index = {n: pe_index(m.shape, config) for n, m in masks.items()}
    out = balance(masks, index, config.n_pe, seed=1, mode=mode, weights=weights)
    for name, mask in masks.items():
        before, cap = per_pe(mask, index[name], config.n_pe)
        after, _ = per_pe(out[name], index[name], config.n_pe)
        assert (after == expected_targets(before, cap)).all(), name
        # untouched: PEs already on target keep exactly their weights
        idx = np.array(index[name])
        on_target = (before == expected_targets(before, cap)).ravel()[idx]
        assert (out[name][on_target] == mask[on_target]).all()
    report = {r.name: r for r in evaluate(config, out).layers}
    assert report["l0"].utilization == report["l2"].utilization == 1.0  # no PE capacity-bound


def test_magnitude_mode_drops_smallest_and_recovers_largest() -> None:
    config = cfg(2, 1, "K")
    mask = np.array([[1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=bool)
    weight = np.array([[5.0, 1.0, 4.0, 3.0, 9.0, 9.0], [1.0, 2.0, 8.0, 3.0, 0.5, 7.0]])
    out = balance(
        {"w": mask},
        {"w": pe_index(mask.shape, config)},
        2,
        seed=0,
        mode="magnitude",
        weights={"w": weight},
    )
    # target ceil(4/2) = 2: filter 0 keeps its two largest survivors, filter 1 recovers 8 and 7
    assert out["w"].tolist() == [[1, 0, 1, 0, 0, 0], [0, 0, 1, 0, 0, 1]]


def test_deterministic_per_seed_and_input_untouched() -> None:
    rng = np.random.default_rng(3)
    config = cfg(4, 4, "C")
    masks = {"a": rng.random((32, 64, 3, 3)) < 0.05, "b": rng.random((10, 256)) < 0.1}
    copy = {n: m.copy() for n, m in masks.items()}
    index = {n: pe_index(m.shape, config) for n, m in masks.items()}
    one = balance(masks, index, 16, seed=7)
    two = balance(masks, index, 16, seed=7)
    other = balance(masks, index, 16, seed=8)
    assert all((one[n] == two[n]).all() for n in masks)
    assert any((one[n] != other[n]).any() for n in masks)
    assert all((masks[n] == copy[n]).all() for n in masks)
    # order of the layers does not matter
    rev = balance(dict(reversed(list(masks.items()))), index, 16, seed=7)
    assert all((one[n] == rev[n]).all() for n in masks)


def test_torch_in_torch_out() -> None:
    torch = pytest.importorskip("torch")
    config = cfg(4, 4, "K")
    m = torch.rand(32, 8, 3, 3) < 0.2
    out = balance({"c": m}, {"c": pe_index(tuple(m.shape), config)}, 16, seed=0)
    assert isinstance(out["c"], torch.Tensor) and out["c"].dtype == torch.bool


def test_dense_index_arrays_work_too() -> None:
    rng = np.random.default_rng(5)
    config = cfg(2, 2, "KC")
    mask = rng.random((12, 10, 3, 3)) < 0.2
    view = pe_index(mask.shape, config)
    a = balance({"x": mask}, {"x": view}, 4, seed=2)["x"]
    b = balance({"x": mask}, {"x": np.array(view)}, 4, seed=2)["x"]
    before, cap = per_pe(mask, view, 4)
    assert (per_pe(b, view, 4)[0] == expected_targets(before, cap)).all()
    assert (per_pe(a, view, 4)[0] == per_pe(b, view, 4)[0]).all()


def test_errors() -> None:
    m = np.ones((4, 4), dtype=bool)
    with pytest.raises(BalanceError, match="no pe_index"):
        balance({"a": m}, {}, 4, seed=0)
    with pytest.raises(BalanceError, match="shape"):
        balance({"a": m}, {"a": np.zeros((4, 5), dtype=np.int64)}, 4, seed=0)
    with pytest.raises(BalanceError, match="needs the weights"):
        balance({"a": m}, {"a": np.zeros((4, 4), dtype=np.int64)}, 4, seed=0, mode="magnitude")


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(1, 30),
    c=st.integers(1, 30),
    rows=st.integers(1, 4),
    cols=st.integers(1, 4),
    flow=st.sampled_from(["K", "C", "KC"]),
    density=st.floats(0.0, 1.0),
    seed=st.integers(0, 1000),
)
def test_property_balanced_and_on_target_untouched(
    k: int, c: int, rows: int, cols: int, flow: str, density: float, seed: int
) -> None:
    config = cfg(rows, cols, flow)
    mask = np.random.default_rng(seed).random((k, c, 3, 3)) < density
    index = pe_index(mask.shape, config)
    out = balance({"w": mask}, {"w": index}, config.n_pe, seed=seed)["w"]
    before, cap = per_pe(mask, index, config.n_pe)
    after, _ = per_pe(out, index, config.n_pe)
    target = expected_targets(before, cap)
    assert (after == target).all()
    idx = np.array(index)
    on = (before == target).ravel()[idx]
    assert (out[on] == mask[on]).all()


def expected_work(mask: np.ndarray, index: np.ndarray, cost: np.ndarray, n_pe: int) -> np.ndarray:
    """Per-PE ``sum of channel costs of the survivors`` as (groups, n_pe), by brute force."""
    idx = np.array(index).ravel()
    size = (idx.max() // n_pe + 1) * n_pe
    per_weight = np.broadcast_to(cost.reshape((1, -1) + (1,) * (mask.ndim - 2)), mask.shape)
    return np.bincount(idx, weights=(per_weight * mask).ravel(), minlength=size).reshape(-1, n_pe)


def test_spike_aware_levels_expected_work_with_one_channel_per_pe() -> None:
    rng = np.random.default_rng(4)
    config = cfg(2, 2, "C")  # 4 PEs, 4 input channels: every PE reads one channel
    mask = rng.random((30, 4, 5, 5)) < 0.5
    cost = np.array([0.9, 0.2, 0.6, 0.45])
    index = pe_index(mask.shape, config)
    plain = balance({"w": mask}, {"w": index}, 4, seed=0)["w"]
    aware = balance({"w": mask}, {"w": index}, 4, seed=0, channel_cost={"w": cost})["w"]
    spread = {}
    for label, m in (("plain", plain), ("aware", aware)):
        q = expected_work(m, index, cost, 4)
        spread[label] = float((q.max(axis=1) - q.mean(axis=1)).sum())
    # plain balancing levels non-zero counts exactly, which leaves expected work unequal here
    counts, _ = per_pe(plain, index, 4)
    assert (counts == counts[:, :1]).all()
    assert spread["plain"] > 1.0
    assert spread["aware"] < 0.5 * spread["plain"]
    # trimmed to the group's level, rounding up by less than one weight of the PE's channel
    before = expected_work(mask, index, cost, 4)
    after = expected_work(aware, index, cost, 4)
    level = before.mean(axis=1, keepdims=True)
    over = before > level
    excess = (after - level)[over]
    assert (excess >= -1e-9).all() and (excess < np.broadcast_to(cost, over.shape)[over]).all()
    # recovery never raises a group's peak: it adds no latency
    assert (after.max(axis=1) <= before.max(axis=1) + 1e-9).all()
    # recovery never goes beyond the count-based target ceil(mean non-zeros)
    counts_before, _ = per_pe(mask, index, 4)
    counts_after, _ = per_pe(aware, index, 4)
    ceil_mean = np.ceil(counts_before.mean(axis=1, keepdims=True))
    grew = counts_after > counts_before
    assert (counts_after[grew] <= np.broadcast_to(ceil_mean, grew.shape)[grew]).all()


def test_spike_aware_never_recovers_onto_silent_channels() -> None:
    config = cfg(1, 2, "C")
    mask = np.zeros((3, 2, 3, 3), dtype=bool)
    mask[:, 0] = True  # PE 0 busy, PE 1 (a silent channel) empty
    index = pe_index(mask.shape, config)
    out = balance({"w": mask}, {"w": index}, 2, seed=0, channel_cost={"w": np.array([1.0, 0.0])})
    assert not out["w"][:, 1].any()


def test_spike_aware_lowers_compute_latency_on_c_mapping() -> None:
    rng = np.random.default_rng(0)
    config = cfg(4, 4, "C")
    mask = rng.random((32, 64, 3, 3)) < 0.3
    cost = np.clip(rng.random(64) * 1.2 - 0.1, 0, 1)
    profile = {
        "layers": {
            "w": {
                "positions": 16,
                "timesteps": 4,
                "channel_tick_zero_fraction": (1 - cost).tolist(),
            }
        }
    }
    index = {"w": pe_index(mask.shape, config)}
    plain = balance({"w": mask}, index, 16, seed=0)
    aware = balance({"w": mask}, index, 16, seed=0, channel_cost={"w": cost})
    a = evaluate(config, plain, profile).layers[0]
    b = evaluate(config, aware, profile).layers[0]
    assert b.compute_cycles < 0.8 * a.compute_cycles
    assert b.utilization_effective > a.utilization_effective


def test_channel_cost_is_validated() -> None:
    mask = np.ones((4, 3), dtype=bool)
    index = {"w": pe_index(mask.shape, cfg(1, 2, "C"))}
    with pytest.raises(BalanceError, match="channel_cost has shape"):
        balance({"w": mask}, index, 2, seed=0, channel_cost={"w": np.ones(4)})
    with pytest.raises(BalanceError, match=r"lie in \[0, 1\]"):
        balance({"w": mask}, index, 2, seed=0, channel_cost={"w": np.array([0.5, 2.0, 0.1])})
