"""Workload-ordered mapping: choose which filter and which input channel sits where in the array.

The fixed mappings of :mod:`accelerator.mapping` put filter ``k`` at slot ``k`` and channel
``c`` at slot ``c``. A mapping compiler may instead place them in any order: a PE that computes
filter ``k`` still writes output channel ``k`` and reads input channel ``c`` from its own
address, so the network computes exactly the same function and **no weight changes**. Only the
grouping changes, and with it the imbalance inside each group.

A :class:`LayerOrder` is two permutations, ``filters[slot] = original filter`` and
``channels[slot] = original input channel``. :func:`workload_order` chooses them from the
layer's per-(channel, filter) work ``w[c, k]`` (non-zeros, or expected work when a per-channel
cost such as ``1 - z_c`` is given):

- channels (``C``/``KC``, more than one chunk): sorted by total work ``sum_k w[c, k]``, heaviest
  first, and dealt to the chunks in snake order (0, 1, ..., J-1, J-1, ..., 0, ...) within each
  chunk's size, so every chunk gets a similar mix of heavy and light channels;
- filters (``K``/``KC``): sorted by their heaviest PE share (``K``: the whole filter; ``KC``: the
  largest chunk after the channel order), heaviest first, then cut into consecutive groups.
  For ``K`` this is optimal: sorted contiguous groups minimise ``sum_g max_p d[g, p]``.

``C`` groups are single filters, so only the channel order matters there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from accelerator.config import AcceleratorConfig, Dataflow
from accelerator.mapping import Partition, check_shape, partition


@dataclass(frozen=True)
class LayerOrder:
    """Placement of one layer: ``filters[slot]`` and ``channels[slot]`` are original indices."""

    filters: np.ndarray
    channels: np.ndarray

    @classmethod
    def identity(cls, filters: int, channels: int) -> LayerOrder:
        return cls(np.arange(filters, dtype=np.int64), np.arange(channels, dtype=np.int64))

    def check(self, filters: int, channels: int, name: str = "layer") -> LayerOrder:
        """Raise ``ValueError`` unless both arrays are permutations of the layer's axes."""
        pairs = (("filters", self.filters, filters), ("channels", self.channels, channels))
        for label, arr, n in pairs:
            a = np.asarray(arr)
            if a.shape != (n,) or not np.array_equal(np.sort(a), np.arange(n)):
                raise ValueError(
                    f"order of layer '{name}': {label} is not a permutation of 0..{n - 1}"
                )
        return self

    def to_dict(self) -> dict[str, list[int]]:
        return {"filters": self.filters.tolist(), "channels": self.channels.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> LayerOrder:
        filters = np.asarray(data["filters"], dtype=np.int64)
        return cls(filters, np.asarray(data["channels"], dtype=np.int64))


def snake_chunks(sizes: np.ndarray) -> np.ndarray:
    """Chunk of each rank when ranked items are dealt to chunks in snake order.

    ``sizes[j]`` is the capacity of chunk ``j``; returns an array of length ``sizes.sum()``
    whose element ``i`` is the chunk receiving the ``i``-th item. Round ``r`` visits the chunks
    forwards when ``r`` is even, backwards when odd, skipping chunks already full.
    """
    n_chunks, rounds = sizes.size, int(sizes.max())
    r = np.arange(rounds)[:, None]
    j = np.arange(n_chunks)[None, :]
    cols = np.where(r % 2 == 0, j, n_chunks - 1 - j)
    out: np.ndarray = cols[r < sizes[cols]]
    return out


def _chunk_loads(w: np.ndarray, channels: np.ndarray, part: Partition) -> np.ndarray:
    """Per-(chunk, filter) work ``(n_chunks, K)`` with channels placed by ``channels``."""
    starts = np.append(part.chunk_starts, part.channels)
    prefix = np.vstack([np.zeros((1, part.filters)), np.cumsum(w[channels], axis=0)])
    out: np.ndarray = np.diff(prefix[starts], axis=0)
    return out


def _place_filters(loads: np.ndarray, part: Partition) -> tuple[np.ndarray, float]:
    """Filters sorted by their heaviest PE share, and the resulting ``sum_g max_p`` latency."""
    if part.dataflow is Dataflow.C:
        return np.arange(part.filters, dtype=np.int64), float(loads.max(axis=0).sum())
    peak = loads.max(axis=0)
    filters = np.argsort(-peak, kind="stable")
    per_group = part.n_pe if part.dataflow is Dataflow.K else part.rows
    padded = np.zeros(part.n_groups * per_group)
    padded[: part.filters] = peak[filters]
    return filters, float(padded.reshape(part.n_groups, per_group).max(axis=1).sum())


def workload_order(
    per_channel: np.ndarray, part: Partition, channel_cost: np.ndarray | None = None
) -> LayerOrder:
    """The workload order of one layer from its ``(C, K)`` non-zero counts (module docstring).

    ``channel_cost`` (length ``C``) weights each channel's non-zeros, e.g. ``1 - z_c`` to order
    by the work left after tick-batch skipping instead of by raw non-zeros. The snake channel
    order is a heuristic, so it is kept only when it lowers ``sum_g max_p`` of the weighted work
    below the fixed channel order's; the result is never worse than the fixed mapping.
    """
    w = per_channel.astype(np.float64)
    if channel_cost is not None:
        w = w * np.asarray(channel_cost, dtype=np.float64)[:, None]
    fixed = np.arange(part.channels, dtype=np.int64)
    filters, latency = _place_filters(_chunk_loads(w, fixed, part), part)
    channels = fixed
    if part.dataflow is not Dataflow.K and part.n_chunks > 1:
        heavy_first = np.argsort(-w.sum(axis=1), kind="stable")
        chunk_of = np.empty(part.channels, dtype=np.int64)
        chunk_of[heavy_first] = snake_chunks(part.chunk_channels)
        snake = np.argsort(chunk_of, kind="stable")
        snake_filters, snake_latency = _place_filters(_chunk_loads(w, snake, part), part)
        if snake_latency < latency:
            channels, filters = snake, snake_filters
    return LayerOrder(filters, channels)


def apply_order(per_channel: np.ndarray, order: LayerOrder) -> np.ndarray:
    """Counts ``(C, K)`` as the array sees them: row = channel slot, column = filter slot."""
    out: np.ndarray = per_channel[order.channels][:, order.filters]
    return out


def ordered_pe_index(
    weight_shape: tuple[int, ...], config: AcceleratorConfig, order: LayerOrder | None = None
) -> np.ndarray:
    """Like :func:`accelerator.pe_index`, for weights placed by ``order`` (a broadcast view).

    Original filter ``k`` sits in filter slot ``s_k`` (``order.filters[s_k] = k``) and takes
    that slot's PE: ``index[k, c] = table[s_k, t_c]`` with ``table`` the fixed mapping's.
    """
    shape = check_shape(weight_shape)
    part = partition(shape, config)
    table = part.compact_index()
    if order is not None:
        order.check(part.filters, part.channels)
        slot_f = np.argsort(order.filters)
        slot_c = np.argsort(order.channels)
        table = table[slot_f][:, slot_c]
    if len(shape) == 4:
        table = table[:, :, None, None]
    out: np.ndarray = np.broadcast_to(table, shape)
    return out
