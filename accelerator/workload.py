"""Per-PE workload and utilization (the paper's Eq. 2), vectorized over whole masks.

The workload of a PE is the number of non-zero weights mapped to it. Counting is the only step
that touches every weight, so it is done once per (mask, chunking) with the fastest exact method
numpy offers: a popcount over machine words when chunk boundaries align with words, and a sparse
``flatnonzero`` + ``bincount`` otherwise. Everything after works on tiny ``(K, chunks)`` tables.
"""

from __future__ import annotations

import numpy as np

from accelerator.mapping import Partition

_WORDS: tuple[tuple[type[np.unsignedinteger], int], ...] = (
    (np.uint64, 8),
    (np.uint32, 4),
    (np.uint16, 2),
)


class MaskError(ValueError):
    """A mask that is not a 0/1 array of the expected shape."""


def as_mask(array: np.ndarray, name: str = "mask") -> np.ndarray:
    """Return ``array`` as a C-contiguous bool array; raise :class:`MaskError` if not 0/1."""
    a = np.asarray(array)
    if a.dtype == np.bool_:
        return np.ascontiguousarray(a)
    if a.dtype.kind not in "biuf":
        raise MaskError(f"{name}: dtype {a.dtype} is not numeric; masks must hold 0/1")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise MaskError(f"{name}: contains NaN/inf; masks must hold only 0 and 1")
    nonbinary = (a != 0) & (a != 1)
    if nonbinary.any():
        bad = a[nonbinary].flat[0]
        raise MaskError(f"{name}: value {bad!r} is not 0/1; masks must hold only 0 and 1")
    return np.ascontiguousarray(a != 0)


def chunk_counts(mask: np.ndarray, chunk: int) -> np.ndarray:
    """Non-zeros of every (chunk of ``chunk`` input channels, filter): shape ``(n_chunks, K)``.

    ``mask`` is a C-contiguous bool ``(K, C, ...)`` array. A chunk is ``chunk * inner`` consecutive
    bytes; when that and the filter length are multiples of a word size, bools are counted eight
    (or four, two) at a time with ``bitwise_count`` and summed per chunk with ``add.reduceat``;
    otherwise the (few) non-zeros are located with ``flatnonzero`` and binned.
    """
    k, c = mask.shape[0], mask.shape[1]
    inner = mask.size // (k * c)
    n_chunks = -(-c // chunk)
    seg = chunk * inner
    row = c * inner
    flat = mask.reshape(-1)
    for word, nbytes in _WORDS:
        if seg % nbytes == 0 and row % nbytes == 0:
            bits = np.bitwise_count(flat.view(word))
            starts = (np.arange(k)[:, None] * row + np.arange(n_chunks)[None, :] * seg) // nbytes
            sums = np.add.reduceat(bits, starts.ravel(), dtype=np.int64).reshape(k, n_chunks)
            return np.ascontiguousarray(sums.T)
    pos = np.flatnonzero(flat)
    cell = ((pos % row) // seg) * k + pos // row
    return np.bincount(cell, minlength=k * n_chunks).reshape(n_chunks, k)


def channel_counts(mask: np.ndarray) -> np.ndarray:
    """Non-zeros of every (input channel, filter), shape ``(C, K)``."""
    return chunk_counts(mask, 1)


def reduce_chunks(per_channel: np.ndarray, part: Partition) -> np.ndarray:
    """Sum a ``(C, K)`` table over each PE's channel chunk, giving ``(n_chunks, K)``."""
    return np.add.reduceat(per_channel, part.chunk_starts, axis=0)


def eq2(d_max: np.ndarray, d_sum: np.ndarray, n: np.ndarray, integer: bool = True) -> np.ndarray:
    """Eq. 2 per group from the group's max, sum and number of mapped PEs (vectors).

    ``u = 1 - ((d_max - d_avg) / d_max) * n / (n - 1)`` with ``d_avg = ceil(sum / n)`` (``ceil``
    only for integer counts: activity-weighted workloads use the plain mean). Groups whose
    ``d_max`` is 0 are skipped (NaN). A group of one mapped PE is balanced by definition (u = 1).
    Always in [0, 1] because ``sum / n <= d_avg <= d_max`` and ``d_max <= n * d_avg``.
    """
    n_safe = np.maximum(n, 1)
    d_avg = d_sum / n_safe
    if integer:
        d_avg = np.ceil(d_avg)
    empty = d_max <= 0
    imbalance = (d_max - d_avg) / np.where(empty, 1, d_max) * (n_safe / np.maximum(n - 1, 1))
    u: np.ndarray = np.minimum(np.maximum(1.0 - imbalance, 0.0), 1.0)
    u[n <= 1] = 1.0
    u[empty] = np.nan
    return u


def group_utilization(work: np.ndarray, mapped: np.ndarray, integer: bool = True) -> np.ndarray:
    """Eq. 2 for every group (column) of a PE-major ``(n_pe, groups)`` workload table, over the
    group's mapped PEs."""
    d = np.where(mapped, work, 0)
    return eq2(d.max(axis=0), d.sum(axis=0), mapped.sum(axis=0), integer)


def mean_utilization(u_groups: np.ndarray) -> float:
    """Layer utilization: mean of Eq. 2 over non-empty groups (NaN if every group is empty)."""
    valid = u_groups[~np.isnan(u_groups)]
    return float(valid.sum() / valid.size) if valid.size else float("nan")
