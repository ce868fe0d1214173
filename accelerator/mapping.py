"""Dataflow mapping: which group and which PE hold each weight of a layer.

A layer's weight is ``(K, C, kh, kw)`` (conv) or ``(K, C)`` (linear: out, in). Every mapping here
splits each filter ``k`` into contiguous input-channel *chunks*; one chunk of one filter lands on
exactly one PE of one group:

========  ======================  ===================  ==========================================
dataflow  channels per chunk      chunks per filter    group, PE of (filter k, chunk j)
========  ======================  ===================  ==========================================
K         C                       1                    ``k // n``,      ``k % n``
C         ``ceil(C / n)``         ``ceil(C / chunk)``  ``k``,           ``j``
KC        ``ceil(C / cols)``      ``ceil(C / chunk)``  ``k // rows``,   ``(k % rows) * cols + j``
========  ======================  ===================  ==========================================

with ``n = rows * cols``. Shapes that do not divide evenly leave PEs without weights: the last
filter group is partly filled (``K``, ``KC``) and a filter with fewer chunks than PEs leaves the
remaining PEs empty (``C``/``KC`` when ``C_in`` is small). Such PEs are *unmapped*: they are not
counted in Eq. 2's utilization (they hold no work to balance) but they are clocked, so the cost
model charges their idle cycles.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from accelerator.config import AcceleratorConfig, Dataflow


class MappingError(ValueError):
    """A weight shape that the mapping cannot take."""


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Partition:
    """How one layer's weights are split over the PE array (pure shape arithmetic)."""

    dataflow: Dataflow
    rows: int
    cols: int
    filters: int
    channels: int
    inner: int
    chunk: int
    n_chunks: int
    n_groups: int

    @property
    def n_pe(self) -> int:
        return self.rows * self.cols

    @property
    def chunk_channels(self) -> np.ndarray:
        """Channels in each chunk, shape ``(n_chunks,)`` (the last chunk may be shorter)."""
        sizes = np.full(self.n_chunks, self.chunk, dtype=np.int64)
        sizes[-1] = self.channels - self.chunk * (self.n_chunks - 1)
        return sizes

    @property
    def chunk_starts(self) -> np.ndarray:
        """First channel of each chunk, shape ``(n_chunks,)``."""
        return np.arange(self.n_chunks, dtype=np.int64) * self.chunk

    def layout(self, per_chunk: np.ndarray, fill: float = 0) -> np.ndarray:
        """Arrange per-(chunk, filter) values ``(n_chunks, K)`` as PE-major ``(n_pe, n_groups)``.

        PEs that hold no chunk get ``fill``. Pure reshaping and padding, no loops; PE-major so
        that reductions over the PEs of each group run along contiguous rows.
        """
        k, n, g = self.filters, self.n_pe, self.n_groups
        if self.dataflow is Dataflow.C:
            out = np.full((n, k), fill, dtype=per_chunk.dtype)
            out[: self.n_chunks] = per_chunk
            return out
        if self.dataflow is Dataflow.K:
            flat = np.full(g * n, fill, dtype=per_chunk.dtype)
            flat[:k] = per_chunk[0]
            return np.ascontiguousarray(flat.reshape(g, n).T)
        out3 = np.full((self.cols, g * self.rows), fill, dtype=per_chunk.dtype)
        out3[: self.n_chunks, :k] = per_chunk
        by_pe = out3.reshape(self.cols, g, self.rows).transpose(2, 0, 1)
        return np.ascontiguousarray(by_pe).reshape(n, g)

    def capacity(self) -> np.ndarray:
        """Weight slots held by each PE, ``(n_pe, n_groups)``; 0 marks an unmapped PE."""
        sizes = (self.chunk_channels * self.inner)[:, None]
        return self.layout(
            np.ascontiguousarray(np.broadcast_to(sizes, (self.n_chunks, self.filters)))
        )

    def mapped_pes(self) -> np.ndarray:
        """Number of PEs holding weights in each group, shape ``(n_groups,)``."""
        return _mapped_pes(self)

    def compact_index(self) -> np.ndarray:
        """``group * n_pe + pe`` for every (filter, input channel), shape ``(K, C)``."""
        k = np.arange(self.filters, dtype=np.int64)[:, None]
        j = (np.arange(self.channels, dtype=np.int64) // self.chunk)[None, :]
        n = self.n_pe
        if self.dataflow is Dataflow.K:
            return np.broadcast_to(k, (self.filters, self.channels))
        if self.dataflow is Dataflow.C:
            return k * n + j
        return (k // self.rows) * n + (k % self.rows) * self.cols + j


@lru_cache(maxsize=4096)
def _mapped_pes(part: Partition) -> np.ndarray:
    out: np.ndarray = (part.capacity() > 0).sum(axis=0)
    out.flags.writeable = False
    return out


def check_shape(weight_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Return the shape as ints, or raise :class:`MappingError` if no mapping can take it."""
    shape = tuple(int(s) for s in weight_shape)
    if len(shape) not in (2, 4):
        raise MappingError(
            f"weight shape {shape} is not supported: expected 4-D conv (K, C, kh, kw) "
            "or 2-D linear (out, in)"
        )
    if any(s < 1 for s in shape):
        raise MappingError(f"weight shape {shape} has an empty dimension")
    return shape


def partition(weight_shape: tuple[int, ...], config: AcceleratorConfig) -> Partition:
    """Split a conv ``(K, C, kh, kw)`` or linear ``(out, in)`` weight over ``config``'s array."""
    shape = check_shape(weight_shape)
    k, c = shape[0], shape[1]
    inner = shape[2] * shape[3] if len(shape) == 4 else 1
    rows, cols = config.pe_array.rows, config.pe_array.cols
    n = rows * cols
    flow = config.dataflow
    if flow is Dataflow.K:
        chunk, groups = c, _ceil_div(k, n)
    elif flow is Dataflow.C:
        chunk, groups = _ceil_div(c, n), k
    else:
        chunk, groups = _ceil_div(c, cols), _ceil_div(k, rows)
    return Partition(flow, rows, cols, k, c, inner, chunk, _ceil_div(c, chunk), groups)


def pe_index(weight_shape: tuple[int, ...], config: AcceleratorConfig) -> np.ndarray:
    """PE index of every weight: ``group * n_pe + pe`` (int64, same shape as the weight).

    Returned as a read-only broadcast view over a ``(K, C)`` table (the kernel dimensions repeat
    the channel's value), so a VGG-16 map costs kilobytes, not the 118 MB of a dense int64 copy.
    Consumers that want a writable array call ``np.array(...)`` on it.
    """
    part = partition(weight_shape, config)
    table = part.compact_index()
    if len(weight_shape) == 4:
        table = table[:, :, None, None]
    out: np.ndarray = np.broadcast_to(table, tuple(int(s) for s in weight_shape))
    return out
