"""Study export: feasible Pareto front, CSV / JSON files, PNG plots, summary, atomic writes."""

from __future__ import annotations

import csv
import json
import math
import os
import random
from pathlib import Path
from typing import Any

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from dse.export import ResultsError, pareto_trials, summary_table, write_results

optuna.logging.set_verbosity(optuna.logging.WARNING)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFAULT_OBJECTIVES = [("accuracy", "maximize"), ("latency", "minimize"), ("energy", "minimize")]
DISTRIBUTIONS = {
    "accelerator.dataflow": CategoricalDistribution(["K", "C", "KC"]),
    "accelerator.pe_array.rows": IntDistribution(2, 8),
    "pruning.balance": CategoricalDistribution(["none", "uticket"]),
}


def design_trial(
    rng: random.Random,
    objectives: list[tuple[str, str]],
    metrics: dict[str, float] | None = None,
    area_max: float | None = 12.0,
) -> FrozenTrial:
    """A COMPLETE trial with every user attribute the search stores."""
    dataflow = rng.choice(["K", "C", "KC"])
    balance = rng.choice(["none", "uticket"])
    rows, cols = rng.choice([2, 4, 8]), rng.choice([2, 4, 8])
    if metrics is None:
        latency = 10 ** rng.uniform(-6, -3)
        energy = 10 ** rng.uniform(0, 3)
        metrics = {
            "accuracy": rng.uniform(0.5, 1.0),
            "val_accuracy": rng.uniform(0.5, 1.0),
            "latency": latency,
            "energy": energy,
            "area": rng.uniform(2.0, 20.0),
            "utilization": rng.uniform(0.3, 1.0),
            "sparsity": rng.uniform(0.0, 0.95),
            "edp": latency * energy,
        }
    attrs: dict[str, Any] = {
        "metrics": metrics,
        "design_point": {"accelerator": {"dataflow": dataflow, "pe_array": {"rows": rows}}},
        "dataflow": dataflow,
        "balance": balance,
        "n_pe": rows * cols,
        "pe_rows": rows,
        "pe_cols": cols,
        "rounds": rng.randint(1, 6),
        "cache_ticket": rng.choice(["hit", "miss", "off"]),
        "train_seconds": rng.uniform(1, 10),
        "total_seconds": rng.uniform(10, 20),
        "node": "node-1",
    }
    system: dict[str, Any] = {}
    if area_max is not None:
        attrs["constraint"] = [metrics["area"] - area_max]
        system["constraints:area_max"] = metrics["area"] - area_max  # as set_constraint does
    return optuna.trial.create_trial(
        params={
            "accelerator.dataflow": dataflow,
            "accelerator.pe_array.rows": rows,
            "pruning.balance": balance,
        },
        distributions=DISTRIBUTIONS,
        values=[metrics[m] for m, _ in objectives],
        user_attrs=attrs,
        system_attrs=system,
        state=TrialState.COMPLETE,
    )


def new_study(objectives: list[tuple[str, str]], constrained: bool = True) -> optuna.Study:
    study = optuna.create_study(
        directions=[StudyDirection[d.upper()] for _, d in objectives],
        storage=optuna.storages.InMemoryStorage(),
    )
    study.set_user_attr("objectives", [{"metric": m, "direction": d} for m, d in objectives])
    study.set_user_attr("constraints", [{"metric": "area", "max": 12.0}] if constrained else [])
    return study


def add_other_states(study: optuna.Study) -> None:
    for reason in ("diverged: NaN loss", "worker lost"):
        study.add_trial(
            optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": reason})
        )
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED))
    study.add_trial(optuna.trial.create_trial(state=TrialState.RUNNING))


def populated_study(
    objectives: list[tuple[str, str]], n: int = 30, seed: int = 0
) -> tuple[optuna.Study, int]:
    """``n`` random complete trials, FAIL / PRUNED / RUNNING trials, and one infeasible trial
    that dominates every other trial (it must stay off the front). Returns (study, its number)."""
    rng = random.Random(seed)
    study = new_study(objectives)
    for _ in range(n):
        study.add_trial(design_trial(rng, objectives))
    add_other_states(study)
    best = {
        "accuracy": 1.0,
        "val_accuracy": 1.0,
        "latency": 1e-9,
        "energy": 1e-3,
        "area": 50.0,
        "utilization": 1.0,
        "sparsity": 0.99,
        "edp": 1e-12,
    }
    study.add_trial(design_trial(rng, objectives, metrics=best))
    return study, study.trials[-1].number


def brute_force_front(study: optuna.Study) -> set[int]:
    """Non-dominated trials among the feasible complete ones, by direct pairwise comparison."""
    sign = [-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in study.directions]
    feasible = [
        t
        for t in study.trials
        if t.state == TrialState.COMPLETE
        and all(c <= 0 for c in t.user_attrs.get("constraint", []))
    ]

    def loss(t: FrozenTrial) -> list[float]:
        assert t.values is not None
        return [s * v for s, v in zip(sign, t.values, strict=True)]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x <= y for x, y in zip(a, b, strict=True)) and a != b

    return {t.number for t in feasible if not any(dominates(loss(u), loss(t)) for u in feasible)}


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == PNG_SIGNATURE


def leftover_temp_files(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------------------------


def test_write_results_three_objectives(tmp_path: Path) -> None:
    study, dominator = populated_study(DEFAULT_OBJECTIVES)
    out = tmp_path / "runs" / "x"
    paths = write_results(study, out)

    expected = brute_force_front(study)
    assert dominator not in expected and expected
    assert {t.number for t in pareto_trials(study)} == expected

    plots = {
        "pareto_accuracy_vs_latency.png",
        "pareto_accuracy_vs_energy.png",
        "pareto_latency_vs_energy.png",
        "utilization_vs_sparsity.png",
    }
    assert set(paths) == {"trials.csv", "pareto.csv", "pareto.json"} | plots
    for name, path in paths.items():
        assert path == out / name and path.is_file()
    for name in plots:
        assert_png(out / name)
    assert leftover_temp_files(out) == []

    columns, rows = read_csv(out / "trials.csv")
    assert len(rows) == len(study.trials)
    for col in ("number", "state", "accuracy", "latency", "energy", "feasible", "fail_reason"):
        assert col in columns
    for col in ("params_accelerator.dataflow", "metrics_sparsity", "dataflow", "cache_ticket"):
        assert col in columns
    states = [r["state"] for r in rows]
    assert states.count("COMPLETE") == 31 and states.count("FAIL") == 2
    assert states.count("PRUNED") == 1 and states.count("RUNNING") == 1
    by_number = {int(r["number"]): r for r in rows}
    assert by_number[dominator]["feasible"] == "False"
    assert {r["fail_reason"] for r in rows if r["state"] == "FAIL"} == {
        "diverged: NaN loss",
        "worker lost",
    }
    first = study.trials[0]
    assert first.values is not None
    assert float(by_number[0]["latency"]) == first.values[1]
    assert float(by_number[0]["metrics_area"]) == first.user_attrs["metrics"]["area"]

    _, front_rows = read_csv(out / "pareto.csv")
    assert {int(r["number"]) for r in front_rows} == expected
    accuracies = [float(r["accuracy"]) for r in front_rows]
    assert accuracies == sorted(accuracies, reverse=True)  # best first by the first objective

    doc = json.loads((out / "pareto.json").read_text())
    assert {t["number"] for t in doc["trials"]} == expected
    assert [o["metric"] for o in doc["objectives"]] == ["accuracy", "latency", "energy"]
    assert doc["objectives"][0]["direction"] == "maximize"
    assert doc["counts"]["complete"] == 31 and doc["counts"]["fail"] == 2
    for rec in doc["trials"]:
        trial = study.trials[rec["number"]]
        assert rec["values"] == dict(
            zip(["accuracy", "latency", "energy"], trial.values or [], strict=True)
        )
        assert rec["params"] == trial.params
        assert rec["metrics"] == trial.user_attrs["metrics"]
        assert rec["design_point"] == trial.user_attrs["design_point"]


def test_infeasible_trial_does_not_hide_feasible_ones() -> None:
    objectives = [("accuracy", "maximize"), ("latency", "minimize")]
    study = new_study(objectives)
    rng = random.Random(1)
    base = {"val_accuracy": 0.9, "energy": 1.0, "utilization": 0.8, "sparsity": 0.5, "edp": 1.0}
    for acc, lat, area in [(0.9, 2e-4, 5.0), (0.8, 1e-4, 5.0), (0.95, 5e-5, 30.0)]:
        metrics = {**base, "accuracy": acc, "latency": lat, "area": area}
        study.add_trial(design_trial(rng, objectives, metrics=metrics))
    # Trial 2 dominates both but breaks the area bound: the front is trials 0 and 1.
    assert [t.number for t in pareto_trials(study)] == [0, 1]
    assert brute_force_front(study) == {0, 1}


def test_unconstrained_front_equals_optuna_best_trials() -> None:
    rng = random.Random(3)
    study = new_study(DEFAULT_OBJECTIVES, constrained=False)
    for _ in range(40):
        study.add_trial(design_trial(rng, DEFAULT_OBJECTIVES, area_max=None))
    assert [t.number for t in pareto_trials(study)] == sorted(t.number for t in study.best_trials)


def test_sampler_constraints_system_attr_respected() -> None:
    objectives = [("accuracy", "maximize")]
    study = new_study(objectives)
    for acc, c in [(0.9, [0.0]), (0.99, [1.0])]:
        study.add_trial(optuna.trial.create_trial(values=[acc], system_attrs={"constraints": c}))
    assert [t.number for t in pareto_trials(study)] == [0]


@pytest.mark.parametrize(
    "objectives",
    [
        [("accuracy", "maximize")],
        [("latency", "minimize"), ("accuracy", "maximize")],
        [
            ("val_accuracy", "maximize"),
            ("energy", "minimize"),
            ("area", "minimize"),
            ("utilization", "maximize"),
        ],
    ],
    ids=["one", "two", "four"],
)
def test_any_number_of_objectives(tmp_path: Path, objectives: list[tuple[str, str]]) -> None:
    study, _ = populated_study(objectives, n=15, seed=len(objectives))
    paths = write_results(study, tmp_path)
    names = [m for m, _ in objectives]
    pairs = {
        f"pareto_{names[i]}_vs_{names[j]}.png"
        for i in range(len(names))
        for j in range(i + 1, len(names))
    }
    assert {p for p in paths if p.startswith("pareto_")} == pairs
    for name in pairs:
        assert_png(tmp_path / name)
    expected = brute_force_front(study)
    doc = json.loads((tmp_path / "pareto.json").read_text())
    assert {t["number"] for t in doc["trials"]} == expected
    assert all(set(t["values"]) == set(names) for t in doc["trials"])
    columns, rows = read_csv(tmp_path / "trials.csv")
    assert set(names) <= set(columns) and len(rows) == len(study.trials)
    table = summary_table(study)
    assert all(m in table for m in names)


def test_summary_table_lists_front_sorted(tmp_path: Path) -> None:
    study, dominator = populated_study(DEFAULT_OBJECTIVES, n=25, seed=7)
    table = summary_table(study)
    lines = table.splitlines()
    header, rule = lines[0], lines[1]
    for label in ("trial", "dataflow", "PE array", "balance", "rounds", "accuracy"):
        assert label in header
    assert "latency [s]" in header and "energy [uJ]" in header
    assert "sparsity" in header and "utilization" in header
    assert "rate" in header and "area [mm^2]" in header and "source" in header
    assert set(rule.replace(" ", "")) == {"-"}

    rows = lines[2:-1]
    numbers = [int(r.split()[0]) for r in rows]
    expected = brute_force_front(study)
    assert set(numbers) == expected and dominator not in numbers
    accuracy = {t.number: (t.values or [0.0])[0] for t in study.trials}
    assert [accuracy[n] for n in numbers] == sorted((accuracy[n] for n in numbers), reverse=True)
    for r, n in zip(rows, numbers, strict=True):
        t = study.trials[n]
        assert f"{t.user_attrs['pe_rows']}x{t.user_attrs['pe_cols']}" in r
        assert t.user_attrs["dataflow"] in r.split()

    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    hits = sum(t.user_attrs["cache_ticket"] == "hit" for t in complete)
    footer = lines[-1]
    assert f"{len(complete)} complete" in footer and "2 failed" in footer
    assert "1 pruned" in footer and "1 running" in footer
    assert f"front: {len(expected)}" in footer
    assert f"({hits}/{len(complete)})" in footer
    assert all(len(line) <= len(rule) for line in lines[:-1])  # fixed-width columns


def test_zero_complete_trials(tmp_path: Path) -> None:
    study = new_study(DEFAULT_OBJECTIVES)
    paths = write_results(study, tmp_path / "empty")
    assert set(paths) == {"trials.csv", "pareto.csv", "pareto.json"}
    columns, rows = read_csv(tmp_path / "empty" / "trials.csv")
    assert rows == [] and {"number", "accuracy", "latency", "energy"} <= set(columns)
    assert "no complete trials" in summary_table(study)

    add_other_states(study)
    paths = write_results(study, tmp_path / "failed")
    assert not any(p.endswith(".png") for p in paths)
    _, rows = read_csv(tmp_path / "failed" / "trials.csv")
    assert len(rows) == 4
    columns, rows = read_csv(tmp_path / "failed" / "pareto.csv")
    assert rows == [] and "accuracy" in columns
    assert json.loads((tmp_path / "failed" / "pareto.json").read_text())["trials"] == []
    table = summary_table(study)
    assert "no complete trials" in table and "2 failed" in table and "front: 0" in table


def test_disk_full_leaves_previous_files_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, _ = populated_study(DEFAULT_OBJECTIVES, n=5)
    out = tmp_path / "runs" / "x"
    out.mkdir(parents=True)
    (out / "trials.csv").write_text("old\n")

    def full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(ResultsError) as info:
        write_results(study, out)
    message = str(info.value)
    assert message == f"cannot write {out / 'trials.csv'}: No space left on device"
    assert "\n" not in message and info.value.errno == 28
    assert isinstance(info.value, OSError)
    assert (out / "trials.csv").read_text() == "old\n"
    assert leftover_temp_files(out) == []


def test_unwritable_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study, _ = populated_study(DEFAULT_OBJECTIVES, n=5)
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        if os.access(out, os.W_OK):  # running as root: the mode does not stop writes

            def denied(src: str, dst: str) -> None:
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr(os, "replace", denied)
        with pytest.raises(ResultsError, match=r"cannot write .*ro/trials\.csv: Permission denied"):
            write_results(study, out)
    finally:
        out.chmod(0o700)
    assert leftover_temp_files(out) == []
    assert not (out / "trials.csv").exists()


def test_output_path_is_a_file(tmp_path: Path) -> None:
    study, _ = populated_study(DEFAULT_OBJECTIVES, n=3)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ResultsError, match=r"cannot create .*file/out"):
        write_results(study, blocker / "out")


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 4), st.booleans()), min_size=0, max_size=12
    ),
    maximize_first=st.booleans(),
)
def test_front_matches_brute_force(
    values: list[tuple[int, int, bool]], maximize_first: bool
) -> None:
    directions = ["maximize" if maximize_first else "minimize", "minimize"]
    study = new_study([("accuracy", directions[0]), ("latency", directions[1])])
    for a, b, feasible in values:
        study.add_trial(
            optuna.trial.create_trial(
                values=[float(a), float(b)],
                user_attrs={"constraint": [-1.0 if feasible else 1.0]},
                system_attrs={"constraints:c": -1.0 if feasible else 1.0},
            )
        )
    got = [t.number for t in pareto_trials(study)]
    assert got == sorted(brute_force_front(study))
    assert all(math.isfinite(v) for t in pareto_trials(study) for v in t.values or [])


def test_test_accuracy_is_shown_beside_the_validation_objective() -> None:
    objectives = [("val_accuracy", "maximize"), ("latency", "minimize")]
    study, _ = populated_study(objectives, n=10, seed=4)
    header = summary_table(study).splitlines()[0].split()
    assert "val_accuracy" in header and "accuracy" in header
    assert header.index("val_accuracy") < header.index("accuracy")  # objectives first
