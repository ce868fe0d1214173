"""The memory model against ZigZag: DRAM and global-buffer (GB) traffic of the 13 dense VGG-16
conv layers at every buffer size of the ZigZag oracle (issue 11, Validation: "ZigZag").

Reads ``benchmarks/results/zigzag_vgg16.json`` (written by ``benchmarks/zigzag_oracle.py``; ZigZag
is not re-run) and scores the same layers with the project's model:

- masks: all ones with the oracle's layer shapes ``(K, C, FY, FX)``;
- profile: the oracle's geometry per layer (input ``H x W``, output ``OY x OX``, stride 1,
  padding 1), ``T`` = the oracle's timesteps (ZigZag's batch dimension), spike rate 1.0 and no
  tick skipping (ZigZag charges every MAC);
- configuration: ``accelerator/configs/paper_16pe_k.yaml`` with the oracle's set-up checked
  field by field (array, dataflow, AND gates, weight / membrane bits, scratchpad bytes,
  accumulators, GB bandwidth, word bits), ``memory.global_buffer_bytes`` set per run, and
  ``bits.index = 0``: ZigZag moves dense 16-bit weights, the project's compressed format adds
  ``bits.index`` bits per non-zero, which a dense layer does not need (the figure with the
  default 8 index bits is in the JSON as ``ours_index8``).

Conventions (both models, bits = element moves x element width):

- DRAM bits = reads by the GB (weights, input spikes) + writes from the GB (output spikes, and in
  ZigZag spilled partial sums; none spill here). Per operand W / I / O.
- GB bits = reads (to the PEs, and drains to DRAM) + writes (fills from DRAM, and output spikes /
  partial sums from the PEs). Both models count these four streams, so the totals are like for
  like. What differs is how often the PEs read input spikes: the project's PEs read each input
  neuron once per filter group and pass (line-buffer reuse of the ``FY x FX`` window,
  :func:`accelerator.equations.pe_traffic`), ZigZag's hierarchy has no PE-level input memory, so
  every ``(fy, fx)`` tap re-reads the spike from the GB (once per filter group). The matching
  subset "GB without input-spike reads to the PEs" (GB fills + drains + weight reads + output
  writes) is therefore compared as well.

Pass criteria: network and per-layer ratios ours / ZigZag in [0.5, 2] for DRAM bits (total, W, I,
O) and GB bits; Kendall tau-b of the two models' network DRAM bits over the buffer sizes >= 0.8
on the sizes 8-64 KiB (where ZigZag's ranking is not all ties) and reported over all sizes.

Run: ``python benchmarks/bench_zigzag.py``. Writes ``benchmarks/results/zigzag_compare.json`` and
``benchmarks/results/zigzag_compare.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, save, single_thread

single_thread()

import numpy as np
from scipy.stats import kendalltau

from accelerator import AcceleratorConfig, evaluate, parse_accelerator, read_yaml, summarize
from accelerator.cost import network_work
from accelerator.counts import MaskSummary

ORACLE = RESULTS / "zigzag_vgg16.json"
CONFIG = ROOT / "accelerator" / "configs" / "paper_16pe_k.yaml"
LOW, HIGH = 0.5, 2.0
TAU_GOAL = 0.8
RANK_MAX_BYTES = 65536
"""The ranking criterion uses the buffers up to 64 KiB (ZigZag's DRAM traffic is flat above)."""

CHECKED = {
    "pe_array.rows": "rows",
    "pe_array.cols": "cols",
    "dataflow": "dataflow",
    "pe.and_gates": "and_gates",
    "bits.weight": "weight_bits",
    "bits.membrane": "membrane_bits",
    "pe.scratchpad_bytes": "scratchpad_bytes",
    "pe.accumulators": "accumulators",
    "memory.global_buffer_bandwidth": "global_buffer_bandwidth",
}
"""Project config field -> oracle set-up field that must be equal (same capacities/widths)."""

OPS = {"W": "weights", "I": "inputs", "O": "outputs"}
QUANTITIES = ("dram", "dram_W", "dram_I", "dram_O", "gb", "gb_no_input_reads")


def _get(config: AcceleratorConfig, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return getattr(value, "value", value)


def project_config(setup: dict[str, Any], gb_bytes: int, index_bits: int) -> AcceleratorConfig:
    """``paper_16pe_k.yaml`` with the oracle's buffer size; raises if a capacity differs."""
    data = read_yaml(CONFIG)
    data.setdefault("memory", {})["global_buffer_bytes"] = int(gb_bytes)
    data.setdefault("bits", {})["index"] = int(index_bits)
    config = parse_accelerator(data, CONFIG)
    for ours, theirs in CHECKED.items():
        if str(_get(config, ours)) != str(setup[theirs]):
            raise SystemExit(
                f"{CONFIG}: {ours} = {_get(config, ours)!r} but the oracle used "
                f"{theirs} = {setup[theirs]!r}; re-run the oracle with the same set-up"
            )
    return config


def workload(
    layers: Sequence[dict[str, Any]], timesteps: int
) -> tuple[MaskSummary, dict[str, Any]]:
    """Dense masks and a profile with the oracle's geometry, T, spike rate 1, no skipping."""
    masks = {
        lay["name"]: np.ones((lay["K"], lay["C"], lay["FY"], lay["FX"]), dtype=bool)
        for lay in layers
    }
    profile = {
        "layers": {
            lay["name"]: {
                "positions": lay["OY"] * lay["OX"],
                "output_size": [lay["OY"], lay["OX"]],
                "input_size": [lay["H"], lay["W"]],
                "stride": lay["stride"],
                "padding": lay["padding"],
                "timesteps": timesteps,
                "spike_rate": 1.0,
                "tick_zero_fraction": 0.0,
            }
            for lay in layers
        }
    }
    return summarize(masks), profile


def input_reads_to_pes(run: dict[str, Any]) -> float:
    """ZigZag's input-spike reads from the GB to the PEs (bits) of one layer run."""
    row = next(r for r in run["levels"]["I"] if r["memory"] == "global_buffer")
    return float(row["rd_to_low_bits"])


def zigzag_layer(run: dict[str, Any]) -> dict[str, float]:
    """The compared quantities of one ZigZag layer run (bits)."""
    d, g = run["dram"], run["global_buffer"]
    out = {f"dram_{op}": float(d["read_bits"][op] + d["write_bits"][op]) for op in OPS}
    out["dram"] = sum(out[f"dram_{op}"] for op in OPS)
    out["gb"] = float(sum(g["read_bits"].values()) + sum(g["write_bits"].values()))
    out["gb_input_reads"] = input_reads_to_pes(run)
    out["gb_no_input_reads"] = out["gb"] - out["gb_input_reads"]
    return out


def our_layers(
    summary: MaskSummary,
    profile: dict[str, Any],
    setup: dict[str, Any],
    gb_bytes: int,
    index_bits: int,
) -> list[dict[str, Any]]:
    """The compared quantities of every layer under the project's model (bits), plus tiling."""
    config = project_config(setup, gb_bytes, index_bits)
    report = evaluate(config, summary, profile)
    entry = config.bits.weight + config.bits.index
    rows = []
    for lay, work in zip(report.layers, network_work(config, summary, profile).layers, strict=True):
        pe = work.pe
        # input spikes the PEs read from the GB: PE reads less weights and partial sums
        inputs = pe.gb_read_bits - pe.entries_loaded * entry - pe.psum_bits / 2
        row: dict[str, Any] = {
            f"dram_{op}": float(lay.dram_bits_by_operand[name]) for op, name in OPS.items()
        }
        row["dram"] = float(lay.dram_bits)
        row["gb"] = float(lay.global_buffer_bits)
        row["gb_input_reads"] = float(inputs)
        row["gb_no_input_reads"] = row["gb"] - row["gb_input_reads"]
        row["psum_spill_bits"] = float(lay.psum_spill_bits)
        row["tiling"] = lay.tiling
        rows.append(row)
    return rows


def ratio(ours: float, theirs: float) -> float | None:
    return ours / theirs if theirs else (1.0 if ours == 0 else None)


def within(r: float | None) -> bool:
    return r is not None and LOW <= r <= HIGH


def tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    t = kendalltau(x, y, variant="b").statistic
    return None if not np.isfinite(t) else float(t)


def compare(oracle: dict[str, Any], index_bits: int) -> dict[str, Any]:
    setup, layers = oracle["setup"], oracle["layers"]
    summary, profile = workload(layers, int(setup["timesteps"]))
    names = [lay["name"] for lay in layers]
    sizes = [int(b) for b in oracle["buffers"]]
    per_size: list[dict[str, Any]] = []
    for b in sizes:
        runs = {r["layer"]: r for r in oracle["runs"] if r["buffer_bytes"] == b}
        failed = [n for n in names if not runs.get(n, {}).get("ok")]
        if failed:
            raise SystemExit(f"{ORACLE}: buffer {b}: ZigZag has no result for {failed}")
        zz = [zigzag_layer(runs[n]) for n in names]
        ours = our_layers(summary, profile, setup, b, index_bits)
        layer_rows = []
        for n, z, o in zip(names, zz, ours, strict=True):
            rat = {q: ratio(o[q], z[q]) for q in QUANTITIES}
            layer_rows.append(
                {
                    "layer": n,
                    "zigzag": z,
                    "ours": o,
                    "ratio": rat,
                    "within_2x": {q: within(r) for q, r in rat.items()},
                    "zigzag_temporal_mapping": runs[n]["temporal_mapping"],
                }
            )
        keys = (*QUANTITIES, "gb_input_reads")
        tot_z = {q: float(sum(z[q] for z in zz)) for q in keys}
        tot_o = {q: float(sum(o[q] for o in ours)) for q in keys}
        rat = {q: ratio(tot_o[q], tot_z[q]) for q in QUANTITIES}
        per_size.append(
            {
                "buffer_bytes": b,
                "zigzag": tot_z,
                "ours": tot_o,
                "ratio": rat,
                "within_2x": {q: within(r) for q, r in rat.items()},
                "layers": layer_rows,
            }
        )
    dz = [s["zigzag"]["dram"] for s in per_size]
    do = [s["ours"]["dram"] for s in per_size]
    small = [i for i, b in enumerate(sizes) if b <= RANK_MAX_BYTES]
    tau = tau_b([dz[i] for i in small], [do[i] for i in small])
    ranking: dict[str, Any] = {
        "sizes_bytes": [sizes[i] for i in small],
        "tau_b": tau,
        "tau_b_all_sizes": tau_b(dz, do),
        "goal": TAU_GOAL,
        "pass": tau is not None and tau >= TAU_GOAL,
    }
    layer_fail = {
        q: [
            f"{lr['layer']}@{s['buffer_bytes']}"
            for s in per_size
            for lr in s["layers"]
            if not lr["within_2x"][q]
        ]
        for q in QUANTITIES
    }
    return {
        "index_bits": index_bits,
        "sizes": per_size,
        "ranking": ranking,
        "network_within_2x": {q: all(s["within_2x"][q] for s in per_size) for q in QUANTITIES},
        "layers_outside_2x": layer_fail,
    }


def table(res: dict[str, Any]) -> str:
    head = (
        "| buffer | DRAM Mbit ours / ZigZag (ratio) | W | I | O | GB Mbit ours / ZigZag (ratio) "
        "| GB without input reads (ratio) |\n|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for s in res["sizes"]:
        o, z, r = s["ours"], s["zigzag"], s["ratio"]

        def cell(q: str, o: dict[str, float] = o, z: dict[str, float] = z) -> str:
            rq = r[q]
            txt = "-" if rq is None else f"{rq:.2f}"
            return f"{o[q] / 1e6:.2f} / {z[q] / 1e6:.2f} ({txt})"

        kib = s["buffer_bytes"] // 1024
        cells = " | ".join(cell(q) for q in QUANTITIES)
        lines.append(f"| {kib} KiB | {cells} |")
    return head + "\n".join(lines)


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kib = np.array([s["buffer_bytes"] for s in res["sizes"]]) / 1024
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for ax, (q, title) in zip(
        axes, (("dram", "DRAM traffic"), ("gb", "global-buffer traffic")), strict=True
    ):
        for who, style in (("ours", "o-"), ("zigzag", "s--")):
            ax.plot(kib, [s[who][q] / 1e6 for s in res["sizes"]], style, label=who)
        if q == "gb":
            for who, style in (("ours", "o:"), ("zigzag", "s:")):
                ax.plot(
                    kib,
                    [s[who]["gb_no_input_reads"] / 1e6 for s in res["sizes"]],
                    style,
                    label=f"{who}, without input-spike reads to PEs",
                )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("global buffer (KiB)")
        ax.set_ylabel("Mbit per inference (T = 4)")
        ax.set_title(f"dense VGG-16 (13 conv), 16 PEs: {title}")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--oracle", type=Path, default=ORACLE, help="zigzag_oracle.py output")
    args = parser.parse_args(argv)
    oracle = json.loads(args.oracle.read_text())
    res = compare(oracle, index_bits=0)
    default = compare(oracle, index_bits=8)
    print(table(res))
    rk = res["ranking"]
    print(
        f"DRAM ranking: Kendall tau-b {rk['tau_b']:.3f} over {len(rk['sizes_bytes'])} sizes "
        f"<= 64 KiB (goal >= {TAU_GOAL}: {'pass' if rk['pass'] else 'FAIL'}); "
        f"{rk['tau_b_all_sizes']:.3f} over all {len(res['sizes'])} sizes"
    )
    for q, ok in res["network_within_2x"].items():
        bad = res["layers_outside_2x"][q]
        print(
            f"{q}: network totals within 2x: {ok}; layers outside 2x: {len(bad)}"
            + (f" ({', '.join(bad[:6])}{', ...' if len(bad) > 6 else ''})" if bad else "")
        )
    payload = {
        "command": "python benchmarks/bench_zigzag.py",
        "oracle": str(
            args.oracle.relative_to(ROOT) if args.oracle.is_relative_to(ROOT) else args.oracle
        ),
        "zigzag_version": oracle.get("zigzag_version"),
        "config": str(CONFIG.relative_to(ROOT)),
        "criteria": {"ratio": [LOW, HIGH], "kendall_tau_b": TAU_GOAL},
        "units": "bits per inference (all T timesteps); ratio = ours / ZigZag",
        **res,
        "ours_index8": {
            "network_dram_bits": [s["ours"]["dram"] for s in default["sizes"]],
            "network_dram_ratio": [s["ratio"]["dram"] for s in default["sizes"]],
            "ranking": default["ranking"],
        },
    }
    path = save("zigzag_compare", payload)
    plot(res, RESULTS / "zigzag_compare.png")
    print(f"wrote {path} and {RESULTS / 'zigzag_compare.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
