"""ZigZag oracle: DRAM and global-buffer traffic of the dense VGG-16 conv layers under ZigZag's
best mapping, as an external reference for the accelerator cost model (issue "memory hierarchy",
Validation: "ZigZag").

ZigZag (Mei et al., "ZigZag: Enlarging Joint Architecture-Mapping Design Space Exploration for
DNN Accelerators", IEEE Trans. Computers 2021; ``pip install zigzag-dse``, github
KULeuven-MICAS/zigzag) is a benchmark dependency (the ``bench`` extra), never imported by the
product. This script describes the project's accelerator in ZigZag's YAML formats, runs ZigZag's
temporal-mapping search (LOMA, loop-order-based memory allocation) for each layer and buffer size
and records per-level access counts of the best mapping.

Hardware (written to ``benchmarks/data/zigzag/hw_<dataflow>_<rows>x<cols>_gb<bytes>.yaml``)
---------------------------------------------------------------------------------------
Operational array ``D1 x D2 x D3 = rows x cols x and_gates``: ``D1, D2`` are the PE array,
``D3`` the AND-gate lanes inside a PE (tick batching: ``and_gates`` timesteps of one input per
cycle). One ZigZag "MAC" is one (weight, input spike, timestep) accumulate; its energy is
``energy.accumulate + energy.and_gate`` and ZigZag charges every MAC (dense spikes).

Memories, bottom-up (capacities in bits, costs in pJ per access of the port's maximum width):

============== ========== ====================================== ========================
memory         operands   capacity                               served dimensions
============== ========== ====================================== ========================
w_scratchpad   W (I2)     ``pe.scratchpad_bytes * 8`` per PE      D3 (one per PE)
accumulators   O          ``accumulators*and_gates*membrane``     D3 (one per PE)
global_buffer  W, I, O    ``memory.global_buffer_bytes * 8``      D1, D2, D3 (shared)
dram           W, I, O    2**40 bits                              D1, D2, D3
============== ========== ====================================== ========================

- Accumulators: the project tiles output positions by ``pe.accumulators`` per weight pass
  whatever ``T`` is, so one accumulator holds the potentials of the ``and_gates`` timesteps
  its position processes together: ``accumulators * and_gates * membrane`` bits per PE.
- Input spikes have no PE-local level: every PE reads them from the global buffer (broadcast
  over the filters of the array); ZigZag counts a read once while the same spikes stay at the
  buffer's output port (``access_same_data_considered_as_no_access``, its default).
- The global buffer is one memory shared by weights, input spikes and membrane potentials /
  output spikes: LOMA's allocator caps the sum of the three tiles at its capacity. ZigZag's
  hierarchy is inclusive, so the global buffer must also hold what the PE levels hold: a buffer
  below ``n_pe * (scratchpad + accumulator bits)`` cannot hold full scratchpad tiles, and for
  such sizes LOMA only finds orderings whose scratchpad tiles are smaller (or none).
- Ports: scratchpad ``bits.weight`` bits per access (one entry), accumulators
  ``bits.membrane * and_gates`` bits; global buffer one read/write port of
  ``memory.global_buffer_bandwidth`` bits per cycle with ``memory.word_bits`` granularity (cost
  ``global_buffer_read * bandwidth / word_bits`` per full-width access, i.e. the project's per
  word energy); DRAM one read/write port of ``dram_bandwidth_gbps * 8e3 / clock_mhz`` bits per
  cycle with ``memory.word_bits`` granularity, ``dram_per_bit`` pJ per bit. Accumulator accesses
  cost 0 (the accumulate energy is in the MAC).

Spatial unrolling (``benchmarks/data/zigzag/mapping_<dataflow>_<rows>x<cols>x<lanes>.yaml``):
dataflow K: ``D1: K rows, D2: K cols`` (each PE holds whole output filters); C: ``D1: C rows,
D2: C cols``; KC: ``D1: K rows, D2: C cols``; always ``D3: B min(and_gates, T)``.

Workload: how the SNN maps onto ZigZag's loops
----------------------------------------------
A spiking conv layer over ``T`` timesteps is ``O[b][k][oy][ox] += W[k][c][fy][fx] *
I[b][c][iy][ix]`` with ZigZag's batch dimension ``B = T`` (timesteps, tick batching: the input
current of every timestep is accumulated before the LIF update turns it into a spike). Input
spikes are ``I`` at ``spike_bits`` (1) bits, weights ``W`` at ``bits.weight`` (16), partial sums
(membrane potentials) ``O`` at ``bits.membrane`` (24) and the final output ``O_final`` at 1 bit
(the output spike after LIF). ``ix = ox + fx``, ``iy = oy + fy`` with padding 1 on each side and
the unpadded input ``H x W`` (``pr_loop_sizes``), so input footprints are padding-aware. VGG-16
(torchvision config "D") on CIFAR-10 geometry: thirteen 3x3 convs, stride 1, padding 1, max pool
after each block, so the layers see 32, 32, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 2 pixels square. The
first layer also reads spikes (as the project's cost model counts every layer).

Search: ZigZag's LOMA engine over all loop orderings of at most ``lpf_limit`` loop prime factors
(default here 7; ZigZag's own default 6 leaves one loop per dimension, i.e. no tiling; each
extra factor costs about 8x the run time), uneven memory allocation, keeping the
minimum-energy mapping per layer (``opt="energy"``; DRAM traffic dominates the energy here so
this is also close to the minimum-DRAM-traffic mapping). Each layer is run as a one-layer
workload, so layers are independent (no inter-layer data reuse).

JSON schema (``benchmarks/results/zigzag_vgg16.json``)
------------------------------------------------------
::

    {
      "zigzag_version": "3.9.1",
      "machine": {"python", "platform", "cpus"}, "command": str, "seconds": float,
      "setup": {every OracleHardware field (global_buffer_bytes: the template's, each run
                overrides it), "dram_bits_per_cycle", "timesteps", "opt", "lpf_limit",
                "mapping_search", "spatial_unrolling": {"D1", "D2", "D3"}, "units": {...}},
      "buffers": [bytes, ...],
      "layers": [{"name", "K", "C", "H", "W", "FY", "FX", "padding", "OY", "OX",
                  "stride"}, ...],
      "runs": [                              # one per (buffer, layer)
        {"buffer_bytes", "layer", "ok": bool, "error": str | null,
         # the keys below only when ok
         "energy_pj", "mac_energy_pj", "mem_energy_pj",
         "latency_cycles", "ideal_cycles",
         "temporal_mapping": str, "spatial_mapping": str,
         "dram":          {"read_bits": {"W", "I", "O"}, "write_bits": {"W", "I", "O"},
                           "read_words": {...}, "write_words": {...}, "energy_pj": {...}},
         "global_buffer": {same keys},
         "levels": {"W" | "I" | "O": [              # bottom-up memory levels of the operand
             {"memory", "energy_pj",
              "rd_to_low_bits", "wr_from_high_bits", "rd_to_high_bits", "wr_from_low_bits",
              "rd_to_low_words", "wr_from_high_words", "rd_to_high_words",
              "wr_from_low_words"}, ...]}}
      ],
      "totals": [                            # network sums per buffer (ok layers only)
        {"buffer_bytes", "layers_ok", "layers_failed",
         "dram_read_bits", "dram_write_bits", "dram_bits", "dram_bits_W", "dram_bits_I",
         "dram_bits_O", "global_buffer_read_bits", "global_buffer_write_bits",
         "global_buffer_bits", "global_buffer_bits_W", "global_buffer_bits_I",
         "global_buffer_bits_O", "energy_pj", "dram_energy_pj", "latency_cycles"}
      ],
      "dram_ranking": [buffer bytes sorted by network DRAM bits, fewest first; ties keep
                       the smaller buffer first]
    }

Directions: for a level, "read" is everything read out of it (to the level below, and for
partial sums also to the level above), "write" everything written into it. DRAM "read_bits"
are bits DRAM sends to the global buffer, "write_bits" what the global buffer sends back
(output spikes, spilled partial sums). Bits are ZigZag's element moves times the element width
in that direction (partial sums 24 bits, final outputs 1 bit); "words" are ZigZag's access
counts in units of the port's maximum width (burst granularity ``word_bits``).

Commands (``--table`` reprints a results file, ``--merge`` joins sweeps over other buffers)::

    nice -n 10 python benchmarks/zigzag_oracle.py \\
        --buffers 16384 65536 147456 524288 2097152 8388608 \\
        --out benchmarks/results/zigzag_vgg16.json
    python benchmarks/zigzag_oracle.py --table benchmarks/results/zigzag_vgg16.json

Python use (what a comparison script calls)::

    from zigzag_oracle import OracleHardware, ConvLayer, zigzag_layer, zigzag_network
    zigzag_layer(ConvLayer("x", K=64, C=64, H=32, W=32), OracleHardware(global_buffer_bytes=
                 65536), timesteps=4)["dram"]["read_bits"]["W"]

Only dataflow K was validated. C and KC are wired as well; ZigZag 3.9.1 stops with an internal
assertion on KC 4x4 for conv13 (the run is then recorded with ``ok: false``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

DATA = Path(__file__).resolve().parent / "data" / "zigzag"
RESULTS = Path(__file__).resolve().parent / "results"

VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip
"""torchvision VGG config "D": output channels per 3x3 conv, "M" = 2x2 max pool."""

OPERANDS = ("W", "I", "O")


@dataclass(frozen=True)
class ConvLayer:
    """One conv layer: ``K`` filters over ``C`` channels of an ``H x W`` input (stride 1)."""

    name: str
    K: int
    C: int
    H: int
    W: int
    FY: int = 3
    FX: int = 3
    padding: int = 1

    @property
    def OY(self) -> int:
        """Output rows, ``H + 2 padding - FY + 1`` (stride 1)."""
        return self.H + 2 * self.padding - self.FY + 1

    @property
    def OX(self) -> int:
        """Output columns, ``W + 2 padding - FX + 1`` (stride 1)."""
        return self.W + 2 * self.padding - self.FX + 1


def vgg16_layers(size: int = 32, in_channels: int = 3) -> list[ConvLayer]:
    """The 13 conv layers of VGG-16 (config "D") on a ``size x size`` input (CIFAR-10: 32)."""
    layers: list[ConvLayer] = []
    c, h = in_channels, size
    for v in VGG16_CFG:
        if v == "M":
            h = -(-h // 2)  # ceil-mode 2x2 pool
            continue
        layers.append(ConvLayer(f"conv{len(layers) + 1}", int(v), c, h, h))
        c = int(v)
    return layers


@dataclass(frozen=True)
class OracleHardware:
    """The project's accelerator in the terms ZigZag needs (defaults: paper_16pe_k.yaml)."""

    rows: int = 4
    cols: int = 4
    dataflow: str = "K"
    and_gates: int = 4
    weight_bits: int = 16
    membrane_bits: int = 24
    spike_bits: int = 1
    scratchpad_bytes: int = 2048
    accumulators: int = 256
    global_buffer_bytes: int = 147456
    global_buffer_bandwidth: int = 256
    word_bits: int = 16
    dram_bandwidth_gbps: float = 12.8
    clock_mhz: float = 400.0
    e_accumulate: float = 0.0389
    e_and_gate: float = 0.000794
    e_scratchpad_read: float = 0.2779
    e_scratchpad_write: float = 0.2779
    e_global_buffer_read: float = 1.95
    e_global_buffer_write: float = 1.95
    e_dram_per_bit: float = 3.474

    @property
    def dram_bits_per_cycle(self) -> int:
        """DRAM port width: ``dram_bandwidth_gbps * 8e9 / (clock_mhz * 1e6)`` bits per cycle."""
        return max(1, round(self.dram_bandwidth_gbps * 8e3 / self.clock_mhz))

    @property
    def n_pe(self) -> int:
        """PEs, ``rows * cols``."""
        return self.rows * self.cols


def hardware_from_config(config: Any, **overrides: Any) -> OracleHardware:
    """An :class:`OracleHardware` from an ``accelerator.AcceleratorConfig`` (same capacities,
    word widths, bandwidths and per-access energies), with keyword ``overrides``.

    The project has no GB word width or per-access GB energy: its SRAM energies are per bit,
    from ``memory.sram_table`` at the buffer size. The word is :class:`OracleHardware`'s (16 bits)
    and a word access costs ``word_bits`` x the table's pJ/bit at ``global_buffer_bytes`` (the
    template's size; :func:`zigzag_network` keeps these energies for every buffer it runs)."""
    from accelerator.equations import sram_figures

    e = config.energy
    word = OracleHardware.word_bits
    read_bit, write_bit, _, _ = sram_figures(
        config.memory.sram_table, config.memory.global_buffer_bytes / 1024
    )
    hw = OracleHardware(
        rows=config.pe_array.rows,
        cols=config.pe_array.cols,
        dataflow=str(getattr(config.dataflow, "value", config.dataflow)),
        and_gates=config.pe.and_gates,
        weight_bits=config.bits.weight,
        membrane_bits=config.bits.membrane,
        scratchpad_bytes=config.pe.scratchpad_bytes,
        accumulators=config.pe.accumulators,
        global_buffer_bytes=config.memory.global_buffer_bytes,
        global_buffer_bandwidth=config.memory.global_buffer_bandwidth,
        word_bits=word,
        dram_bandwidth_gbps=config.memory.dram_bandwidth_gbps,
        clock_mhz=config.clock_mhz,
        e_accumulate=e.accumulate,
        e_and_gate=e.and_gate,
        e_scratchpad_read=e.scratchpad_read,
        e_scratchpad_write=e.scratchpad_write,
        e_global_buffer_read=float(read_bit) * word,
        e_global_buffer_write=float(write_bit) * word,
        e_dram_per_bit=e.dram_per_bit,
    )
    return replace(hw, **overrides)


def _port(name: str, kind: str, bw_min: int, bw_max: int, alloc: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "type": kind,
        "bandwidth_min": int(bw_min),
        "bandwidth_max": int(bw_max),
        "allocation": alloc,
    }


ALL_ALLOC = [f"{op}, {d}" for op in ("I1", "I2") for d in ("fh", "tl")] + [
    f"O, {d}" for d in ("fh", "tl", "fl", "th")
]


def hardware_yaml(hw: OracleHardware) -> dict[str, Any]:
    """ZigZag accelerator description of ``hw`` (see the module docstring for the hierarchy)."""
    gb_bw, dram_bw = hw.global_buffer_bandwidth, hw.dram_bits_per_cycle
    acc_bw = hw.membrane_bits * hw.and_gates
    memories: dict[str, Any] = {
        "w_scratchpad": {
            "size": hw.scratchpad_bytes * 8,
            "r_cost": hw.e_scratchpad_read,
            "w_cost": hw.e_scratchpad_write,
            "area": 0.0,
            "latency": 1,
            "operands": ["I2"],
            "ports": [
                _port("r_port_1", "read", hw.weight_bits, hw.weight_bits, ["I2, tl"]),
                _port("w_port_1", "write", hw.weight_bits, hw.weight_bits, ["I2, fh"]),
            ],
            "served_dimensions": ["D3"],
        },
        "accumulators": {
            "size": hw.accumulators * hw.and_gates * hw.membrane_bits,
            "r_cost": 0.0,
            "w_cost": 0.0,
            "area": 0.0,
            "latency": 1,
            "operands": ["O"],
            "ports": [
                _port("r_port_1", "read", hw.membrane_bits, acc_bw, ["O, tl", "O, th"]),
                _port("w_port_1", "write", hw.membrane_bits, acc_bw, ["O, fh", "O, fl"]),
            ],
            "served_dimensions": ["D3"],
        },
        "global_buffer": {
            "size": hw.global_buffer_bytes * 8,
            "r_cost": hw.e_global_buffer_read * gb_bw / hw.word_bits,
            "w_cost": hw.e_global_buffer_write * gb_bw / hw.word_bits,
            "area": 0.0,
            "latency": 1,
            "operands": ["I1", "I2", "O"],
            "ports": [_port("rw_port_1", "read_write", hw.word_bits, gb_bw, ALL_ALLOC)],
            "served_dimensions": ["D1", "D2", "D3"],
        },
        "dram": {
            "size": 1 << 40,
            "r_cost": hw.e_dram_per_bit * dram_bw,
            "w_cost": hw.e_dram_per_bit * dram_bw,
            "area": 0.0,
            "latency": 1,
            "operands": ["I1", "I2", "O"],
            "ports": [_port("rw_port_1", "read_write", hw.word_bits, dram_bw, ALL_ALLOC)],
            "served_dimensions": ["D1", "D2", "D3"],
        },
    }
    return {
        "name": f"snn_{hw.dataflow}_{hw.rows}x{hw.cols}_gb{hw.global_buffer_bytes}",
        "memories": memories,
        "operational_array": {
            "unit_energy": hw.e_accumulate + hw.e_and_gate,
            "unit_area": 1.0,
            "dimensions": ["D1", "D2", "D3"],
            "sizes": [hw.rows, hw.cols, hw.and_gates],
        },
    }


def spatial_unrolling(hw: OracleHardware, timesteps: int) -> dict[str, list[str]]:
    """ZigZag spatial mapping of the dataflow: K -> ``D1: K, D2: K``; C -> ``D1: C, D2: C``;
    KC -> ``D1: K, D2: C``; the AND lanes ``D3`` take ``min(and_gates, T)`` timesteps."""
    dims = {"K": ("K", "K"), "C": ("C", "C"), "KC": ("K", "C")}
    if hw.dataflow not in dims:
        raise ValueError(f"dataflow {hw.dataflow!r}: allowed K, C, KC")
    d1, d2 = dims[hw.dataflow]
    return {
        "D1": [f"{d1}, {hw.rows}"],
        "D2": [f"{d2}, {hw.cols}"],
        "D3": [f"B, {min(hw.and_gates, timesteps)}"],
    }


def mapping_yaml(hw: OracleHardware, timesteps: int) -> list[dict[str, Any]]:
    """ZigZag mapping file: the spatial unrolling for every layer, operand links W->I2, I->I1."""
    return [
        {
            "name": "default",
            "spatial_mapping": spatial_unrolling(hw, timesteps),
            "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"},
        }
    ]


def workload_yaml(layer: ConvLayer, hw: OracleHardware, timesteps: int) -> list[dict[str, Any]]:
    """One-layer ZigZag workload: timesteps as the batch dimension ``B`` (module docstring)."""
    return [
        {
            "id": 0,
            "name": layer.name,
            "operator_type": "Conv",
            "equation": "O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix]",
            "dimension_relations": ["ix=1*ox+1*fx", "iy=1*oy+1*fy"],
            "loop_dims": ["B", "K", "C", "OY", "OX", "FY", "FX"],
            "loop_sizes": [timesteps, layer.K, layer.C, layer.OY, layer.OX, layer.FY, layer.FX],
            "operand_precision": {
                "W": hw.weight_bits,
                "I": hw.spike_bits,
                "O": hw.membrane_bits,
                "O_final": 1,
            },
            "operand_source": {"I": 0, "W": 0},
            "pr_loop_dims": ["IX", "IY"],
            "pr_loop_sizes": [layer.W, layer.H],
            "padding": [[layer.padding, layer.padding], [layer.padding, layer.padding]],
        }
    ]


def _write_yaml(path: Path, data: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# Generated by benchmarks/zigzag_oracle.py (ZigZag input; see its docstring).\n"
    text += yaml.safe_dump(data, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return str(path)


def write_inputs(
    layer: ConvLayer, hw: OracleHardware, timesteps: int, data_dir: Path = DATA
) -> tuple[str, str, str]:
    """Write (or reuse) the hardware, mapping and workload YAML files; return their paths."""
    lanes = min(hw.and_gates, timesteps)
    tag = f"{hw.dataflow}_{hw.rows}x{hw.cols}"
    acc = _write_yaml(data_dir / f"hw_{tag}_gb{hw.global_buffer_bytes}.yaml", hardware_yaml(hw))
    mapping = _write_yaml(data_dir / f"mapping_{tag}x{lanes}.yaml", mapping_yaml(hw, timesteps))
    workload = _write_yaml(
        data_dir / f"workload_vgg16_{layer.name}_T{timesteps}.yaml",
        workload_yaml(layer, hw, timesteps),
    )
    return acc, mapping, workload


_ZIGZAG_NAMES = {
    "LayerOperand": "zigzag.datatypes",
    "DataDirection": "zigzag.hardware.architecture.memory_port",
    "DataMoveAttr": "zigzag.mapping.data_movement",
    "TemporalMappingType": "zigzag.mapping.temporal_mapping",
    "CostModelStage": "zigzag.stages.evaluation.cost_model_evaluation",
    "MainStage": "zigzag.stages.main",
    "SpatialMappingGeneratorStage": "zigzag.stages.mapping.spatial_mapping_generation",
    "TemporalMappingGeneratorStage": "zigzag.stages.mapping.temporal_mapping_generator_stage",
    "AcceleratorParserStage": "zigzag.stages.parser.accelerator_parser",
    "WorkloadParserStage": "zigzag.stages.parser.workload_parser",
    "MinimalEnergyStage": "zigzag.stages.results.reduce_stages",
    "MinimalLatencyStage": "zigzag.stages.results.reduce_stages",
    "WorkloadStage": "zigzag.stages.workload_iterator",
}


def _import_zigzag() -> dict[str, Any]:
    """ZigZag's classes used here, imported lazily (a benchmark dependency: the ``bench``
    extra, ``pip install -e '.[bench]'``)."""
    import importlib

    try:
        return {
            name: getattr(importlib.import_module(module), name)
            for name, module in _ZIGZAG_NAMES.items()
        }
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit(f"zigzag-dse is missing ({exc}): pip install -e '.[bench]'") from None


def zigzag_version() -> str:
    """The installed zigzag-dse version."""
    from importlib.metadata import version

    return version("zigzag-dse")


def _direction_counts(cme: Any, zz: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per operand, per memory level (bottom-up): bits and ZigZag word accesses per direction."""
    dd, attr = zz["DataDirection"], zz["DataMoveAttr"]
    names = {
        dd.RD_OUT_TO_LOW: "rd_to_low",
        dd.WR_IN_BY_HIGH: "wr_from_high",
        dd.RD_OUT_TO_HIGH: "rd_to_high",
        dd.WR_IN_BY_LOW: "wr_from_low",
    }
    out: dict[str, list[dict[str, Any]]] = {}
    for op in OPERANDS:
        layer_op = zz["LayerOperand"](op)
        mem_op = cme.memory_operand_links.layer_to_mem_op(layer_op)
        levels = []
        for lvl, words in enumerate(cme.memory_word_access[layer_op]):
            move = cme.mapping.unit_mem_data_movement[layer_op][lvl]
            elems = move.get_attribute(attr.DATA_ELEM_MOVE_COUNT)
            prec = move.get_attribute(attr.DATA_PRECISION)
            row: dict[str, Any] = {"memory": cme.accelerator.get_memory_level(mem_op, lvl).name}
            for d, key in names.items():
                row[f"{key}_bits"] = int(elems.get(d)) * int(prec.get(d))
                row[f"{key}_words"] = int(words.get(d))
            row["energy_pj"] = float(cme.mem_energy_breakdown[layer_op][lvl])
            levels.append(row)
        out[op] = levels
    return out


def _level_summary(levels: dict[str, list[dict[str, Any]]], memory: str) -> dict[str, Any]:
    """Reads/writes of one memory per operand: read = rd_to_low + rd_to_high, write = wr_from_high
    + wr_from_low (bits and words), and its energy."""
    res: dict[str, Any] = {
        k: {} for k in ("read_bits", "write_bits", "read_words", "write_words", "energy_pj")
    }
    for op, rows in levels.items():
        row = next((r for r in rows if r["memory"] == memory), None)
        for unit in ("bits", "words"):
            rd = 0 if row is None else row[f"rd_to_low_{unit}"] + row[f"rd_to_high_{unit}"]
            wr = 0 if row is None else row[f"wr_from_high_{unit}"] + row[f"wr_from_low_{unit}"]
            res[f"read_{unit}"][op] = rd
            res[f"write_{unit}"][op] = wr
        res["energy_pj"][op] = 0.0 if row is None else row["energy_pj"]
    return res


def zigzag_layer(
    layer: ConvLayer,
    hw: OracleHardware,
    *,
    timesteps: int = 4,
    opt: str = "energy",
    lpf_limit: int = 6,
    data_dir: Path = DATA,
) -> dict[str, Any]:
    """ZigZag's best mapping of one conv layer on ``hw``: access counts per level and direction,
    DRAM and global-buffer summaries, energy (pJ) and latency (cycles).

    Returns ``{"ok": False, "error": ...}`` (and no counts) when LOMA finds no ordering that fits
    the hierarchy (e.g. a global buffer smaller than what the PE levels hold, see the docstring).
    """
    if opt not in ("energy", "latency"):
        raise ValueError(f"opt={opt!r}: allowed energy, latency")
    zz = _import_zigzag()
    acc, mapping, workload = write_inputs(layer, hw, timesteps, data_dir)
    reduce = zz["MinimalEnergyStage"] if opt == "energy" else zz["MinimalLatencyStage"]
    stages = [
        zz["WorkloadParserStage"],
        zz["AcceleratorParserStage"],
        zz["WorkloadStage"],
        reduce,
        zz["SpatialMappingGeneratorStage"],
        reduce,
        zz["TemporalMappingGeneratorStage"],
        zz["CostModelStage"],
    ]
    main = zz["MainStage"](
        stages,
        accelerator=acc,
        workload=workload,
        mapping=mapping,
        loma_lpf_limit=lpf_limit,
        loma_show_progress_bar=False,
        nb_mappings_generated=1,
        enable_mix_spatial_mapping_generation=False,
        access_same_data_considered_as_no_access=True,
        temporal_mapping_type=zz["TemporalMappingType"]("uneven"),
    )
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            answers = main.run()
    except Exception as exc:  # ZigZag raises bare exceptions when nothing fits
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    cme = answers[0][0]
    levels = _direction_counts(cme, zz)
    return {
        "ok": True,
        "error": None,
        "energy_pj": float(cme.energy_total),
        "mac_energy_pj": float(cme.mac_energy),
        "mem_energy_pj": float(cme.mem_energy),
        "latency_cycles": float(cme.latency_total2),
        "ideal_cycles": float(cme.ideal_cycle),
        "temporal_mapping": str(cme.temporal_mapping),
        "spatial_mapping": str(cme.spatial_mapping),
        "dram": _level_summary(levels, "dram"),
        "global_buffer": _level_summary(levels, "global_buffer"),
        "levels": levels,
    }


def network_totals(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Sums over the successful layer runs of one buffer size (bits, pJ, cycles)."""
    ok = [r for r in runs if r["ok"]]

    def total(level: str, key: str) -> int:
        return int(sum(sum(r[level][key].values()) for r in ok))

    out: dict[str, Any] = {"layers_ok": len(ok), "layers_failed": len(runs) - len(ok)}
    for level, prefix in (("dram", "dram"), ("global_buffer", "global_buffer")):
        out[f"{prefix}_read_bits"] = total(level, "read_bits")
        out[f"{prefix}_write_bits"] = total(level, "write_bits")
        out[f"{prefix}_bits"] = out[f"{prefix}_read_bits"] + out[f"{prefix}_write_bits"]
        for op in OPERANDS:
            out[f"{prefix}_bits_{op}"] = int(
                sum(r[level]["read_bits"][op] + r[level]["write_bits"][op] for r in ok)
            )
    out["energy_pj"] = float(sum(r["energy_pj"] for r in ok))
    out["dram_energy_pj"] = float(sum(sum(r["dram"]["energy_pj"].values()) for r in ok))
    out["latency_cycles"] = float(sum(r["latency_cycles"] for r in ok))
    return out


def zigzag_network(
    layers: Sequence[ConvLayer],
    hw: OracleHardware,
    buffers: Iterable[int],
    *,
    timesteps: int = 4,
    opt: str = "energy",
    lpf_limit: int = 7,
    data_dir: Path = DATA,
    progress: bool = False,
) -> dict[str, Any]:
    """ZigZag's best mapping of every layer at every global-buffer size (bytes): the ``runs``
    and per-buffer ``totals`` parts of the results schema (module docstring)."""
    buffers = list(buffers)
    jobs = [(b, layer) for b in buffers for layer in layers]
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="zigzag", unit="layer")
    runs: list[dict[str, Any]] = []
    for b, layer in jobs:
        if bar is not None:
            bar.set_postfix_str(f"{b // 1024} KiB {layer.name}")
        res = zigzag_layer(
            layer,
            replace(hw, global_buffer_bytes=b),
            timesteps=timesteps,
            opt=opt,
            lpf_limit=lpf_limit,
            data_dir=data_dir,
        )
        runs.append({"buffer_bytes": b, "layer": layer.name, **res})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    totals = [
        {"buffer_bytes": b, **network_totals([r for r in runs if r["buffer_bytes"] == b])}
        for b in buffers
    ]
    return {"runs": runs, "totals": totals}


def dram_ranking(totals: Sequence[dict[str, Any]]) -> list[int]:
    """Buffer sizes ordered by network DRAM bits, fewest first (ties keep the smaller buffer
    first)."""
    ordered = sorted(totals, key=lambda t: (t["dram_bits"], t["buffer_bytes"]))
    return [int(t["buffer_bytes"]) for t in ordered]


def markdown_table(payload: dict[str, Any]) -> str:
    """Network totals per buffer size as a Markdown table (MB = 1e6 bytes = 8e6 bits)."""
    lines = [
        "| buffer | DRAM read MB | DRAM write MB | DRAM MB (W / I / O) | GB read MB | GB write MB "
        "| energy uJ (DRAM uJ) | cycles | layers ok |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in payload["totals"]:
        mb = {k: v / 8e6 for k, v in t.items() if k.endswith("_bits") or "_bits_" in k}
        lines.append(
            f"| {t['buffer_bytes'] // 1024} KiB | {mb['dram_read_bits']:.3f} "
            f"| {mb['dram_write_bits']:.3f} | {mb['dram_bits']:.3f} ({mb['dram_bits_W']:.3f} / "
            f"{mb['dram_bits_I']:.3f} / {mb['dram_bits_O']:.3f}) "
            f"| {mb['global_buffer_read_bits']:.3f} | {mb['global_buffer_write_bits']:.3f} "
            f"| {t['energy_pj'] / 1e6:.1f} ({t['dram_energy_pj'] / 1e6:.1f}) "
            f"| {t['latency_cycles']:,.0f} "
            f"| {t['layers_ok']}/{t['layers_ok'] + t['layers_failed']} |"
        )
    return "\n".join(lines)


def merge_results(payloads: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Join result files of the same set-up and version (e.g. two sweeps over different
    buffers): runs of a buffer in a later file replace earlier ones; totals and ranking are
    recomputed."""
    first = payloads[0]
    for p in payloads[1:]:
        for key in ("zigzag_version", "setup", "layers"):
            if p[key] != first[key]:
                raise ValueError(f"cannot merge: different {key!r}")
    runs: dict[tuple[int, str], dict[str, Any]] = {}
    for p in payloads:
        for r in p["runs"]:
            runs[(r["buffer_bytes"], r["layer"])] = r
    buffers = sorted({b for b, _ in runs})
    order = [layer["name"] for layer in first["layers"]]
    merged = [runs[(b, name)] for b in buffers for name in order if (b, name) in runs]
    totals = [
        {"buffer_bytes": b, **network_totals([r for r in merged if r["buffer_bytes"] == b])}
        for b in buffers
    ]
    return {
        **first,
        "command": " && ".join(p["command"] for p in payloads),
        "seconds": float(sum(p["seconds"] for p in payloads)),
        "buffers": buffers,
        "runs": merged,
        "totals": totals,
        "dram_ranking": dram_ranking(totals),
    }


def _machine() -> dict[str, Any]:
    import os
    import platform

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: run the oracle and write the results JSON (exit 2 on bad arguments)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--buffers",
        type=int,
        nargs="+",
        default=[16384, 65536, 147456, 524288, 2097152, 8388608],
        help="global-buffer sizes in bytes",
    )
    parser.add_argument("--config", help="accelerator YAML (default: the paper's 16-PE K array)")
    parser.add_argument("--dataflow", choices=["K", "C", "KC"], help="override the dataflow")
    parser.add_argument("--rows", type=int, help="override pe_array.rows")
    parser.add_argument("--cols", type=int, help="override pe_array.cols")
    parser.add_argument("--timesteps", type=int, default=4, help="T, ZigZag's B dimension")
    parser.add_argument("--opt", choices=["energy", "latency"], default="energy")
    parser.add_argument(
        "--lpf-limit",
        type=int,
        default=7,
        help="LOMA loop prime factors (search effort; 6 = one loop per dimension)",
    )
    parser.add_argument("--layers", nargs="+", help="subset of conv1..conv13")
    parser.add_argument("--out", default=str(RESULTS / "zigzag_vgg16.json"))
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--table", metavar="JSON", help="only print the totals table of a results file"
    )
    parser.add_argument(
        "--merge", nargs="+", metavar="JSON", help="only join these results files into --out"
    )
    args = parser.parse_args(argv)
    if args.merge:
        try:
            merged = merge_results([json.loads(Path(f).read_text()) for f in args.merge])
        except (OSError, ValueError, KeyError) as exc:
            parser.error(f"--merge: {exc}")
        Path(args.out).write_text(json.dumps(merged, indent=1) + "\n")
        print(markdown_table(merged))
        print("DRAM ranking (fewest bits first):", merged["dram_ranking"])
        return 0
    if args.table:
        try:
            print(markdown_table(json.loads(Path(args.table).read_text())))
        except (OSError, ValueError, KeyError) as exc:
            parser.error(f"--table {args.table}: not a results file of this script ({exc})")
        return 0
    if any(b < 1024 for b in args.buffers):
        parser.error("--buffers: sizes in bytes, at least 1024")
    if args.timesteps < 1 or args.lpf_limit < 1:
        parser.error("--timesteps and --lpf-limit must be at least 1")
    layers = vgg16_layers()
    if args.layers:
        known = {layer.name for layer in layers}
        bad = sorted(set(args.layers) - known)
        if bad:
            parser.error(f"--layers: unknown {bad}; allowed conv1..conv13")
        layers = [layer for layer in layers if layer.name in args.layers]
    if args.config:
        from accelerator.config import ConfigError, load_accelerator

        try:
            hw = hardware_from_config(load_accelerator(args.config))
        except ConfigError as exc:
            parser.error(str(exc))
    else:
        hw = OracleHardware()
    overrides = {k: v for k, v in (("dataflow", args.dataflow), ("rows", args.rows),
                                   ("cols", args.cols)) if v is not None}  # fmt: skip
    hw = replace(hw, **overrides)
    spatial_unrolling(hw, args.timesteps)  # validates the dataflow
    logging.getLogger("zigzag").setLevel(logging.ERROR)
    logging.disable(logging.WARNING)

    t0 = time.perf_counter()
    result = zigzag_network(
        layers,
        hw,
        args.buffers,
        timesteps=args.timesteps,
        opt=args.opt,
        lpf_limit=args.lpf_limit,
        progress=not args.no_progress,
    )
    payload = {
        "zigzag_version": zigzag_version(),
        "machine": _machine(),
        "command": "python benchmarks/zigzag_oracle.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "seconds": time.perf_counter() - t0,
        "setup": {
            **asdict(hw),
            "dram_bits_per_cycle": hw.dram_bits_per_cycle,
            "timesteps": args.timesteps,
            "opt": args.opt,
            "lpf_limit": args.lpf_limit,
            "mapping_search": "loma (uneven)",
            "spatial_unrolling": spatial_unrolling(hw, args.timesteps),
            "units": {
                "bits": "element moves x element width in that direction (W 16, I 1, O partial "
                "24 / final 1 by default)",
                "words": "ZigZag access counts in units of the port's maximum width",
                "energy_pj": "picojoules",
                "latency_cycles": "ZigZag latency_total2 in clock cycles",
            },
        },
        "buffers": list(args.buffers),
        "layers": [
            {**asdict(layer), "OY": layer.OY, "OX": layer.OX, "stride": 1} for layer in layers
        ],
        **result,
        "dram_ranking": dram_ranking(result["totals"]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {out} in {payload['seconds']:.0f} s")
    print(markdown_table(payload))
    print("DRAM ranking (fewest bits first):", payload["dram_ranking"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
