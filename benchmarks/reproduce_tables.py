"""Tables I and II of the paper in spirit, on the embedded data: LTH vs u-Ticket at about 90, 95
and 98 % sparsity, 16 PEs, mappings K and C: accuracy, sparsity, utilization, latency, energy.

Every number comes from ``dse.trial.run_trial`` (what ``python -m dse.evaluate`` runs) on the
shipped spaces with ``--set pruning.rate=0.55 --set pruning.rounds=5`` (rounds 3, 4, 5 reach
90.9 / 95.9 / 98.2 % for plain LTH), one ticket per (dataset, seed, method, mapping); the LTH
ticket does not depend on the hardware and is scored on both mappings.

Run: ``python benchmarks/reproduce_tables.py [--datasets digits mnist5k] [--seeds 0 1 2]
[--jobs 2]``. Writes ``benchmarks/results/reproduce_tables.{json,md}``.
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
from common import RESULTS, table_trial
from common import TABLE_SETTINGS as SETTINGS

ROUNDS = (3, 4, 5)
METHODS = [
    ("LTH", "none", "K"),
    ("LTH", "none", "C"),
    ("u-Ticket", "uticket", "K"),
    ("u-Ticket", "uticket", "C"),
]


def run_job(job: tuple[str, int, str]) -> list[dict[str, Any]]:
    """All methods for one (dataset, seed): returns one row per (method, mapping, round)."""
    import torch

    torch.set_num_threads(1)
    from dse.cache import TicketCache

    dataset, seed, cache_dir = job
    cache = TicketCache(cache_dir)
    rows = []
    for method, balance, flow in METHODS:
        overrides = [f"pruning.balance={balance}", f"accelerator.dataflow={flow}"]
        result, wall = table_trial(dataset, seed, overrides, cache)
        point = result.point
        train_rounds = [r.train_seconds for r in result.rounds[1:]]
        for r in result.rounds:
            rows.append(
                {
                    "dataset": dataset,
                    "seed": seed,
                    "method": method,
                    "dataflow": flow,
                    "round": r.round,
                    "accuracy": r.accuracy,
                    "sparsity": r.sparsity,
                    "utilization": r.utilization,
                    "latency_us": r.latency * 1e6,
                    "energy_uj": r.energy,
                    "energy_pe_uj": r.energy_pe,
                    "balance_ms_per_round": result.timings["balance_seconds"]
                    / point.pruning.rounds
                    * 1e3,
                    "score_ms_per_round": result.timings["score_seconds"]
                    / len(result.rounds)
                    * 1e3,
                    "train_s_per_round": float(np.mean(train_rounds))
                    if any(train_rounds)
                    else None,
                    "cache": result.cache["ticket"],
                    "wall_s": wall,
                }
            )
        print(
            f"{dataset} seed {seed} {method:8s} {flow}: {wall:6.1f} s ({result.cache})", flush=True
        )
    return rows


def _mean(sel: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([x[key] for x in sel]))


def matched(rows: list[dict[str, Any]], dataset: str) -> str:
    """u-Ticket rounds against the LTH round of the nearest sparsity (same mapping)."""
    out = [
        f"#### {dataset}: at matched sparsity",
        "",
        "| map | uT round | uT sparsity % | LTH round | LTH sparsity % | uT acc % | LTH acc % "
        "| uT latency us | LTH latency us | latency -% | energy -% | PE energy -% |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for flow in ("K", "C"):
        here = [r for r in rows if r["dataset"] == dataset and r["dataflow"] == flow]
        lth = {n: [r for r in here if r["method"] == "LTH" and r["round"] == n] for n in range(6)}
        for rnd in ROUNDS:
            b = [r for r in here if r["method"] == "u-Ticket" and r["round"] == rnd]
            if not b:
                continue
            s_b = _mean(b, "sparsity")
            n = min((k for k in lth if lth[k]), key=lambda k: abs(_mean(lth[k], "sparsity") - s_b))
            a = lth[n]
            lat = 100 * (1 - _mean(b, "latency_us") / _mean(a, "latency_us"))
            en = 100 * (1 - _mean(b, "energy_uj") / _mean(a, "energy_uj"))
            pe = 100 * (1 - _mean(b, "energy_pe_uj") / _mean(a, "energy_pe_uj"))
            out.append(
                f"| {flow} | {rnd} | {100 * s_b:.1f} | {n} | {100 * _mean(a, 'sparsity'):.1f} | "
                f"{100 * _mean(b, 'accuracy'):.1f} | {100 * _mean(a, 'accuracy'):.1f} | "
                f"{_mean(b, 'latency_us'):.2f} | {_mean(a, 'latency_us'):.2f} | {lat:.1f} | "
                f"{en:.1f} | {pe:.1f} |"
            )
    return "\n".join(out)


def table(rows: list[dict[str, Any]], dataset: str) -> str:
    """Markdown: one line per (round, mapping), LTH and u-Ticket side by side, mean +- std."""
    out = [
        f"#### {dataset}",
        "",
        "| round | map | LTH acc % | LTH sparsity % | LTH util | LTH latency us "
        "| LTH energy uJ | uT acc % | uT sparsity % | uT util | uT latency us | uT energy uJ "
        "| latency -% | energy -% | PE energy (Eq. 3) -% |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def stat(sel: list[dict[str, Any]], key: str, scale: float = 1.0, digits: int = 1) -> str:
        v = np.array([s[key] for s in sel]) * scale
        return (
            f"{v.mean():.{digits}f} ± {v.std():.{digits}f}"
            if len(v) > 1
            else f"{v.mean():.{digits}f}"
        )

    for rnd in ROUNDS:
        for flow in ("K", "C"):
            sel = {
                m: [
                    r
                    for r in rows
                    if r["dataset"] == dataset
                    and r["round"] == rnd
                    and r["dataflow"] == flow
                    and r["method"] == m
                ]
                for m in ("LTH", "u-Ticket")
            }
            a, b = sel["LTH"], sel["u-Ticket"]
            if not a or not b:
                continue
            lat = 100 * (
                1 - np.mean([x["latency_us"] for x in b]) / np.mean([x["latency_us"] for x in a])
            )
            en = 100 * (
                1 - np.mean([x["energy_uj"] for x in b]) / np.mean([x["energy_uj"] for x in a])
            )
            cells = [str(rnd), flow]
            for sel_m in (a, b):
                cells += [
                    stat(sel_m, "accuracy", 100),
                    stat(sel_m, "sparsity", 100),
                    stat(sel_m, "utilization", 1, 2),
                    stat(sel_m, "latency_us", 1, 2),
                    stat(sel_m, "energy_uj", 1, 3),
                ]
            pe = 100 * (1 - _mean(b, "energy_pe_uj") / _mean(a, "energy_pe_uj"))
            cells += [f"{lat:.1f}", f"{en:.1f}", f"{pe:.1f}"]
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist5k"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", default=str(ROOT / "runs" / "cache"))
    args = parser.parse_args()
    jobs = [(d, s, args.cache) for d in args.datasets for s in args.seeds]
    jobs.sort(key=lambda j: j[0] != "mnist5k")  # long jobs first
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        rows = [row for part in pool.map(run_job, jobs, chunksize=1) for row in part]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reproduce_tables.json").write_text(
        json.dumps({"settings": SETTINGS, "rows": rows}, indent=1)
    )
    md = "\n\n".join(f"{table(rows, d)}\n\n{matched(rows, d)}" for d in args.datasets)
    (RESULTS / "reproduce_tables.md").write_text(md + "\n")
    print(md)
    shares = [
        (r["balance_ms_per_round"] + r["score_ms_per_round"]) / 1e3 / r["train_s_per_round"]
        for r in rows
        if r["method"] == "u-Ticket" and r["train_s_per_round"] and r["round"] > 0
    ]
    if shares:
        print(f"balancing + scoring per round / training per round: max {100 * max(shares):.3f} %")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
