"""``python -m dse.search``: a real (small) study on a local Ray, resumed, inspected through
optuna-dashboard's HTTP API; failing trials; bad input."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from dse.search import main
from dse.storage import open_storage, storage_spec
from dse.worker import Worker

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set=train.epochs=1", "--set=pruning.rewind_epoch=1", "--set=model.width=0.5"]


def small_space(tmp_path: Path, **extra: Any) -> Path:
    """The default space with a quick schedule and a small parameter set, one design point per
    trial (the ticket-centric search is tested in test_dse_tickets.py)."""
    data = yaml.safe_load((ROOT / "search_spaces" / "default.yaml").read_text())
    data["accelerator"]["base"] = str(ROOT / "accelerator/configs/paper_16pe_k.yaml")
    data["params"] = {
        "accelerator.pe_array.rows": {"type": "int", "low": 1, "high": 4},
        "accelerator.dataflow": {"type": "categorical", "choices": ["K", "C"]},
        "pruning.balance": {"type": "categorical", "choices": ["none", "uticket"]},
        "pruning.rounds": {"type": "int", "low": 1, "high": 2},
    }
    data["sampler"] = {"name": "random", "derive": False}  # one design point per trial
    data.update(extra)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def search_argv(space: Path, run: Path, *extra: str) -> list[str]:
    """``dse.search`` arguments: ``space`` into ``run`` with the quick settings."""
    return ["--space", str(space), "--out", str(run), "--no-progress", *FAST, *extra]


def search_command(space: Path, run: Path, *extra: str) -> list[str]:
    """``python -m dse.search`` on ``space`` into ``run`` with the quick settings."""
    return [sys.executable, "-m", "dse.search", *search_argv(space, run, *extra)]


def load(run: Path, study: str = "digits-default") -> optuna.Study:
    return optuna.load_study(study_name=study, storage=open_storage(storage_spec(None, run)))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("search")
    run = tmp / "run"
    assert main(search_argv(small_space(tmp), run, "--n-trials", "4", "--workers", "2")) == 0
    return run


def test_budget_results_and_attributes(finished_run: Path) -> None:
    study = load(finished_run)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4  # exact budget with 2 workers
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    for t in complete:
        assert len(t.values) == 3
        for key in (
            "design_point",
            "metrics",
            "dataflow",
            "balance",
            "sparsity",
            "utilization",
            "cache_ticket",
            "train_seconds",
            "layers",
            "round_table",
            "node",
        ):
            assert key in t.user_attrs, key
        assert t.values[0] == t.user_attrs["metrics"]["val_accuracy"]
    for name in ("pareto.csv", "pareto.json", "trials.csv"):
        assert (finished_run / name).stat().st_size > 0
    assert list(finished_run.glob("*.png"))
    front = json.loads((finished_run / "pareto.json").read_text())["trials"]
    assert front and all("design_point" in f and "params" in f for f in front)


def test_timings_log_accounts_for_every_trial(finished_run: Path) -> None:
    rows = [json.loads(x) for x in (finished_run / "timings.jsonl").read_text().splitlines()]
    assert sorted(r["number"] for r in rows) == [0, 1, 2, 3]
    for r in rows:
        parts = r["ask_seconds"] + r["attrs_seconds"] + r["build_seconds"] + r["tell_seconds"]
        assert 0 < parts + r["run_trial_seconds"] <= r["seconds"] + 1e-6
        assert r["trial_train_seconds"] <= r["run_trial_seconds"]
        assert r["round_trip_seconds"] >= r["seconds"] and r["ray_overhead_seconds"] >= 0
    assert sum("init_seconds" in r for r in rows) == 2  # one start-up per worker


def test_resume_keeps_complete_trials(finished_run: Path, tmp_path: Path) -> None:
    before = {t.number for t in load(finished_run).trials if t.state.name == "COMPLETE"}
    argv = search_argv(small_space(tmp_path), finished_run, "--n-trials", "5", "--workers", "1")
    assert main(argv) == 0
    after = load(finished_run).trials
    done = {t.number for t in after if t.state.name == "COMPLETE"}
    assert before <= done and len(done) == 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dashboard_detail(run: Path, study: str = "digits-default") -> dict[str, Any]:
    """The study as optuna-dashboard's HTTP API serves it (a real dashboard process)."""
    port = _free_port()
    journal = run / "study.journal"
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "optuna-dashboard"),
            str(journal),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        data = None
        for _ in range(60):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    data = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.5)
        assert data is not None, "optuna-dashboard did not answer"
        studies = {s["study_name"]: s for s in data["study_summaries"]}
        sid = studies[study]["study_id"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{sid}", timeout=10) as r:
            detail: dict[str, Any] = json.loads(r.read())
        return detail
    finally:
        proc.terminate()
        proc.wait(10)


def test_optuna_dashboard_reads_the_study(finished_run: Path) -> None:
    detail = dashboard_detail(finished_run)
    assert len(detail["trials"]) >= 4
    assert detail["best_trials"], "the Pareto front is served"


def test_failing_trials_are_recorded_and_the_worker_goes_on(tmp_path: Path) -> None:
    space = small_space(tmp_path)
    data = yaml.safe_load(space.read_text())
    data["train"].update(optimizer="sgd", weight_decay=5e-4)
    data["params"] = {"train.lr": {"type": "categorical", "choices": [1.0e6]}}
    space.write_text(yaml.safe_dump(data))
    spec = storage_spec(None, tmp_path)
    optuna.create_study(study_name="s", storage=open_storage(spec), directions=["maximize"] * 3)
    worker = Worker(spec, "s", str(space), [], str(tmp_path / "cache"), 1, 0, "w0")
    out = worker.run_one()
    assert out["state"] == "FAIL"
    trial = optuna.load_study(study_name="s", storage=open_storage(spec)).trials[0]
    assert trial.state.name == "FAIL" and "Diverged" in trial.user_attrs["fail_reason"]


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["--bogus"], "unrecognized arguments"),
        (["--n-trials", "0"], "must be >= 1"),
        (
            ["--storage", "postgresql://u:secret@127.0.0.1:1/db"],
            "postgresql://u:***@127.0.0.1:1/db",
        ),
        (["--address", "127.0.0.1:1"], "cannot reach Ray at 127.0.0.1:1"),
        (["--set", "pruning.rate=2"], "pruning.rate"),
    ],
)
def test_bad_input_exits_2(
    argv: list[str], phrase: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t0 = time.time()
    assert main([*argv, "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and phrase in err, err
    assert "secret" not in err
    assert time.time() - t0 < 30


def test_empty_parameter_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = small_space(tmp_path, params={})
    assert main(["--space", str(space), "--out", str(tmp_path / "r")]) == 2
    assert "params: is empty" in capsys.readouterr().err


def test_search_on_a_multi_node_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two Ray nodes simulated on this machine, one CPU each: trials run on both."""
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        run = tmp_path / "run"
        extra = ("--n-trials", "4", "--workers", "2", "--address", cluster.address)
        assert main(search_argv(small_space(tmp_path), run, *extra)) == 0
        trials = [t for t in load(run).trials if t.state.name == "COMPLETE"]
        assert len(trials) == 4
        assert len({t.user_attrs["ray_node"] for t in trials}) == 2
    finally:
        cluster.shutdown()


def test_disk_full_while_writing_results_keeps_the_study(
    finished_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import errno
    import os

    real_replace = os.replace

    def full(src: str, dst: str) -> None:
        if str(dst).endswith(".csv"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full)
    argv = search_argv(small_space(tmp_path), finished_run, "--n-trials", "1")
    assert main(argv) == 1  # budget already met: only the results are written (and fail)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "re-run" in err
    monkeypatch.undo()
    study = load(finished_run)
    assert sum(t.state.name == "COMPLETE" for t in study.trials) >= 4


def test_unusable_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    argv = ["--space", str(small_space(tmp_path)), "--out", str(blocker / "run"), "--no-progress"]
    assert main(argv) == 2
    assert "cannot use run directory" in capsys.readouterr().err
