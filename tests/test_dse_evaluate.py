"""One design point end to end (``python -m dse.evaluate``), small and fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from accelerator import evaluate, load_profile
from dse.cache import TicketCache
from dse.design import DesignPoint
from dse.evaluate import main
from dse.space import load_space
from dse.trial import run_trial

ROOT = Path(__file__).resolve().parents[1]
FAST = ["train.epochs=1", "pruning.rounds=2", "pruning.rewind_epoch=1", "model.width=0.5"]


def point(*extra: str) -> DesignPoint:
    return DesignPoint.build(load_space(overrides=[*FAST, *extra]), {})


def test_uticket_balances_every_round_and_lth_does_not() -> None:
    ut = run_trial(point("pruning.balance=uticket", "accelerator.dataflow=C"))
    lth = run_trial(point("pruning.balance=none", "accelerator.dataflow=C"))
    assert [r.round for r in ut.rounds] == [0, 1, 2]
    assert all(r.utilization == pytest.approx(1.0) for r in ut.rounds)
    assert lth.rounds[-1].utilization < 1.0
    assert lth.rounds[-1].sparsity == pytest.approx(1 - 0.5**2, abs=0.01)
    # the same seed gives the same dense round for both
    assert ut.rounds[0].accuracy == lth.rounds[0].accuracy
    for r in (ut, lth):
        assert 0.0 <= r.metrics["accuracy"] <= 1.0 and r.metrics["latency"] > 0
        assert r.metrics["energy"] > 0 and r.metrics["area"] > 0


def test_cache_hits_reuse_training(tmp_path: Path) -> None:
    cache = TicketCache(tmp_path / "cache")
    first = run_trial(point("pruning.balance=none"), cache=cache)
    assert first.cache == {"dense": "miss", "ticket": "miss"}
    # plain LTH tickets do not depend on the hardware: another array is a hit
    other_hw = run_trial(point("pruning.balance=none", "accelerator.pe_array.rows=2"), cache=cache)
    assert other_hw.cache["ticket"] == "hit" and other_hw.timings["train_seconds"] == 0
    assert other_hw.rounds[-1].accuracy == first.rounds[-1].accuracy
    assert other_hw.metrics["latency"] != first.metrics["latency"]
    # fewer rounds of the same schedule: a prefix of the cached entry
    shorter = run_trial(point("pruning.balance=none", "pruning.rounds=1"), cache=cache)
    assert shorter.cache["ticket"] == "hit" and len(shorter.rounds) == 2
    # u-Ticket depends on the partition, but shares the dense round
    ut = run_trial(point("pruning.balance=uticket"), cache=cache)
    assert ut.cache == {"dense": "hit", "ticket": "miss"}


def test_cli_table_json_and_saved_masks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [f"--set={s}" for s in FAST] + ["--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "sparsity" in out and "utilization" in out and "final:" in out
    saved = tmp_path / "ticket"
    assert main([*args, "--json", "--save-masks", str(saved)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"design_point", "metrics", "rounds", "hardware", "timings", "cache"}
    assert len(data["rounds"]) == 3
    # the saved ticket scores the same through the accelerator on its own
    with np.load(saved.with_suffix(".npz")) as z:
        masks = {n: z[n] for n in z.files}
    p = DesignPoint.from_dict(data["design_point"])
    report = evaluate(p.accelerator, masks, load_profile(saved.with_suffix(".json")))
    assert report.cycles == pytest.approx(data["hardware"]["cycles"])


def test_cli_bad_input_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--set", "pruning.balance=sometimes", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pruning.balance" in err
    assert main(["--space", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: file not found" in capsys.readouterr().err
    assert main(["--bogus"]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_module_runs_in_a_fresh_process() -> None:
    cmd = [sys.executable, "-m", "dse.evaluate", "--quiet", "--json"]
    for s in FAST:
        cmd += ["--set", s]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["metrics"]["utilization"] == pytest.approx(1.0)


def test_workload_order_with_uticket_balances_for_the_planned_map(tmp_path: Path) -> None:
    cache = TicketCache(tmp_path / "cache")
    p = point(
        "pruning.balance=uticket", "accelerator.dataflow=KC", "accelerator.mapping_order=workload"
    )
    first = run_trial(p, cache=cache)
    assert all(r.utilization == pytest.approx(1.0) for r in first.rounds)
    again = run_trial(p, cache=cache)  # scored from the cache with the stored orders
    assert again.cache["ticket"] == "hit"
    assert again.metrics == first.metrics
    # a fixed-order u-Ticket entry is a different ticket
    fixed = run_trial(point("pruning.balance=uticket", "accelerator.dataflow=KC"), cache=cache)
    assert fixed.cache["ticket"] == "miss"


def test_workload_order_alone_keeps_the_ticket_and_never_slows_it() -> None:
    lth = run_trial(point("pruning.balance=none", "accelerator.dataflow=K"))
    ordered = run_trial(
        point(
            "pruning.balance=none", "accelerator.dataflow=K", "accelerator.mapping_order=workload"
        )
    )
    for a, b in zip(lth.rounds, ordered.rounds, strict=True):
        assert (a.accuracy, a.sparsity) == (b.accuracy, b.sparsity)
        assert b.cycles <= a.cycles
        assert b.utilization >= a.utilization - 1e-12


def test_spike_aware_uticket_runs_end_to_end() -> None:
    r = run_trial(
        point(
            "pruning.balance=uticket",
            "pruning.balance_cost=expected_work",
            "accelerator.dataflow=C",
        )
    )
    assert r.point.pruning.balance_cost == "expected_work"
    assert 0.0 < r.metrics["sparsity"] < 1.0 and r.metrics["latency"] > 0
