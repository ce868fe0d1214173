"""Ticket-centric search (``dse.tickets``, ``dse.exhaustive``): round prefixes, derived points,
exact mode against brute force, the budget of proposed trials, resuming without retraining."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from test_dse_search import dashboard_detail, load, search_argv

from accelerator import pe_index
from dse.cache import TicketCache
from dse.design import DesignPoint
from dse.search import main
from dse.space import load_space
from dse.tickets import TicketSpace, budget_states, finite_values, front_rows
from dse.trial import load_splits, run_trial, ticket_rounds, weight_shapes
from snn.uticket import balance

ROOT = Path(__file__).resolve().parents[1]
FAST = ["train.epochs=1", "pruning.rewind_epoch=1", "model.width=0.5", "train.num_threads=1"]
TINY = {
    "accelerator.pe_array.rows": {"type": "int", "low": 1, "high": 2},
    "accelerator.dataflow": {"type": "categorical", "choices": ["K", "C"]},
    "pruning.balance": {"type": "categorical", "choices": ["none", "uticket"]},
    "pruning.rounds": {"type": "int", "low": 1, "high": 2},
}


def tiny_space(tmp_path: Path, **extra: Any) -> Path:
    """The default space with 16 design points in 5 tickets (1 LTH, 4 u-Ticket)."""
    data = yaml.safe_load((ROOT / "search_spaces" / "default.yaml").read_text())
    data["accelerator"]["base"] = str(ROOT / "accelerator/configs/paper_16pe_k.yaml")
    data["params"] = TINY
    data["sampler"] = {"name": "exhaustive"}
    data.update(extra)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def read_points(run: Path) -> list[dict[str, str]]:
    with (run / "points.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def params_of(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k.startswith("params_"):
            name = k[len("params_") :]
            out[name] = int(v) if name.endswith(("rows", "rounds")) else v
    return out


def test_round_r_of_an_R_round_ticket_is_the_r_round_ticket() -> None:
    loaded = load_space(overrides=[*FAST, "pruning.balance=uticket", "accelerator.dataflow=C"])
    long = DesignPoint.build(loaded, {"pruning.rounds": 3})
    short = DesignPoint.build(loaded, {"pruning.rounds": 2})
    rounds_long, *_ = ticket_rounds(long)
    rounds_short, *_ = ticket_rounds(short)
    assert len(rounds_long) == 4 and len(rounds_short) == 3
    for a, b in zip(rounds_long[:3], rounds_short, strict=True):
        assert a.accuracy == b.accuracy and a.val_accuracy == b.val_accuracy
        assert a.profile == b.profile
        for name in a.masks:
            assert np.array_equal(a.masks[name], b.masks[name])


def test_stepped_floats_snap_to_the_grid(tmp_path: Path) -> None:
    from dse.space import FloatParam

    spec = FloatParam(type="float", low=0.3, high=0.6, step=0.1)
    assert finite_values(spec) == [0.3, 0.4, 0.5, 0.6]
    assert finite_values(FloatParam(type="float", low=0.1, high=0.2)) is None
    params = {**TINY, "pruning.rate": {"type": "float", "low": 0.3, "high": 0.6, "step": 0.1}}
    ts = TicketSpace(load_space(tiny_space(tmp_path, params=params), FAST))
    got = ts.canonical({"pruning.rate": 0.30000000000000004 + 0.1})
    assert got["pruning.rate"] == 0.4


def test_lth_ticket_serves_every_hardware_and_uticket_its_partition(tmp_path: Path) -> None:
    ts = TicketSpace(load_space(tiny_space(tmp_path), FAST))
    tickets = ts.tickets()
    balances = sorted(a["pruning.balance"] for a in tickets.values())
    assert balances == ["none", "uticket", "uticket", "uticket", "uticket"]
    assert all(a["pruning.rounds"] == 2 for a in tickets.values())  # R_max trains them
    for key, a in tickets.items():
        served = ts.served(a, key)
        expected = 4 if a["pruning.balance"] == "none" else 1
        assert len(served) == expected


def test_maps_with_one_ticket_key_balance_to_identical_masks() -> None:
    """The ticket key merges PE maps that renumber the same partition (e.g. K on 32 and on
    64 PEs of a 32-filter layer); that is exact only if u-Ticket gives such maps bit-identical
    masks. Checked for every hardware configuration of the default space, on random masks."""
    ts = TicketSpace(load_space())
    shapes = weight_shapes(ts.point({}), load_splits(ts.point({})))
    rng = np.random.default_rng(0)
    masks = {n: rng.random(s) < 0.3 for n, s in shapes.items()}
    by_key: dict[str, list[dict[str, np.ndarray]]] = {}
    for rows in range(1, 9):
        for cols in range(1, 9):
            for dataflow in ["K", "C", "KC"]:
                a = {
                    "accelerator.pe_array.rows": rows,
                    "accelerator.pe_array.cols": cols,
                    "accelerator.dataflow": dataflow,
                    "pruning.balance": "uticket",
                }
                point = ts.point(a)
                pe = {n: pe_index(s, point.accelerator) for n, s in shapes.items()}
                out = balance(masks, pe, point.accelerator.n_pe, seed=3)
                by_key.setdefault(ts.key(point), []).append(out)
    assert 100 <= len(by_key) < 150  # 192 configurations, 106 partitions
    merged = [group for group in by_key.values() if len(group) > 1]
    assert len(merged) > 40
    for group in merged:
        for other in group[1:]:
            for n in masks:
                assert np.array_equal(group[0][n], other[n])


@pytest.fixture(scope="module")
def exhaustive_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("exhaustive")
    run = tmp / "run"
    argv = ["--space", str(tiny_space(tmp)), "--out", str(run), "--no-progress"]
    argv += [f"--set={s}" for s in FAST] + ["--workers", "2"]
    assert main(argv) == 0
    return run


def test_exhaustive_equals_brute_force(exhaustive_run: Path, tmp_path: Path) -> None:
    """Every point scored by the exact mode (through ``accelerator.evaluate_grid``) equals
    ``run_trial`` of that point alone (no cache: trained from scratch, scored by ``evaluate``)
    to relative 1e-9, and the exported front is the brute-force front."""
    loaded = load_space(tiny_space(tmp_path), FAST)
    ts = TicketSpace(loaded)
    rows = read_points(exhaustive_run)
    assert len(rows) == ts.n_points() == 16
    assert len({r["ticket"] for r in rows}) == 5
    brute: list[dict[str, Any]] = []
    for row in rows:
        params = params_of(row)
        result = run_trial(DesignPoint.build(loaded, params))
        for metric, value in result.metrics.items():
            assert float(row[f"metrics_{metric}"]) == pytest.approx(value, rel=1e-9), (
                params,
                metric,
            )
        brute.append({"params": params, "metrics": result.metrics, "ticket": row["ticket"]})
        brute[-1]["constraint"] = [result.metrics["area"] - 12.0]
    expected = {json.dumps(r["params"], sort_keys=True) for r in front_rows(ts, brute)}
    front = json.loads((exhaustive_run / "pareto.json").read_text())["trials"]
    got = {json.dumps(t["params"], sort_keys=True) for t in front}
    assert got == expected


def test_resumed_exhaustive_run_trains_nothing_twice(
    exhaustive_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = sorted((exhaustive_run / "points").glob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in files}
    n_trials = len(load(exhaustive_run).trials)
    argv = ["--space", str(tiny_space(tmp_path)), "--out", str(exhaustive_run), "--no-progress"]
    argv += [f"--set={s}" for s in FAST]
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "already complete" in out and "5 tickets trained, 16 design points scored" in out
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    assert len(load(exhaustive_run).trials) == n_trials
    # a lost ticket file is rebuilt from the ticket cache, without training
    files[0].unlink()
    assert main([*argv, "--workers", "1"]) == 0
    doc = json.loads(files[0].read_text())
    assert doc["cache"]["ticket"] == "hit" and doc["train_seconds"] == 0.0
    assert len(load(exhaustive_run).trials) == n_trials  # its derived trials are not re-added


def test_exhaustive_refuses_a_continuous_parameter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = {**TINY, "train.lr": {"type": "float", "low": 0.001, "high": 0.01}}
    space = tiny_space(tmp_path, params=params)
    assert main(["--space", str(space), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "params.train.lr" in err and "finite space" in err


@pytest.fixture(scope="module")
def proposal_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("proposals")
    run = tmp / "run"
    space = tiny_space(tmp, sampler={"name": "random"})
    fast = [s for s in FAST if not s.startswith("train.num")]
    argv = search_argv(space, run, "--n-trials", "6", "--workers", "2")
    argv += [f"--set={s}" for s in fast]
    assert main(argv) == 0
    return run


def test_budget_counts_proposed_trials_only(proposal_run: Path, tmp_path: Path) -> None:
    study = load(proposal_run)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    proposed = [t for t in complete if t.user_attrs["source"] != "derived"]
    derived = [t for t in complete if t.user_attrs["source"] == "derived"]
    assert len(proposed) == 6 and budget_states(study)["COMPLETE"] == 6
    assert derived, "the non-dominated points of trained tickets are in the study"
    assert {t.user_attrs["source"] for t in proposed} <= {"trained", "proposed"}
    trained = [t for t in proposed if t.user_attrs["source"] == "trained"]
    assert len(trained) == len({t.user_attrs["ticket"] for t in proposed})  # one per ticket
    for t in derived:
        assert t.constraints == {"area_max": t.user_attrs["constraint"][0]}
        assert t.values[0] == t.user_attrs["metrics"]["val_accuracy"]
    # a resume to 8 adds exactly 2 proposed trials
    space = tiny_space(tmp_path, sampler={"name": "random"})
    argv = search_argv(space, proposal_run, "--n-trials", "8", "--workers", "2")
    argv += [f"--set={s}" for s in FAST if not s.startswith("train.num")]
    assert main(argv) == 0
    assert budget_states(load(proposal_run))["COMPLETE"] == 8


def test_derived_point_reevaluated_alone_is_identical(proposal_run: Path, tmp_path: Path) -> None:
    loaded = load_space(tiny_space(tmp_path), [*FAST])
    study = load(proposal_run)
    derived = [t for t in study.trials if t.user_attrs.get("source") == "derived"]
    cache = TicketCache(tmp_path / "fresh")
    for t in derived[:3]:
        result = run_trial(DesignPoint.build(loaded, dict(t.params)), cache=cache)
        got = [result.metrics[m] for m in ("val_accuracy", "latency", "energy")]
        assert got == pytest.approx(t.values, rel=1e-9)
    rows = read_points(proposal_run)
    assert {r["source"] for r in rows} <= {"trained", "derived"} and len(rows) >= 6
    assert {r["ticket"] for r in rows} == {
        t.user_attrs["ticket"] for t in study.trials if "ticket" in t.user_attrs
    }


def test_grid_scoring_of_a_uticket_subset_selects_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A u-Ticket ticket on K serves only the arrays of its partition: of 3x3 arrays, those
    of 16 PEs (2x8, 4x4, 8x2) and, since no layer of the half-width net has more than 16
    filters, those of 32 and 64 (each filter on its own PE). The grid is the Cartesian
    superset, and each served configuration must read its own row (rows of the other arrays,
    or of another clock or buffer, differ)."""
    import accelerator
    import dse.trial
    from dse.metrics import metrics_of
    from dse.trial import score_metrics

    params = {
        "accelerator.pe_array.rows": {"type": "categorical", "choices": [2, 4, 8]},
        "accelerator.pe_array.cols": {"type": "categorical", "choices": [2, 4, 8]},
        "accelerator.clock_mhz": {"type": "categorical", "choices": [200.0, 400.0]},
        "accelerator.memory.global_buffer_bytes": {
            "type": "categorical",
            "choices": [4096, 147456],
        },
    }
    ts = TicketSpace(load_space(tiny_space(tmp_path, params=params), FAST))
    a = {n: (4 if "pe_array" in n else params[n]["choices"][0]) for n in params}
    point = ts.point({**a, "pruning.rounds": 1})
    served = ts.served(a, ts.key(point))
    arrays = {(p.accelerator.pe_array.rows, p.accelerator.pe_array.cols) for _, p in served}
    assert arrays == {(2, 8), (4, 4), (8, 2), (4, 8), (8, 4), (8, 8)} and len(served) == 24
    configs = [p.accelerator for _, p in served]
    rounds, *_ = ticket_rounds(point)
    expected = [
        {
            r: metrics_of(accelerator.evaluate(c, rounds[r].masks, rounds[r].profile), 0.0, 0.0)
            for r in (0, 1)
        }
        for c in configs
    ]
    calls = []

    def grid(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[1]))
        return accelerator.evaluate_grid(*args, **kwargs)

    def no_loop(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("scored by the loop, not the grid")

    monkeypatch.setattr(dse.trial, "evaluate_grid", grid)
    monkeypatch.setattr(dse.trial, "evaluate", no_loop)
    got = score_metrics(configs, rounds, (0, 1))
    assert calls == [4, 4]  # one grid of rows x cols x clock x buffer per round
    for g, e, c in zip(got, expected, configs, strict=True):
        for r in (0, 1):
            for m in ("latency", "energy", "area", "utilization", "sparsity", "edp"):
                assert g[r][m] == pytest.approx(e[r][m], rel=1e-9), (c, r, m)
            assert g[r]["sparsity"] == e[r]["sparsity"]
            assert (g[r]["accuracy"], g[r]["val_accuracy"]) == (
                rounds[r].accuracy,
                rounds[r].val_accuracy,
            )
    # the superset's other rows differ: a wrong row would fail the comparison above
    assert len({round(g[1]["edp"], 15) for g in got}) > 1


def test_rounds_with_an_explicit_order_are_scored_by_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round balanced for a workload-dependent mapping order carries that order, which the
    grid cannot take: it goes through ``evaluate`` with the order, and agrees with the trial."""
    import dse.trial
    from dse.trial import score_metrics

    over = [*FAST, "pruning.balance=uticket", "accelerator.mapping_order=workload"]
    point = DesignPoint.build(load_space(overrides=over), {"pruning.rounds": 1})
    rounds, *_ = ticket_rounds(point)
    assert rounds[0].orders is None and rounds[1].orders is not None
    grid_calls = []
    real = dse.trial.evaluate_grid

    def grid(*args: Any, **kwargs: Any) -> Any:
        grid_calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(dse.trial, "evaluate_grid", grid)
    got = score_metrics([point.accelerator], rounds, (0, 1))[0]
    assert len(grid_calls) == 1  # round 0 only
    trial = run_trial(point)
    assert got[1] == pytest.approx(trial.metrics, rel=1e-9)


def test_derived_trials_are_visible_in_optuna_dashboard(proposal_run: Path) -> None:
    detail = dashboard_detail(proposal_run)

    def attrs(t: dict[str, Any]) -> dict[str, Any]:
        return {a["key"]: a["value"] for a in t["user_attrs"]}

    sources = [attrs(t).get("source") for t in detail["trials"]]
    assert "derived" in sources and "trained" in sources
    derived = [t for t in detail["trials"] if attrs(t).get("source") == "derived"]
    assert all(t["state"].lower() == "complete" and len(t["values"]) == 3 for t in derived)
    study = load(proposal_run)
    assert {t["number"] for t in detail["best_trials"]} == {t.number for t in study.best_trials}


def test_random_start_up_counts_proposals_not_derived_trials(tmp_path: Path) -> None:
    """Derived trials must not end TPE's random start-up: it lasts n proposed trials."""
    from optuna.distributions import IntDistribution

    from dse.tickets import ProposalStartup

    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    dist = {"x": IntDistribution(0, 100)}
    for x in range(30):  # a trained ticket's derived trials
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": x},
                distributions=dist,
                value=float(x),
                user_attrs={"source": "derived"},
            )
        )
    tpe = optuna.samplers.TPESampler(seed=0, n_startup_trials=3)
    sampler = ProposalStartup(tpe, n_startup=3, seed=0)
    study.sampler = sampler
    used = []
    for _ in range(5):
        trial = study.ask(dist)
        used.append(sampler._chosen[trial.number] is sampler.random)
        study.tell(trial, float(trial.params["x"]))
    assert used == [True, True, True, False, False]


class FailingTicketWorker:
    """A worker whose every ticket raises (a RayTaskError for the exhaustive driver)."""

    def __init__(self, *args: object) -> None:
        pass

    def score_ticket(self, assignments: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("injected ticket failure")


def test_exhaustive_run_with_failing_tickets_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ticket that fails three times is reported and the run exits 1 (re-running retries it)."""
    import sys

    import ray

    import dse.worker

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(dse.worker, "Worker", FailingTicketWorker)  # what remote_worker wraps
    params = {"accelerator.dataflow": {"type": "categorical", "choices": ["K", "C"]}}
    space = tiny_space(tmp_path, params=params)
    argv = ["--space", str(space), "--out", str(tmp_path / "run"), "--no-progress"]
    assert main([*argv, *(f"--set={s}" for s in FAST), "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "injected ticket failure" in err
    assert "2 tickets failed three times" in err  # u-Ticket on K and on C: two tickets


def test_ticket_sampler_trains_a_new_ticket_per_proposal_roots_first(
    exhaustive_run: Path, tmp_path: Path
) -> None:
    """``sampler: ticket`` on the tiny space (5 tickets), with the exact run's ticket cache so
    nothing is trained again: the 5 proposals of 2 parallel workers claim 5 distinct tickets,
    the plain lottery ticket (the root every u-Ticket prediction needs) among the first two;
    a 6th proposal, with every ticket trained, costs nothing."""
    run = tmp_path / "run"
    space = tiny_space(tmp_path, sampler={"name": "ticket"})
    argv = search_argv(space, run, "--n-trials", "5", "--workers", "2")
    argv += [f"--set={s}" for s in FAST] + ["--cache", str(exhaustive_run / "cache")]
    assert main(argv) == 0
    proposed = sorted(
        (t for t in load(run).trials if t.user_attrs.get("source") != "derived"),
        key=lambda t: t.number,
    )
    assert [t.user_attrs["source"] for t in proposed] == ["trained"] * 5
    assert len({t.user_attrs["ticket"] for t in proposed}) == 5
    assert "none" in {t.params["pruning.balance"] for t in proposed[:2]}
    assert (
        main(
            [*argv[: argv.index("--n-trials")], "--n-trials", "6", *argv[argv.index("--workers") :]]
        )
        == 0
    )
    sources = [
        t.user_attrs["source"] for t in load(run).trials if t.user_attrs.get("source") != "derived"
    ]
    assert sources.count("trained") == 5 and sources.count("proposed") == 1


def test_ticket_sampler_gain_and_claims(tmp_path: Path) -> None:
    from dse.ticket_sampler import TicketSampler

    current = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert TicketSampler.gain(current, np.array([[0.5, 0.5]])) > 0  # extends the front
    assert TicketSampler.gain(current, np.array([[1.0, 1.0]])) == 0.0  # dominated
    assert TicketSampler.gain(current, np.zeros((0, 2))) == 0.0
    ts = TicketSpace(load_space(tiny_space(tmp_path, sampler={"name": "ticket"}), FAST))
    sampler = TicketSampler(ts, tmp_path / "run", TicketCache(tmp_path / "cache"), seed=0)
    assert sampler.claim("t1", number=3, live=lambda: {3})
    assert not sampler.claim("t1", number=4, live=lambda: {3})  # trial 3 still runs
    assert sampler.claim("t1", number=4, live=set)  # trial 3 is gone: taken over
    assert (tmp_path / "run" / "points" / ".claims" / "t1").read_text() == "4"


def test_ticket_sampler_needs_derived_points(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = tiny_space(tmp_path, sampler={"name": "ticket", "derive": False})
    assert main(["--space", str(space), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "sampler" in err and "derive: true" in err
