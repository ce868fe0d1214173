"""Storage under concurrency: a real PostgreSQL server (CI starts one) and the default
JournalStorage with 8 workers; checked from a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
