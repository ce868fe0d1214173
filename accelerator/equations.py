"""The cost model's equations: PE-level work and traffic, cycles, energy and area.

Notation for one layer (weights ``(K, C, kh, kw)`` or ``(K, C)``), mapped by
:func:`accelerator.mapping.partition` into groups ``g`` of ``n = rows*cols`` PEs ``p``:

- ``d[g,p]``: non-zero weights on PE ``p`` of group ``g`` (the PE's workload);
- ``q[g,p] = sum over its weights of (1 - z_c)``: the workload left after tick-batch skipping,
  ``z_c`` = fraction of channel-``c`` input neurons silent in all ``T`` timesteps;
- ``a = sum over non-zero weights of r_c``: spike-weighted work, ``r_c`` = input spike rate;
- ``P`` output positions, ``T`` timesteps, ``B = ceil(T / and_gates)`` cycles per weight and
  position (tick batching), ``T_c = T / B``; ``HW_in`` input neurons per channel
  (:mod:`accelerator.memory`).

Functions taking ``p`` (a :data:`Params` mapping of field name -> number or array) are vectorized:
:func:`accelerator.evaluate` calls them with one configuration, :func:`accelerator.evaluate_grid`
with a column per configuration, so both give the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from accelerator.config import SramRow

Params = Mapping[str, np.ndarray | float]
"""Values of the broadcast (non-structural) configuration fields, by dotted name."""

BROADCAST_FIELDS = (
    "clock_mhz",
    "pe.lif_units",
    "memory.global_buffer_bytes",
    "memory.global_buffer_bandwidth",
    "memory.dram_bandwidth_gbps",
    "energy.accumulate",
    "energy.and_gate",
    "energy.lif_update",
    "energy.scratchpad_read",
    "energy.scratchpad_write",
    "energy.dram_per_bit",
    "energy.pe_always_on",
    "energy.leakage_per_pe_cycle",
    "area.pe_base",
    "area.per_accumulator",
    "area.per_lif_unit",
)
"""Fields that change no count: whole grids of them are scored with numpy broadcasting."""


def compute_cycles(q_max: np.ndarray, positions: int, batches: int) -> float:
    """Compute-bound cycles: ``P * B * sum_g max_p q[g,p]``.

    Each group is loaded once and streams all output positions; for every position and tick
    batch the group finishes when its most loaded PE does (weight-stationary, PEs in lock-step).
    """
    return float(positions * batches * q_max.sum())


@dataclass(frozen=True)
class PETraffic:
    """Scratchpad-level traffic of one layer (counts and bits)."""

    entries_loaded: float
    gb_read_bits: float
    gb_write_bits: float
    psum_bits: float
    reloads: bool


def pe_traffic(
    d_max: np.ndarray,
    d_sum: np.ndarray,
    n_mapped: np.ndarray,
    filters: int,
    channels: int,
    input_positions: int,
    positions: int,
    timesteps: int,
    zero_fraction: float,
    entry_bits: int,
    membrane_bits: int,
    scratchpad_bits: int,
    accumulators: int,
) -> PETraffic:
    """Traffic between the GB and the PEs, per group ``g`` choosing the cheaper of two loop orders
    when its largest PE share ``S_g = max_p d[g,p] * (b_w + b_idx)`` exceeds the scratchpad:

    - refetch (positions outer): weights re-read once per tile of ``accumulators`` positions,
      ``(f - 1) sum_p d[g,p]`` extra entries, ``f = ceil(P / accumulators)``;
    - spill (weight sub-blocks outer): ``m_g = ceil(S_g / scratchpad)`` sub-blocks, weights read
      once, partial membrane sums written and read back ``m_g - 1`` times,
      ``2 (m_g - 1) n_mapped,g P T b_m`` bits, inputs streamed ``m_g`` times.

    GB reads: weight entries loaded ``x (b_w + b_idx)`` + input spikes, each input neuron once per
    non-empty group and pass (line-buffer reuse of the kernel window), ``C HW_in T (1 - z)`` bits
    (stride-aware: ``HW_in`` is the input map) + partial sums. GB writes: output spikes ``K P T``
    + partial sums.
    """
    tiles = -(-positions // accumulators)
    inputs = channels * input_positions * timesteps * (1.0 - zero_fraction)
    work = float(d_sum.sum())
    d_peak = float(d_max.max()) if d_max.size else 0.0
    if d_peak * entry_bits <= scratchpad_bits:  # every share fits: no reload, no spill
        loaded, psum_bits = work, 0.0
        input_reads = inputs * float(np.count_nonzero(d_max))
    else:
        share = d_max * entry_bits
        over = share > scratchpad_bits
        passes = np.maximum(np.ceil(share / scratchpad_bits), 1.0)
        refetch_bits = (tiles - 1) * d_sum * entry_bits
        psum = 2.0 * (passes - 1) * n_mapped * positions * timesteps * membrane_bits
        spill = over & (psum + (passes - 1) * inputs < refetch_bits)
        loaded = work + float(((tiles - 1) * d_sum)[over & ~spill].sum())
        psum_bits = float(psum[spill].sum())
        input_reads = inputs * float(np.where(spill, passes, 1.0)[d_max > 0].sum())
    outputs = float(filters * positions * timesteps)
    return PETraffic(
        entries_loaded=loaded,
        gb_read_bits=loaded * entry_bits + input_reads + psum_bits / 2,
        gb_write_bits=outputs + psum_bits / 2,
        psum_bits=psum_bits,
        reloads=loaded > work,
    )


SRAM_COLUMNS = ("read_pj_per_bit", "write_pj_per_bit", "leakage_mw", "area_mm2")


@lru_cache(maxsize=64)
def _table(table: tuple[SramRow, ...]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Capacities, their logs and the figure columns of an SRAM table (cached per table)."""
    caps = np.array([r.kib for r in table])
    return caps, np.log(caps), [np.array([getattr(r, n) for r in table]) for n in SRAM_COLUMNS]


def sram_figures(
    table: Sequence[SramRow], kib: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(read pJ/bit, write pJ/bit, leakage mW, area mm^2)`` of an SRAM of ``kib`` KiB.

    Between rows of the table every figure is interpolated linearly in ``log(capacity)``.
    Beyond the ends, access energies keep the end row's value and leakage and area scale in
    proportion to capacity (more banks of the end row's macro), so both keep growing.
    """
    x = np.log(np.asarray(kib, dtype=np.float64))
    caps, lx, columns = _table(tuple(table))
    out = []
    for name, v in zip(SRAM_COLUMNS, columns, strict=True):
        y = np.interp(x, lx, v)
        if name in ("leakage_mw", "area_mm2"):
            ratio = np.exp(x) / np.where(x < lx[0], caps[0], caps[-1])
            y = np.where((x < lx[0]) | (x > lx[-1]), np.where(x < lx[0], v[0], v[-1]) * ratio, y)
        out.append(y)
    return out[0], out[1], out[2], out[3]


def figures(
    w: Mapping[str, np.ndarray],
    dram_read: np.ndarray,
    dram_write: np.ndarray,
    p: Params,
    n_pe: int,
    scratchpad: tuple[float, float],
    gb: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> dict[str, np.ndarray]:
    """Cycles and energy of every layer (columns) for every configuration (rows).

    ``w`` holds per-layer counts (:class:`accelerator.cost.LayerWork` as arrays), ``dram_read``
    and ``dram_write`` the DRAM traffic in bits, ``scratchpad`` the leakage (mW) and area of one
    PE scratchpad and ``gb`` :func:`sram_figures` of the global buffer. Equations:

    - LIF cycles ``ceil(K P T / (n_pe lif_units))``; GB cycles ``(GB reads + writes) / GB
      bandwidth``, where GB reads/writes include the DRAM fills and drains; DRAM cycles
      ``DRAM bits / (bandwidth_GBps 8e9 / f)``. A layer takes ``max(compute, LIF, GB, DRAM)``
      cycles: tiles are double-buffered, so transfers overlap compute at every level.
    - Compute (Eq. 3): ``E_acc P T a + E_and T_c N_work + E_always-on n_pe cycles``; the
      always-on part runs over the layer's real cycles, also when it is LIF- or memory-bound.
    - LIF: ``E_lif K P T``. On-chip memory: ``E_sp,read N_work + E_sp,write entries_loaded +
      e_read(GB) GB_read_bits + e_write(GB) GB_write_bits``. DRAM: ``E_bit DRAM bits``.
    - Leakage: ``cycles (n_pe E_leak,PE + (P_GB + n_pe P_sp) / f)``.
    """
    f_hz = np.asarray(p["clock_mhz"]) * 1e6
    lif = np.ceil(w["lif_updates"] / (n_pe * np.asarray(p["pe.lif_units"])))
    gb_read = w["gb_read"] + dram_write
    gb_write = w["gb_write"] + dram_read
    gb_cycles = (gb_read + gb_write) / np.asarray(p["memory.global_buffer_bandwidth"])
    dram_bits = dram_read + dram_write
    dram_cycles = dram_bits / (np.asarray(p["memory.dram_bandwidth_gbps"]) * 8e9 / f_hz)
    memory = np.maximum(gb_cycles, dram_cycles)
    cycles = np.maximum(np.maximum(w["compute_cycles"], lif), memory)
    e_compute = (
        np.asarray(p["energy.accumulate"]) * w["spikes"]
        + np.asarray(p["energy.and_gate"]) * w["gate_ops"]
        + np.asarray(p["energy.pe_always_on"]) * n_pe * cycles
    )
    e_onchip = (
        np.asarray(p["energy.scratchpad_read"]) * w["n_work"]
        + np.asarray(p["energy.scratchpad_write"]) * w["entries_loaded"]
        + gb[0] * gb_read
        + gb[1] * gb_write
    )
    sram_mw = gb[2] + n_pe * scratchpad[0]
    leak_per_cycle = n_pe * np.asarray(p["energy.leakage_per_pe_cycle"]) + sram_mw * 1e9 / f_hz
    energy = {
        "compute": e_compute,
        "lif": np.asarray(p["energy.lif_update"]) * w["lif_updates"] + 0 * cycles,
        "onchip_memory": e_onchip,
        "dram": np.asarray(p["energy.dram_per_bit"]) * dram_bits,
        "leakage": cycles * leak_per_cycle,
    }
    return {
        "lif_cycles": lif + 0 * cycles,
        "global_buffer_cycles": gb_cycles,
        "dram_cycles": dram_cycles,
        "memory_cycles": memory,
        "cycles": cycles,
        "dram_bits": dram_bits,
        "global_buffer_bits": gb_read + gb_write,
        **{f"energy.{k}": v for k, v in energy.items()},
    }


def area_mm2(
    p: Params, n_pe: int, accumulators: int, scratchpad_area: float, gb_area: np.ndarray
) -> np.ndarray:
    """``n_pe (A_pe + acc A_acc + lif A_lif + A_sp) + A_GB`` in mm^2 (SRAM areas from the
    table)."""
    pe = (
        np.asarray(p["area.pe_base"])
        + accumulators * np.asarray(p["area.per_accumulator"])
        + np.asarray(p["pe.lif_units"]) * np.asarray(p["area.per_lif_unit"])
        + scratchpad_area
    )
    out: np.ndarray = n_pe * pe + gb_area
    return out
