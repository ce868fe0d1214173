"""Fault injection: a worker SIGKILLed or stalled (SIGSTOP) mid-trial, the driver killed mid-run
and the command re-run, the private Ray's sockets and its fate when the driver is SIGKILLed, a
task error in a worker, a worker reporting a trial the driver took over, storage errors (transient,
lasting, a full or read-only disk under the journal), a corrupted cache entry, a changed space,
an absurd ``--workers``. PostgreSQL restarts are in ``test_dse_storage.py``."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import optuna
import pytest
from test_dse_search import search_argv, search_command, small_space

from dse.storage import open_storage, storage_spec

ROOT = Path(__file__).resolve().parents[1]


def command(space: Path, run: Path, n_trials: int, workers: int) -> list[str]:
    """The search command on the slow space (its epochs are not overridden by the quick set)."""
    cmd = search_command(space, run, "--n-trials", str(n_trials), "--workers", str(workers))
    cmd.remove("--set=train.epochs=1")
    return cmd


def start_driver(cmd: list[str]) -> subprocess.Popen[bytes]:
    """The driver in its own session, so that it and the Ray it starts can be killed together."""
    return subprocess.Popen(
        cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def trials(run: Path) -> list[optuna.trial.FrozenTrial]:
    journal = run / "study.journal"
    if not journal.exists():
        return []
    try:
        study = optuna.load_study(
            study_name="digits-default", storage=open_storage(storage_spec(None, run))
        )
    except KeyError:
        return []
    return study.get_trials(deepcopy=False)


def wait_for(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.3)
    return False


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


@pytest.fixture
def slow_space(tmp_path: Path) -> Path:
    """Trials long enough (several epochs) to be caught mid-flight."""
    import yaml

    space = small_space(tmp_path)
    data = yaml.safe_load(space.read_text())
    data["train"]["epochs"] = 3
    space.write_text(yaml.safe_dump(data))
    return space


def test_worker_killed_mid_trial_is_failed_and_retried(tmp_path: Path, slow_space: Path) -> None:
    run = tmp_path / "run"
    cmd = command(slow_space, run, 3, 1)
    proc = start_driver(cmd)
    try:
        assert wait_for(
            lambda: any(t.state.name == "RUNNING" and "pid" in t.user_attrs for t in trials(run)),
            120,
        )
        victim = next(t for t in trials(run) if t.state.name == "RUNNING")
        os.kill(int(victim.user_attrs["pid"]), signal.SIGKILL)
        assert proc.wait(300) == 0
    finally:
        kill_group(proc)
    final = trials(run)
    killed = next(t for t in final if t.number == victim.number)
    assert killed.state.name == "FAIL" and "died" in killed.user_attrs["fail_reason"]
    retried = [t for t in final if t.user_attrs.get("retry_of") == victim.number]
    assert retried and retried[0].params == victim.params
    assert sum(t.state.name == "COMPLETE" for t in final) == 3
    assert not [t for t in final if t.state.name in ("RUNNING", "WAITING")]


def test_driver_killed_then_rerun_resumes(tmp_path: Path, slow_space: Path) -> None:
    run = tmp_path / "run"
    cmd = command(slow_space, run, 4, 2)
    proc = start_driver(cmd)
    try:
        assert wait_for(
            lambda: (
                sum(t.state.name == "COMPLETE" for t in trials(run)) >= 1
                and any(t.state.name == "RUNNING" for t in trials(run))
            ),
            180,
        )
    finally:
        kill_group(proc)  # the driver and the Ray it started, mid-run
    before = {t.number: t.values for t in trials(run) if t.state.name == "COMPLETE"}
    assert before and len(before) < 4
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    final = trials(run)
    done = {t.number: t.values for t in final if t.state.name == "COMPLETE"}
    assert len(done) == 4
    assert all(done[n] == v for n, v in before.items())  # kept, not re-run
    assert not [t for t in final if t.state.name == "RUNNING"]
    orphans = [t for t in final if "previous driver" in t.user_attrs.get("fail_reason", "")]
    assert orphans


# --- helpers for the fault-injection suite ------------------------------------------------------


def marked_pids(mark: str) -> list[int]:
    """Live processes whose initial environment has ``DSE_TEST_MARK=mark`` (the driver and
    everything it started; zombies excluded)."""
    want = f"DSE_TEST_MARK={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if want in env.split(b"\0") and state != b"Z":
            found.append(int(entry))
    return found


def _decode_address(hex_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_ip)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # per-word little endian
    return ipaddress.ip_address(words)


def listening_sockets(pids: list[int]) -> list[tuple[int, str, int]]:
    """``(pid, address, port)`` of every TCP socket in LISTEN state owned by ``pids``."""
    owner: dict[int, int] = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    owner[int(link[8:-1])] = pid
        except OSError:
            continue
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            inode, state = int(parts[9]), parts[3]
            if state == "0A" and inode in owner:  # 0A: TCP_LISTEN
                hex_ip, hex_port = parts[1].split(":")
                out.append((owner[inode], str(_decode_address(hex_ip)), int(hex_port, 16)))
    return out


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def start_marked(cmd: list[str], mark: str, **env: str) -> subprocess.Popen[bytes]:
    """The driver with ``DSE_TEST_MARK`` (inherited by all it starts), in its own session."""
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "DSE_TEST_MARK": mark, **env},
    )


def state_count(run: Path, state: str) -> int:
    return sum(t.state.name == state for t in trials(run))


def assert_exact(run: Path, budget: int) -> None:
    """Budget exact, nothing left RUNNING/WAITING, trial numbers unique and contiguous."""
    final = trials(run)
    numbers = sorted(t.number for t in final)
    assert numbers == list(range(len(numbers)))
    assert sum(t.state.name == "COMPLETE" for t in final) == budget
    assert not [t for t in final if t.state.name in ("RUNNING", "WAITING")]


# --- loopback and process hygiene ----------------------------------------------------------------


def test_local_ray_listens_on_loopback_only_and_dies_with_its_driver(
    tmp_path: Path, slow_space: Path
) -> None:
    """While a search runs, every listening socket of its Ray processes is on loopback and token
    authentication is on; SIGKILL of the driver alone leaves no Ray process behind."""
    run, mark = tmp_path / "run", uuid.uuid4().hex
    proc = start_marked(command(slow_space, run, 3, 2), mark)
    try:
        assert wait_for(lambda: state_count(run, "RUNNING") >= 1, 120)
        pids = [p for p in marked_pids(mark) if p != proc.pid]
        names = {Path(f"/proc/{p}/comm").read_text().strip() for p in pids}
        assert {"gcs_server", "raylet"} <= names, names
        sockets = listening_sockets(pids)
        assert len(sockets) >= 4, sockets  # GCS, raylet, workers, agents all listen
        assert [s for s in sockets if not is_loopback(s[1])] == []
        raylet = next(p for p in pids if Path(f"/proc/{p}/comm").read_text().strip() == "raylet")
        env = Path(f"/proc/{raylet}/environ").read_bytes().split(b"\0")
        assert b"RAY_AUTH_MODE=token" in env
        os.kill(proc.pid, signal.SIGKILL)  # the driver only: its Ray must not survive it
        proc.wait(30)
        assert wait_for(lambda: not marked_pids(mark), 45), [  # a loaded machine is slow to reap
            Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in marked_pids(mark)
        ]
    finally:
        kill_group(proc)
        for pid in marked_pids(mark):
            os.kill(pid, signal.SIGKILL)


# --- a stalled worker ----------------------------------------------------------------------------


def test_stalled_worker_is_replaced_and_its_trial_retried(tmp_path: Path, slow_space: Path) -> None:
    """SIGSTOP a worker mid-trial past the stale limit, then SIGCONT: the search goes on, the
    stalled trial is failed and retried with the same parameters, the budget is exact."""
    run, mark = tmp_path / "run", uuid.uuid4().hex
    proc = start_marked(command(slow_space, run, 3, 2), mark, DSE_STALE_SECONDS="6")
    try:
        assert wait_for(
            lambda: any(t.state.name == "RUNNING" and "pid" in t.user_attrs for t in trials(run)),
            120,
        )
        victim = next(t for t in trials(run) if t.state.name == "RUNNING" and "pid" in t.user_attrs)
        pid = int(victim.user_attrs["pid"])
        os.kill(pid, signal.SIGSTOP)
        try:
            assert wait_for(
                lambda: (
                    next(t for t in trials(run) if t.number == victim.number).state.name == "FAIL"
                ),
                60,
            )
        finally:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass  # the driver replaced (killed) it: fine
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-2000:]
    finally:
        kill_group(proc)
    final = trials(run)
    stalled = next(t for t in final if t.number == victim.number)
    assert "no heartbeat" in stalled.user_attrs["fail_reason"]
    retried = [t for t in final if t.user_attrs.get("retry_of") == victim.number]
    assert retried and retried[0].params == victim.params
    assert_exact(run, 3)
    assert wait_for(lambda: not marked_pids(mark), 20)


# --- the worker path -----------------------------------------------------------------------------


def test_worker_reporting_a_trial_the_driver_took_over_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver fails (and re-queues) a trial while its worker still trains it; the worker's
    report is refused by the storage, logged, and ``run_one`` returns instead of raising."""
    import dse.worker as worker_module
    from dse.search import fail_trial
    from dse.worker import Worker

    space = small_space(tmp_path)
    spec = storage_spec(None, tmp_path)
    optuna.create_study(study_name="s", storage=open_storage(spec), directions=["maximize"] * 3)
    worker = Worker(spec, "s", str(space), ["train.epochs=1"], None, 1, 0, "w0")
    real = worker_module.run_trial

    def stalled_then_finished(point, cache=None):  # type: ignore[no-untyped-def]
        study = optuna.load_study(study_name="s", storage=open_storage(spec))
        running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        fail_trial(study, running[0], "no heartbeat for 150 s (worker lost); retried")
        return real(point, cache=cache)

    monkeypatch.setattr(worker_module, "run_trial", stalled_then_finished)
    out = worker.run_one()
    assert out["state"] == "TAKEN_OVER"
    final = optuna.load_study(study_name="s", storage=open_storage(spec)).trials
    assert final[0].state.name == "FAIL" and "no heartbeat" in final[0].user_attrs["fail_reason"]
    assert final[1].state.name == "WAITING"
    assert final[1].system_attrs["fixed_params"] == final[0].params


def test_heartbeat_survives_storage_errors_and_stops_when_finished() -> None:
    """Transient failures are retried; the thread ends only once its trial is finished."""
    from sqlalchemy.exc import OperationalError

    from dse.worker import _Heartbeat

    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        def set_trial_user_attr(self, trial_id: int, key: str, value: float) -> None:
            self.calls += 1
            if self.calls <= 2:
                raise OperationalError("UPDATE", {}, Exception("server closed the connection"))
            if self.calls >= 5:
                raise optuna.exceptions.UpdateFinishedTrialError("finished")

    class FakeStudy:
        _storage = Flaky()

    beat = _Heartbeat(FakeStudy(), 0, 0.02)  # type: ignore[arg-type]
    beat._thread.start()
    beat._thread.join(10)
    assert not beat._thread.is_alive() and FakeStudy._storage.calls == 5


class FlakyWorker:
    """A worker whose first task raises after taking a trial (a RayTaskError for the driver)."""

    def __init__(self, *args: object) -> None:
        from dse.worker import Worker

        self.inner = Worker(*args)  # type: ignore[arg-type]
        self.marker = Path(os.environ["DSE_TEST_FLAKY_MARKER"])

    def run_one(self) -> dict[str, object]:
        if not self.marker.exists():
            self.marker.touch()
            trial = self.inner.study.ask(self.inner.dists)
            trial.set_user_attr("worker", self.inner.worker_id)
            raise RuntimeError("injected fault after ask")
        return self.inner.run_one()


def test_a_task_error_is_recorded_and_the_search_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import ray

    import dse.search
    import dse.worker

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(dse.worker, "Worker", FlakyWorker)  # what remote_worker wraps
    monkeypatch.setenv("DSE_TEST_FLAKY_MARKER", str(tmp_path / "raised"))
    run = tmp_path / "run"
    argv = search_argv(small_space(tmp_path), run, "--n-trials", "2", "--workers", "1")
    assert dse.search.main(argv) == 0
    final = trials(run)
    failed = [t for t in final if t.state.name == "FAIL"]
    assert len(failed) == 1 and "injected fault after ask" in failed[0].user_attrs["fail_reason"]
    assert [t for t in final if t.user_attrs.get("retry_of") == failed[0].number]
    assert_exact(run, 2)


# --- storage errors ------------------------------------------------------------------------------


def test_transient_storage_errors_are_retried() -> None:
    from sqlalchemy.exc import OperationalError

    from dse.resilience import RetryingStorage

    inner = optuna.storages.InMemoryStorage()
    sid = inner.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "s")
    real, failures = inner.get_all_trials, [2]

    def flaky(*args: object, **kwargs: object) -> object:
        if failures[0]:
            failures[0] -= 1
            raise OperationalError("SELECT", {}, Exception("terminating connection"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    inner.get_all_trials = flaky  # type: ignore[method-assign]
    storage = RetryingStorage(inner, "postgresql://u:***@db/x", limit=30)
    assert storage.get_all_trials(sid) == [] and storage.retries == 2


def test_a_lasting_outage_names_the_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    from dse.resilience import RetryingStorage, StorageOutage

    inner = optuna.storages.InMemoryStorage()

    def down(*args: object) -> object:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    inner.get_all_studies = down  # type: ignore[method-assign]
    storage = RetryingStorage(inner, "postgresql://u:***@db/x", limit=0.5)
    t0 = time.time()
    with pytest.raises(StorageOutage) as err:
        storage.get_all_studies()
    assert 0.4 < time.time() - t0 < 10
    message = str(err.value)
    assert message.startswith("storage postgresql://u:***@db/x unreachable for 0.5 s (")
    assert "connection refused" in message
    assert "re-run the same command" in message


def test_a_finish_that_landed_before_the_connection_dropped_counts() -> None:
    """A retried ``tell`` whose first attempt committed is not an error."""
    from sqlalchemy.exc import OperationalError

    from dse.resilience import RetryingStorage

    inner = optuna.storages.InMemoryStorage()
    sid = inner.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "s")
    tid = inner.create_new_trial(sid)
    real, calls = inner.set_trial_state_values, [0]

    def lost_answer(*args: object) -> bool:
        calls[0] += 1
        done = real(*args)  # type: ignore[arg-type]
        if calls[0] == 1:
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))
        return done

    inner.set_trial_state_values = lost_answer  # type: ignore[method-assign]
    storage = RetryingStorage(inner, "db", limit=10)
    assert storage.set_trial_state_values(tid, optuna.trial.TrialState.COMPLETE, [1.0])
    assert inner.get_trial(tid).state.name == "COMPLETE"


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_journal_disk_read_only_or_full(tmp_path: Path, slow_space: Path, fault: str) -> None:
    """The journal's disk turns read-only (remount) or fills up mid-search: exit 1 with one
    line naming the journal, the study intact; re-run after the fix: the budget is exact."""
    disk = tmp_path / "disk-with-a-long-name-so-ray-keeps-its-own-temp-dir"
    _mount_tmpfs(disk, "64m")
    run = disk / "run"
    cmd = [*command(slow_space, run, 3, 2), "--cache", str(tmp_path / "cache")]
    filler = disk / "filler"
    try:
        proc = start_marked(cmd, uuid.uuid4().hex)
        try:
            assert wait_for(lambda: state_count(run, "COMPLETE") >= 1, 240)
            if fault == "read-only":  # a read-only layer over it (open files keep the old one)
                subprocess.run(["mount", "--bind", str(disk), str(disk)], check=True)
                subprocess.run(["mount", "-o", "remount,bind,ro", str(disk)], check=True)
            else:
                with open(filler, "wb") as f:
                    with pytest.raises(OSError):
                        while True:
                            f.write(b"\0" * (1 << 20))
                            f.flush()
            _, err = proc.communicate(timeout=300)
        finally:
            kill_group(proc)
        before = {t.number: t.values for t in trials(run) if t.state.name == "COMPLETE"}
        lines = err.decode().strip().splitlines()
        why = "Read-only file system" if fault == "read-only" else "No space left on device"
        assert proc.returncode == 1, err.decode()[-2000:]
        assert lines[-1].startswith("error: storage journal ") and why in lines[-1], lines
        assert "re-run the same command" in lines[-1]
        if fault == "read-only":
            subprocess.run(["umount", str(disk)], check=True)  # the read-only layer
        filler.unlink(missing_ok=True)
        again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400)
        assert again.returncode == 0, again.stderr[-2000:]
        done = {t.number: t.values for t in trials(run) if t.state.name == "COMPLETE"}
        assert all(done[n] == v for n, v in before.items())  # nothing lost
        assert_exact(run, 3)
    finally:
        while subprocess.run(["umount", "-l", str(disk)], capture_output=True).returncode == 0:
            pass


# --- cache, space, resources ---------------------------------------------------------------------


def test_corrupted_cache_entry_is_rebuilt_during_a_search(tmp_path: Path) -> None:
    from dse.cache import MAGIC

    run = tmp_path / "run"
    space = small_space(tmp_path)
    assert main_quiet(search_argv(space, run, "--n-trials", "1", "--workers", "1")) == 0
    entries = sorted((run / "cache").rglob("*.pt"))
    assert entries
    for entry in entries:  # flip a byte of every payload: the checksum no longer matches
        blob = bytearray(entry.read_bytes())
        blob[-1] ^= 0xFF
        entry.write_bytes(bytes(blob))
    assert main_quiet(search_argv(space, run, "--n-trials", "3", "--workers", "1")) == 0
    assert_exact(run, 3)
    for entry in sorted((run / "cache").rglob("*.pt")):
        assert entry.read_bytes().startswith(MAGIC)
        from dse.cache import TicketCache

        cache = TicketCache(run / "cache")
        assert cache._read(entry.stem) is not None and cache.corrupt_detected == 0


def main_quiet(argv: list[str]) -> int:
    from dse.search import main

    return main(argv)


def test_changed_space_is_refused_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dse.search import create_study
    from dse.space import load_space

    run = tmp_path / "run"
    space = small_space(tmp_path)
    spec = storage_spec(None, run)
    create_study(load_space(space, ["train.epochs=3"]), spec, "digits-default", 0)
    argv = search_argv(space, run, "--n-trials", "2")  # FAST sets train.epochs=1
    assert main_quiet(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.epochs: 3 -> 1" in err
    assert "--study" in err and "--out" in err and "--allow-changed-space" in err
    # budget, worker count, study name and sampler are not part of the space
    create_study(load_space(space, ["train.epochs=3", "n_trials=99"]), spec, "digits-default", 0)
    other = ["train.epochs=3", "sampler.name=nsga2", "sampler.seed=7"]
    create_study(load_space(space, other), spec, "digits-default", 0)
    # a study stored with its sampler (an older version) resumes too
    study = create_study(load_space(space, ["train.epochs=3"]), spec, "digits-default", 0)
    study.set_user_attr(
        "resolved_space", {**study.user_attrs["resolved_space"], "sampler": {"name": "tpe"}}
    )
    create_study(load_space(space, ["train.epochs=3"]), spec, "digits-default", 0)
    study = create_study(
        load_space(space, ["train.epochs=2"]), spec, "digits-default", 0, allow_changed_space=True
    )
    assert study.user_attrs["resolved_space"]["train"]["epochs"] == 2


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["--gpus-per-trial", "1"], "--gpus-per-trial: 1 GPUs per trial, but this machine offers"),
        (["--cpus-per-trial", "4096"], "--cpus-per-trial: 4096 CPUs per trial"),
    ],
)
def test_impossible_resources_exit_2(
    argv: list[str], phrase: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dse.local_ray import machine_resources

    if argv[0] == "--gpus-per-trial" and machine_resources()[1] > 0:
        pytest.skip("this machine has a GPU")
    assert main_quiet(search_argv(small_space(tmp_path), tmp_path / "r", *argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and phrase in err and "--workers" in err, err
    assert not (tmp_path / "r").exists()  # refused before anything was created


def test_absurd_workers_are_capped_to_the_machine_and_the_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dse.local_ray import machine_resources

    run = tmp_path / "run"
    argv = search_argv(small_space(tmp_path), run, "--n-trials", "2", "--workers", "100")
    assert main_quiet(argv) == 0
    err = capsys.readouterr().err
    expected = min(machine_resources()[0], 2)
    assert f"note: --workers 100 capped to {expected}" in err
    rows = (run / "timings.jsonl").read_text().splitlines()
    assert len({json.loads(r)["worker"] for r in rows}) <= expected
    assert_exact(run, 2)


@pytest.mark.parametrize(
    ("args", "workers", "note"),
    [
        ((None, 2, 0, 1.0, 0.0, 10), 2, None),  # default: what fits
        ((100, 2, 0, 1.0, 0.0, 3), 2, "2 CPUs / 1 per trial and 3 trials are left"),
        ((8, 2, 0, 0.25, 0.0, 500), 8, None),  # fractional CPUs: 8 share 2 cores
        ((8, 64, 2, 1.0, 1.0, 500), 2, "2 GPUs / 1"),
        ((4, 64, 0, 1.0, 0.0, 1), 1, "1 trials are left in the budget"),
    ],
)
def test_worker_plan(
    args: tuple[int | None, float, float, float, float, int], workers: int, note: str | None
) -> None:
    from dse.local_ray import plan_workers

    plan = plan_workers(*args, "the cluster")
    assert plan.workers == workers
    assert (plan.note is None) == (note is None)
    if note is not None:
        assert plan.note is not None and note in plan.note
        assert plan.note.startswith(f"note: --workers {args[0]} capped to {workers}: ")


def test_worker_plan_refuses_what_fits_nowhere() -> None:
    from accelerator import ConfigError
    from dse.local_ray import plan_workers

    with pytest.raises(
        ConfigError, match=r"--cpus-per-trial: 4 CPUs per trial, but the cluster offers 2 CPUs"
    ):
        plan_workers(None, 2, 0, 4.0, 0.0, 10, "the cluster")
    with pytest.raises(
        ConfigError, match=r"--gpus-per-trial: 0.5 GPUs per trial, but the cluster offers 0 GPUs"
    ):
        plan_workers(3, 16, 0, 1.0, 0.5, 10, "the cluster")
