"""The driver loop of a sampled search: keeps ``workers`` trials in flight on Ray actors until
the budget of complete trials is reached (or the timeout), with a progress bar.

The driver owns the budget: it starts a trial on a worker only while ``complete + in flight <
n_trials`` (counting COMPLETE trials in the storage), so the budget is exact however many
workers run. Failed trials do not count; a trial whose worker died (Ray reports the actor dead,
or its heartbeat goes stale) is marked FAIL and re-queued with the same parameters
(:func:`fail_trial`, :func:`recover_orphans`). A worker's task error is recorded against its
trial and the worker replaced; a :class:`dse.resilience.StorageOutage` stops the search.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from dse.resilience import StorageOutage, heartbeat_seconds, stale_seconds
from dse.space import LoadedSpace
from dse.study import SearchOptions
from dse.tables import pareto_trials
from dse.tickets import budget_states
from dse.worker import worker_starter

TIMINGS_FILE = "timings.jsonl"
"""Per-trial wall-clock anatomy written into the run directory (see :func:`drive`)."""

log = logging.getLogger("dse.search")


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


def drive(
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

    start = worker_starter(
        opts.cpus_per_trial,
        opts.gpus_per_trial,
        spec,
        study.study_name,
        loaded,
        overrides,
        cache_dir,
        timings_path.parent,  # the run directory
        "w",
    )
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
