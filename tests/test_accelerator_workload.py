"""Workload counting and Eq. 2, including property tests over random masks and arrays."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelerator import AcceleratorConfig, evaluate, group_utilization, partition, pe_index
from accelerator.workload import chunk_counts


def test_eq2_balanced_is_one_and_single_loaded_pe_is_zero() -> None:
    mapped = np.ones((16, 2), dtype=bool)
    work = np.zeros((16, 2), dtype=np.int64)
    work[:, 0] = 7  # balanced group
    work[3, 1] = 32  # one PE holds everything: d_avg = ceil(32/16) = 2
    u = group_utilization(work, mapped)
    assert u.tolist() == [1.0, 0.0]


def test_eq2_ceil_and_empty_groups() -> None:
    mapped = np.ones((4, 3), dtype=bool)
    work = np.array([[4, 0, 0], [1, 0, 0], [2, 0, 0], [1, 0, 0]])
    u = group_utilization(work, mapped)
    # d_max 4, d_avg ceil(8/4)=2: u = 1 - (2/4)(4/3) = 1/3; empty groups are NaN (skipped)
    assert u[0] == pytest.approx(1 / 3)
    assert np.isnan(u[1:]).all()


@pytest.mark.parametrize(
    "shape", [(4, 3, 3, 3), (8, 16, 3, 3), (5, 7, 1, 1), (6, 9), (3, 64, 3, 3)]
)
@pytest.mark.parametrize("chunk", [1, 2, 3, 8, 64])
def test_chunk_counts_match_brute_force(shape: tuple[int, ...], chunk: int) -> None:
    rng = np.random.default_rng(sum(shape) + chunk)
    mask = rng.random(shape) < 0.3
    k, c = shape[:2]
    flat = mask.reshape(k, c, -1).sum(axis=2)
    n_chunks = -(-c // chunk)
    expect = np.stack([flat[:, j * chunk : (j + 1) * chunk].sum(axis=1) for j in range(n_chunks)])
    assert (chunk_counts(mask, chunk) == expect).all()


shapes = st.one_of(
    st.tuples(
        st.integers(1, 40), st.integers(1, 24), st.sampled_from([1, 3]), st.sampled_from([1, 3])
    ),
    st.tuples(st.integers(1, 40), st.integers(1, 60)),
)


@settings(max_examples=60, deadline=None)
@given(
    shape=shapes,
    rows=st.integers(1, 5),
    cols=st.integers(1, 5),
    density=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_utilization_in_unit_interval_and_work_conserved(
    shape: tuple[int, ...], rows: int, cols: int, density: float, seed: int
) -> None:
    mask = np.random.default_rng(seed).random(shape) < density
    nnz = int(mask.sum())
    for flow in ("K", "C", "KC"):
        config = AcceleratorConfig(pe_array={"rows": rows, "cols": cols}, dataflow=flow)
        layer = evaluate(config, {"w": mask}).layers[0]
        assert layer.work == nnz  # every non-zero lands on exactly one PE
        assert layer.idle >= 0 and layer.latency * 1 <= nnz
        if nnz:
            assert 0.0 <= layer.utilization <= 1.0
        else:
            assert np.isnan(layer.utilization)
        # the PE index agrees with the counts used by the model
        idx = np.array(pe_index(shape, config))
        part = partition(shape, config)
        per_pe = np.bincount(idx[mask], minlength=part.n_groups * config.n_pe)
        assert int(per_pe.reshape(part.n_groups, -1).max(axis=1).sum()) == layer.latency
