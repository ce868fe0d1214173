"""The lifecycle of a search run around its driver loop: the options (the command line as
data), one driver per run directory (:func:`run_lock`), the study created or resumed with a
check of its objectives and space (:func:`create_study`, :mod:`dse.space_guard`), the Ray
session joined or started (:func:`ray_session`; the private local Ray is sized to the
machine, bound to loopback, authenticated and reaped with its driver, :mod:`dse.local_ray`)
and the number of workers that fit it (:func:`plan_local`, :func:`plan_cluster`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from dse import local_ray, space_guard
from dse.space import LoadedSpace
from dse.storage import open_storage
from dse.worker import make_sampler


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
    for Ray's unix sockets (about 107 bytes), then a short one in the system temp dir, named
    after the run and this driver's pid. Per driver, because the reaper of a killed driver
    removes it: a re-run started at once must not share it."""
    inside = (run_dir / "ray").resolve()
    if len(str(inside)) <= 40:
        return inside
    digest = hashlib.sha1(str(inside).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / f"dse-ray-{digest}-{os.getpid()}"


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
    changed = [] if stored_space is None else space_guard.differences(stored_space, resolved)
    if changed:
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


def plan_local(opts: SearchOptions, remaining: int) -> int:
    """Workers of a private local Ray: what fits this machine and the remaining budget."""
    plan = local_ray.plan_workers(
        opts.workers, *local_ray.machine_resources(), opts.cpus_per_trial,
        opts.gpus_per_trial, remaining, "this machine",
    )  # fmt: skip
    if plan.note:
        print(plan.note, file=sys.stderr)
    return plan.workers


def plan_cluster(opts: SearchOptions, remaining: int) -> int:
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
