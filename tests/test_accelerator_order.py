"""Workload-ordered mapping: permutations only, never slower than the fixed map, optimal for K."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelerator import (
    AcceleratorConfig,
    ConfigError,
    LayerOrder,
    evaluate,
    ordered_pe_index,
    parse_accelerator,
    partition,
    pe_index,
    plan_orders,
    workload_order,
)
from accelerator.order import snake_chunks
from accelerator.workload import channel_counts


def cfg(rows: int, cols: int, flow: str, order: str = "fixed") -> AcceleratorConfig:
    return AcceleratorConfig(
        pe_array={"rows": rows, "cols": cols}, dataflow=flow, mapping_order=order
    )


def layer_latency(mask: np.ndarray, index: np.ndarray, n_pe: int) -> int:
    """``sum_g max_p d[g, p]`` by brute force over a dense PE index."""
    idx = np.array(index).ravel()
    size = (idx.max() // n_pe + 1) * n_pe
    work = np.bincount(idx[mask.ravel()], minlength=size).reshape(-1, n_pe)
    return int(work.max(axis=1).sum())


def test_snake_deals_each_chunk_its_size() -> None:
    sizes = np.array([3, 3, 3, 1])
    seq = snake_chunks(sizes)
    assert seq.tolist() == [0, 1, 2, 3, 2, 1, 0, 0, 1, 2]
    assert np.bincount(seq).tolist() == sizes.tolist()


def test_k_order_is_optimal_by_brute_force() -> None:
    rng = np.random.default_rng(3)
    mask = rng.random((6, 5)) < rng.uniform(0.1, 0.9, size=(6, 1))
    config = cfg(2, 1, "K")
    part = partition(mask.shape, config)
    order = workload_order(channel_counts(mask).astype(np.int64), part)
    got = layer_latency(mask, ordered_pe_index(mask.shape, config, order), 2)
    best = min(
        layer_latency(mask[list(p)], pe_index(mask.shape, config), 2)
        for p in itertools.permutations(range(6))
    )
    assert got == best


@settings(max_examples=40, deadline=None)
@given(
    flow=st.sampled_from(["K", "C", "KC"]),
    rows=st.integers(1, 4),
    cols=st.integers(1, 4),
    k=st.integers(1, 20),
    c=st.integers(1, 20),
    conv=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_workload_order_is_a_permutation_and_never_slower(
    flow: str, rows: int, cols: int, k: int, c: int, conv: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    shape = (k, c, 3, 3) if conv else (k, c)
    dead = rng.random(c) < 0.3  # silent input channels, as global pruning leaves them
    mask = (rng.random(shape) < rng.uniform(0.05, 0.7, size=(k,) + (1,) * (len(shape) - 1))) & (
        ~dead.reshape((1, c) + (1,) * (len(shape) - 2))
    )
    fixed, ordered = cfg(rows, cols, flow), cfg(rows, cols, flow, "workload")
    order = plan_orders(ordered, {"w": mask})["w"]
    assert sorted(order.filters.tolist()) == list(range(k))
    assert sorted(order.channels.tolist()) == list(range(c))
    a = evaluate(fixed, {"w": mask}).layers[0]
    b = evaluate(ordered, {"w": mask}).layers[0]
    assert b.latency <= a.latency
    assert b.nonzeros == a.nonzeros and b.dram_bits == a.dram_bits  # no weight changes
    # the map and the scorer agree: brute force over the ordered pe_index
    assert layer_latency(mask, ordered_pe_index(shape, fixed, order), fixed.n_pe) == b.latency


def test_explicit_order_equals_scoring_the_permuted_network() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((12, 10, 3, 3)) < 0.3
    z = rng.random(10)
    profile = {
        "layers": {
            "w": {
                "positions": 9,
                "timesteps": 4,
                "channel_tick_zero_fraction": z.tolist(),
                "channel_spike_rate": (0.5 * (1 - z)).tolist(),
            }
        }
    }
    order = LayerOrder(rng.permutation(12), rng.permutation(10))
    moved = mask[order.filters][:, order.channels]
    moved_profile = {
        "layers": {
            "w": {
                **profile["layers"]["w"],
                "channel_tick_zero_fraction": z[order.channels].tolist(),
                "channel_spike_rate": (0.5 * (1 - z))[order.channels].tolist(),
            }
        }
    }
    for flow in ("K", "C", "KC"):
        config = cfg(2, 2, flow)
        a = evaluate(config, {"w": mask}, profile, orders={"w": order})
        b = evaluate(config, {"w": moved}, moved_profile)
        assert a.cycles == pytest.approx(b.cycles)
        assert a.energy_pj["total"] == pytest.approx(b.energy_pj["total"])
        assert a.utilization == pytest.approx(b.utilization)


def test_identity_order_is_the_fixed_mapping() -> None:
    rng = np.random.default_rng(1)
    masks = {"a": rng.random((9, 7, 3, 3)) < 0.2, "b": rng.random((5, 63)) < 0.4}
    config = cfg(2, 2, "KC")
    ident = {n: LayerOrder.identity(m.shape[0], m.shape[1]) for n, m in masks.items()}
    assert evaluate(config, masks, orders=ident).cycles == evaluate(config, masks).cycles


def test_bad_orders_are_rejected() -> None:
    mask = np.ones((4, 3), dtype=bool)
    config = cfg(2, 1, "K")
    with pytest.raises(ValueError, match="layer 'w': filters is not a permutation"):
        evaluate(
            config, {"w": mask}, orders={"w": LayerOrder(np.array([0, 0, 1, 2]), np.arange(3))}
        )
    with pytest.raises(ValueError, match="masks do not have"):
        evaluate(config, {"w": mask}, orders={"x": LayerOrder.identity(4, 3)})


def test_mapping_order_is_validated() -> None:
    with pytest.raises(ConfigError, match="mapping_order"):
        parse_accelerator({"mapping_order": "sorted"}, "hw.yaml")


def test_order_round_trips_through_a_dict() -> None:
    order = LayerOrder(np.array([2, 0, 1]), np.array([1, 0]))
    back = LayerOrder.from_dict(order.to_dict())
    assert back.filters.tolist() == [2, 0, 1] and back.channels.tolist() == [1, 0]
