"""Orchestration of the cost model: from masks (or their summary) and a profile to a
:class:`Report`.

Scoring runs in two phases so that one configuration (:func:`evaluate`) and whole grids of them
(:func:`accelerator.evaluate_grid`) share every equation:

1. :func:`network_work` counts, per layer, everything that depends on the mapping and the PE
   resources (:class:`LayerWork`: Eq. 2 utilization, compute cycles, work, spikes, PE-level
   traffic; :mod:`accelerator.equations`);
2. the GB tiling (:func:`accelerator.memory.choose_tiling`) gives the DRAM traffic for the
   buffer size, and :func:`accelerator.equations.figures` turns counts and traffic into cycles
   and energy with the configuration's clock, bandwidths and per-action energies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from accelerator.config import AcceleratorConfig, SramRow
from accelerator.counts import ChunkStats, LayerCounts, MaskSummary, stats_from_mask, summarize
from accelerator.equations import (
    BROADCAST_FIELDS,
    PETraffic,
    area_mm2,
    compute_cycles,
    figures,
    pe_traffic,
    sram_figures,
)
from accelerator.mapping import Partition, partition
from accelerator.memory import Geometry, Tiling, choose_tiling, geometry
from accelerator.order import LayerOrder, apply_order, workload_order
from accelerator.profile import NO_PROFILE, LayerProfile, Profile, check_channels, parse_profile
from accelerator.report import ENERGY_PARTS, LayerReport, Report
from accelerator.workload import as_mask, eq2, mean_utilization

LAYER_ARRAYS = (
    "compute_cycles",
    "spikes",
    "gate_ops",
    "n_work",
    "entries_loaded",
    "lif_updates",
    "gb_read",
    "gb_write",
)
"""Per-layer counts that :func:`accelerator.equations.figures` reads (``LayerWork`` fields)."""


@dataclass(frozen=True)
class LayerWork:
    """Everything about one layer that depends on the mapping and the PE resources only."""

    name: str
    shape: tuple[int, ...]
    groups: int
    geo: Geometry
    timesteps: int
    utilization: float
    utilization_effective: float
    work: int
    idle: int
    unmapped_idle: int
    latency: int
    compute_cycles: float
    spikes: float
    gate_ops: float
    n_work: float
    lif_updates: float
    weight_bits: float
    pe: PETraffic

    @property
    def params(self) -> int:
        return math.prod(self.shape)

    @property
    def entries_loaded(self) -> float:
        return self.pe.entries_loaded

    @property
    def gb_read(self) -> float:
        return self.pe.gb_read_bits

    @property
    def gb_write(self) -> float:
        return self.pe.gb_write_bits


def layer_work(
    name: str,
    shape: tuple[int, ...],
    part: Partition,
    stats: ChunkStats,
    lp: LayerProfile,
    config: AcceleratorConfig,
) -> LayerWork:
    """Phase 1 for one layer from its chunk tables (equations in :mod:`accelerator.equations`).

    Eq. 3's work terms: ``N_work = P B sum q``, ``N_idle = P B sum_g sum_{p mapped}
    (max q[g] - q[g,p])``, ``N_unmapped = P B sum_g (n - n_mapped,g) max q[g]``; the gated
    events are ``T_c`` AND gates per work cycle and one accumulate per input spike, ``P T a``.
    """
    n_mapped = part.mapped_pes()
    d = part.layout(stats.d)
    d_max = d.max(axis=0)
    d_sum = d.sum(axis=0)
    utilization = mean_utilization(eq2(d_max, d_sum, n_mapped))
    if stats.q is None:  # activity is uniform over channels: work is proportional to d
        q_max, q_sum = d_max * stats.q_scale, d_sum * stats.q_scale
        u_eff = utilization
    else:
        q = part.layout(stats.q)
        q_max, q_sum = q.max(axis=0), q.sum(axis=0)
        u_eff = mean_utilization(eq2(q_max, q_sum, n_mapped, integer=False))
    batches = -(-lp.timesteps // config.pe.and_gates)
    work = int(d_sum.sum())
    mapped_slots = int((n_mapped * d_max).sum())
    geo = geometry(shape, lp)
    z = lp.tick_zero_fraction
    if lp.channel_tick_zero_fraction is not None:
        z = float(np.mean(lp.channel_tick_zero_fraction))
    entry = config.bits.weight + config.bits.index
    pe = pe_traffic(
        d_max,
        d_sum,
        n_mapped,
        part.filters,
        part.channels,
        geo.input_positions,
        lp.positions,
        lp.timesteps,
        z,
        entry,
        config.bits.membrane,
        config.pe.scratchpad_bytes * 8,
        config.pe.accumulators,
    )
    n_work = lp.positions * batches * float(q_sum.sum())
    return LayerWork(
        name=name,
        shape=tuple(shape),
        groups=part.n_groups,
        geo=geo,
        timesteps=lp.timesteps,
        utilization=utilization,
        utilization_effective=u_eff,
        work=work,
        idle=mapped_slots - work,
        unmapped_idle=int(config.n_pe * d_max.sum()) - mapped_slots,
        latency=int(d_max.sum()),
        compute_cycles=compute_cycles(q_max, lp.positions, batches),
        spikes=float(lp.positions * lp.timesteps * stats.a_total),
        gate_ops=lp.timesteps / batches * n_work,
        n_work=n_work,
        lif_updates=float(part.filters * lp.positions * lp.timesteps),
        weight_bits=float(work * entry),
        pe=pe,
    )


@dataclass
class NetworkWork:
    """Phase 1 for a whole network on one mapping (``config``'s structural fields)."""

    config: AcceleratorConfig
    layers: list[LayerWork]
    arrays: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.arrays = {
            k: np.array([getattr(w, k) for w in self.layers], dtype=np.float64)
            for k in LAYER_ARRAYS
        }

    def tilings(self, gb_bytes: float) -> list[Tiling]:
        """The GB tiling of every layer for a buffer of ``gb_bytes`` (cached)."""
        b = self.config.bits
        return [
            choose_tiling(w.geo, w.timesteps, w.weight_bits, b.membrane, float(gb_bytes) * 8)
            for w in self.layers
        ]

    def dram(self, gb_bytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """DRAM read and write bits, shape ``(len(gb_bytes), layers)``."""
        key = tuple((w.geo, w.timesteps, w.weight_bits) for w in self.layers)
        sizes = tuple(float(g) for g in np.asarray(gb_bytes).reshape(-1))
        return _dram_table(key, self.config.bits.membrane, sizes)

    def scratchpad(self) -> tuple[float, float]:
        """Leakage (mW) and area (mm^2) of one PE scratchpad, from the SRAM table."""
        _, _, leak, area = _gb_figures(
            self.config.memory.sram_table, (float(self.config.pe.scratchpad_bytes),)
        )
        return float(leak[0]), float(area[0])

    def utilizations(self) -> dict[str, float]:
        """Network utilizations: weighted, plain and the authors' means (see :class:`Report`)."""
        weight = np.array([w.params for w in self.layers], dtype=np.float64)
        conv = np.array([len(w.shape) == 4 for w in self.layers])
        authors = np.zeros(len(self.layers), dtype=bool)
        conv_idx = np.flatnonzero(conv)
        authors[conv_idx[1:]] = True

        def mean(values: np.ndarray, weights: np.ndarray, use: np.ndarray) -> float:
            ok = use & ~np.isnan(values)
            if not ok.any():
                return float("nan")
            return float((values[ok] * weights[ok]).sum() / weights[ok].sum())

        u = np.array([w.utilization for w in self.layers], dtype=np.float64)
        u_eff = np.array([w.utilization_effective for w in self.layers], dtype=np.float64)
        ones = np.ones_like(weight)
        every = np.ones(len(self.layers), dtype=bool)
        return {
            "utilization": mean(u, weight, every),
            "utilization_unweighted": mean(u, ones, every),
            "utilization_authors": mean(u, ones, authors),
            "utilization_effective": mean(u_eff, weight, every),
        }


@lru_cache(maxsize=1024)
def _dram_table(
    layers: tuple[tuple[Geometry, int, float], ...], membrane_bits: int, sizes: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """DRAM read and write bits of every layer for every buffer size (cached: a grid's mappings
    share them, the weight bits do not depend on the mapping)."""
    tiles = [[choose_tiling(g, t, w, membrane_bits, s * 8) for g, t, w in layers] for s in sizes]
    read = np.array([[t.dram_read_bits for t in row] for row in tiles], dtype=np.float64)
    write = np.array([[t.dram_output_bits for t in row] for row in tiles], dtype=np.float64)
    read.flags.writeable = False
    write.flags.writeable = False
    return read.reshape(len(sizes), len(layers)), write.reshape(len(sizes), len(layers))


@lru_cache(maxsize=1024)
def _gb_figures(
    table: tuple[SramRow, ...], sizes: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`accelerator.equations.sram_figures` of SRAMs of ``sizes`` bytes (cached)."""
    return sram_figures(table, np.array(sizes) / 1024)


def params_of(config: AcceleratorConfig) -> dict[str, float]:
    """The broadcast fields (:data:`accelerator.equations.BROADCAST_FIELDS`) of ``config``."""
    out: dict[str, float] = {}
    for dotted in BROADCAST_FIELDS:
        node: Any = config
        for part in dotted.split("."):
            node = getattr(node, part)
        out[dotted] = float(node)
    return out


def score(
    nw: NetworkWork, p: Mapping[str, np.ndarray], gb_index: np.ndarray, gb_bytes: np.ndarray
) -> dict[str, np.ndarray]:
    """Phase 2 for configurations sharing ``nw``'s mapping: per-layer figures ``(rows, layers)``
    and ``area_mm2`` ``(rows, 1)``. ``gb_bytes`` are the distinct buffer sizes, ``gb_index`` the
    row's entry in it; ``p`` holds ``(rows, 1)`` columns of the broadcast fields."""
    cfg = nw.config
    read, write = nw.dram(gb_bytes)
    gb = _gb_figures(cfg.memory.sram_table, tuple(float(g) for g in np.asarray(gb_bytes)))
    gb_rows = tuple(g[gb_index][:, None] for g in gb)
    sp = nw.scratchpad()
    out = figures(nw.arrays, read[gb_index], write[gb_index], p, cfg.n_pe, sp, gb_rows)
    out["area_mm2"] = area_mm2(p, cfg.n_pe, cfg.pe.accumulators, sp[1], gb_rows[3])
    out["dram_read_bits"] = read[gb_index]
    return out


def _layer_profile(profile: Profile | None, name: str, channels: int) -> LayerProfile:
    if profile is None:
        return NO_PROFILE
    lp = profile.layers.get(name)
    if lp is None:
        known = ", ".join(profile.layers) or "none"
        raise ProfileMismatch(f"profile has no entry for layer '{name}' (it has: {known})")
    check_channels(lp, name, channels, "<profile>")
    return lp


class ProfileMismatch(ValueError):
    """The profile does not describe the masks' layers."""


def channel_cost(lp: LayerProfile) -> np.ndarray | None:
    """Expected work per non-zero weight of each input channel, ``1 - z_c`` (None without
    per-channel data): what tick-batch skipping leaves of it (see ``compute_cycles``)."""
    if lp.channel_tick_zero_fraction is None:
        return None
    return 1.0 - np.asarray(lp.channel_tick_zero_fraction, dtype=np.float64)


def _reordered(
    counts: LayerCounts, part: Partition, lp: LayerProfile, order: LayerOrder, name: str
) -> tuple[LayerCounts, LayerProfile]:
    """Counts and profile as the array sees them under ``order`` (channel lists permuted)."""
    order.check(part.filters, part.channels, name)
    moved = {
        f: np.asarray(getattr(lp, f))[order.channels].tolist()
        for f in ("channel_spike_rate", "channel_tick_zero_fraction")
        if getattr(lp, f) is not None
    }
    lp_out = lp.model_copy(update=moved) if moved else lp
    return LayerCounts(counts.shape, apply_order(counts.per_channel, order)), lp_out


def plan_orders(
    config: AcceleratorConfig,
    masks: Mapping[str, Any] | MaskSummary,
    profile: Profile | Mapping[str, Any] | None = None,
) -> dict[str, LayerOrder]:
    """The workload order (:func:`accelerator.order.workload_order`) of every layer for
    ``config``'s mapping; ordered by expected work ``sum d (1 - z_c)`` when the profile has
    per-channel activity, else by non-zeros."""
    prof = None if profile is None else parse_profile(profile)  # type: ignore[arg-type]
    summary = masks if isinstance(masks, MaskSummary) else summarize(masks)
    out: dict[str, LayerOrder] = {}
    for name, counts in summary.layers.items():
        part = partition(counts.shape, config)
        lp = _layer_profile(prof, name, part.channels)
        out[name] = workload_order(counts.per_channel, part, channel_cost(lp))
    return out


def network_work(
    config: AcceleratorConfig,
    masks: Mapping[str, Any] | MaskSummary,
    profile: Profile | Mapping[str, Any] | None = None,
    orders: Mapping[str, LayerOrder] | None = None,
) -> NetworkWork:
    """Phase 1 of :func:`evaluate` (argument checks included)."""
    prof = None if profile is None else parse_profile(profile)  # type: ignore[arg-type]
    names = list(masks.layers) if isinstance(masks, MaskSummary) else list(masks)
    if prof is not None:
        extra = [n for n in prof.layers if n not in names]
        if extra:
            raise ProfileMismatch(f"profile names layers the masks do not have: {extra}")
    if orders is not None:
        extra = [n for n in orders if n not in names]
        if extra:
            raise ValueError(f"orders name layers the masks do not have: {extra}")
    ordering = config.mapping_order == "workload" or bool(orders)
    layers: list[LayerWork] = []
    if isinstance(masks, MaskSummary) or ordering:
        summary = masks if isinstance(masks, MaskSummary) else summarize(masks)
        for name, counts in summary.layers.items():
            part = partition(counts.shape, config)
            lp = _layer_profile(prof, name, part.channels)
            order = None if orders is None else orders.get(name)
            if order is None and config.mapping_order == "workload":
                order = workload_order(counts.per_channel, part, channel_cost(lp))
            if order is not None:
                counts, lp = _reordered(counts, part, lp, order, name)
            layers.append(layer_work(name, counts.shape, part, counts.stats(part, lp), lp, config))
    else:
        for name, raw in masks.items():
            arr = np.asarray(raw)
            part = partition(arr.shape, config)
            m = as_mask(arr, name)
            lp = _layer_profile(prof, name, part.channels)
            stats = stats_from_mask(m, part, lp)
            layers.append(layer_work(name, arr.shape, part, stats, lp, config))
    return NetworkWork(config, layers)


def evaluate(
    config: AcceleratorConfig,
    masks: Mapping[str, Any] | MaskSummary,
    profile: Profile | Mapping[str, Any] | None = None,
    orders: Mapping[str, LayerOrder] | None = None,
) -> Report:
    """Score a pruned network on ``config``: per-layer and total latency, energy and area.

    ``masks`` maps layer names (network order) to 0/1 arrays, conv ``(K, C, kh, kw)`` or linear
    ``(out, in)``, or is a :class:`MaskSummary` from :func:`summarize` (fast re-scoring).
    ``profile`` gives per-layer output positions, timesteps, input activity and geometry;
    without it every layer has one position, one timestep and no skipping. Layers run one after
    another: network cycles and energy are sums over layers.

    ``orders`` places filters and channels (:mod:`accelerator.order`) for the layers it names;
    with ``config.mapping_order == "workload"`` the other layers get :func:`plan_orders`'s
    order, with ``"fixed"`` the identity.

    Network utilization is the mean of layer utilizations (Eq. 2) weighted by each layer's
    parameter count; the unweighted mean and the authors' mean (conv layers but the first) are
    reported beside it.
    """
    nw = network_work(config, masks, profile, orders)
    p = {k: np.array([[v]]) for k, v in params_of(config).items()}
    gb_bytes = np.array([float(config.memory.global_buffer_bytes)])
    fig = score(nw, p, np.zeros(1, dtype=np.int64), gb_bytes)
    tilings = nw.tilings(float(config.memory.global_buffer_bytes))
    f_hz = config.clock_mhz * 1e6
    cols = {k: v[0].tolist() for k, v in fig.items() if v.shape[-1] == len(nw.layers)}
    reports = [
        _layer_report(i, w, t, cols, f_hz)
        for i, (w, t) in enumerate(zip(nw.layers, tilings, strict=True))
    ]
    params = sum(r.params for r in reports)
    nonzeros = sum(r.nonzeros for r in reports)
    energy = {k: float(fig[f"energy.{k}"][0].sum()) for k in ENERGY_PARTS}
    energy["total"] = sum(energy[k] for k in ENERGY_PARTS)
    cycles = float(fig["cycles"][0].sum())
    u = nw.utilizations()
    return Report(
        accelerator=config.name,
        dataflow=config.dataflow.value,
        pe_array=[config.pe_array.rows, config.pe_array.cols],
        n_pe=config.n_pe,
        layers=reports,
        params=params,
        nonzeros=nonzeros,
        sparsity=1.0 - nonzeros / params if params else 0.0,
        utilization=u["utilization"],
        utilization_unweighted=u["utilization_unweighted"],
        utilization_authors=u["utilization_authors"],
        utilization_effective=u["utilization_effective"],
        cycles=cycles,
        dram_bits=float(fig["dram_bits"][0].sum()),
        seconds=cycles / f_hz,
        energy_pj=energy,
        area_mm2=float(fig["area_mm2"][0, 0]),
        mapping_order=config.mapping_order,
    )


def _layer_report(
    i: int, w: LayerWork, t: Tiling, fig: dict[str, list[float]], f_hz: float
) -> LayerReport:
    def at(key: str) -> float:
        return fig[key][i]

    energy = {k: at(f"energy.{k}") for k in ENERGY_PARTS}
    energy["total"] = sum(energy[k] for k in ENERGY_PARTS)
    compute, lif, memory = w.compute_cycles, at("lif_cycles"), at("memory_cycles")
    if compute >= lif and compute >= memory:
        bound = "compute"
    elif memory >= lif:
        bound = "memory"
    else:
        bound = "lif"
    cycles = at("cycles")
    return LayerReport(
        name=w.name,
        shape=list(w.shape),
        params=w.params,
        nonzeros=w.work,
        sparsity=1.0 - w.work / w.params,
        groups=w.groups,
        utilization=w.utilization,
        utilization_effective=w.utilization_effective,
        work=w.work,
        idle=w.idle,
        unmapped_idle=w.unmapped_idle,
        latency=w.latency,
        positions=w.geo.h_out * w.geo.w_out,
        timesteps=w.timesteps,
        compute_cycles=compute,
        lif_cycles=lif,
        global_buffer_cycles=at("global_buffer_cycles"),
        dram_cycles=at("dram_cycles"),
        memory_cycles=memory,
        cycles=cycles,
        bound=bound,
        seconds=cycles / f_hz,
        dram_bits=at("dram_bits"),
        dram_bits_by_operand={
            "weights": t.dram_weight_bits,
            "inputs": t.dram_input_bits,
            "outputs": t.dram_output_bits,
        },
        global_buffer_bits=at("global_buffer_bits"),
        scratchpad_reloads=w.pe.reloads,
        psum_spill_bits=w.pe.psum_bits,
        tiling={
            "order": t.order,
            "filter_blocks": t.filter_blocks,
            "row_blocks": t.row_blocks,
            "time_blocks": t.time_blocks,
            "fits": t.fits,
            "footprint_bits": t.footprint_bits,
        },
        energy_pj=energy,
    )
