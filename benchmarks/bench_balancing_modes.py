"""Balancing modes beyond the paper: workload-ordered mapping (filter reordering), u-Ticket, both,
and spike-aware u-Ticket, on the embedded data; accuracy, sparsity, utilization, latency, energy.

Modes (each a ``dse.trial.run_trial`` design point on a shipped space, 16 PEs):

- ``LTH``: plain lottery ticket, fixed mapping (filter k in slot k).
- ``reorder``: the same LTH ticket on a workload-ordered mapping (``accelerator.mapping_order:
  workload``): no weight changes, so the same accuracy.
- ``u-Ticket``: balanced for the fixed mapping (the paper).
- ``reorder+u-Ticket``: balanced for the order planned from each round's pruned masks.
- ``u-Ticket spike`` / ``reorder+u-Ticket spike``: the same with ``pruning.balance_cost:
  expected_work`` (levels non-zeros x (1 - tick-zero fraction of the input channel)); only for
  C and KC, where PEs read different channels.

Run: ``python benchmarks/bench_balancing_modes.py [--datasets digits] [--seeds 0 1 2 3 4]
[--flows K C KC] [--jobs 2] [--set KEY=VALUE ...] [--name NAME]``. Writes
``results/<NAME>.{json,md,png}`` (NAME: ``balancing_modes``); ``--report-only`` redoes the
tables and plot from the saved JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, seed_mean_curve, table_trial
from common import TABLE_SETTINGS as SETTINGS

ARRAYS = {"K": (4, 4), "C": (4, 4), "KC": (4, 4)}
ROUNDS = (3, 4, 5)
# label, pruning.balance, accelerator.mapping_order, pruning.balance_cost, dataflows
MODES: list[tuple[str, str, str, str, tuple[str, ...]]] = [
    ("LTH", "none", "fixed", "nonzeros", ("K", "C", "KC")),
    ("reorder", "none", "workload", "nonzeros", ("K", "C", "KC")),
    ("u-Ticket", "uticket", "fixed", "nonzeros", ("K", "C", "KC")),
    ("reorder+u-Ticket", "uticket", "workload", "nonzeros", ("K", "C", "KC")),
    ("u-Ticket spike", "uticket", "fixed", "expected_work", ("C", "KC")),
    ("reorder+u-Ticket spike", "uticket", "workload", "expected_work", ("C", "KC")),
]


def run_job(job: tuple[str, int, str, tuple[str, ...], tuple[str, ...]]) -> list[dict[str, Any]]:
    """Every mode for one (dataset, seed): one row per (mode, dataflow, round)."""
    import torch

    torch.set_num_threads(1)
    from dse.cache import TicketCache

    dataset, seed, cache_dir, flows, extra = job
    cache = TicketCache(cache_dir)
    rows = []
    for label, balance, order, cost, mode_flows in MODES:
        for flow in (f for f in flows if f in mode_flows):
            rows_, cols_ = ARRAYS[flow]
            overrides = [
                f"pruning.balance={balance}",
                f"pruning.balance_cost={cost}",
                f"accelerator.dataflow={flow}",
                f"accelerator.mapping_order={order}",
                f"accelerator.pe_array.rows={rows_}",
                f"accelerator.pe_array.cols={cols_}",
                *extra,
            ]
            result, wall = table_trial(dataset, seed, overrides, cache)
            for r in result.rounds:
                rows.append(
                    {
                        "dataset": dataset,
                        "seed": seed,
                        "mode": label,
                        "dataflow": flow,
                        "round": r.round,
                        "accuracy": r.accuracy,
                        "sparsity": r.sparsity,
                        "utilization": r.utilization,
                        "utilization_effective": r.utilization_effective,
                        "latency_us": r.latency * 1e6,
                        "energy_uj": r.energy,
                        "energy_pe_uj": r.energy_pe,
                        "balance_ms": r.balance_seconds * 1e3,
                        "wall_s": wall,
                    }
                )
            print(f"{dataset} seed {seed} {label:24s} {flow:2s}: {wall:6.1f} s", flush=True)
    return rows


def _mean(sel: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([x[key] for x in sel]))


def _pm(sel: list[dict[str, Any]], key: str, scale: float = 1.0, digits: int = 1) -> str:
    v = np.array([x[key] for x in sel]) * scale
    if len(v) == 1:
        return f"{v.mean():.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}"


def table(rows: list[dict[str, Any]], dataset: str, flows: list[str]) -> str:
    """One line per (dataflow, round, mode): mean ± std over seeds, latency against LTH."""
    out = [
        f"#### {dataset}",
        "",
        "| map | round | mode | acc % | sparsity % | util (Eq. 2) | work util | latency us "
        "| energy uJ | PE energy uJ | latency vs LTH | latency vs u-Ticket |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for flow in flows:
        for rnd in ROUNDS:
            sel = {
                m[0]: [
                    r
                    for r in rows
                    if r["dataset"] == dataset
                    and r["dataflow"] == flow
                    and r["round"] == rnd
                    and r["mode"] == m[0]
                ]
                for m in MODES
            }
            lth, ut = sel["LTH"], sel["u-Ticket"]
            for label, *_ in MODES:
                s = sel[label]
                if not s:
                    continue
                vs_lth = 100 * (_mean(s, "latency_us") / _mean(lth, "latency_us") - 1)
                vs_ut = 100 * (_mean(s, "latency_us") / _mean(ut, "latency_us") - 1)
                work = "utilization_effective"
                work_util = _pm(s, work, 1, 2) if work in s[0] else "-"
                out.append(
                    f"| {flow} | {rnd} | {label} | {_pm(s, 'accuracy', 100)} | "
                    f"{_pm(s, 'sparsity', 100)} | {_pm(s, 'utilization', 1, 2)} | "
                    f"{work_util} | "
                    f"{_pm(s, 'latency_us', 1, 2)} | {_pm(s, 'energy_uj', 1, 3)} | "
                    f"{_pm(s, 'energy_pe_uj', 1, 4)} | {vs_lth:+.1f} % | {vs_ut:+.1f} % |"
                )
    return "\n".join(out)


def _curve(rows: list[dict[str, Any]], dataset: str, flow: str, mode: str) -> np.ndarray | None:
    """Seed-mean (sparsity, latency, accuracy) per round 0..5, sorted by sparsity."""
    where = {"dataset": dataset, "dataflow": flow, "mode": mode}
    return seed_mean_curve(rows, where, rounds=range(0, 6))


def matched(rows: list[dict[str, Any]], dataset: str, flows: list[str]) -> str:
    """Latency and accuracy of every mode interpolated (linearly in sparsity, between rounds) at
    the same sparsities: the fair comparison, since balancing moves sparsity."""
    targets = (0.85, 0.90, 0.95)
    head = " | ".join(f"{int(100 * t)} %: latency us / acc %" for t in targets)
    out = [
        f"#### {dataset}: at matched sparsity (interpolated between rounds)",
        "",
        f"| map | mode | {head} | latency vs u-Ticket at 90 % |",
        "|---|---|" + "---|" * len(targets) + "---|",
    ]
    for flow in flows:
        ref = _curve(rows, dataset, flow, "u-Ticket")
        for label, *_ in MODES:
            c = _curve(rows, dataset, flow, label)
            if c is None:
                continue
            cells = []
            for t in targets:
                if c[0, 0] <= t <= c[-1, 0]:
                    lat = np.interp(t, c[:, 0], c[:, 1])
                    acc = np.interp(t, c[:, 0], c[:, 2])
                    cells.append(f"{lat:.2f} / {100 * acc:.1f}")
                else:
                    cells.append("out of range")
            vs = "n/a"
            if ref is not None and c[0, 0] <= 0.9 <= c[-1, 0] and ref[0, 0] <= 0.9 <= ref[-1, 0]:
                a = np.interp(0.9, c[:, 0], c[:, 1])
                b = np.interp(0.9, ref[:, 0], ref[:, 1])
                vs = f"{100 * (a / b - 1):+.1f} %"
            out.append(f"| {flow} | {label} | " + " | ".join(cells) + f" | {vs} |")
    return "\n".join(out)


def plot(rows: list[dict[str, Any]], datasets: list[str], flows: list[str], path: Path) -> None:
    """Latency and accuracy against sparsity, one panel pair per (dataset, dataflow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(d, f) for d in datasets for f in flows]
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 7), squeeze=False)
    colors = {m[0]: plt.get_cmap("tab10")(i) for i, m in enumerate(MODES)}
    for col, (dataset, flow) in enumerate(panels):
        for label, *_ in MODES:
            curve = seed_mean_curve(rows, {"dataset": dataset, "dataflow": flow, "mode": label})
            if curve is None:
                continue
            sp, lat, acc = curve.T
            style = "--" if label.startswith("reorder") else "-"
            kw = {"marker": "o", "ms": 3, "label": label, "color": colors[label]}
            axes[0, col].plot(100 * sp, lat, style, **kw)
            axes[1, col].plot(100 * sp, 100 * acc, style, **kw)
        axes[0, col].set_title(f"{dataset}, dataflow {flow}, 16 PEs")
        axes[0, col].set_ylabel("latency (us)")
        axes[1, col].set_ylabel("test accuracy (%)")
        axes[1, col].set_xlabel("weight sparsity (%)")
    handles, labels = max(
        (ax.get_legend_handles_labels() for ax in axes[0]), key=lambda hl: len(hl[1])
    )
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--flows", nargs="+", default=["K", "C", "KC"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", default=str(ROOT / "runs" / "cache"))
    parser.add_argument("--name", default="balancing_modes")
    parser.add_argument(
        "--set", dest="extra", action="append", default=[], help="extra KEY=VALUE overrides"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="re-make tables/plot from the saved JSON"
    )
    args = parser.parse_args()
    flows = tuple(args.flows)
    t0 = time.perf_counter()
    if args.report_only:
        rows = json.loads((RESULTS / f"{args.name}.json").read_text())["rows"]
    else:
        extra = tuple(args.extra)
        jobs = [(d, s, args.cache, flows, extra) for d in args.datasets for s in args.seeds]
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            rows = [row for part in pool.map(run_job, jobs, chunksize=1) for row in part]
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.name}.json").write_text(
            json.dumps(
                {"settings": [*SETTINGS, *args.extra], "arrays": ARRAYS, "rows": rows}, indent=1
            )
        )
    md = "\n\n".join(
        f"{table(rows, d, list(flows))}\n\n{matched(rows, d, list(flows))}" for d in args.datasets
    )
    (RESULTS / f"{args.name}.md").write_text(md + "\n")
    plot(rows, args.datasets, list(flows), RESULTS / f"{args.name}.png")
    print(md)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
