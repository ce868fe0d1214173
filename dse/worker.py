"""A search worker: a Ray actor that runs one Optuna trial at a time (ask -> train, prune,
score -> tell) against the shared storage.

The driver (``dse.search``) decides how many trials may start, so the global budget is exact;
the worker only asks, runs and tells. While a trial runs, a thread stamps a ``heartbeat`` user
attribute on it so that the driver can fail (and retry) trials whose worker has vanished, with
any storage (Optuna's own heartbeat exists only for RDB storages). The heartbeat outlives
storage hiccups and stops only when its trial is finished; a trial the driver has already taken
over (failed and re-queued while this worker was stalled) is logged, not raised, so that a late
worker never ends the search.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from dse.cache import TicketCache
from dse.design import DesignPoint
from dse.resilience import OUTAGE_ENV, STALE_ENV, StorageOutage, heartbeat_seconds
from dse.space import CategoricalParam, FloatParam, IntParam, LoadedSpace, Space, load_space
from dse.storage import open_storage
from dse.trial import TrialResult, load_splits, run_trial

HEARTBEAT_SECONDS = 5.0
"""The longest heartbeat period; a smaller ``DSE_STALE_SECONDS`` shortens it (see
:func:`dse.resilience.heartbeat_seconds`)."""

log = logging.getLogger("dse.worker")


def distributions(space: Space) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna distributions of the space's parameters."""
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, spec in space.params.items():
        if isinstance(spec, IntParam):
            out[name] = optuna.distributions.IntDistribution(
                spec.low, spec.high, step=spec.step, log=spec.log
            )
        elif isinstance(spec, FloatParam):
            out[name] = optuna.distributions.FloatDistribution(
                spec.low, spec.high, step=spec.step, log=spec.log
            )
        else:
            assert isinstance(spec, CategoricalParam)
            out[name] = optuna.distributions.CategoricalDistribution(spec.choices)
    return out


def constraint_values(space: Space, metrics: dict[str, float]) -> list[float]:
    """Optuna convention: a value <= 0 means the constraint is satisfied."""
    out = []
    for c in space.constraints:
        value = metrics[c.metric]
        out.append(value - c.max if c.max is not None else (c.min or 0.0) - value)
    return out


def make_sampler(space: Space, seed: int) -> optuna.samplers.BaseSampler:
    """The space's sampler, seeded. Constraints reach it through ``trial.set_constraint``."""
    spec = space.sampler
    startup = spec.n_startup_trials if spec.n_startup_trials is not None else 10
    if spec.name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=spec.population_size or 50, seed=seed)
    if spec.name == "nsga3":
        return optuna.samplers.NSGAIIISampler(population_size=spec.population_size or 50, seed=seed)
    if spec.name in ("tpe", "ticket"):  # workers replace "ticket" (dse.ticket_sampler)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True)
    if spec.name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if spec.name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def trial_attrs(result: TrialResult) -> dict[str, Any]:
    """User attributes stored on a complete trial (what the dashboard and CSVs show)."""
    p = result.point
    return {
        "metrics": result.metrics,
        **p.attrs(),
        "sparsity": result.metrics["sparsity"],
        "utilization": result.metrics["utilization"],
        "cache_ticket": result.cache["ticket"],
        "cache_dense": result.cache["dense"],
        "train_seconds": result.timings["train_seconds"],
        "total_seconds": result.timings["total_seconds"],
        "timings": result.timings,
        "round_table": [
            {
                "round": r.round,
                "sparsity": r.sparsity,
                "accuracy": r.accuracy,
                "utilization": r.utilization,
                "latency": r.latency,
                "energy": r.energy,
            }
            for r in result.rounds
        ],
        "layers": [
            {
                "name": layer.name,
                "shape": layer.shape,
                "sparsity": layer.sparsity,
                "utilization": layer.utilization,
                "work": layer.work,
                "idle": layer.idle,
                "latency": layer.latency,
                "cycles": layer.cycles,
                "bound": layer.bound,
                "energy_pj": layer.energy_pj["total"],
            }
            for layer in result.report.layers
        ],
    }


def _ray_node_id() -> str:
    """The Ray node this worker runs on ("" outside Ray)."""
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else ""
    except Exception:
        return ""


class _Heartbeat:
    """Stamp ``heartbeat`` (unix time) on a running trial every few seconds.

    A failed stamp (storage restarting, outage) is logged and retried with backoff, never the
    end of the thread: it stops when told to or when its trial is finished (the storage refuses
    updates to a finished trial, e.g. one the driver failed after a stall)."""

    def __init__(self, study: optuna.Study, trial_id: int, every: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(study, trial_id, every), daemon=True
        )

    def _run(self, study: optuna.Study, trial_id: int, every: float) -> None:
        wait = every
        while not self._stop.wait(wait):
            try:
                study._storage.set_trial_user_attr(trial_id, "heartbeat", time.time())
                wait = every
            except optuna.exceptions.UpdateFinishedTrialError:
                return  # finished (by this worker, or taken over by the driver)
            except Exception as exc:
                log.warning("heartbeat of trial %d not stored (%s); retrying", trial_id, exc)
                wait = min(wait * 2, 2 * every)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Worker:
    """Runs trials for one study; wrapped as a Ray actor by ``dse.search``."""

    def __init__(
        self,
        storage: str,
        study_name: str,
        space_path: str,
        overrides: list[str],
        cache_dir: str | None,
        threads: int,
        seed: int,
        worker_id: str,
        run_dir: str | None = None,
    ) -> None:
        import torch

        from dse.tickets import TicketSpace, startup_by_proposals

        t0 = time.perf_counter()
        torch.set_num_threads(threads)
        self.threads = threads
        self.loaded: LoadedSpace = load_space(Path(space_path), overrides)
        self.space = self.loaded.space
        self.study = optuna.load_study(
            study_name=study_name,
            storage=open_storage(storage),
            sampler=make_sampler(self.space, seed),
        )
        self.cache = TicketCache(cache_dir) if cache_dir else None
        self.dists = distributions(self.space)
        self.worker_id = worker_id
        self.node = socket.gethostname()
        t_data = time.perf_counter()
        load_splits(DesignPoint.build(self.loaded, {}))  # once per worker, not per trial
        self.init_data_seconds = time.perf_counter() - t_data
        # torch imports its compiler stack (~1.5 s) on the first optimizer; pay it here, once,
        # not inside the first trial's timings
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])
        self.ray_node = _ray_node_id()
        # ticket-centric (dse.tickets) when the run directory and a ticket cache are given
        self.run_dir = Path(run_dir) if run_dir else None
        derive = self.space.sampler.derive and self.run_dir and self.cache
        self.tickets = TicketSpace(self.loaded) if derive else None
        if self.tickets is not None and self.space.sampler.name == "ticket":
            from dse.ticket_sampler import TicketSampler

            assert self.run_dir is not None and self.cache is not None
            self.study.sampler = TicketSampler(self.tickets, self.run_dir, self.cache, seed)
        elif self.tickets is not None:  # start-up counted in proposals, not derived trials
            self.study.sampler = startup_by_proposals(self.study.sampler, self.space, seed)
        self.init_seconds: float | None = time.perf_counter() - t0  # reported with trial 1

    def score_ticket(self, assignments: dict[str, Any]) -> dict[str, Any]:
        """Train (once) and score the ticket serving ``assignments`` (the unit of work of
        the exhaustive mode); returns its key, whether it was computed now and its cost."""
        from dse.tickets import TicketSpace, score_ticket

        assert self.run_dir is not None
        t0 = time.perf_counter()
        ts = self.tickets or TicketSpace(self.loaded)
        scored = score_ticket(
            ts, assignments, self.run_dir, cache=self.cache, threads=self.threads, study=self.study
        )
        return {
            "ticket": scored.doc["ticket"],
            "computed": scored.computed,
            "points": len(scored.doc["rows"]),
            "train_seconds": scored.doc["train_seconds"],
            "seconds": time.perf_counter() - t0,
        }

    def run_one(self) -> dict[str, Any]:
        """Ask, run and tell one trial; returns ``{"number", "state", "seconds"}`` plus where
        the worker's time went (``ask``/``attrs``/``tell`` storage round-trips, the trial's own
        timings, and the actor's start-up with its first trial)."""
        t0 = time.perf_counter()
        out = self._run_one()
        out["seconds"] = time.perf_counter() - t0
        if self.init_seconds is not None:
            out["init_seconds"], out["init_data_seconds"] = (
                self.init_seconds,
                self.init_data_seconds,
            )
            self.init_seconds = None
        return out

    def _run_one(self) -> dict[str, Any]:
        clock = time.perf_counter
        t0 = clock()
        trial = self.study.ask(self.dists)
        t_ask = clock()
        trial.set_user_attr("worker", self.worker_id)
        trial.set_user_attr("node", self.node)
        trial.set_user_attr("ray_node", self.ray_node)
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("heartbeat", time.time())
        t_attrs = clock()
        timings: dict[str, float] = {
            "ask_seconds": t_ask - t0,
            "attrs_seconds": t_attrs - t_ask,
        }
        try:
            with _Heartbeat(self.study, trial._trial_id, heartbeat_seconds()):
                params = dict(trial.params)
                if self.tickets is not None and self.run_dir is not None:
                    from dse.tickets import answer_proposal

                    params = answer_proposal(
                        self.tickets, trial, self.run_dir, self.cache, self.threads, timings
                    )
                assignments = {**params, "train.num_threads": self.threads}
                point = DesignPoint.build(self.loaded, assignments)
                t_run = clock()
                timings["build_seconds"] = t_run - t_attrs - timings.get("ticket_seconds", 0.0)
                result = run_trial(point, cache=self.cache)
                timings["run_trial_seconds"] = clock() - t_run
                timings.update({f"trial_{k}": v for k, v in result.timings.items()})
            t_record = clock()
            for key, value in trial_attrs(result).items():
                trial.set_user_attr(key, value)
            if self.space.constraints:
                bounds = constraint_values(self.space, result.metrics)
                trial.set_user_attr("constraint", bounds)
                for c, value in zip(self.space.constraints, bounds, strict=True):
                    trial.set_constraint(
                        f"{c.metric}_{'max' if c.max is not None else 'min'}", value
                    )
            values = [result.metrics[o.metric] for o in self.space.objectives]
            if not all(math.isfinite(v) for v in values):
                raise FloatingPointError(f"non-finite objective values {values}")
            t_tell = clock()
            timings["attrs_seconds"] += t_tell - t_record
            self.study.tell(trial, values)
            timings["tell_seconds"] = clock() - t_tell
            state = TrialState.COMPLETE
        except StorageOutage:
            raise  # the driver stops the search: nothing can be recorded
        except Exception as exc:
            return {"number": trial.number, **self._record_failure(trial, exc), **timings}
        return {"number": trial.number, "state": state.name, **timings}

    def _record_failure(self, trial: optuna.Trial, exc: Exception) -> dict[str, Any]:
        """Mark the trial FAIL with the reason; if the storage refuses (the driver already took
        the trial over, or it cannot be written), log it and report instead of raising."""
        if isinstance(exc, optuna.exceptions.UpdateFinishedTrialError):
            log.warning("trial %d was taken over by the driver meanwhile: %s", trial.number, exc)
            return {"state": "TAKEN_OVER", "error": str(exc)[:500]}
        reason = f"{type(exc).__name__}: {exc}".strip()
        try:
            trial.set_user_attr("fail_reason", reason[:2000])
            trial.set_user_attr("traceback", traceback.format_exc()[-4000:])
            self.study.tell(trial, state=TrialState.FAIL)
        except StorageOutage:
            raise
        except Exception as second:
            log.warning(
                "trial %d failed (%s) and could not be recorded: %s", trial.number, reason, second
            )
            taken = isinstance(second, optuna.exceptions.UpdateFinishedTrialError)
            return {"state": "TAKEN_OVER" if taken else "UNRECORDED", "error": reason[:500]}
        return {"state": TrialState.FAIL.name, "error": reason[:500]}


def remote_worker(cpus: float, gpus: float) -> Any:
    """:class:`Worker` as a Ray actor class with one trial's resources. The fault limits set in
    this process's environment travel with it: workers on other nodes do not inherit it."""
    import ray

    settings = {k: os.environ[k] for k in (STALE_ENV, OUTAGE_ENV) if os.environ.get(k)}
    return ray.remote(Worker).options(
        num_cpus=cpus,
        num_gpus=gpus,
        max_restarts=0,
        **({"runtime_env": {"env_vars": settings}} if settings else {}),
    )


def worker_starter(
    cpus: float,
    gpus: float,
    spec: str,
    study_name: str,
    loaded: LoadedSpace,
    overrides: list[str],
    cache_dir: Path | None,
    run_dir: Path,
    prefix: str,
) -> Callable[[int], tuple[Any, str]]:
    """How a driver starts (and replaces) its worker ``index``: a :class:`Worker` actor with
    one trial's resources, seeded from the sampler's seed plus ``1 + index``, with the run
    directory (ticket point files, :mod:`dse.tickets`); returns ``(actor, worker id)``, the id
    being ``<prefix><index>-<driver pid>-<clock>``."""
    remote = remote_worker(cpus, gpus)
    threads = max(1, int(cpus))
    seed = loaded.space.sampler.seed_of(loaded.space.seed)

    def start(index: int) -> tuple[Any, str]:
        wid = f"{prefix}{index}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
        actor = remote.remote(
            spec,
            study_name,
            str(loaded.path),
            overrides,
            str(cache_dir) if cache_dir else None,
            threads,
            seed + 1 + index,
            wid,
            str(run_dir),
        )
        return actor, wid

    return start
