"""Search spaces and design points: the shipped spaces load; bad ones name file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from accelerator import ConfigError
from dse.design import DesignPoint
from dse.space import DEFAULT_SPACE, load_space

SPACES = sorted((Path(__file__).resolve().parents[1] / "search_spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_shipped_spaces_load(path: Path) -> None:
    loaded = load_space(path)
    point = DesignPoint.build(loaded, {})
    assert DesignPoint.from_dict(point.to_dict()) == point
    assert path.read_text().lstrip().startswith("#")


def test_default_space_is_the_embedded_digits_run() -> None:
    point = DesignPoint.build(load_space(DEFAULT_SPACE), {})
    assert point.data.name == "digits" and point.model.timesteps == 4
    assert point.accelerator.n_pe == 16


@pytest.mark.parametrize("path", sorted((DEFAULT_SPACE.parent).glob("*.yaml")), ids=str)
def test_selection_never_sees_the_test_split(path: Path) -> None:
    metrics = {o.metric for o in load_space(path).space.objectives}
    assert "val_accuracy" in metrics and "accuracy" not in metrics


def test_overrides_and_assignments() -> None:
    loaded = load_space(DEFAULT_SPACE, ["pruning.balance=none", "accelerator.dataflow=systolic"])
    point = DesignPoint.build(loaded, {"accelerator.pe_array.rows": 8, "train.lr": 0.01})
    assert point.pruning.balance == "none" and point.accelerator.dataflow.value == "C"
    assert point.accelerator.n_pe == 32 and point.train.lr == 0.01
    assert point.pruning.seed == point.seed
    flat = point.flat()
    assert flat["accelerator.pe_array.rows"] == 8 and flat["pruning.balance"] == "none"


def write(tmp_path: Path, text: str) -> Path:
    base = DEFAULT_SPACE.read_text()
    f = tmp_path / "space.yaml"
    f.write_text(base + "\n" + text if text.startswith("#extra") else text)
    return f


BAD = [
    ("empty", "", "", "empty"),
    ("unknown key", "study: x\nflavour: 1\n", "flavour", "unknown key"),
    (
        "low > high",
        "params:\n  pruning.rounds: {type: int, low: 5, high: 2}\n",
        "params.pruning.rounds",
        "must not exceed",
    ),
    (
        "log through zero",
        "params:\n  train.lr: {type: float, low: 0.0, high: 0.1, log: true}\n",
        "params.train.lr",
        "cannot cross zero",
    ),
    (
        "bad distribution",
        "params:\n  train.lr: {type: gaussian, low: 0, high: 1}\n",
        "params.train.lr",
        "tag",
    ),
    (
        "addresses nothing",
        "params:\n  accelerator.pe_array.depth: {type: int, low: 1, high: 4}\n",
        "params.accelerator.pe_array.depth",
        "addresses no field",
    ),
    (
        "bad value for field",
        "params:\n  accelerator.dataflow: {type: categorical, choices: [K, Z]}\n",
        "params.accelerator.dataflow",
        "'K', 'C' or 'KC'",
    ),
    (
        "unknown metric",
        "constraints:\n  - {metric: throughput, max: 3}\n",
        "constraints[0].metric",
        "unknown metric",
    ),
    ("pruning seed", "pruning: {seed: 3}\n", "pruning", "top-level `seed`"),
    (
        "accelerator override",
        "accelerator: {pe_array: {rows: 0}}\n",
        "accelerator.pe_array.rows",
        "greater than or equal to 1",
    ),
    ("missing base", "accelerator: {base: nope.yaml}\n", "accelerator.base", "file not found"),
    ("dataset", "data: {name: imagenet}\n", "data.name", "unknown dataset"),
    ("did you mean", "train: {epoch: 3}\n", "train.epoch", "did you mean 'epochs'?"),
    (
        "did you mean (accelerator)",
        "accelerator: {pe_aray: {rows: 2}}\n",
        "accelerator.pe_aray",
        "did you mean 'pe_array'?",
    ),
    (
        "did you mean (params)",
        "params:\n  train.epoch: {type: int, low: 1, high: 4}\n",
        "params.train.epoch",
        "did you mean 'train.epochs'?",
    ),
]


@pytest.mark.parametrize(("case", "text", "field", "phrase"), BAD, ids=[b[0] for b in BAD])
def test_bad_spaces(tmp_path: Path, case: str, text: str, field: str, phrase: str) -> None:
    f = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_space(f)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(f)), msg
    assert field in msg and phrase in msg, msg


def test_bad_override() -> None:
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_space(DEFAULT_SPACE, ["pruning.balance"])
    with pytest.raises(ConfigError, match=r"pruning\.balance"):
        load_space(DEFAULT_SPACE, ["pruning.balance=sometimes"])


@pytest.mark.parametrize(("case", "text", "field", "phrase"), BAD, ids=[b[0] for b in BAD])
def test_bad_spaces_through_the_search_cli(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    text: str,
    field: str,
    phrase: str,
) -> None:
    from dse.search import main

    f = write(tmp_path, text)
    assert main(["--space", str(f), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(f) in err and field in err and phrase in err
