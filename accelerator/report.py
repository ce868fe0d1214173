"""Reports of the cost model: per-layer figures and network totals (what the CLI prints)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

ENERGY_PARTS = ("compute", "lif", "onchip_memory", "dram", "leakage")
"""Parts of the energy, in pJ; ``energy_pj["total"]`` is their sum."""


@dataclass
class LayerReport:
    """Figures of one layer; ``latency``/``work``/``idle`` are in weights (PE-input units).

    ``memory_cycles = max(global_buffer_cycles, dram_cycles)``; ``bound`` names the largest of
    compute, LIF and memory cycles. ``dram_bits_by_operand`` splits DRAM traffic into weights,
    inputs and outputs; ``tiling`` is the chosen GB tiling (:mod:`accelerator.memory`);
    ``psum_spill_bits`` the partial sums written to and read back from the GB when a PE's weights
    do not fit its scratchpad and spilling them is cheaper than refetching weights."""

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
    global_buffer_cycles: float
    dram_cycles: float
    memory_cycles: float
    cycles: float
    bound: str
    seconds: float
    dram_bits: float
    dram_bits_by_operand: dict[str, float]
    global_buffer_bits: float
    scratchpad_reloads: bool
    psum_spill_bits: float
    tiling: dict[str, Any]
    energy_pj: dict[str, float]


@dataclass
class Report:
    """Result of :func:`evaluate`; ``to_dict()`` is what the CLI prints with ``--json``.

    ``utilization`` is Eq. 2 on non-zeros; ``utilization_effective`` is Eq. 2 on the work left
    after tick-batch skipping (what the compute latency follows); both are layer means weighted
    by parameter count. ``utilization_unweighted`` is the plain mean over layers;
    ``utilization_authors`` the plain mean over the conv layers except the first (no linear
    layers), which is what the u-Ticket authors' public code prints."""

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
    utilization_authors: float
    utilization_effective: float
    cycles: float
    dram_bits: float
    seconds: float
    energy_pj: dict[str, float]
    area_mm2: float
    mapping_order: str = "fixed"
    utilization_weighting: str = "parameter count (mean of layer utilizations weighted by weights)"

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
