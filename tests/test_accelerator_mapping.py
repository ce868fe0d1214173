"""Dataflow mapping: hand-checked PE indices for K, C and KC, uneven shapes included."""

from __future__ import annotations

import numpy as np
import pytest

from accelerator import AcceleratorConfig, MappingError, partition, pe_index


def cfg(rows: int, cols: int, flow: str) -> AcceleratorConfig:
    return AcceleratorConfig(pe_array={"rows": rows, "cols": cols}, dataflow=flow)


def test_k_groups_consecutive_filters() -> None:
    idx = pe_index((5, 3, 2, 2), cfg(2, 1, "K"))
    # n_pe = 2: filters 0,1 -> group 0; 2,3 -> group 1; 4 -> group 2 (half empty)
    assert idx.dtype == np.int64 and idx.shape == (5, 3, 2, 2)
    assert idx[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]
    assert (idx == idx[:, :1, :1, :1]).all()
    part = partition((5, 3, 2, 2), cfg(2, 1, "K"))
    assert part.n_groups == 3
    assert part.capacity().tolist() == [[12, 12, 12], [12, 12, 0]]


def test_c_splits_channels_in_contiguous_chunks() -> None:
    idx = pe_index((2, 5, 1, 1), cfg(2, 1, "C"))
    # chunk = ceil(5/2) = 3 channels: [0,1,2] -> PE 0, [3,4] -> PE 1; group = filter
    assert idx[0, :, 0, 0].tolist() == [0, 0, 0, 1, 1]
    assert idx[1, :, 0, 0].tolist() == [2, 2, 2, 3, 3]
    assert partition((2, 5, 1, 1), cfg(2, 1, "C")).capacity().tolist() == [[3, 3], [2, 2]]


def test_c_with_fewer_channels_than_pes_leaves_pes_empty() -> None:
    part = partition((2, 3, 3, 3), cfg(4, 4, "C"))
    cap = part.capacity()
    assert cap.shape == (16, 2)
    assert (cap[:3] == 9).all() and (cap[3:] == 0).all()
    assert part.mapped_pes().tolist() == [3, 3]
    assert pe_index((2, 3, 3, 3), cfg(4, 4, "C"))[1, :, 0, 0].tolist() == [16, 17, 18]


def test_kc_rows_take_filters_cols_take_chunks() -> None:
    idx = pe_index((3, 4), cfg(2, 2, "KC"))  # linear: out=3, in=4; chunk = 2 channels
    # group = k // 2; pe = (k % 2) * 2 + c // 2
    assert idx.tolist() == [[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]]
    part = partition((3, 4), cfg(2, 2, "KC"))
    assert part.capacity().tolist() == [[2, 2], [2, 2], [2, 0], [2, 0]]


@pytest.mark.parametrize("flow", ["K", "C", "KC"])
@pytest.mark.parametrize("shape", [(7, 5, 3, 3), (16, 64, 1, 1), (10, 3), (33, 17, 3, 3)])
def test_capacity_matches_pe_index_counts(flow: str, shape: tuple[int, ...]) -> None:
    config = cfg(2, 3, flow)
    part = partition(shape, config)
    counts = np.bincount(np.array(pe_index(shape, config)).ravel(), minlength=part.n_groups * 6)
    by_pe = counts.reshape(part.n_groups, 6).T
    assert (by_pe == part.capacity()).all()


def test_pe_index_is_a_cheap_read_only_view() -> None:
    idx = pe_index((512, 512, 3, 3), cfg(4, 4, "C"))
    assert not idx.flags.writeable
    assert idx.base is not None and idx.base.nbytes <= 512 * 512 * 8


def test_unsupported_shape() -> None:
    with pytest.raises(MappingError, match="expected 4-D conv"):
        partition((3, 3, 3), cfg(4, 4, "K"))
