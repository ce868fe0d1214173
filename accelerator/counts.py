"""Count summaries of pruned masks: what the cost model needs to know about the weights.

A mask is read once into per-(input channel, filter) non-zero counts (:class:`LayerCounts`);
every PE partition is then scored from prefix sums of that table (:class:`ChunkStats`), without
touching the mask again. :func:`summarize` reduces a whole network to a :class:`MaskSummary`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from accelerator.mapping import Partition, check_shape
from accelerator.profile import LayerProfile
from accelerator.workload import as_mask, channel_counts, chunk_counts, reduce_chunks


@dataclass(frozen=True)
class ChunkStats:
    """Per-(chunk, filter) tables of one layer (shape ``(n_chunks, K)``).

    ``d``: non-zeros. ``q``: work left after tick-batch skipping, or ``None`` when it is simply
    ``d * q_scale`` (no per-channel data). ``a_total``: spike-weighted non-zeros ``sum d r_c``.
    """

    d: np.ndarray
    q: np.ndarray | None
    q_scale: float
    a_total: float


def _rates(lp: LayerProfile) -> tuple[np.ndarray | None, np.ndarray | None]:
    z = None if lp.channel_tick_zero_fraction is None else np.asarray(lp.channel_tick_zero_fraction)
    r = None if lp.channel_spike_rate is None else np.asarray(lp.channel_spike_rate)
    return z, r


def stats_from_mask(mask: np.ndarray, part: Partition, lp: LayerProfile) -> ChunkStats:
    """Count a mask once for ``part``; per-channel activity needs per-channel counts."""
    z, r = _rates(lp)
    if z is None and r is None:
        d = chunk_counts(mask, part.chunk)
        return ChunkStats(d, None, 1.0 - lp.tick_zero_fraction, float(d.sum()) * lp.spike_rate)
    per_channel = channel_counts(mask)
    d = reduce_chunks(per_channel, part)
    q = reduce_chunks(per_channel * (1.0 - z)[:, None], part) if z is not None else None
    a = float((per_channel * r[:, None]).sum()) if r is not None else float(d.sum()) * lp.spike_rate
    return ChunkStats(d, q, 1.0 - lp.tick_zero_fraction, a)


@dataclass
class LayerCounts:
    """Per-(input channel, filter) non-zero counts ``(C, K)`` of one mask, with prefix sums over
    channels.

    Scoring under another array or dataflow only takes prefix differences at chunk boundaries,
    ``O(K * n_chunks)``, without reading the mask again.
    """

    shape: tuple[int, ...]
    per_channel: np.ndarray
    _prefix: dict[Hashable, np.ndarray] = field(default_factory=dict, repr=False)

    def _cumsum(self, key: Hashable, table: np.ndarray) -> np.ndarray:
        if key not in self._prefix:
            out = np.zeros((table.shape[0] + 1, table.shape[1]), dtype=table.dtype)
            np.cumsum(table, axis=0, out=out[1:])
            self._prefix[key] = out
        return self._prefix[key]

    def stats(self, part: Partition, lp: LayerProfile) -> ChunkStats:
        """Chunk tables for ``part`` from prefix sums (weighted ones cached per profile)."""
        z, r = _rates(lp)
        bounds = np.append(part.chunk_starts, part.channels)
        d = np.diff(self._cumsum(("d",), self.per_channel)[bounds], axis=0)
        q = None
        if z is not None:
            pre_q = self._cumsum(("q", *z.tolist()), self.per_channel * (1.0 - z)[:, None])
            q = np.diff(pre_q[bounds], axis=0)
        if r is None:
            a = float(d.sum()) * lp.spike_rate
        else:
            a = float(self._cumsum(("a", *r.tolist()), self.per_channel * r[:, None])[-1].sum())
        return ChunkStats(d, q, 1.0 - lp.tick_zero_fraction, a)


@dataclass
class MaskSummary:
    """A network's masks reduced to per-(filter, channel) counts, in network order."""

    layers: dict[str, LayerCounts]

    @classmethod
    def from_masks(cls, masks: Mapping[str, Any]) -> MaskSummary:
        """Read every mask once (validating it is 0/1)."""
        out: dict[str, LayerCounts] = {}
        for name, raw in masks.items():
            arr = np.asarray(raw)
            shape = check_shape(arr.shape)
            out[name] = LayerCounts(shape, channel_counts(as_mask(arr, name)).astype(np.int64))
        return cls(out)


def summarize(masks: Mapping[str, Any]) -> MaskSummary:
    """Reduce masks to counts once, to score many hardware design points quickly."""
    return MaskSummary.from_masks(masks)
