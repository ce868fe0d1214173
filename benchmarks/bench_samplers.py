"""Search quality on a cheap space: hypervolume of the Pareto front vs. the number of trials for
NSGA-II (the default sampler), TPE and random search, 5 seeds each.

The cheap space varies only hardware and mapping for fixed tickets: the rounds of one plain-LTH
ticket of the default space (digits, convnet, T=4; trained once, through the ticket cache), so a
trial is one cost-model evaluation. Parameters: PE rows and columns (1..16), dataflow, global
buffer bandwidth, DRAM bandwidth, clock, and which round's ticket (1..6). Objectives as the
default space (accuracy, latency, energy) with its area constraint. Hypervolume is computed on
feasible trials in a normalized space (1 - accuracy, log10 latency, log10 energy) against one
reference point shared by every run.

Run: ``python benchmarks/bench_samplers.py [--trials 300] [--seeds 5]``; writes
``benchmarks/results/samplers.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from accelerator import AcceleratorConfig, evaluate, pe_index, summarize
from dse.cache import TicketCache, ticket_key
from dse.design import DesignPoint
from dse.space import SamplerSpec, load_space
from dse.storage import open_storage, storage_spec
from dse.trial import load_splits, run_trial, weight_shapes
from dse.worker import make_sampler

CHECKPOINTS = (25, 50, 100, 200, 300)
SAMPLERS = {
    "nsga2": SamplerSpec(name="nsga2", population_size=8),
    "tpe": SamplerSpec(name="tpe"),
    "random": SamplerSpec(name="random"),
}


def tickets() -> tuple[list[Any], list[dict[str, Any]], list[float]]:
    """Summaries, profiles and accuracies of rounds 1..6 of one LTH ticket (cached)."""
    loaded = load_space(overrides=["pruning.balance=none", "pruning.rounds=6"])
    point = DesignPoint.build(loaded, {})
    cache = TicketCache(ROOT / "runs" / "bench-samplers" / "cache")
    run_trial(point, cache=cache)
    shapes = weight_shapes(point, load_splits(point))
    pe = {n: pe_index(s, point.accelerator) for n, s in shapes.items()}
    rounds = cache.get_rounds(ticket_key(point, pe, point.accelerator.n_pe), 6)
    assert rounds is not None
    rounds = rounds[1:]
    return (
        [summarize(r.masks) for r in rounds],
        [r.profile for r in rounds],
        [r.accuracy for r in rounds],
    )


def objective_factory(data: tuple[list[Any], list[dict[str, Any]], list[float]]) -> Any:
    summaries, profiles, accuracies = data
    base = AcceleratorConfig()

    def objective(trial: optuna.Trial) -> tuple[float, float, float]:
        rnd = trial.suggest_int("round", 1, len(summaries))
        config = base.with_updates(
            {
                "pe_array.rows": trial.suggest_int("rows", 1, 16),
                "pe_array.cols": trial.suggest_int("cols", 1, 16),
                "dataflow": trial.suggest_categorical("dataflow", ["K", "C", "KC"]),
                "memory.global_buffer_bandwidth": trial.suggest_int("gb_bw", 64, 1024, log=True),
                "memory.dram_bandwidth_gbps": trial.suggest_float("dram", 3.2, 51.2, log=True),
                "clock_mhz": trial.suggest_float("clock", 200, 800, step=100),
            }
        )
        report = evaluate(config, summaries[rnd - 1], profiles[rnd - 1])
        trial.set_constraint("area_max", report.area_mm2 - 12.0)
        trial.set_user_attr("area", report.area_mm2)
        return accuracies[rnd - 1], report.seconds, report.energy_pj["total"] * 1e-6

    return objective


def normalized(trials: list[optuna.trial.FrozenTrial]) -> np.ndarray:
    """Feasible trials as minimization points: 1 - accuracy, log10 latency, log10 energy."""
    pts = [
        (1 - t.values[0], math.log10(t.values[1]), math.log10(t.values[2]))
        for t in trials
        if t.values is not None and t.user_attrs["area"] <= 12.0
    ]
    return np.array(pts, dtype=float).reshape(-1, 3)


def default_space_runs(seeds: int, n_trials: int) -> dict[str, Any]:
    """(b) The default space itself: ``python -m dse.search`` per sampler and seed (2 workers,
    one ticket cache shared by all runs, so later runs mostly re-score cached tickets)."""
    out = ROOT / "runs" / "bench-samplers"
    studies: dict[str, list[list[optuna.trial.FrozenTrial]]] = {name: [] for name in SAMPLERS}
    for seed in range(seeds):
        for name in SAMPLERS:
            run = out / f"default-{name}-{seed}"
            cmd = [
                sys.executable,
                "-m",
                "dse.search",
                "--out",
                str(run),
                "--no-progress",
                "--n-trials",
                str(n_trials),
                "--seed",
                str(seed),
                "--cache",
                str(out / "default-cache"),
                "--set",
                f"sampler.name={name}",
            ]
            if run.exists():
                shutil.rmtree(run)
            subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
            study = optuna.load_study(
                study_name="digits-default", storage=open_storage(storage_spec(None, run))
            )
            done = [t for t in study.trials if t.state.name == "COMPLETE"]
            for t in done:
                t.set_user_attr("area", t.user_attrs["metrics"]["area"])
            studies[name].append(sorted(done, key=lambda t: t.number))
            print(f"default space: {name} seed {seed}: {len(done)} trials", flush=True)
    return hypervolumes(studies, [c for c in (8, 16, 24, 32, 48) if c <= n_trials])


def hypervolumes(
    runs: dict[str, list[list[optuna.trial.FrozenTrial]]], checkpoints: list[int]
) -> dict[str, Any]:
    """Mean and std of the hypervolume per sampler at each checkpoint (shared reference)."""
    everything = np.vstack([normalized(t) for rs in runs.values() for t in rs])
    reference = everything.max(axis=0) + 0.1 * (everything.max(axis=0) - everything.min(axis=0))
    result: dict[str, Any] = {"reference": reference.tolist(), "hv": {}}
    print(f"{'sampler':8s} " + " ".join(f"{c:>15d}" for c in checkpoints))
    for name, rs in runs.items():
        table = []
        for c in checkpoints:
            hvs = [compute_hypervolume(normalized(t[:c]), reference) for t in rs]
            table.append((float(np.mean(hvs)), float(np.std(hvs))))
        result["hv"][name] = {str(c): v for c, v in zip(checkpoints, table, strict=True)}
        print(f"{name:8s} " + " ".join(f"{m:8.4f} ±{s:6.4f}" for m, s in table))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--default-space", action="store_true", help="also (b): the default space")
    parser.add_argument("--default-trials", type=int, default=48)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective = objective_factory(tickets())
    space = load_space().space
    runs: dict[str, list[list[optuna.trial.FrozenTrial]]] = {name: [] for name in SAMPLERS}
    timing: dict[str, float] = {}
    for name, spec in SAMPLERS.items():
        t0 = time.perf_counter()
        for seed in range(args.seeds):
            sampler = make_sampler(space.model_copy(update={"sampler": spec}), seed)
            study = optuna.create_study(
                directions=["maximize", "minimize", "minimize"], sampler=sampler
            )
            study.optimize(objective, n_trials=args.trials)
            runs[name].append(study.trials)
        timing[name] = time.perf_counter() - t0
    checkpoints = [c for c in CHECKPOINTS if c <= args.trials]
    print("(a) cheap space: hardware and mapping only, fixed LTH tickets")
    result: dict[str, Any] = {"cheap_space": hypervolumes(runs, checkpoints), "seconds": timing}
    if args.default_space:
        print("(b) the default space")
        result["default_space"] = default_space_runs(args.seeds, args.default_trials)
    (ROOT / "benchmarks" / "results" / "samplers.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
