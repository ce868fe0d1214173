"""``python -m dse.search``: an Optuna multi-objective study over PE array x dataflow x pruning
schedule, run by Ray workers, with the Pareto front written to the run directory.

The driver owns the budget: it starts a trial on a worker only while ``complete + in flight <
n_trials`` (counting COMPLETE trials in the storage), so the budget is exact however many
workers run. Failed trials do not count; a trial whose worker died (Ray reports the actor dead,
or its heartbeat goes stale) is marked FAIL and re-queued with the same parameters. Re-running
the same command resumes: complete trials are kept and counted, trials left RUNNING by a killed
driver are failed and re-queued.

Faults never end the search by surprise (README, "Faults and limits"): storage errors are retried
(:mod:`dse.resilience`), a worker's task error is recorded against its trial and the worker
replaced, a worker whose heartbeat goes stale is replaced, an outage longer than the limit stops
the search with exit status 1 and a resumable study. The private local Ray is sized to the
machine, bound to loopback, authenticated and reaped with its driver (:mod:`dse.local_ray`).

This module is the command line (arguments, :func:`run_search`, exit codes); the driver loop is
:mod:`dse.driver`, the run's lifecycle (lock, study, Ray session, worker plan) :mod:`dse.study`,
exact mode :mod:`dse.exhaustive`, the result files :mod:`dse.export`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from accelerator import ConfigError
from dse import local_ray
from dse.driver import TIMINGS_FILE, drive, fail_trial, recover_orphans
from dse.exhaustive import drive_exhaustive, exhaustive_plan
from dse.export import ResultsError, pareto_trials, summary_table, write_results
from dse.resilience import StorageOutage
from dse.space import DEFAULT_SPACE, load_space
from dse.storage import StorageError, dashboard_target, storage_spec
from dse.study import (
    SearchError,
    SearchOptions,
    create_study,
    plan_cluster,
    plan_local,
    ray_session,
    run_lock,
)
from dse.tickets import budget_states, ticket_summary, write_points_csv

__all__ = [  # the CLI, and what callers imported from here before the split
    "SearchError",
    "SearchOptions",
    "create_study",
    "fail_trial",
    "main",
    "parse_args",
    "recover_orphans",
    "run_search",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(self.prog, "arguments", message)


def parse_args(argv: Sequence[str] | None) -> SearchOptions:
    p = _Parser(prog="python -m dse.search", description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--space", type=Path, default=DEFAULT_SPACE, help="search-space YAML")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the space, e.g. train.epochs=2",
    )
    p.add_argument("--n-trials", type=int, help="complete trials to reach (default: the space's)")
    p.add_argument("--workers", type=int, help="parallel trials (default: CPUs / cpus-per-trial)")
    p.add_argument("--storage", help="Optuna storage URL (default: journal file in --out)")
    p.add_argument("--study", help="study name (default: the space's)")
    p.add_argument("--out", type=Path, help="run directory (default: runs/<study>)")
    p.add_argument("--address", help="Ray cluster to join: 'auto' or host:port (default: local)")
    p.add_argument("--seed", type=int, help="seed of the space (default: the space's)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (threads)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial")
    p.add_argument(
        "--cache",
        type=Path,
        help="ticket cache dir (default: <out>/cache); on a cluster a directory every node shares",
    )
    p.add_argument(
        "--no-cache",
        dest="use_cache",
        action="store_false",
        help="train every trial from scratch (for measurements)",
    )
    p.add_argument("--timeout", type=float, help="seconds before no new trial starts")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no bar")
    p.add_argument(
        "--allow-changed-space",
        action="store_true",
        help="resume a study whose stored space differs from this one (mixes both in one study)",
    )
    a = p.parse_args(argv)
    if a.n_trials is not None and a.n_trials < 1:
        raise ConfigError("--n-trials", "n_trials", f"must be >= 1, got {a.n_trials}")
    if a.workers is not None and a.workers < 1:
        raise ConfigError("--workers", "workers", f"must be >= 1, got {a.workers}")
    if a.cpus_per_trial <= 0 or a.gpus_per_trial < 0:
        raise ConfigError("--cpus-per-trial", "resources", "CPUs must be > 0 and GPUs >= 0")
    return SearchOptions(
        a.space,
        a.overrides,
        a.n_trials,
        a.workers,
        a.storage,
        a.study,
        a.out,
        a.address,
        a.seed,
        a.cpus_per_trial,
        a.gpus_per_trial,
        a.cache,
        a.timeout,
        a.progress,
        a.use_cache,
        a.allow_changed_space,
    )


def run_search(opts: SearchOptions) -> dict[str, Any]:
    """Run (or resume) the study; returns a summary dict. Raises ConfigError/SearchError/
    StorageError on bad input."""
    overrides = list(opts.overrides)
    if opts.seed is not None:
        overrides.append(f"seed={opts.seed}")
    loaded = load_space(opts.space, overrides)
    space = loaded.space
    if not space.params:
        raise ConfigError(opts.space, "params", "is empty: name at least one parameter to sweep")
    name = opts.study or space.study
    run_dir = (opts.out or Path("runs") / name).resolve()
    n_trials = opts.n_trials or space.n_trials
    timeout = opts.timeout or space.timeout
    cache_dir = (opts.cache or run_dir / "cache").resolve() if opts.use_cache else None
    if not opts.address:  # refuse an impossible request before touching anything
        local_ray.plan_workers(
            opts.workers, *local_ray.machine_resources(), opts.cpus_per_trial,
            opts.gpus_per_trial, n_trials, "this machine",
        )  # fmt: skip
    with run_lock(run_dir):
        spec = storage_spec(opts.storage, run_dir)
        study = create_study(
            loaded,
            spec,
            name,
            space.sampler.seed_of(space.seed),
            allow_changed_space=opts.allow_changed_space,
        )
        orphans = recover_orphans(study, None, set())
        t_start = time.time()
        unscored = 0
        before = budget_states(study)
        exhaustive, already = exhaustive_plan(loaded, run_dir, before, n_trials)
        if not already:
            remaining = (
                len(exhaustive) if exhaustive is not None else n_trials - before.get("COMPLETE", 0)
            )
            workers = plan_local(opts, remaining) if not opts.address else 1
            with ray_session(opts, run_dir, workers):
                if opts.address:
                    workers = plan_cluster(opts, remaining)
                if exhaustive is not None:
                    unscored = drive_exhaustive(
                        study, loaded, opts, overrides, spec, cache_dir, workers, run_dir,
                        exhaustive,
                    )["failed"]  # fmt: skip
                else:
                    drive(
                        study, loaded, opts, overrides, spec, cache_dir, n_trials, workers,
                        timeout, run_dir / TIMINGS_FILE,
                    )  # fmt: skip
        files = write_results(study, run_dir)
        points = write_points_csv(space, run_dir)
        if points is not None:
            files[points.name] = points
        states = budget_states(study)
        return {
            "already_complete": already,
            "tickets_failed": unscored,
            "n_trials": n_trials,
            "tickets": ticket_summary(run_dir, study),
            "run_dir": run_dir,
            "storage": dashboard_target(spec),
            "study": name,
            "states": states,
            "orphans_recovered": orphans,
            "wall_seconds": time.time() - t_start,
            "files": files,
            "table": summary_table(study),
            "front": len(pareto_trials(study)),
        }


def main(argv: Sequence[str] | None = None) -> int:
    try:
        opts = parse_args(argv)
        summary = run_search(opts)
    except StorageOutage as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, SearchError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ResultsError as exc:
        print(
            f"error: {exc}; the study itself is intact in its storage: re-run the same "
            "command to write the results again",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(
            "interrupted: completed trials are stored; re-run the same command to resume",
            file=sys.stderr,
        )
        return 130
    print(summary["table"])
    states = summary["states"]
    if summary["already_complete"]:
        print(f"study {summary['study']} is already complete: nothing to run; results rewritten")
    print(
        f"{summary['tickets'].line()}; front: {summary['front']} points; wall time "
        f"{summary['wall_seconds']:.0f} s"
    )
    print(
        f"\n{states.get('COMPLETE', 0)} complete, {states.get('FAIL', 0)} failed proposed "
        f"trials in {summary['wall_seconds']:.0f} s; results in {summary['run_dir']}\n"
        f"inspect: optuna-dashboard --host 127.0.0.1 {summary['storage']}"
    )
    if summary["tickets_failed"]:
        print(
            f"error: {summary['tickets_failed']} tickets failed three times (messages above); "
            "the front lacks their points: re-run the same command to retry only them",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
