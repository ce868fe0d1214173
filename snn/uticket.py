"""u-Ticket workload balancing (Yin et al., arXiv 2302.06746, Algorithm 1, step 3), vectorized.

For every group of PEs (filters or channel chunks processed together), the target workload is
``ceil(mean)`` of the group's non-zero counts, the mean taken over the PEs that hold weights.
A PE above target loses its excess surviving weights; a PE below target gets pruned weights back
("recovery"); both picked uniformly at random (``mode="random"``, the paper's default) or by
magnitude (``mode="magnitude"``: drop the smallest survivors, recover the largest pruned
weights). A PE whose capacity is below the target is filled completely. PEs already on target
are never touched. Afterwards every group has equal workloads, so Eq. 2 utilization is 1.0.

Spike-aware variant (``channel_cost``): a weight's expected work is the cost of its input
channel (e.g. ``1 - z_c``, the share of input neurons not skipped by tick batching), and the PEs
of a group are levelled on expected work ``q[p] = sum of costs of p's survivors`` instead of on
non-zeros. The level is the group's mean ``Q`` over mapped PEs. A PE above it keeps
``ceil(Q / mean survivor cost)`` survivors (rounding up, like u-Ticket's ``ceil(mean)``, so a
group never loses its last weight); the group's new peak ``L`` is the largest trimmed ``q``. A PE
below ``Q`` recovers ``floor((L - q[p]) / mean free-slot cost)`` weights, free in latency, but
never beyond the count-based target ``ceil(mean non-zeros)`` (recovering costless weights would
only lower sparsity) and never on a PE whose free slots cost nothing. Which weights go or come
back is chosen as above. Levelling is in expectation, so it is exact only when a PE's weights
share one cost (one channel per PE).

The PE map is plain data: ``pe_index[name]`` has the weight's shape and holds
``group * n_pe + pe`` for every weight (``accelerator.pe_index`` returns exactly that, as a
broadcast view whose repeated axes are detected here and never expanded). Nothing here loops
over filters or PEs: counting is ``bincount``, removal one sort of the survivors, recovery
rejection sampling of slots for the under-loaded PEs only.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

Mode = Literal["random", "magnitude"]


class BalanceError(ValueError):
    """Masks, PE maps or weights that do not fit together."""


def _to_numpy(x: Any) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        return np.asarray(x.detach().cpu().numpy())
    return np.asarray(x)


def _like(template: Any, mask: np.ndarray) -> Any:
    if type(template).__module__.startswith("torch"):
        import torch

        return torch.from_numpy(mask).to(device=template.device)
    return mask


class _Cells:
    """A PE map reduced to its distinct cells: broadcast (stride-0) axes collapse into one cell
    of ``rep`` consecutive-or-strided weights that share a PE."""

    def __init__(self, index: np.ndarray, n_pe: int) -> None:
        shape = index.shape
        self.shape = shape
        self.broadcast = tuple(
            a for a in range(index.ndim) if index.strides[a] == 0 and shape[a] > 1
        )
        sl = tuple(slice(0, 1) if a in self.broadcast else slice(None) for a in range(index.ndim))
        compact = np.asarray(index[sl])
        self.compact_shape = compact.shape
        self.values = compact.reshape(-1).astype(np.int64, copy=False)
        if self.values.size and self.values.min() < 0:
            raise BalanceError("pe_index holds negative values")
        self.rep = int(np.prod([shape[a] for a in self.broadcast], dtype=np.int64))
        tail = tuple(range(len(shape) - len(self.broadcast), len(shape)))
        self.trailing = self.broadcast == tail  # repeated axes last: cells are contiguous runs
        top = int(self.values.max()) + 1 if self.values.size else 0
        self.n_groups = -(-top // n_pe)
        self.n_values = self.n_groups * n_pe
        self.capacity = np.bincount(self.values, minlength=self.n_values) * self.rep
        self._order: np.ndarray | None = None

    def cell_of(self, pos: np.ndarray) -> np.ndarray:
        """Cell (compact flat index) of flat weight positions."""
        if not self.broadcast:
            return pos
        if self.trailing:
            return pos // self.rep
        multi = list(np.unravel_index(pos, self.shape))
        for a in self.broadcast:
            multi[a] = np.zeros_like(multi[a])
        flat: np.ndarray = np.ravel_multi_index(tuple(multi), self.compact_shape)
        return flat

    def position(self, cell: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """Flat weight position of slot ``offset`` (0..rep-1) inside ``cell``."""
        if not self.broadcast:
            return cell
        if self.trailing:
            pos: np.ndarray = cell * self.rep + offset
            return pos
        multi = list(np.unravel_index(cell, self.compact_shape))
        inner = np.unravel_index(offset, tuple(self.shape[a] for a in self.broadcast))
        for a, off in zip(self.broadcast, inner, strict=True):
            multi[a] = off
        flat: np.ndarray = np.ravel_multi_index(tuple(multi), self.shape)
        return flat

    def cells_by_value(self) -> tuple[np.ndarray, np.ndarray]:
        """Cells sorted by PE value and the start of each value's run (stable, O(n) on the
        already-sorted maps of the shipped dataflows)."""
        if self._order is None:
            self._order = np.argsort(self.values, kind="stable")
        counts = self.capacity // max(self.rep, 1)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        return self._order, starts


def _targets(work: np.ndarray, capacity: np.ndarray, n_pe: int) -> np.ndarray:
    """Per-PE target: ``min(ceil(mean of the group's mapped PEs), capacity)``."""
    d = work.reshape(-1, n_pe)
    cap = capacity.reshape(-1, n_pe)
    mapped = (cap > 0).sum(axis=1)
    target = np.ceil(d.sum(axis=1) / np.maximum(mapped, 1)).astype(np.int64)
    out: np.ndarray = np.minimum(target[:, None], cap).reshape(-1)
    return out


def _rank_in_segments(seg: np.ndarray) -> np.ndarray:
    """Rank of each element within its run of equal (sorted) segment ids."""
    n = seg.size
    if n == 0:
        return seg
    first = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
    lengths = np.diff(np.r_[first, n])
    return np.arange(n) - np.repeat(first, lengths)


def _first_per_segment(ok: np.ndarray, draws: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Among draws laid out in consecutive segments of ``draws[i]``, keep the first ``want[i]``
    accepted (``ok``) ones of each segment, in draw order."""
    accepted_before = np.cumsum(ok) - ok
    seg_start = np.repeat(np.r_[0, np.cumsum(draws)[:-1]], draws)
    rank = accepted_before - accepted_before[seg_start]
    out: np.ndarray = ok & (rank < np.repeat(want, draws))
    return out


def _first_occurrence(x: np.ndarray) -> np.ndarray:
    """True where ``x`` holds a value for the first time."""
    first = np.zeros(x.size, dtype=bool)
    first[np.unique(x, return_index=True)[1]] = True
    return first


def _sample_segments(
    sizes: np.ndarray, counts: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Choose ``counts[i]`` distinct offsets uniformly from ``range(sizes[i])`` for every i.

    Returns ``(segment, offset)`` arrays. Rejection sampling for segments that need a small
    share of their items; a random-key sort for the others.
    """
    seg_out, off_out = [], []
    dense = counts * 4 > sizes
    if dense.any():
        d_idx = np.flatnonzero(dense)
        seg = np.repeat(d_idx, sizes[d_idx])
        off = np.arange(seg.size) - np.repeat(np.r_[0, np.cumsum(sizes[d_idx])[:-1]], sizes[d_idx])
        order = np.lexsort((rng.random(seg.size), seg))
        seg, off = seg[order], off[order]
        keep = _rank_in_segments(seg) < counts[seg]
        seg_out.append(seg[keep])
        off_out.append(off[keep])
    remaining = np.where(dense, 0, counts)
    pending = np.flatnonzero(remaining > 0)
    taken = np.zeros(0, dtype=np.int64)
    taken_seg = np.zeros(0, dtype=np.int64)
    while pending.size:
        want = remaining[pending]
        draws = (want * 2 + 8).astype(np.int64)
        seg = np.repeat(pending, draws)
        off = (rng.random(seg.size) * sizes[seg]).astype(np.int64)
        key = seg * (int(sizes.max()) + 1) + off
        prior = np.isin(key, taken_seg * (int(sizes.max()) + 1) + taken, assume_unique=False)
        ok = _first_occurrence(key) & ~prior
        take = _first_per_segment(ok, draws, want)
        seg_out.append(seg[take])
        off_out.append(off[take])
        taken = np.concatenate([taken, off[take]])
        taken_seg = np.concatenate([taken_seg, seg[take]])
        remaining -= np.bincount(seg[take], minlength=remaining.size)
        pending = np.flatnonzero(remaining > 0)
    if not seg_out:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(seg_out), np.concatenate(off_out)


def _remove(
    flat: np.ndarray,
    pos: np.ndarray,
    val: np.ndarray,
    excess: np.ndarray,
    rng: np.random.Generator,
    weight: np.ndarray | None,
) -> None:
    """Clear ``excess[v]`` survivors of every over-loaded PE ``v`` (random or smallest |w|)."""
    over = excess[val] > 0
    cand, cval = pos[over], val[over]
    if cand.size == 0:
        return
    if weight is not None:
        order = np.lexsort((np.abs(weight[cand]), cval))
        cand, cval = cand[order], cval[order]
        flat[cand[_rank_in_segments(cval) < excess[cval]]] = False
        return
    if (np.diff(cval) < 0).any():  # survivors of a PE are not contiguous for this map
        order = np.argsort(cval, kind="stable")
        cand, cval = cand[order], cval[order]
    first = np.flatnonzero(np.r_[True, cval[1:] != cval[:-1]])
    sizes = np.diff(np.r_[first, cval.size])
    seg, off = _sample_segments(sizes, excess[cval[first]], rng)
    flat[cand[first[seg] + off]] = False


def _recover_random(
    flat: np.ndarray,
    cells: _Cells,
    need: np.ndarray,
    free: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Set ``need[v]`` of the ``free[v]`` pruned slots of every under-loaded PE ``v``, uniformly.

    Rejection sampling: draw slots of PE ``v`` uniformly (a uniform cell among its cells, then a
    uniform offset inside the cell), keep draws that hit a pruned slot for the first time, in
    draw order, and take the first ``need[v]``; redraw for PEs still short. A PE that needs a
    large share of its free slots is enumerated instead (rejection would be slow there).
    """
    order, starts = cells.cells_by_value()
    remaining = need.copy()
    free = free.copy()
    pending = np.flatnonzero(remaining > 0)
    while pending.size:
        want = remaining[pending]
        dense = want * 4 > free[pending]
        if dense.any():
            _recover_enumerate(flat, cells, pending[dense], want[dense], rng, None)
            remaining[pending[dense]] = 0
        sparse = pending[~dense]
        if sparse.size == 0:
            return
        want = remaining[sparse]
        draws = np.ceil(want * cells.capacity[sparse] / free[sparse] * 1.5).astype(np.int64) + 8
        owner = np.repeat(sparse, draws)
        slot = (rng.random(owner.size) * cells.capacity[owner]).astype(np.int64)
        pos = cells.position(order[starts[owner] + slot // cells.rep], slot % cells.rep)
        ok = ~flat[pos] & _first_occurrence(pos)
        take = _first_per_segment(ok, draws, want)
        flat[pos[take]] = True
        got = np.bincount(owner[take], minlength=remaining.size)
        remaining -= got
        free -= got
        pending = np.flatnonzero(remaining > 0)


def _recover_enumerate(
    flat: np.ndarray,
    cells: _Cells,
    values: np.ndarray,
    want: np.ndarray,
    rng: np.random.Generator,
    weight: np.ndarray | None,
) -> None:
    """Recover by listing every slot of the given PEs (exact; used for magnitude mode and for
    PEs that need most of their free slots)."""
    if values.size == 0:
        return
    order, starts = cells.cells_by_value()
    n_cells = cells.capacity // max(cells.rep, 1)
    owner = np.repeat(values, n_cells[values])
    cell = order[starts[owner] + _rank_in_segments(owner)]
    rep = cells.rep
    pos = cells.position(np.repeat(cell, rep), np.tile(np.arange(rep), cell.size))
    owner = np.repeat(owner, rep)
    free = ~flat[pos]
    pos, owner = pos[free], owner[free]
    key = rng.random(pos.size) if weight is None else -np.abs(weight[pos])
    order2 = np.lexsort((key, owner))
    pos, owner = pos[order2], owner[order2]
    quota = np.zeros(int(values.max()) + 1, dtype=np.int64)
    quota[values] = want
    take = _rank_in_segments(owner) < quota[owner]
    flat[pos[take]] = True


def _slot_cost(cells: _Cells, cost: np.ndarray, channels: int) -> np.ndarray:
    """Total cost of every slot (pruned or not) of each PE, ``(n_values,)``."""
    if 1 in cells.broadcast:  # every cell spans all channels (e.g. the K mapping)
        per_cell = np.full(cells.values.size, cost.sum() * cells.rep / channels)
    else:
        ch = np.unravel_index(np.arange(cells.values.size), cells.compact_shape)[1]
        per_cell = cost[ch] * cells.rep
    out: np.ndarray = np.bincount(cells.values, weights=per_cell, minlength=cells.n_values)
    return out


def _cost_targets(
    work: np.ndarray, q: np.ndarray, slot_cost: np.ndarray, capacity: np.ndarray, n_pe: int
) -> np.ndarray:
    """Per-PE survivor counts that level expected work ``q`` (see the module docstring)."""
    d, qq = work.reshape(-1, n_pe).astype(np.float64), q.reshape(-1, n_pe)
    cap = capacity.reshape(-1, n_pe)
    mapped = np.maximum((cap > 0).sum(axis=1, keepdims=True), 1)
    level = qq.sum(axis=1, keepdims=True) / mapped
    count_target = np.ceil(d.sum(axis=1, keepdims=True) / mapped)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_kept = np.where(d > 0, qq / d, 0.0)
        keep = np.where(mean_kept > 0, np.ceil(level / mean_kept - 1e-9), d)
        trimmed = np.where(qq > level, np.minimum(keep, d), d)
        ceiling = (trimmed * mean_kept).max(axis=1, keepdims=True)
        free = cap - d
        mean_free = np.where(free > 0, (slot_cost.reshape(-1, n_pe) - qq) / free, 0.0)
        add = np.where(mean_free > 1e-12, np.floor((ceiling - qq) / mean_free + 1e-9), 0.0)
    grow = np.minimum(d + np.maximum(add, 0), np.maximum(d, count_target))
    target = np.where(qq > level, trimmed, np.where(qq < level, grow, d))
    out: np.ndarray = np.clip(target, 0, cap).astype(np.int64).reshape(-1)
    return out


def balance_layer(
    mask: np.ndarray,
    pe_index: np.ndarray,
    n_pe: int,
    rng: np.random.Generator,
    mode: Mode = "random",
    weight: np.ndarray | None = None,
    channel_cost: np.ndarray | None = None,
) -> np.ndarray:
    """Balance one layer's mask (see the module docstring); returns a new bool array."""
    out = np.array(mask, dtype=bool, order="C")  # a copy: the caller's mask is not modified
    flat = out.reshape(-1)
    cells = _Cells(pe_index, n_pe)
    pos = np.flatnonzero(flat)
    val = cells.values[cells.cell_of(pos)]
    work = np.bincount(val, minlength=cells.n_values)
    if channel_cost is None:
        target = _targets(work, cells.capacity, n_pe)
    else:
        inner = int(np.prod(mask.shape[2:], dtype=np.int64))
        cost_of = channel_cost[(pos // inner) % mask.shape[1]]
        q = np.bincount(val, weights=cost_of, minlength=cells.n_values)
        slot_cost = _slot_cost(cells, channel_cost, mask.shape[1])
        target = _cost_targets(work, q, slot_cost, cells.capacity, n_pe)
    delta = target - work
    w = None if weight is None else np.asarray(weight, dtype=np.float64).reshape(-1)
    if (delta < 0).any():
        _remove(flat, pos, val, np.maximum(-delta, 0), rng, w if mode == "magnitude" else None)
    need = np.maximum(delta, 0)
    if need.any():
        if mode == "magnitude":
            values = np.flatnonzero(need)
            _recover_enumerate(flat, cells, values, need[values], rng, w)
        else:
            _recover_random(flat, cells, need, cells.capacity - work, rng)
    return out


def layer_seed(seed: int, name: str) -> np.random.Generator:
    """A generator per (seed, layer name): results do not depend on the order of the layers."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode())])


def balance(
    masks: Mapping[str, Any],
    pe_index: Mapping[str, Any],
    n_pe: int,
    seed: int,
    mode: Mode = "random",
    weights: Mapping[str, Any] | None = None,
    channel_cost: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Balance every layer of ``masks`` for its PE map; returns new masks of the input types.

    ``masks``/``pe_index``/``weights`` are dicts keyed by layer name with arrays (numpy or
    torch) of equal shapes. ``mode="magnitude"`` needs ``weights``. ``channel_cost`` (optional,
    per layer a vector of length ``C_in`` in [0, 1]) switches to spike-aware levelling of
    expected work. Deterministic for a seed.
    """
    if mode not in ("random", "magnitude"):
        raise BalanceError(f"mode must be 'random' or 'magnitude', got {mode!r}")
    if mode == "magnitude" and weights is None:
        raise BalanceError("mode='magnitude' needs the weights")
    if n_pe < 1:
        raise BalanceError(f"n_pe must be >= 1, got {n_pe}")
    out: dict[str, Any] = {}
    for name, raw in masks.items():
        if name not in pe_index:
            raise BalanceError(f"no pe_index for layer '{name}'")
        mask = _to_numpy(raw)
        index = pe_index[name]
        index = index if isinstance(index, np.ndarray) else _to_numpy(index)
        if index.shape != mask.shape:
            raise BalanceError(
                f"layer '{name}': pe_index shape {index.shape} != mask shape {mask.shape}"
            )
        w = None if weights is None else _to_numpy(weights[name])
        if w is not None and w.shape != mask.shape:
            raise BalanceError(f"layer '{name}': weight shape {w.shape} != mask shape {mask.shape}")
        cost = None
        if channel_cost is not None and name in channel_cost:
            cost = np.asarray(_to_numpy(channel_cost[name]), dtype=np.float64)
            if mask.ndim < 2 or cost.shape != (mask.shape[1],):
                raise BalanceError(
                    f"layer '{name}': channel_cost has shape {cost.shape}, "
                    f"expected ({mask.shape[1] if mask.ndim > 1 else '?'},)"
                )
            if not np.all((cost >= 0) & (cost <= 1)):
                raise BalanceError(f"layer '{name}': channel_cost values must lie in [0, 1]")
        mask = mask if mask.dtype == np.bool_ else mask != 0
        new = balance_layer(mask, index, n_pe, layer_seed(seed, name), mode, w, cost)
        out[name] = _like(raw, new)
    return out
