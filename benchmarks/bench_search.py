"""Search-service measurements on the default space (this machine: 2 cores):

1. the default run as shipped (`python -m dse.search`): wall time, trials, cache hit rate, front;
2. throughput with 1 and 2 workers when every trial trains (``--no-cache``, same budget), on
   the default space (whose trials differ in work: the sampler picks 2-6 rounds, and the trial
   mix depends on completion order) and on a fixed-work variant (only hardware and balancing
   swept, 6 rounds for every trial), which isolates the parallel speed-up;
3. the ticket cache's effect: trainings per trial with and without it (same budget, 2 workers);
4. trial anatomy: share of trial time outside training (data set-up, balancing, scoring,
   storage and Ray overhead), from the trials' own timings and the driver's wall time.

Run: ``python benchmarks/bench_search.py [--trials N] [--only-fixed]``. Writes
``benchmarks/results/search.json``; runs go to ``runs/bench-search/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "runs" / "bench-search"
RESULTS = ROOT / "benchmarks" / "results"


def search(name: str, *args: str) -> tuple[float, list[optuna.trial.FrozenTrial], int]:
    """Run ``python -m dse.search`` in a fresh run directory: wall seconds, complete trials and
    the size of the feasible Pareto front."""
    from dse.export import pareto_trials
    from dse.storage import open_storage, storage_spec

    run = OUT / name
    shutil.rmtree(run, ignore_errors=True)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "dse.search", "--out", str(run), "--no-progress", *args]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    study = optuna.load_study(
        study_name="digits-default", storage=open_storage(storage_spec(None, run))
    )
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    return wall, done, len(pareto_trials(study))


def anatomy(trials: list[optuna.trial.FrozenTrial], wall: float, workers: int) -> dict[str, Any]:
    """Where trial time goes; 'outside training' = everything but the SGD/Adam epochs."""
    keys = (
        "setup_seconds",
        "train_seconds",
        "eval_seconds",
        "balance_seconds",
        "score_seconds",
        "cache_seconds",
        "total_seconds",
    )
    sums = {k: sum(t.user_attrs["timings"].get(k, 0.0) for t in trials) for k in keys}
    trial_wall = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials)
    first = min(t.datetime_start for t in trials)
    last = max(t.datetime_complete for t in trials)
    in_study = (last - first).total_seconds()
    return {
        **sums,
        "trial_wall_seconds": trial_wall,
        "outside_training_in_trial": 1 - sums["train_seconds"] / sums["total_seconds"],
        "outside_training_incl_storage": 1 - sums["train_seconds"] / trial_wall,
        "driver_wall_seconds": wall,
        "study_wall_seconds": in_study,
        "trials_per_minute_in_study": 60 * len(trials) / in_study,
        "worker_busy_share": trial_wall / (wall * workers),
    }


def fixed_work(report: dict[str, Any], n: str) -> None:
    """1 vs 2 workers when every trial does the same work (6 rounds, only hardware and
    balancing swept): the parallel speed-up without the sampler's trial mix."""
    fixed = (
        "--set=params={accelerator.pe_array.rows: {type: int, low: 1, high: 8}, "
        "accelerator.pe_array.cols: {type: int, low: 1, high: 8}, "
        "accelerator.dataflow: {type: categorical, choices: [K, C, KC]}, "
        "pruning.balance: {type: categorical, choices: [none, uticket]}}"
    )
    for w in (1, 2):
        wall, trials, _ = search(
            f"fixed{w}", fixed, "--workers", str(w), "--n-trials", n, "--no-cache"
        )
        a = anatomy(trials, wall, w)
        report[f"fixed_work_workers_{w}"] = {
            "wall_seconds": wall,
            "trials": len(trials),
            "trials_per_minute": 60 * len(trials) / wall,
            "anatomy": a,
            "train_seconds_per_trial": a["train_seconds"] / len(trials),
        }
    f1, f2 = report["fixed_work_workers_1"], report["fixed_work_workers_2"]
    report["fixed_work_speedup_2_vs_1"] = f2["trials_per_minute"] / f1["trials_per_minute"]
    report["fixed_work_speedup_2_vs_1_in_study"] = (
        f2["anatomy"]["trials_per_minute_in_study"] / f1["anatomy"]["trials_per_minute_in_study"]
    )
    print(
        f"fixed work per trial: 2 vs 1 workers {report['fixed_work_speedup_2_vs_1']:.2f}x whole "
        f"command, {report['fixed_work_speedup_2_vs_1_in_study']:.2f}x while trials run; "
        f"training per trial {f1['train_seconds_per_trial']:.2f} s (1 worker) vs "
        f"{f2['train_seconds_per_trial']:.2f} s (2 workers sharing 2 cores)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=16, help="budget of the 1-vs-2 runs")
    parser.add_argument(
        "--only-fixed", action="store_true", help="only the fixed-work runs, merged into the JSON"
    )
    args = parser.parse_args()
    report: dict[str, Any] = {}
    if args.only_fixed:
        report = json.loads((RESULTS / "search.json").read_text())
        fixed_work(report, str(args.trials))
        (RESULTS / "search.json").write_text(json.dumps(report, indent=2))
        return

    wall, trials, front = search("default")
    hits = sum(t.user_attrs["cache_ticket"] == "hit" for t in trials)
    report["default"] = {
        "wall_seconds": wall,
        "complete": len(trials),
        "cache_hit_rate": hits / len(trials),
        "anatomy": anatomy(trials, wall, 2),
        "front_size": front,
    }
    balances = sorted({t.user_attrs["balance"] for t in trials})
    report["default"]["balances_in_study"] = balances
    print(
        f"default run: {len(trials)} trials in {wall:.0f} s, cache hits {hits}/{len(trials)}, "
        f"front {front}, balancing modes in the study {balances}"
    )

    n = str(args.trials)
    for w in (1, 2):
        wall, trials, _ = search(
            f"workers{w}", "--workers", w.__str__(), "--n-trials", n, "--no-cache"
        )
        report[f"workers_{w}"] = {
            "wall_seconds": wall,
            "trials": len(trials),
            "trials_per_minute": 60 * len(trials) / wall,
            "anatomy": anatomy(trials, wall, w),
        }
        print(
            f"{w} worker(s), no cache: {len(trials)} trials in {wall:.0f} s "
            f"({60 * len(trials) / wall:.2f} trials/min)"
        )
    report["speedup_2_vs_1"] = (
        report["workers_2"]["trials_per_minute"] / report["workers_1"]["trials_per_minute"]
    )
    rate = [report[f"workers_{w}"]["anatomy"]["trials_per_minute_in_study"] for w in (1, 2)]
    report["speedup_2_vs_1_in_study"] = rate[1] / rate[0]
    print(
        f"2 vs 1 workers: {report['speedup_2_vs_1']:.2f}x over the whole command "
        f"(Ray start-up and results included), {rate[1] / rate[0]:.2f}x from the first trial's "
        "start to the last trial's end"
    )

    fixed_work(report, n)

    wall, trials, _ = search("cache", "--workers", "2", "--n-trials", n)
    trainings = sum(t.user_attrs["cache_ticket"] != "hit" for t in trials)
    dense_hits = sum(t.user_attrs["cache_dense"] == "hit" for t in trials)
    cached = anatomy(trials, wall, 2)
    uncached = report["workers_2"]["anatomy"]
    report["cache"] = {
        "with_cache_trainings_per_trial": trainings / len(trials),
        "without_cache_trainings_per_trial": 1.0,
        "dense_round_reused": dense_hits / len(trials),
        "with_cache_train_seconds_per_trial": cached["train_seconds"] / len(trials),
        "without_cache_train_seconds_per_trial": uncached["train_seconds"]
        / report["workers_2"]["trials"],
        "with_cache_wall_seconds": wall,
        "without_cache_wall_seconds": report["workers_2"]["wall_seconds"],
    }
    c = report["cache"]
    print(
        f"cache: {trainings}/{len(trials)} tickets trained, the dense round reused by "
        f"{dense_hits}; training {c['with_cache_train_seconds_per_trial']:.2f} s per trial vs "
        f"{c['without_cache_train_seconds_per_trial']:.2f} s without ({wall:.0f} s vs "
        f"{report['workers_2']['wall_seconds']:.0f} s)"
    )
    a = report["workers_2"]["anatomy"]
    print(
        f"outside training: {100 * a['outside_training_in_trial']:.1f} % of trial time "
        f"({100 * a['outside_training_incl_storage']:.1f} % with storage round-trips)"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
