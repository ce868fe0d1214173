"""Exact mode (``sampler: {name: exhaustive}``): every design point of a finite space, each
distinct ticket trained exactly once.

The space's grid (int, categorical and stepped-float parameters) is grouped by ticket
(:class:`dse.tickets.TicketSpace`); the tickets are the unit of work, spread over the Ray
workers; each worker trains its ticket with the space's largest ``pruning.rounds`` and scores
every design point it serves. Tickets whose point file exists are skipped, so an interrupted
run resumes without retraining (a ticket trained but not yet scored is also read back from the
ticket cache). Because a point on the global front is non-dominated among its own ticket's
points, the derived trials added per ticket make ``study.best_trials`` the exact front.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import optuna

from accelerator import ConfigError
from dse.resilience import StorageOutage
from dse.space import LoadedSpace
from dse.tickets import TicketSpace, read_ticket


def plan(loaded: LoadedSpace) -> tuple[TicketSpace, dict[str, dict[str, Any]]]:
    """The space's tickets (key -> assignments that train it); ConfigError for a space with a
    continuous parameter, naming it."""
    ts = TicketSpace(loaded)
    continuous = ts.continuous()
    if continuous:
        raise ConfigError(
            loaded.path,
            f"params.{continuous[0]}",
            "is a continuous float: the exhaustive sampler needs a finite space "
            "(int, categorical, or float with a step)",
        )
    return ts, ts.tickets()


def exhaustive_plan(
    loaded: LoadedSpace, run_dir: Path, states: dict[str, int], n_trials: int
) -> tuple[dict[str, dict[str, Any]] | None, bool]:
    """(the tickets of an exhaustive space, or None for a sampled one; whether the run has
    nothing left to do: every ticket scored, or ``n_trials`` proposed trials complete)."""
    if loaded.space.sampler.name != "exhaustive":
        return None, states.get("COMPLETE", 0) >= n_trials
    _, tickets = plan(loaded)
    return tickets, all(read_ticket(run_dir, key) is not None for key in tickets)


def drive_exhaustive(
    study: optuna.Study,
    loaded: LoadedSpace,
    opts: Any,
    overrides: list[str],
    spec: str,
    cache_dir: Path | None,
    workers: int,
    run_dir: Path,
    tickets: dict[str, dict[str, Any]],
) -> dict[str, int]:
    """Train and score every ticket not yet in ``run_dir`` on up to ``workers`` Ray actors
    (``opts``: the search's options, for resources and the progress bar); a bar counts
    tickets, with an ETA. Returns ``{"tickets", "done_before", "trained_now", "failed"}`` (failed:
    tickets still unscored after three attempts)."""
    import ray

    from dse.worker import worker_starter

    start = worker_starter(
        opts.cpus_per_trial,
        opts.gpus_per_trial,
        spec,
        study.study_name,
        loaded,
        overrides,
        cache_dir,
        run_dir,
        "x",
    )
    progress = bool(opts.progress)

    todo = [a for key, a in tickets.items() if read_ticket(run_dir, key) is None]
    done_before = len(tickets) - len(todo)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=len(tickets),
            initial=done_before,
            unit="ticket",
            desc="tickets",
            file=sys.stderr,
            dynamic_ncols=True,
        )
    n_workers = max(1, min(workers, len(todo)))
    pool = [start(i)[0] for i in range(n_workers)] if todo else []
    idle = list(range(len(pool)))
    inflight: dict[Any, tuple[int, dict[str, Any]]] = {}
    queue = list(reversed(todo))
    attempts: dict[int, int] = {}
    trained = 0
    try:
        while queue or inflight:
            while idle and queue:
                i = idle.pop()
                a = queue.pop()
                inflight[pool[i].score_ticket.remote(a)] = (i, a)
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                i, a = inflight.pop(ref)
                try:
                    done = ray.get(ref)
                    trained += bool(done["computed"])
                    if bar is not None:  # the last ticket's line is drawn once, by close()
                        bar.n += 1
                        if queue or inflight:
                            bar.refresh()
                except ray.exceptions.RayActorError:
                    pool[i] = start(i)[0]
                    _retry(queue, attempts, a)
                except ray.exceptions.RayError as exc:  # the task raised (RayTaskError...)
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, StorageOutage):
                        raise StorageOutage(str(cause)) from None
                    print(f"ticket failed: {cause or exc!r}", file=sys.stderr)
                    ray.kill(pool[i])
                    pool[i] = start(i)[0]
                    _retry(queue, attempts, a)
                idle.append(i)
    finally:
        if bar is not None:
            bar.close()
        for actor in pool:
            ray.kill(actor)
    failed = sum(1 for key in tickets if read_ticket(run_dir, key) is None)
    return {
        "tickets": len(tickets),
        "done_before": done_before,
        "trained_now": trained,
        "failed": failed,
    }


def _retry(queue: list[dict[str, Any]], attempts: dict[int, int], a: dict[str, Any]) -> None:
    """Re-queue a ticket whose worker died or failed, at most three attempts in all."""
    key = id(a)
    attempts[key] = attempts.get(key, 1) + 1
    if attempts[key] <= 3:
        queue.insert(0, a)
