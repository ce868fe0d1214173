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
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import optuna
from optuna.trial import TrialState

from accelerator import ConfigError
from dse import local_ray, space_guard
from dse.exhaustive import drive_exhaustive, exhaustive_plan
from dse.export import ResultsError, pareto_trials, summary_table, write_results
from dse.resilience import (
    StorageOutage,
    heartbeat_seconds,
    stale_seconds,
)
from dse.space import DEFAULT_SPACE, LoadedSpace, load_space
from dse.storage import StorageError, dashboard_target, open_storage, storage_spec
from dse.tickets import budget_states, ticket_summary, write_points_csv
from dse.worker import make_sampler, remote_worker

log = logging.getLogger("dse.search")


class SearchError(RuntimeError):
    """A problem with the run itself (not a trial): the message is printed, exit status 2."""


@dataclass
class SearchOptions:
    """Everything ``dse.search`` was asked to do (the command line, as data)."""

    space: Path
    overrides: list[str]
    n_trials: int | None
    workers: int | None
    storage: str | None
    study: str | None
    out: Path | None
    address: str | None
    seed: int | None
    cpus_per_trial: float
    gpus_per_trial: float
    cache: Path | None
    timeout: float | None
    progress: bool
    use_cache: bool = True
    allow_changed_space: bool = False


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


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """One driver per run directory (a second one would double-count the budget)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / ".lock", "a+b")
    except OSError as exc:
        raise SearchError(f"cannot use run directory {run_dir}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SearchError(f"another dse.search is running on {run_dir}") from None
        yield
    finally:
        handle.close()


def check_address(address: str) -> None:
    """Fail fast (seconds, not minutes) when a Ray head at host:port cannot be reached."""
    if address == "auto" or address.startswith("local"):
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise SearchError(f"Ray address {address!r} is not 'auto' or host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise SearchError(f"cannot reach Ray at {address}: {exc.strerror or exc}") from None


def _ray_temp_dir(run_dir: Path) -> Path:
    """Ray's session directory: inside the run directory unless the path would be too long
    for Ray's unix sockets (about 107 bytes), then a short one in the system temp dir."""
    inside = (run_dir / "ray").resolve()
    if len(str(inside)) <= 40:
        return inside
    digest = hashlib.sha1(str(inside).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / f"dse-ray-{digest}"


@contextmanager
def ray_session(opts: SearchOptions, run_dir: Path, workers: int) -> Iterator[None]:
    """Join ``--address`` or start a private local Ray sized for the workers."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    kwargs: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False}
    if opts.address:
        check_address(opts.address)
        kwargs["address"] = opts.address  # nodes have the project installed (ray_cluster.yaml)
        with _ray_init(kwargs, opts.address):
            yield
        return
    # private local Ray: loopback, token-authenticated, reaped with this driver (local_ray)
    local_temp = _ray_temp_dir(run_dir)
    kwargs.update(
        local_ray.init_kwargs(
            max(int(workers * opts.cpus_per_trial + 0.999), 1),
            max(int(workers * opts.gpus_per_trial + 0.999), 0),
            local_temp,
        )
    )
    with local_ray.reaper(local_temp) as owner, local_ray.private_env(local_temp, owner):
        with _ray_init(kwargs, "a local Ray"):
            yield


@contextmanager
def _ray_init(kwargs: dict[str, Any], where: str) -> Iterator[None]:
    import ray

    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError) as exc:
        raise SearchError(f"cannot start or join {where}: {exc}") from None
    try:
        yield
    finally:
        ray.shutdown()


def fail_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial, reason: str) -> None:
    """Mark a RUNNING trial FAIL with a reason and queue a retry with the same parameters."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except RuntimeError:  # it finished meanwhile
        return
    retry_of = trial.user_attrs.get("retry_of", trial.number)
    attempts = int(trial.user_attrs.get("attempt", 1))
    if attempts < 3:
        study.enqueue_trial(
            dict(trial.params),
            user_attrs={"retry_of": retry_of, "attempt": attempts + 1},
            skip_if_exists=False,
        )


def recover_orphans(study: optuna.Study, stale_after: float | None, workers: set[str]) -> int:
    """Fail + re-queue RUNNING trials whose worker is gone (not in ``workers``) or whose
    heartbeat is older than ``stale_after`` seconds (None: every RUNNING trial is an orphan,
    as when a new driver starts)."""
    now = time.time()
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        beat = float(
            t.user_attrs.get("heartbeat", t.datetime_start.timestamp() if t.datetime_start else now)
        )
        if stale_after is None:
            reason = "left RUNNING by a previous driver (killed or crashed); retried"
        elif worker is not None and worker not in workers:
            reason = f"worker {worker} died during the trial; retried"
        elif now - beat > stale_after:
            reason = f"no heartbeat for {now - beat:.0f} s (worker lost); retried"
        else:
            continue
        fail_trial(study, t, reason)
        n += 1
    return n


class Progress:
    """A terminal bar: complete / failed / running trials, front size, ETA.

    :meth:`update` reads the study into the bar and :meth:`draw` shows it, so the driver
    draws only while the search goes on; :meth:`close` draws the final line once.
    """

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.bar = None
        self._read = False  # update() read the study since the last draw()
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                initial=initial,
                unit="trial",
                file=sys.stderr,
                dynamic_ncols=True,
                desc="trials",
            )

    def update(self, study: optuna.Study) -> dict[str, int]:
        """Read the budget states and the front into the bar (not drawn); returns the states."""
        states = budget_states(study)  # derived trials (dse.tickets) never count
        if self.bar is not None:
            self.bar.n = states.get("COMPLETE", 0)
            self.bar.set_postfix(
                failed=states.get("FAIL", 0),
                running=states.get("RUNNING", 0),
                front=len(pareto_trials(study)),
                refresh=False,
            )
        self._read = True
        return states

    def draw(self) -> None:
        """Show what :meth:`update` last read (nothing new since the last draw: no line)."""
        if self.bar is not None and self._read:
            self.bar.refresh()
        self._read = False

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def create_study(
    loaded: LoadedSpace, storage: str, name: str, seed: int, *, allow_changed_space: bool = False
) -> optuna.Study:
    """Create or resume the study; refuses to resume one with other objectives, or (unless
    ``allow_changed_space``) one whose resolved space differs (:mod:`dse.space_guard`)."""
    space = loaded.space
    directions = [o.direction for o in space.objectives]
    study = optuna.create_study(
        study_name=name,
        storage=open_storage(storage),
        directions=directions,
        sampler=make_sampler(space, seed),
        load_if_exists=True,
    )
    objectives = [o.model_dump() for o in space.objectives]
    stored = study.user_attrs.get("objectives")
    if stored is not None and stored != objectives:
        raise SearchError(
            f"study {name!r} in this storage has objectives {stored}; the space asks for "
            f"{objectives}: use another --study or --out"
        )
    if [d.name.lower() for d in study.directions] != directions:
        raise SearchError(f"study {name!r} exists with directions {study.directions}")
    resolved = space_guard.resolved_space(loaded)
    digest = space_guard.digest(resolved)
    stored_space = study.user_attrs.get(space_guard.STUDY_ATTR)
    if stored_space is not None and study.user_attrs.get(space_guard.DIGEST_ATTR) != digest:
        changed = space_guard.differences(stored_space, resolved)
        if not allow_changed_space:
            shown = "; ".join(changed[:5]) + (
                f"; and {len(changed) - 5} more" if len(changed) > 5 else ""
            )
            raise SearchError(
                f"study {name!r} was run with another space ({shown}): use a new --study or "
                "--out, or --allow-changed-space to mix both in this study"
            )
        print(
            f"note: --allow-changed-space: continuing with {len(changed)} changed fields",
            file=sys.stderr,
        )
    study.set_user_attr(space_guard.STUDY_ATTR, resolved)
    study.set_user_attr(space_guard.DIGEST_ATTR, digest)
    study.set_user_attr("objectives", objectives)
    study.set_user_attr("constraints", [c.model_dump() for c in space.constraints])
    study.set_user_attr("space", str(loaded.path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o.metric for o in space.objectives])
    return study


TIMINGS_FILE = "timings.jsonl"
"""Per-trial wall-clock anatomy written into the run directory (see ``_drive``)."""


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
            loaded, spec, name, space.seed, allow_changed_space=opts.allow_changed_space
        )
        orphans = recover_orphans(study, None, set())
        t_start = time.time()
        exhaustive, already = exhaustive_plan(loaded, run_dir, budget_states(study), n_trials)
        if not already:
            remaining = (
                len(exhaustive)
                if exhaustive is not None
                else n_trials - budget_states(study).get("COMPLETE", 0)
            )
            workers = _plan_local(opts, remaining) if not opts.address else 1
            with ray_session(opts, run_dir, workers):
                if opts.address:
                    workers = _plan_cluster(opts, remaining)
                if exhaustive is not None:
                    drive_exhaustive(
                        study, loaded, opts, overrides, spec, cache_dir, workers, run_dir,
                        exhaustive,
                    )  # fmt: skip
                else:
                    _drive(
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


def _plan_local(opts: SearchOptions, remaining: int) -> int:
    """Workers of a private local Ray: what fits this machine and the remaining budget."""
    plan = local_ray.plan_workers(
        opts.workers, *local_ray.machine_resources(), opts.cpus_per_trial,
        opts.gpus_per_trial, remaining, "this machine",
    )  # fmt: skip
    if plan.note:
        print(plan.note, file=sys.stderr)
    return plan.workers


def _plan_cluster(opts: SearchOptions, remaining: int) -> int:
    """Workers on a joined cluster: what its resources (``ray.cluster_resources()``) hold."""
    import ray

    res = ray.cluster_resources()  # type: ignore[no-untyped-call]
    plan = local_ray.plan_workers(
        opts.workers, float(res.get("CPU", 0)), float(res.get("GPU", 0)),
        opts.cpus_per_trial, opts.gpus_per_trial, remaining, "the cluster",
    )  # fmt: skip
    if plan.note:
        print(plan.note, file=sys.stderr)
    return plan.workers


def _drive(
    study: optuna.Study,
    loaded: LoadedSpace,
    opts: SearchOptions,
    overrides: list[str],
    spec: str,
    cache_dir: Path | None,
    n_trials: int,
    workers: int,
    timeout: float | None,
    timings_path: Path,
) -> None:
    """Keep ``workers`` trials in flight until the budget of complete trials (or the timeout).

    Every finished trial appends one JSON line to ``timings_path``: the worker's breakdown
    (storage ask/attrs/tell, the trial's own timings) plus the driver's submit and receive
    times, whose difference minus the worker's time is the Ray overhead.

    Any Ray error of a task is handled here: a dead actor's trial is failed and re-queued and the
    actor replaced; a task that raised gets its error recorded on its RUNNING trial (failed and
    re-queued) and its actor replaced; a worker whose trial went stale is killed and replaced. A
    :class:`StorageOutage` raised in a worker stops the search (nothing can be recorded).
    """
    import ray

    remote = remote_worker(opts.cpus_per_trial, opts.gpus_per_trial)
    threads = max(1, int(opts.cpus_per_trial))
    seed = loaded.space.seed

    def start(index: int) -> tuple[Any, str]:
        wid = f"w{index}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
        actor = remote.remote(
            spec,
            study.study_name,
            str(loaded.path),
            overrides,
            str(cache_dir) if cache_dir else None,
            threads,
            seed + 1 + index,
            wid,
            str(timings_path.parent),  # the run directory: ticket point files (dse.tickets)
        )
        return actor, wid

    pool = [start(i) for i in range(workers)]
    idle = list(range(workers))
    inflight: dict[Any, int] = {}
    submitted: dict[Any, float] = {}
    deadline = None if timeout is None else time.time() + timeout
    states = budget_states(study)
    complete, failed_before = states.get("COMPLETE", 0), states.get("FAIL", 0)
    max_failures = max(10, n_trials)
    bar = Progress(n_trials, complete, opts.progress)
    last_check = 0.0
    stale, beat = stale_seconds(), heartbeat_seconds()
    quiet_until = 0.0

    def replace(i: int) -> None:
        """Kill worker ``i`` (if it still lives) and start a fresh one in its place."""
        try:
            ray.kill(pool[i][0])
        except Exception as exc:  # already gone
            log.debug("kill %s: %s", pool[i][1], exc)
        pool[i] = start(i)

    def check_stale() -> None:
        """Fail + re-queue trials whose worker is gone or silent; replace silent workers."""
        live = {w for _, w in pool}
        silent = {
            str(t.user_attrs.get("worker"))
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if time.time() - float(t.user_attrs.get("heartbeat", time.time())) > stale
        }
        recover_orphans(study, stale, live)
        for ref, i in list(inflight.items()):
            if pool[i][1] in silent:  # stalled (SIGSTOP, swapping): its trial is retried
                del inflight[ref]
                submitted.pop(ref, None)
                replace(i)
                idle.append(i)

    try:
        while True:  # ``states`` is read once per pass, by the progress bar's update below
            complete = states.get("COMPLETE", 0)
            # no new trial after the timeout, or once something fails every trial
            stop_starting = (deadline is not None and time.time() > deadline) or (
                states.get("FAIL", 0) - failed_before >= max_failures
            )
            while idle and not stop_starting and complete + len(inflight) < n_trials:
                i = idle.pop()
                ref = pool[i][0].run_one.remote()
                inflight[ref] = i
                submitted[ref] = time.time()
            if not inflight:
                break  # the bar's final line is drawn once, by close() below
            bar.draw()
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                i = inflight.pop(ref)
                sent = submitted.pop(ref, time.time())
                try:
                    done = ray.get(ref)
                    _log_timings(timings_path, done, pool[i][1], sent, time.time())
                except ray.exceptions.RayActorError:
                    dead = pool[i][1]
                    recover_orphans(study, stale, {w for _, w in pool if w != dead})
                    pool[i] = start(i)
                except ray.exceptions.RayError as err:  # the task raised (RayTaskError...)
                    cause = getattr(err, "cause", None)
                    if isinstance(cause, StorageOutage):
                        raise StorageOutage(str(cause)) from None
                    _record_task_error(study, pool[i][1], cause or err)
                    replace(i)
                idle.append(i)
            now = time.time()
            if last_check and now - last_check > max(stale / 2, 3 * beat):
                quiet_until = now + 3 * beat  # the driver itself was blocked (storage down):
                last_check = now  # give the heartbeats time to catch up before judging them
            elif now - last_check > beat and now >= quiet_until:
                check_stale()
                last_check = now
            states = bar.update(study)
    finally:
        bar.close()
        for actor, _ in pool:
            ray.kill(actor)


def _record_task_error(study: optuna.Study, worker: str, error: BaseException) -> None:
    """Fail + re-queue the RUNNING trial of ``worker`` with the task's error as the reason."""
    reason = f"worker {worker} raised {type(error).__name__}: {error}".strip()
    log.warning("%s", reason[:500])
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("worker") == worker:
            fail_trial(study, t, reason[:2000] + "; retried")


def _log_timings(
    path: Path, done: dict[str, Any], worker: str, submitted: float, received: float
) -> None:
    """Append one trial's wall-clock anatomy to ``path`` (JSON lines; best effort)."""
    row = {
        **done,
        "worker": worker,
        "submitted": submitted,
        "received": received,
        "round_trip_seconds": received - submitted,
        "ray_overhead_seconds": received - submitted - float(done.get("seconds", 0.0)),
    }
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    except OSError:
        pass  # a diagnostics file never stops the study


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
        f"\n{states.get('COMPLETE', 0)} complete, {states.get('FAIL', 0)} failed trials in "
        f"{summary['wall_seconds']:.0f} s; results in {summary['run_dir']}\n"
        f"inspect: optuna-dashboard --host 127.0.0.1 {summary['storage']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
