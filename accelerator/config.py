"""Hardware description: a Pydantic schema for a weight-stationary spiking PE array.

Every field carries its unit and allowed range. Defaults are the paper's 16-PE array at 400 MHz
(Yin et al., "Workload-Balanced Pruning for Sparse Spiking Neural Networks", arXiv 2302.06746)
with the public per-operation energies of the same group's SATA simulator (SATA_Sim, github
RuokaiYin/SATA_Sim commit d447058), SRAM figures from CACTI 7 (:data:`CACTI_32NM_LOP`) and LPDDR4
DRAM energy; logic-area defaults are illustrative 32 nm figures meant to be replaced by a user's
own synthesis numbers. Unknown keys are errors (``extra="forbid"``).
"""

from __future__ import annotations

import itertools
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from accelerator.files import ConfigError, read_yaml, set_existing, validation_error


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Dataflow(str, Enum):
    """Which PE holds which weight (:mod:`accelerator.mapping`).

    ``K``: each PE holds whole output filters; filters are processed in groups of ``rows*cols``
    consecutive filters (the paper's "sata"). ``C``: each filter's input channels are split into
    ``rows*cols`` contiguous chunks of ``ceil(C_in / n_pe)`` channels, one group per filter (the
    paper's "systolic"). ``KC``: PE rows take consecutive filters, PE columns take input-channel
    chunks of ``ceil(C_in / cols)`` channels; a group is ``rows`` filters.
    """

    K = "K"
    C = "C"
    KC = "KC"


DATAFLOW_ALIASES: dict[str, Dataflow] = {
    "k": Dataflow.K,
    "c": Dataflow.C,
    "kc": Dataflow.KC,
    "sata": Dataflow.K,
    "systolic": Dataflow.C,
}


class PEArray(_Strict):
    """Shape of the processing-element array."""

    rows: int = Field(4, ge=1, le=1024, description="PE rows (count, 1..1024).")
    cols: int = Field(4, ge=1, le=1024, description="PE columns (count, 1..1024).")


class PEResources(_Strict):
    """Resources inside one PE (paper: 256 accumulators, 256 LIF units, 1024 x 16-bit pad)."""

    and_gates: int = Field(
        4,
        ge=1,
        le=64,
        description="Spike AND gates per PE (count, 1..64): timesteps of one input processed per "
        "cycle (tick batching; T=4 timesteps take one cycle with 4 gates).",
    )
    accumulators: int = Field(
        256,
        ge=1,
        le=65536,
        description="Membrane accumulators per PE (count): output positions computed per weight "
        "pass before weights must be reloaded when they do not fit the scratchpad.",
    )
    lif_units: int = Field(
        256, ge=1, le=65536, description="LIF neuron units per PE (count): neuron updates/cycle."
    )
    scratchpad_bytes: int = Field(
        2048,
        ge=16,
        le=1 << 24,
        description="Weight scratchpad per PE (bytes, 16..16 MiB); paper: 1024 x 16 bit.",
    )


class BitWidths(_Strict):
    """Word sizes of the stored data."""

    weight: int = Field(16, ge=1, le=64, description="Weight precision (bits, 1..64).")
    membrane: int = Field(24, ge=1, le=64, description="Membrane potential/accumulator (bits).")
    index: int = Field(
        8,
        ge=0,
        le=32,
        description="Sparsity metadata per non-zero weight (bits, 0..32): compressed weights "
        "cost (weight + index) bits each.",
    )


class SramRow(_Strict):
    """One SRAM macro of a given capacity: per-bit access energies, standby leakage and area."""

    kib: float = Field(gt=0, le=1 << 24, description="Capacity (KiB).")
    read_pj_per_bit: float = Field(ge=0, description="Dynamic read energy (pJ per bit read).")
    write_pj_per_bit: float = Field(ge=0, description="Dynamic write energy (pJ per bit).")
    leakage_mw: float = Field(ge=0, description="Standby leakage power of the macro (mW).")
    area_mm2: float = Field(ge=0, description="Macro area (mm^2).")
    source: str = Field(
        min_length=1, max_length=500, description="Public source of the row (tool, node, set-up)."
    )


_CACTI = (
    "CACTI 7 (HewlettPackard/cacti, as bundled in zigzag-dse 3.9.1), 32 nm, itrs-lop cells and "
    "periphery, 1 bank, 1 read/write port, 128-bit port, 360 K; benchmarks/sram_table.py"
)

CACTI_32NM_LOP: tuple[SramRow, ...] = (
    SramRow(
        kib=1,
        read_pj_per_bit=0.00639,
        write_pj_per_bit=0.00889,
        leakage_mw=0.177,
        area_mm2=0.0031,
        source=_CACTI,
    ),
    SramRow(
        kib=4,
        read_pj_per_bit=0.01365,
        write_pj_per_bit=0.01686,
        leakage_mw=0.6278,
        area_mm2=0.0093,
        source=_CACTI,
    ),
    SramRow(
        kib=16,
        read_pj_per_bit=0.03407,
        write_pj_per_bit=0.03239,
        leakage_mw=2.268,
        area_mm2=0.0306,
        source=_CACTI,
    ),
    SramRow(
        kib=64,
        read_pj_per_bit=0.06906,
        write_pj_per_bit=0.05917,
        leakage_mw=8.391,
        area_mm2=0.1630,
        source=_CACTI,
    ),
    SramRow(
        kib=256,
        read_pj_per_bit=0.13544,
        write_pj_per_bit=0.11661,
        leakage_mw=33.22,
        area_mm2=0.5601,
        source=_CACTI,
    ),
    SramRow(
        kib=1024,
        read_pj_per_bit=0.27940,
        write_pj_per_bit=0.22565,
        leakage_mw=126.6,
        area_mm2=2.0640,
        source=_CACTI,
    ),
    SramRow(
        kib=4096,
        read_pj_per_bit=0.53508,
        write_pj_per_bit=0.49835,
        leakage_mw=528,
        area_mm2=7.6210,
        source=_CACTI,
    ),
    SramRow(
        kib=16384,
        read_pj_per_bit=1.06828,
        write_pj_per_bit=0.96174,
        leakage_mw=2015,
        area_mm2=28.5782,
        source=_CACTI,
    ),
)
"""Default SRAM table: CACTI 7 at 32 nm with low-operating-power cells (its 144 KiB leakage,
about 19 mW, is close to the 24.9 mW of SATA_Sim's CACTI 144 KB buffer, RuokaiYin/SATA_Sim
commit d447058). Regenerate with ``python benchmarks/sram_table.py``."""


class Memory(_Strict):
    """On-chip global buffer and off-chip DRAM."""

    global_buffer_bytes: int = Field(
        147456, ge=1024, le=1 << 34, description="Global buffer size (bytes); paper: 144 KiB."
    )
    global_buffer_bandwidth: int = Field(
        256,
        ge=1,
        le=1 << 20,
        description="Global buffer bandwidth (bits per cycle, read and write together); 256 = one "
        "32-byte block per cycle, the block width of the CACTI buffers in the u-Ticket authors' "
        "SATA_Sim energy model (github RuokaiYin/SATA_Sim, inference-energy-cal).",
    )
    dram_bandwidth_gbps: float = Field(
        12.8,
        gt=0,
        le=10000,
        description="DRAM bandwidth (GB/s, 1e9 bytes per second); 12.8 = one LPDDR4-3200 x32 "
        "channel (3.2 Gb/s per pin x 32 pins, JEDEC JESD209-4).",
    )
    sram_table: tuple[SramRow, ...] = Field(
        default_factory=lambda: CACTI_32NM_LOP,
        min_length=1,
        description="SRAM figures by capacity (rows sorted by kib, distinct): read/write energy "
        "per bit, leakage and area of the global buffer and of each PE scratchpad are "
        "interpolated in log-capacity (accelerator.equations.sram_figures). Default: CACTI 7 at "
        "32 nm (CACTI_32NM_LOP).",
    )

    @field_validator("sram_table")
    @classmethod
    def _sorted(cls, rows: tuple[SramRow, ...]) -> tuple[SramRow, ...]:
        kib = [r.kib for r in rows]
        if any(b <= a for a, b in itertools.pairwise(kib)):
            raise ValueError("rows must be sorted by kib with distinct capacities")
        return rows


class EnergyTable(_Strict):
    """Energy per action in picojoules: per-operation PE figures of the authors' public SATA
    simulator (SATA_Sim, github RuokaiYin/SATA_Sim commit d447058, 32 nm, 16-bit); global-buffer
    and SRAM figures come from ``memory.sram_table``."""

    accumulate: float = Field(0.0389, ge=0, description="One accumulate on a spike (pJ).")
    and_gate: float = Field(0.000794, ge=0, description="One spike AND gate, per timestep (pJ).")
    lif_update: float = Field(
        0.2535,
        ge=0,
        description="One LIF neuron update per timestep: leak multiply + add + compare + reset "
        "mux (0.239 + 0.00967 + 0.00309 + 0.00172 pJ).",
    )
    scratchpad_read: float = Field(0.2779, ge=0, description="Scratchpad read, one entry (pJ).")
    scratchpad_write: float = Field(0.2779, ge=0, description="Scratchpad write, one entry (pJ).")
    dram_per_bit: float = Field(
        13.0,
        ge=0,
        description="DRAM read or write energy per bit (pJ/bit). Default: LPDDR4 (4 x 8 Gb, "
        "3.2 Gb/s per pin), 13 pJ/bit, H. Ha, Stanford PhD thesis 2020 (DramDSE), chosen to match "
        "the default 12.8 GB/s LPDDR4 channel. Other public figures: LPDDR3 3.7 pJ/bit (ISSCC "
        "2012), HBM 7 pJ/bit (HyGCN, HPCA 2020).",
    )
    pe_always_on: float = Field(
        0.720,
        ge=0,
        description="Ungated (always-on) PE energy per PE per cycle (pJ); paid by working and "
        "idle PEs alike: Eq. 3's E_leak term.",
    )
    leakage_per_pe_cycle: float = Field(
        0.0017,
        ge=0,
        description="Static leakage of a PE's logic per cycle over the whole run (pJ; SATA_Sim "
        "6.69e-4 mW per PE at 400 MHz). SRAM leakage comes from memory.sram_table.",
    )


class AreaTable(_Strict):
    """Logic area per component in mm^2 (illustrative 32 nm defaults; replace with your own
    synthesis figures). SRAM area (global buffer, scratchpads) comes from ``memory.sram_table``."""

    pe_base: float = Field(0.01, ge=0, description="PE control, AND gates, muxes (mm^2 per PE).")
    per_accumulator: float = Field(0.00012, ge=0, description="One 24-bit accumulator (mm^2).")
    per_lif_unit: float = Field(0.00015, ge=0, description="One LIF unit (mm^2).")


class AcceleratorConfig(_Strict):
    """A complete accelerator: array, dataflow, clock, word sizes, memories, energy and area."""

    name: str = Field(
        "accelerator", min_length=1, max_length=200, description="Label used in reports."
    )
    pe_array: PEArray = Field(default_factory=PEArray, description="PE array shape.")
    dataflow: Dataflow = Field(
        Dataflow.K,
        description="Weight-to-PE mapping: K (alias sata), C (alias systolic) or KC.",
    )
    mapping_order: Literal["fixed", "workload"] = Field(
        "fixed",
        description="Placement of filters/channels in the array: fixed (filter k in slot k, the "
        "paper) or workload (the mapping compiler groups filters and channels of similar "
        "workload; no weight changes, see accelerator.order).",
    )
    clock_mhz: float = Field(400.0, gt=0, le=100000, description="Clock frequency (MHz).")
    bits: BitWidths = Field(default_factory=BitWidths, description="Word sizes (bits).")
    pe: PEResources = Field(default_factory=PEResources, description="Per-PE resources.")
    memory: Memory = Field(default_factory=Memory, description="Buffers and DRAM.")
    energy: EnergyTable = Field(default_factory=EnergyTable, description="Energy per action, pJ.")
    area: AreaTable = Field(default_factory=AreaTable, description="Area per component, mm^2.")

    @field_validator("dataflow", mode="before")
    @classmethod
    def _dataflow_alias(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in DATAFLOW_ALIASES:
            return DATAFLOW_ALIASES[value.strip().lower()]
        return value

    @property
    def n_pe(self) -> int:
        """Number of PEs, ``rows * cols``."""
        return self.pe_array.rows * self.pe_array.cols

    def with_updates(self, updates: dict[str, Any]) -> AcceleratorConfig:
        """Return a validated copy with dotted-path overrides, e.g. ``{"pe_array.rows": 8}``."""
        data = self.model_dump(mode="json")
        for dotted, value in updates.items():
            set_existing(data, dotted, value)
        return AcceleratorConfig.model_validate(data)


def accelerator_fields() -> list[str]:
    """Every settable dotted field path of :class:`AcceleratorConfig` (for search spaces)."""
    out: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
            else:
                out.append(prefix + name)

    walk(AcceleratorConfig, "")
    return out


def parse_accelerator(data: dict[str, Any], source: str | Path = "<config>") -> AcceleratorConfig:
    """Validate a dict as an accelerator config; errors name ``source`` and the field."""
    try:
        return AcceleratorConfig.model_validate(data)
    except ValidationError as exc:
        raise validation_error(source, exc) from None


def load_accelerator(path: str | Path) -> AcceleratorConfig:
    """Load and validate an accelerator YAML file.

    Raises :class:`ConfigError` whose one-line message names the file, the field path and what
    is allowed (unknown keys, wrong types, out-of-range values, unknown dataflows).
    """
    return parse_accelerator(read_yaml(path), path)


__all__ = [
    "AcceleratorConfig",
    "AreaTable",
    "BitWidths",
    "ConfigError",
    "Dataflow",
    "EnergyTable",
    "Memory",
    "PEArray",
    "PEResources",
    "SramRow",
    "accelerator_fields",
    "load_accelerator",
    "parse_accelerator",
]
