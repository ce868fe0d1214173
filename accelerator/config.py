"""Hardware description: a Pydantic schema for a weight-stationary spiking PE array.

Every field carries its unit and allowed range. Defaults are the paper's 16-PE array at 400 MHz
(PAPER.md, "Hardware of the paper") with the public per-operation energies of the same group's
SATA simulator; area defaults are illustrative 32 nm figures meant to be replaced by a user's own
synthesis numbers. Unknown keys are errors (``extra="forbid"``).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from accelerator.files import ConfigError, read_yaml, set_existing, validation_error


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Dataflow(str, Enum):
    """Which PE holds which weight (DESIGN.md).

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


class Memory(_Strict):
    """On-chip global buffer and off-chip DRAM."""

    global_buffer_bytes: int = Field(
        147456, ge=1024, le=1 << 34, description="Global buffer size (bytes); paper: 144 KiB."
    )
    global_buffer_bandwidth: int = Field(
        256,
        ge=1,
        le=1 << 20,
        description="Global buffer bandwidth (bits per cycle, read and write together).",
    )
    word_bits: int = Field(
        16, ge=1, le=1024, description="Global-buffer access width (bits per read/write action)."
    )
    dram_bandwidth_gbps: float = Field(
        12.8, gt=0, le=10000, description="DRAM bandwidth (GB/s, 1e9 bytes per second)."
    )


class EnergyTable(_Strict):
    """Energy per action in picojoules (16-bit, public SATA-simulator numbers, PAPER.md)."""

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
    global_buffer_read: float = Field(1.95, ge=0, description="Global buffer read, one word (pJ).")
    global_buffer_write: float = Field(1.95, ge=0, description="Global buffer write, 1 word (pJ).")
    dram_per_bit: float = Field(
        3.474, ge=0, description="DRAM access per bit (pJ/bit; 55.58 pJ per 16-bit access)."
    )
    pe_always_on: float = Field(
        0.720,
        ge=0,
        description="Ungated (always-on) PE energy per PE per cycle (pJ); paid by working and "
        "idle PEs alike: Eq. 3's E_leak term.",
    )
    leakage_per_pe_cycle: float = Field(
        0.0017, ge=0, description="Static leakage per PE per cycle over the whole run (pJ)."
    )
    sram_leakage_mw_per_kib: float = Field(
        0.18,
        ge=0,
        description="SRAM leakage power per KiB of buffer+scratchpad (mW/KiB; CACTI: 32 KB 6.26 "
        "mW, 144 KB 24.9 mW).",
    )


class AreaTable(_Strict):
    """Area per component in mm^2 (illustrative 32 nm defaults; replace with your own)."""

    pe_base: float = Field(0.01, ge=0, description="PE control, AND gates, muxes (mm^2 per PE).")
    per_accumulator: float = Field(0.00012, ge=0, description="One 24-bit accumulator (mm^2).")
    per_lif_unit: float = Field(0.00015, ge=0, description="One LIF unit (mm^2).")
    sram_per_kib: float = Field(0.0045, ge=0, description="SRAM per KiB, buffers and pads (mm^2).")


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
    "accelerator_fields",
    "load_accelerator",
    "parse_accelerator",
]
