"""Trial anatomy on the default space: where a search's wall time goes.

Runs ``python -m dse.search`` (default space, every trial trains: ``--no-cache``) with 1 and 2
workers and splits the time with the per-trial log the driver writes (``timings.jsonl``: the
worker's own clock for storage ask/attrs/tell, design-point build and every stage of the trial,
and the driver's submit/receive times) and the command's wall clock:

- data loading: the worker's one-off dataset load (at actor start) + per-trial set-up (splits
  lookup, model shapes, PE maps);
- training, evaluation (test accuracy + spike profile per round), balancing, scoring, cache I/O;
- pruning & bookkeeping: the rest of ``run_trial`` (magnitude pruning, rewinding, mask copies);
- storage: Optuna ask (incl. the sampler), user attributes and tell;
- Ray: driver round trip minus the worker's time, for every trial but each worker's first;
  driver gaps: between a worker's result and its next submission (the driver polls storage for
  the progress bar and the budget);
- worker start-up: the excess of each worker's first round trip (actor process, imports; its
  dataset load is counted under data loading);
- start-up and results: the command's wall time outside the study (Python + Ray start, writing
  the result files), once per worker.

Run: ``python benchmarks/bench_trial_anatomy.py [--trials 16]``. Writes
``results/trial_anatomy.{json,png}``; runs go to ``runs/bench-anatomy/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "bench-anatomy"
RESULTS = ROOT / "benchmarks" / "results"
PARTS = (
    "data loading",
    "training",
    "evaluation",
    "balancing",
    "scoring",
    "cache I/O",
    "pruning & bookkeeping",
    "design point",
    "storage",
    "Ray",
    "driver gaps",
    "worker start-up",
    "start-up and results",
)


def run(workers: int, trials: int) -> dict[str, Any]:
    """One search (every trial trains); returns :func:`analyze` of its log."""
    out = OUT / f"workers{workers}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "dse.search", "--out", str(out), "--no-progress", "--no-cache"]
    cmd += ["--workers", str(workers), "--n-trials", str(trials)]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    (out / "wall_seconds").write_text(str(time.perf_counter() - t0))
    return analyze(out, workers)


def analyze(out: Path, workers: int) -> dict[str, Any]:
    """Seconds per part (summed over workers) from ``timings.jsonl`` and the command's wall."""
    wall = float((out / "wall_seconds").read_text())
    rows = [json.loads(x) for x in (out / "timings.jsonl").read_text().splitlines()]

    def total(key: str, sel: list[dict[str, Any]] = rows) -> float:
        return sum(float(r.get(key, 0.0)) for r in sel)

    firsts = [r for r in rows if "init_seconds" in r]
    others = [r for r in rows if "init_seconds" not in r]
    stages = ("setup", "train", "eval", "balance", "score", "cache")
    in_trial = sum(total(f"trial_{k}_seconds") for k in stages)
    gaps = 0.0
    for w in {r["worker"] for r in rows}:
        mine = sorted((r for r in rows if r["worker"] == w), key=lambda r: r["submitted"])
        gaps += sum(b["submitted"] - a["received"] for a, b in itertools.pairwise(mine))
    study_span = max(r["received"] for r in rows) - min(r["submitted"] for r in rows)
    parts = {
        "data loading": total("init_data_seconds") + total("trial_setup_seconds"),
        "training": total("trial_train_seconds"),
        "evaluation": total("trial_eval_seconds"),
        "balancing": total("trial_balance_seconds"),
        "scoring": total("trial_score_seconds"),
        "cache I/O": total("trial_cache_seconds"),
        "pruning & bookkeeping": total("run_trial_seconds") - in_trial,
        "design point": total("build_seconds"),
        "storage": total("ask_seconds") + total("attrs_seconds") + total("tell_seconds"),
        "Ray": total("ray_overhead_seconds", others),
        "driver gaps": gaps,
        "worker start-up": total("ray_overhead_seconds", firsts) - total("init_data_seconds"),
        "start-up and results": workers * (wall - study_span),
    }
    trial_time = total("seconds") + total("ray_overhead_seconds", others)
    return {
        "workers": workers,
        "trials": len(rows),
        "wall_seconds": wall,
        "study_seconds": study_span,
        "parts_seconds": parts,
        "outside_training_of_trial_time": 1 - parts["training"] / trial_time,
        "outside_training_of_command": 1 - parts["training"] / sum(parts.values()),
        "ray_ms_per_trial": 1e3 * parts["Ray"] / max(len(others), 1),
        "storage_ms_per_trial": 1e3 * parts["storage"] / len(rows),
        "per_trial_ms": {k: 1e3 * v / len(rows) for k, v in parts.items()},
    }


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Stacked bars: share of each part, one bar per worker count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2))
    labels = [f"{r['workers']} worker(s)" for r in results]
    left = [0.0] * len(results)
    cmap = plt.get_cmap("tab20")
    for i, part in enumerate(PARTS):
        total = [sum(r["parts_seconds"].values()) for r in results]
        share = [100 * r["parts_seconds"][part] / t for r, t in zip(results, total, strict=True)]
        ax.barh(labels, share, left=left, color=cmap(i), label=part)
        left = [a + b for a, b in zip(left, share, strict=True)]
    ax.set_xlabel("share of the command's worker-seconds (%)")
    ax.set_xlim(0, 100)
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--report-only", action="store_true", help="re-analyze the last runs' logs")
    args = parser.parse_args()
    if args.report_only:
        results = [analyze(OUT / f"workers{w}", w) for w in (1, 2)]
    else:
        results = [run(w, args.trials) for w in (1, 2)]
    for r in results:
        total = sum(r["parts_seconds"].values())
        print(
            f"\n{r['workers']} worker(s): {r['trials']} trials in {r['wall_seconds']:.1f} s "
            f"(study {r['study_seconds']:.1f} s); outside training: "
            f"{100 * r['outside_training_of_trial_time']:.1f} % of trial time, "
            f"{100 * r['outside_training_of_command']:.1f} % of the whole command; "
            f"Ray {r['ray_ms_per_trial']:.1f} ms and storage {r['storage_ms_per_trial']:.1f} ms "
            "per trial"
        )
        print(f"{'part':24s} {'s':>8s} {'share %':>8s} {'ms/trial':>9s}")
        for part in PARTS:
            v = r["parts_seconds"][part]
            print(f"{part:24s} {v:8.2f} {100 * v / total:8.2f} {r['per_trial_ms'][part]:9.1f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "trial_anatomy.json").write_text(json.dumps({"runs": results}, indent=2))
    plot(results, RESULTS / "trial_anatomy.png")


if __name__ == "__main__":
    main()
