"""The private local Ray of ``dse.search``: sized to the machine, reachable only from this
machine, authenticated, and never outliving its driver.

- **Size.** :func:`plan_workers` caps ``--workers`` by the CPUs this process may use
  (``os.sched_getaffinity``) divided by ``--cpus-per-trial``, by the GPUs (``torch.cuda``) divided
  by ``--gpus-per-trial``, and by the trials left in the budget; on a cluster by
  ``ray.cluster_resources()``. A request that fits no worker at all is refused (exit 2).
- **Loopback.** Ray 2.60 makes every server (GCS, raylet, core workers, dashboard and runtime-env
  agents, metrics) listen on the node IP; with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` that node
  IP is 127.0.0.1, so nothing listens on another interface.
- **Authentication.** Loopback is still reachable by other users of the same machine, so Ray's
  token authentication stays on (``RAY_AUTH_MODE=token``) with a random token per driver, kept in a
  0600 file in Ray's session directory (``RAY_AUTH_TOKEN_PATH``).
- **Reaper.** A small watchdog process, in its own session, holds the read end of a pipe whose
  write end only the driver has. However the driver ends (exit, exception, SIGTERM, SIGKILL) the
  kernel closes that end; the watchdog then kills every process started with this session's
  ``DSE_RAY_OWNER`` token in its environment (Ray's GCS, raylet, workers and agents inherit
  it), every descendant of those, and every process it saw carrying the token while the driver
  lived (it looks every ``WATCH_SECONDS``): the environment ``/proc`` shows for the raylet's
  dashboard and runtime-env agents can lose the token later, and such agents were seen to
  outlive a killed driver by minutes on a loaded machine. Then it removes a temporary session
  directory.

The watchdog is this file run as a script (standard library only, starts in milliseconds);
:func:`reaper` starts it.
"""

from __future__ import annotations

import math
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OWNER_ENV = "DSE_RAY_OWNER"
"""Environment variable marking every process of one private Ray (see :func:`reaper`)."""

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Set to 0, Ray takes 127.0.0.1 as the node IP and binds its servers there."""


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers run, and the note printed when fewer than asked."""

    workers: int
    note: str | None


def machine_resources() -> tuple[int, int]:
    """CPUs this process may run on, and visible GPUs."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    gpus = 0
    try:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - no usable CUDA runtime
        gpus = 0
    return cpus, gpus


def plan_workers(
    requested: int | None,
    cpus: float,
    gpus: float,
    cpus_per_trial: float,
    gpus_per_trial: float,
    remaining: int,
    where: str,
) -> WorkerPlan:
    """Workers that fit ``cpus``/``gpus`` of ``where`` ("this machine", "the cluster") and the
    ``remaining`` budget. ``requested`` None means "as many as fit". Raises ``ConfigError``
    (exit 2) naming the flag and what is offered when not even one worker fits."""
    from accelerator import ConfigError

    by_cpu = math.floor(cpus / cpus_per_trial + 1e-9)
    by_gpu = math.floor(gpus / gpus_per_trial + 1e-9) if gpus_per_trial > 0 else by_cpu
    if by_cpu < 1:
        raise ConfigError(
            "--cpus-per-trial",
            "",
            f"{cpus_per_trial:g} CPUs per trial, but {where} offers {cpus:g} CPUs: "
            f"not even one of --workers fits",
        )
    if by_gpu < 1:
        raise ConfigError(
            "--gpus-per-trial",
            "",
            f"{gpus_per_trial:g} GPUs per trial, but {where} offers {gpus:g} GPUs: "
            f"not even one of --workers fits",
        )
    fit = min(by_cpu, by_gpu)
    want = fit if requested is None else requested
    workers = max(1, min(want, fit, remaining))
    note = None
    if requested is not None and workers < requested:
        why = []
        if fit < requested:
            gpu = f", {gpus:g} GPUs / {gpus_per_trial:g}" if gpus_per_trial > 0 else ""
            why.append(f"{where} offers {cpus:g} CPUs / {cpus_per_trial:g} per trial{gpu}")
        if remaining < requested:
            why.append(f"{remaining} trials are left in the budget")
        note = f"note: --workers {requested} capped to {workers}: {' and '.join(why)}"
    return WorkerPlan(workers, note)


@contextmanager
def reaper(temp_dir: Path | None) -> Iterator[str]:
    """Start the watchdog; yield the owner token to put into Ray's environment. On exit (or
    the driver's death) the watchdog kills whatever of that Ray is left."""
    token = secrets.token_hex(16)
    read_end, write_end = os.pipe()  # not inheritable: only this process holds write_end
    env = {k: v for k, v in os.environ.items() if k != OWNER_ENV}
    cmd = [sys.executable, str(Path(__file__).resolve()), token, str(os.getpid())]
    if temp_dir is not None:
        cmd.append(str(temp_dir))
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a signal to the driver's process group spares it
            env=env,
            cwd="/",
        )
    finally:
        os.close(read_end)
    try:
        yield token
    finally:
        os.close(write_end)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - sweep stuck on a dying process
            pass


WATCH_SECONDS = 2.0
"""How often the watchdog notes the processes of its Ray while the driver lives."""


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a process from ``/proc/<pid>/stat``; None
    when it is gone. The start time tells a process from a later one that reused its pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # pid (comm) state ppid ... starttime: comm may hold spaces and parentheses
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[1]), int(fields[19])


def _parents() -> dict[int, int]:
    """Parent pid of every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            out[int(entry)] = st[0]
    return out


def owned_pids(token: str, spare: set[int]) -> list[int]:
    """Processes whose initial environment carries ``OWNER_ENV=token``, and their
    descendants."""
    mark = f"{OWNER_ENV}={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in spare:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if mark in environ.split(b"\0"):
            found.append(int(entry))
    if not found:
        return found
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    seen, todo = set(found), list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in seen and child not in spare:
                seen.add(child)
                todo.append(child)
    return sorted(seen)


def sweep(
    token: str, spare: set[int], seconds: float = 20.0, known: dict[int, int] | None = None
) -> int:
    """Kill the processes of ``token`` (and ``known``: pid -> start time, those seen owned
    earlier and still the same process) until no new one has turned up for a second, or for
    three seconds once something had to be killed (a dying raylet may still be starting an
    agent), or ``seconds``. Each process is signalled once: a killed process can take a while
    to disappear (a zombie until it is reaped), and signalling it again is wasted work on a
    machine where the next search may be starting."""
    signalled: set[tuple[int, int]] = set()
    quiet_since = time.monotonic()
    end = time.monotonic() + seconds
    known = known or {}
    while time.monotonic() < end:
        new = False
        for pid in sorted(set(owned_pids(token, spare)) | set(known)):
            st = _stat(pid)
            if st is None or (pid in known and st[1] != known[pid]):
                continue  # gone, or another process with a reused pid
            if (pid, st[1]) in signalled:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            signalled.add((pid, st[1]))
            new = True
        if new:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > (3.0 if signalled else 1.0):
            break
        time.sleep(0.1)
    return len(signalled)


def _watch(argv: list[str]) -> int:
    """The watchdog: wait for EOF on stdin (the driver is gone or done), then sweep."""
    token, driver = argv[0], int(argv[1])
    temp_dir = Path(argv[2]) if len(argv) > 2 else None
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the driver, not the reaper
    spare = {os.getpid(), driver}
    known: dict[int, int] = {}
    fd = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([fd], [], [], WATCH_SECONDS)
        if ready:
            if not os.read(fd, 65536):
                break
            continue
        for pid in owned_pids(token, spare):  # remembered: an agent's environment can be
            if (st := _stat(pid)) is not None:  # rewritten by its process title later
                known[pid] = st[1]
    sweep(token, spare, known=known)
    if temp_dir is not None and temp_dir.name.startswith("dse-ray-"):
        shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


@contextmanager
def private_env(temp_dir: Path, owner: str) -> Iterator[None]:
    """Environment of a private local Ray: loopback node IP, token authentication with a
    fresh token file, the owner mark; restored afterwards (tests run several in one process)."""
    temp_dir.mkdir(parents=True, exist_ok=True)
    token_file = temp_dir / "auth_token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    settings = {
        LOOPBACK_ENV: "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_file),
        OWNER_ENV: owner,
    }
    saved = {k: os.environ.get(k) for k in (*settings, "RAY_AUTH_TOKEN")}
    os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ.update(settings)
    patched = _refresh_ray_config(loopback=True)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _refresh_ray_config(loopback=patched)


def _refresh_ray_config(loopback: bool) -> bool:
    """Make an already imported Ray see the environment: its cached config and token, and
    the node-IP switch it reads once at import. Returns the switch's previous value."""
    import ray._private.ray_constants as constants
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    before = bool(constants.ENABLE_RAY_CLUSTER)
    constants.ENABLE_RAY_CLUSTER = not loopback
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    return not before


def init_kwargs(num_cpus: int, num_gpus: int, temp_dir: Path) -> dict[str, Any]:
    """``ray.init`` arguments of the private Ray."""
    return {
        "num_cpus": num_cpus,
        "num_gpus": num_gpus,
        "include_dashboard": False,
        "_temp_dir": str(temp_dir),
        "_node_ip_address": "127.0.0.1",
    }


if __name__ == "__main__":
    raise SystemExit(_watch(sys.argv[1:]))
