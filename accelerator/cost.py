"""Analytical latency / energy / area model of a weight-stationary spiking PE array.

Notation for one layer (weights ``(K, C, kh, kw)`` or ``(K, C)``), mapped by
:func:`accelerator.mapping.partition` into groups ``g`` of ``n = rows*cols`` PEs ``p``:

- ``d[g,p]``: non-zero weights on PE ``p`` of group ``g`` (the PE's workload);
- ``q[g,p] = sum over its weights of (1 - z_c)``: the workload left after tick-batch skipping,
  ``z_c`` = fraction of channel-``c`` input neurons silent in all ``T`` timesteps (a PE reading
  quieter channels has less to do; without per-channel data ``q = d (1 - z)``);
- ``a = sum over non-zero weights of r_c``: spike-weighted work, ``r_c`` = input spike rate;
- ``P`` output positions, ``T`` timesteps, ``B = ceil(T / and_gates)`` cycles per weight and
  position (tick batching: ``and_gates`` timesteps per cycle), ``T_c = T / B``.

Each equation lives in the docstring of the function that computes it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from accelerator.config import AcceleratorConfig
from accelerator.mapping import Partition, check_shape, partition
from accelerator.order import LayerOrder, apply_order, workload_order
from accelerator.profile import NO_PROFILE, LayerProfile, Profile, check_channels, parse_profile
from accelerator.workload import (
    as_mask,
    channel_counts,
    chunk_counts,
    eq2,
    mean_utilization,
    reduce_chunks,
)

ENERGY_PARTS = ("compute", "lif", "onchip_memory", "dram", "leakage")


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


@dataclass
class LayerReport:
    """Figures of one layer; ``latency``/``work``/``idle`` are in weights (PE-input units)."""

    name: str
    shape: list[int]
    params: int
    nonzeros: int
    sparsity: float
    groups: int
    utilization: float
    utilization_effective: float
    work: int
    idle: int
    unmapped_idle: int
    latency: int
    positions: int
    timesteps: int
    compute_cycles: float
    lif_cycles: float
    memory_cycles: float
    cycles: float
    bound: str
    seconds: float
    dram_bits: float
    global_buffer_bits: float
    scratchpad_reloads: bool
    energy_pj: dict[str, float]


@dataclass
class Report:
    """Result of :func:`evaluate`; ``to_dict()`` is what the CLI prints with ``--json``.

    ``utilization`` is Eq. 2 on non-zeros; ``utilization_effective`` is Eq. 2 on the work left
    after tick-batch skipping (what the compute latency follows); both are layer means weighted
    by parameter count."""

    accelerator: str
    dataflow: str
    pe_array: list[int]
    n_pe: int
    layers: list[LayerReport]
    params: int
    nonzeros: int
    sparsity: float
    utilization: float
    utilization_unweighted: float
    utilization_effective: float
    cycles: float
    seconds: float
    energy_pj: dict[str, float]
    area_mm2: float
    mapping_order: str = "fixed"
    utilization_weighting: str = "parameter count (mean of layer utilizations weighted by weights)"

    @property
    def energy_total_pj(self) -> float:
        return self.energy_pj["total"]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["energy_uj"] = self.energy_pj["total"] * 1e-6
        safe: dict[str, Any] = _json_safe(out)
        return safe


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def compute_cycles(q_max: np.ndarray, positions: int, batches: int) -> float:
    """Compute-bound cycles: ``P * B * sum_g max_p q[g,p]``.

    Each group is loaded once and streams all output positions; for every position and tick
    batch the group finishes when its most loaded PE does (weight-stationary, PEs in lock-step).
    """
    return float(positions * batches * q_max.sum())


def lif_cycles(filters: int, positions: int, timesteps: int, config: AcceleratorConfig) -> float:
    """LIF-bound cycles: ``ceil(K * P * T / (n_pe * lif_units))`` neuron updates."""
    return float(-(-filters * positions * timesteps // (config.n_pe * config.pe.lif_units)))


def memory_traffic(
    d_max: np.ndarray,
    d_sum: np.ndarray,
    part: Partition,
    lp: LayerProfile,
    config: AcceleratorConfig,
) -> tuple[float, float, float, float]:
    """Bits moved: ``(dram, global_buffer_read, global_buffer_write, weight_entries_loaded)``.

    - DRAM: compressed weights, ``W * (b_w + b_idx)`` with ``W = sum d``.
    - Reloads: group ``g`` re-reads its weights once per tile of ``accumulators`` positions,
      ``f_g = ceil(P / accumulators)``, when its largest PE share ``max_p d[g,p] * (b_w + b_idx)``
      exceeds the scratchpad; otherwise ``f_g = 1``. Entries loaded: ``sum_g f_g sum_p d[g,p]``.
    - Global-buffer reads: the weight entries loaded, ``(b_w + b_idx)`` bits each, plus the input
      spike maps, streamed once per non-empty group with line-buffer reuse of the kernel window:
      ``G_nonempty * P * C * T * (1 - z)`` bits (silent neurons are skipped).
    - Global-buffer writes: weights arriving from DRAM plus output spikes,
      ``W (b_w + b_idx) + K * P * T``.
    """
    entry = config.bits.weight + config.bits.index
    tiles = -(-lp.positions // config.pe.accumulators)
    overflow = d_max * entry > config.pe.scratchpad_bytes * 8
    work = float(d_sum.sum())
    loaded = work + (tiles - 1) * float(d_sum[overflow].sum())
    dram = work * entry
    z = lp.tick_zero_fraction
    if lp.channel_tick_zero_fraction is not None:
        z = float(np.mean(lp.channel_tick_zero_fraction))
    active_groups = float(np.count_nonzero(d_max))
    inputs = active_groups * lp.positions * part.channels * lp.timesteps * (1.0 - z)
    gb_write = dram + float(part.filters * lp.positions * lp.timesteps)
    return dram, loaded * entry + inputs, gb_write, loaded


def memory_cycles(dram_bits: float, gb_bits: float, config: AcceleratorConfig) -> float:
    """Memory-bound cycles: ``max(dram_bits / DRAM bits per cycle, gb_bits / GB bandwidth)``,
    DRAM bits per cycle = ``bandwidth_GBps * 8e9 / (clock_MHz * 1e6)``."""
    dram_per_cycle = config.memory.dram_bandwidth_gbps * 8e9 / (config.clock_mhz * 1e6)
    return max(dram_bits / dram_per_cycle, gb_bits / config.memory.global_buffer_bandwidth)


def compute_energy(
    q_max: np.ndarray,
    q_sum: np.ndarray,
    n_mapped: np.ndarray,
    spike_work: float,
    lp: LayerProfile,
    batches: int,
    config: AcceleratorConfig,
) -> tuple[float, float, float, float]:
    """Eq. 3 of the paper over the layer: ``(energy_pj, N_work, N_idle, N_unmapped)``.

    ``E = N_work (E_d (1 - S) + E_leak) + N_idle E_leak``, per PE-cycle, with
    ``N_work = P B sum q``, ``N_idle = P B sum_g sum_{p mapped} (max q[g] - q[g,p])`` and
    ``N_unmapped = P B sum_g (n - n_mapped,g) max q[g]`` (clocked PEs without weights idle too).
    The gated part ``N_work E_d (1 - S)`` is counted per event: ``T_c`` AND gates per work cycle
    and one accumulate per input spike, ``P T a`` spikes (``a = sum d r_c``). ``E_leak`` of Eq. 3
    is the always-on PE energy ``pe_always_on``; true leakage is charged separately over the run.
    """
    e = config.energy
    scale = lp.positions * batches
    n_work = scale * float(q_sum.sum())
    n_mapped_slots = scale * float((n_mapped * q_max).sum())
    n_all_slots = scale * float(config.n_pe * q_max.sum())
    t_c = lp.timesteps / batches
    dynamic = e.accumulate * lp.positions * lp.timesteps * spike_work + e.and_gate * t_c * n_work
    energy = dynamic + e.pe_always_on * n_all_slots
    return energy, n_work, n_mapped_slots - n_work, n_all_slots - n_mapped_slots


def memory_energy(
    n_work: float,
    weight_entries_loaded: float,
    gb_read: float,
    gb_write: float,
    dram: float,
    config: AcceleratorConfig,
) -> tuple[float, float]:
    """``(on-chip, DRAM)`` energy in pJ.

    On-chip: one scratchpad read per work cycle, one scratchpad write per weight entry loaded,
    global-buffer reads/writes per ``word_bits`` word. DRAM: ``E_bit * dram_bits``.
    """
    e = config.energy
    word = config.memory.word_bits
    onchip = (
        e.scratchpad_read * n_work
        + e.scratchpad_write * weight_entries_loaded
        + e.global_buffer_read * gb_read / word
        + e.global_buffer_write * gb_write / word
    )
    return onchip, e.dram_per_bit * dram


def sram_kib(config: AcceleratorConfig) -> float:
    """On-chip SRAM in KiB: global buffer plus every PE's scratchpad."""
    return (config.memory.global_buffer_bytes + config.n_pe * config.pe.scratchpad_bytes) / 1024


def leakage_energy(cycles: float, config: AcceleratorConfig) -> float:
    """Leakage over the run: ``cycles * (n_pe E_leak,PE + P_sram / f)``, with
    ``P_sram = sram_leakage_mw_per_kib * KiB`` (mW) and ``f`` the clock; in pJ."""
    sram_pj_per_cycle = (
        config.energy.sram_leakage_mw_per_kib * sram_kib(config) * 1e-3 / (config.clock_mhz * 1e6)
    ) * 1e12
    return cycles * (config.n_pe * config.energy.leakage_per_pe_cycle + sram_pj_per_cycle)


def area_mm2(config: AcceleratorConfig) -> float:
    """``n_pe (A_pe + acc A_acc + lif A_lif) + KiB_sram A_sram`` in mm^2."""
    a = config.area
    pe = (
        a.pe_base
        + config.pe.accumulators * a.per_accumulator
        + config.pe.lif_units * a.per_lif_unit
    )
    return config.n_pe * pe + sram_kib(config) * a.sram_per_kib


def score_layer(
    name: str,
    shape: tuple[int, ...],
    part: Partition,
    stats: ChunkStats,
    lp: LayerProfile,
    config: AcceleratorConfig,
) -> LayerReport:
    """All figures of one layer from its chunk tables (see the module docstring)."""
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

    c_compute = compute_cycles(q_max, lp.positions, batches)
    c_lif = lif_cycles(part.filters, lp.positions, lp.timesteps, config)
    dram, gb_read, gb_write, loaded = memory_traffic(d_max, d_sum, part, lp, config)
    c_memory = memory_cycles(dram, gb_read + gb_write, config)
    if c_compute >= c_lif and c_compute >= c_memory:
        bound, cycles = "compute", c_compute
    elif c_memory >= c_lif:
        bound, cycles = "memory", c_memory
    else:
        bound, cycles = "lif", c_lif

    e_compute, n_work, _, _ = compute_energy(
        q_max, q_sum, n_mapped, stats.a_total, lp, batches, config
    )
    e_onchip, e_dram = memory_energy(n_work, loaded, gb_read, gb_write, dram, config)
    energy = {
        "compute": e_compute,
        "lif": config.energy.lif_update * part.filters * lp.positions * lp.timesteps,
        "onchip_memory": e_onchip,
        "dram": e_dram,
        "leakage": leakage_energy(cycles, config),
    }
    energy["total"] = sum(energy[k] for k in ENERGY_PARTS)
    params = part.filters * part.channels * part.inner
    return LayerReport(
        name=name,
        shape=list(shape),
        params=params,
        nonzeros=work,
        sparsity=1.0 - work / params,
        groups=part.n_groups,
        utilization=utilization,
        utilization_effective=u_eff,
        work=work,
        idle=mapped_slots - work,
        unmapped_idle=int(config.n_pe * d_max.sum()) - mapped_slots,
        latency=int(d_max.sum()),
        positions=lp.positions,
        timesteps=lp.timesteps,
        compute_cycles=c_compute,
        lif_cycles=c_lif,
        memory_cycles=c_memory,
        cycles=cycles,
        bound=bound,
        seconds=cycles / (config.clock_mhz * 1e6),
        dram_bits=dram,
        global_buffer_bits=gb_read + gb_write,
        scratchpad_reloads=loaded > work,
        energy_pj=energy,
    )


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


def evaluate(
    config: AcceleratorConfig,
    masks: Mapping[str, Any] | MaskSummary,
    profile: Profile | Mapping[str, Any] | None = None,
    orders: Mapping[str, LayerOrder] | None = None,
) -> Report:
    """Score a pruned network on ``config``: per-layer and total latency, energy and area.

    ``masks`` maps layer names (network order) to 0/1 arrays, conv ``(K, C, kh, kw)`` or linear
    ``(out, in)``, or is a :class:`MaskSummary` from :func:`summarize` (fast re-scoring).
    ``profile`` gives per-layer output positions, timesteps and input activity; without it
    every layer has one position, one timestep and no skipping. Layers run one after another:
    network cycles and energy are sums over layers.

    ``orders`` places filters and channels (:mod:`accelerator.order`) for the layers it names;
    with ``config.mapping_order == "workload"`` the other layers get :func:`plan_orders`'s
    order, with ``"fixed"`` the identity.

    Network utilization is the mean of layer utilizations (Eq. 2) weighted by each layer's
    parameter count; the unweighted mean (what the authors' code prints) is reported beside it.
    """
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
    reports: list[LayerReport] = []
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
            reports.append(
                score_layer(name, counts.shape, part, counts.stats(part, lp), lp, config)
            )
    else:
        for name, raw in masks.items():
            arr = np.asarray(raw)
            part = partition(arr.shape, config)
            m = as_mask(arr, name)
            lp = _layer_profile(prof, name, part.channels)
            stats = stats_from_mask(m, part, lp)
            reports.append(score_layer(name, arr.shape, part, stats, lp, config))
    return _network(config, reports)


def _network(config: AcceleratorConfig, layers: list[LayerReport]) -> Report:
    params = sum(r.params for r in layers)
    nonzeros = sum(r.nonzeros for r in layers)
    weight = np.array([r.params for r in layers], dtype=np.float64)

    def means(values: list[float]) -> tuple[float, float]:
        """(parameter-weighted, plain) mean over the layers that have a value (not NaN)."""
        v = np.array(values, dtype=np.float64)
        ok = ~np.isnan(v)
        if not ok.any():
            return float("nan"), float("nan")
        return float((v[ok] * weight[ok]).sum() / weight[ok].sum()), float(v[ok].mean())

    weighted, plain = means([r.utilization for r in layers])
    energy = {k: float(sum(r.energy_pj[k] for r in layers)) for k in (*ENERGY_PARTS, "total")}
    cycles = float(sum(r.cycles for r in layers))
    return Report(
        accelerator=config.name,
        dataflow=config.dataflow.value,
        pe_array=[config.pe_array.rows, config.pe_array.cols],
        n_pe=config.n_pe,
        layers=layers,
        params=params,
        nonzeros=nonzeros,
        sparsity=1.0 - nonzeros / params if params else 0.0,
        utilization=weighted,
        utilization_unweighted=plain,
        utilization_effective=means([r.utilization_effective for r in layers])[0],
        cycles=cycles,
        seconds=cycles / (config.clock_mhz * 1e6),
        energy_pj=energy,
        area_mm2=area_mm2(config),
        mapping_order=config.mapping_order,
    )
