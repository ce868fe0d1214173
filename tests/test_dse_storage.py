"""Storage under concurrency and faults: a real PostgreSQL server (CI starts one; restarted and
stopped here with ``pg_ctl``) and the default JournalStorage with 8 workers; checked from a fresh
process."""

from __future__ import annotations

import glob
import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from test_dse_search import search_command, small_space

ROOT = Path(__file__).resolve().parents[1]
CHECK = """
import json, sys, optuna
from dse.storage import open_storage
study = optuna.load_study(study_name=sys.argv[2], storage=open_storage(sys.argv[1]))
trials = study.get_trials(deepcopy=False)
print(json.dumps({"numbers": [t.number for t in trials],
                  "states": [t.state.name for t in trials]}))
"""


def check_from_fresh_process(storage: str, study: str) -> dict[str, list[object]]:
    out = subprocess.run(
        [sys.executable, "-c", CHECK, storage, study],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, list[object]] = json.loads(out.stdout)
    return result


def run_search(space: Path, run: Path, *extra: str) -> None:
    cmd = search_command(space, run, *extra)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def assert_consistent(trials: dict[str, list[object]], budget: int) -> None:
    numbers = trials["numbers"]
    assert len(numbers) == len(set(numbers)), "duplicated trial numbers"
    assert sorted(numbers) == list(range(len(numbers))), "lost trial numbers"
    assert trials["states"].count("COMPLETE") == budget, "budget not exact"
    assert "RUNNING" not in trials["states"] and "WAITING" not in trials["states"]


def postgres_url() -> str:
    url = os.environ.get("DSE_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must provide a PostgreSQL server (DSE_TEST_POSTGRES_URL, .ci/run)")
        pytest.skip("no PostgreSQL server: set DSE_TEST_POSTGRES_URL (see .ci/postgres.sh)")
    return url


def test_multi_worker_search_on_postgresql(tmp_path: Path) -> None:
    url = postgres_url()
    study = f"pg-{uuid.uuid4().hex[:8]}"
    run_search(
        small_space(tmp_path),
        tmp_path / "run",
        "--storage",
        url,
        "--study",
        study,
        "--workers",
        "2",
        "--n-trials",
        "6",
    )
    assert_consistent(check_from_fresh_process(url, study), 6)


def test_eight_workers_on_the_journal_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_search(small_space(tmp_path), run, "--workers", "8", "--n-trials", "16")
    journal = f"journal:{(run / 'study.journal').resolve()}"
    assert_consistent(check_from_fresh_process(journal, "digits-default"), 16)


def pg_ctl(action: str) -> None:
    """``pg_ctl stop|start|restart`` on the server ``.ci/postgres.sh`` started (its data dir is
    ``DSE_TEST_POSTGRES_DATA``, else the one ``/tmp/dse-pg.datadir`` names)."""
    data = os.environ.get("DSE_TEST_POSTGRES_DATA") or Path("/tmp/dse-pg.datadir").read_text()
    data = data.strip()
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))
    cmd = [f"{bins[-1]}/pg_ctl", "-D", f"{data}/db", "-l", f"{data}/log", "-m", "fast", "-w"]
    if action == "start":  # the port and address were options of the first start: reuse them
        args = shlex.split(Path(f"{data}/db/postmaster.opts").read_text())[1:]
        i = args.index("-D")
        cmd += ["-o", shlex.join(args[:i] + args[i + 2 :])]
    subprocess.run(["runuser", "-u", "postgres", "--", *cmd, action], check=True, timeout=120)


def complete_on(url: str, study: str) -> int:
    try:
        trials = check_from_fresh_process(url, study)
    except subprocess.CalledProcessError:
        return 0
    return trials["states"].count("COMPLETE")


def wait_complete(url: str, study: str, n: int, timeout: float) -> None:
    end = time.time() + timeout
    while complete_on(url, study) < n:
        assert time.time() < end, f"fewer than {n} complete trials after {timeout} s"
        time.sleep(1)


@pytest.mark.slow
def test_postgresql_restart_mid_search_loses_nothing(tmp_path: Path) -> None:
    """``pg_ctl restart`` after 2 of 6 trials: the search retries and finishes, exact budget."""
    url = postgres_url()
    study = f"pg-restart-{uuid.uuid4().hex[:8]}"
    extra = ("--storage", url, "--study", study, "--workers", "2", "--n-trials", "6")
    cmd = search_command(small_space(tmp_path), tmp_path / "run", *extra)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_complete(url, study, 2, 300)
        pg_ctl("restart")
        _, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err.decode()[-3000:]
    final = check_from_fresh_process(url, study)
    assert_consistent(final, 6)
    assert "FAIL" not in final["states"], final  # nothing had to be retried


@pytest.mark.slow
def test_postgresql_down_past_the_limit_stops_and_resumes(tmp_path: Path) -> None:
    """The server stops for longer than ``DSE_STORAGE_OUTAGE_SECONDS``: exit 1 with one line
    naming the storage (password redacted); once it is back the same command finishes."""
    url = postgres_url()
    study = f"pg-down-{uuid.uuid4().hex[:8]}"
    extra = ("--storage", url, "--study", study, "--workers", "2", "--n-trials", "4")
    cmd = search_command(small_space(tmp_path), tmp_path / "run", *extra)
    env = {**os.environ, "DSE_STORAGE_OUTAGE_SECONDS": "8"}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        wait_complete(url, study, 1, 300)
        pg_ctl("stop")
        try:
            _, err = proc.communicate(timeout=300)
        finally:
            pg_ctl("start")
    finally:
        proc.kill()
        proc.wait()
    last = err.decode().strip().splitlines()[-1]
    assert proc.returncode == 1, err.decode()[-3000:]
    assert last.startswith("error: storage postgresql://dse:***@") and "unreachable for 8 s" in last
    assert "re-run the same command" in last and "dsetest" not in err.decode()
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_consistent(check_from_fresh_process(url, study), 4)
