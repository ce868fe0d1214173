"""Accelerator YAML: shipped configs load; bad files give one-line errors naming file+field."""

from __future__ import annotations

from pathlib import Path

import pytest

from accelerator import (
    AcceleratorConfig,
    ConfigError,
    Dataflow,
    accelerator_fields,
    load_accelerator,
)

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "accelerator" / "configs").glob("*.yaml"))


def test_shipped_configs_cover_the_paper_and_more() -> None:
    loaded = [load_accelerator(p) for p in CONFIGS]
    flows = {(c.dataflow, c.n_pe) for c in loaded}
    assert (Dataflow.K, 16) in flows and (Dataflow.C, 16) in flows
    assert any(
        c.dataflow is Dataflow.KC and c.pe_array.rows > 1 and c.pe_array.cols > 1 for c in loaded
    )
    assert max(c.n_pe for c in loaded) > 16


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_yaml_loads_and_is_commented(path: Path) -> None:
    config = load_accelerator(path)
    assert config.name
    assert path.read_text().lstrip().startswith("#"), "shipped configs explain themselves"


def test_defaults_are_the_papers_numbers() -> None:
    c = AcceleratorConfig()
    assert c.n_pe == 16 and c.clock_mhz == 400
    assert c.energy.accumulate == pytest.approx(0.0389)
    assert c.energy.pe_always_on == pytest.approx(0.720)
    assert c.memory.global_buffer_bytes == 144 * 1024


@pytest.mark.parametrize(("alias", "flow"), [("sata", "K"), ("systolic", "C"), ("kc", "KC")])
def test_dataflow_aliases(tmp_path: Path, alias: str, flow: str) -> None:
    f = tmp_path / "a.yaml"
    f.write_text(f"name: x\ndataflow: {alias}\n")
    assert load_accelerator(f).dataflow.value == flow


def test_with_updates_validates_dotted_paths() -> None:
    c = AcceleratorConfig().with_updates({"pe_array.rows": 8, "dataflow": "systolic"})
    assert c.n_pe == 32 and c.dataflow is Dataflow.C
    with pytest.raises(KeyError):
        AcceleratorConfig().with_updates({"pe_array.depth": 2})
    assert "pe_array.rows" in accelerator_fields() and "energy.accumulate" in accelerator_fields()


BAD = [
    (
        "unknown_key.yaml",
        "name: x\npe_array: {rows: 4, cols: 4, depth: 2}\n",
        "pe_array.depth",
        "unknown key",
    ),
    ("wrong_type.yaml", "pe_array: {rows: four}\n", "pe_array.rows", "integer"),
    ("zero.yaml", "pe_array: {rows: 0}\n", "pe_array.rows", "greater than or equal to 1"),
    (
        "negative.yaml",
        "memory: {global_buffer_bytes: -5}\n",
        "memory.global_buffer_bytes",
        "greater",
    ),
    ("dataflow.yaml", "dataflow: diagonal\n", "dataflow", "'K', 'C' or 'KC'"),
    ("empty.yaml", "", "", "empty"),
    ("not_yaml.yaml", "pe_array: [rows: 4\n", "", "not valid YAML"),
    ("list.yaml", "- 1\n- 2\n", "", "mapping"),
    ("bomb.yaml", 'a: &a ["x","x"]\nb: &b [*a,*a]\nc: [*b,*b]\n', "", "aliases"),
]


@pytest.mark.parametrize(("fname", "text", "field", "phrase"), BAD, ids=[b[0] for b in BAD])
def test_bad_yaml_names_file_field_and_rule(
    tmp_path: Path, fname: str, text: str, field: str, phrase: str
) -> None:
    f = tmp_path / fname
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_accelerator(f)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(str(f))
    assert field in msg
    assert phrase in msg


def test_huge_and_missing_files(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("name: x\n" + "# padding\n" * 200_000)
    with pytest.raises(ConfigError, match="at most"):
        load_accelerator(big)
    with pytest.raises(ConfigError, match="file not found"):
        load_accelerator(tmp_path / "nope.yaml")


@pytest.mark.parametrize(("fname", "text", "field", "phrase"), BAD, ids=[b[0] for b in BAD])
def test_bad_yaml_through_the_cli(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fname: str,
    text: str,
    field: str,
    phrase: str,
) -> None:
    import numpy as np

    from accelerator.cli import main

    f = tmp_path / fname
    f.write_text(text)
    masks = tmp_path / "m.npz"
    np.savez(masks, conv=np.ones((4, 4, 3, 3), dtype=bool))
    assert main([str(f), str(masks)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(f) in err and field in err and phrase in err
