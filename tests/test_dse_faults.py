"""Faults: a worker SIGKILLed mid-trial, the driver killed mid-run and the command re-run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from test_dse_search import search_command, small_space

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
