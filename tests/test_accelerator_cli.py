"""``python -m accelerator`` (also ``-m accelerator.evaluate``): table, JSON, exit 2 on bad input"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from accelerator.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAPER_K = ROOT / "accelerator" / "configs" / "paper_16pe_k.yaml"


@pytest.fixture
def masks_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "masks.npz"
    np.savez(
        path,
        conv1=rng.random((16, 1, 3, 3)) < 0.5,
        conv2=rng.random((32, 16, 3, 3)) < 0.1,
        fc=rng.random((10, 512)) < 0.1,
    )
    return path


def test_table_output(masks_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(PAPER_K), str(masks_file)]) == 0
    out = capsys.readouterr().out
    assert "paper-16pe-K" in out and "conv2" in out and "weighted by parameter count" in out


def test_json_output_contract(
    masks_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prof = tmp_path / "p.json"
    prof.write_text(
        json.dumps(
            {
                "layers": {
                    "conv1": {"positions": 64, "timesteps": 4, "spike_rate": 1.0},
                    "conv2": {
                        "positions": 64,
                        "timesteps": 4,
                        "spike_rate": 0.2,
                        "tick_zero_fraction": 0.4,
                    },
                    "fc": {"positions": 1, "timesteps": 4, "spike_rate": 0.1},
                }
            }
        )
    )
    assert main([str(PAPER_K), str(masks_file), "--profile", str(prof), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [layer["name"] for layer in report["layers"]] == ["conv1", "conv2", "fc"]
    for layer in report["layers"]:
        for key in ("name", "utilization", "work", "idle", "latency", "cycles", "energy_pj"):
            assert key in layer
    for key in ("cycles", "seconds", "energy_pj", "area_mm2", "utilization"):
        assert key in report
    assert set(report["energy_pj"]) >= {
        "compute",
        "lif",
        "onchip_memory",
        "dram",
        "leakage",
        "total",
    }
    assert report["layers"][1]["timesteps"] == 4


def _bad_cases(tmp_path: Path, masks_file: Path) -> list[tuple[list[str], str]]:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("pe_array: {rows: 4, cols: 4}\nflavour: vanilla\n")
    nonbinary = tmp_path / "nonbinary.npz"
    np.savez(nonbinary, conv=np.full((4, 4, 3, 3), 0.5))
    wrong_shape = tmp_path / "shape.npz"
    np.savez(wrong_shape, conv=np.ones((4, 4, 3), dtype=bool))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    bad_prof = tmp_path / "prof.json"
    bad_prof.write_text('{"layers": {"conv1": {"positions": 0}}}')
    layer = {"positions": 4, "timesteps": 4}
    extra_layer = tmp_path / "extra.json"
    names = ["conv1", "conv2", "fc", "conv9"]
    extra_layer.write_text(json.dumps({"layers": {n: layer for n in names}}))
    missing_layer = tmp_path / "missing.json"
    missing_layer.write_text(json.dumps({"layers": {"conv1": layer}}))
    return [
        ([str(tmp_path / "missing.yaml"), str(masks_file)], "missing.yaml: file not found"),
        ([str(bad_yaml), str(masks_file)], "bad.yaml: flavour: unknown key"),
        ([str(PAPER_K), str(tmp_path / "none.npz")], "none.npz: file not found"),
        ([str(PAPER_K), str(nonbinary)], "not 0/1"),
        ([str(PAPER_K), str(wrong_shape)], "expected 4-D conv"),
        ([str(PAPER_K), str(junk)], "not a readable .npz"),
        ([str(PAPER_K), str(masks_file), "--profile", str(bad_prof)], "layers.conv1.positions"),
        ([str(PAPER_K), str(masks_file), "--bogus"], "unrecognized arguments: --bogus"),
        ([str(PAPER_K), str(masks_file), "--profile", str(extra_layer)], "masks do not have"),
        ([str(PAPER_K), str(masks_file), "--profile", str(missing_layer)], "no entry for layer"),
    ]


def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, masks_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, phrase in _bad_cases(tmp_path, masks_file):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: "), err
        assert phrase in err, (phrase, err)


@pytest.mark.parametrize("module", ["accelerator", "accelerator.evaluate"])
def test_module_entry_point_without_traceback(
    tmp_path: Path, masks_file: Path, module: str
) -> None:
    """Both entry points (the package and the documented ``accelerator.evaluate``) run the CLI."""
    ok = subprocess.run(
        [sys.executable, "-m", module, str(PAPER_K), str(masks_file), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["n_pe"] == 16
    bad = subprocess.run(
        [sys.executable, "-m", module, str(tmp_path / "x.yaml"), str(masks_file)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "x.yaml" in bad.stderr


def test_accelerator_does_not_import_torch() -> None:
    code = "import sys, accelerator, accelerator.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_function_survives_cli_import() -> None:
    import accelerator
    import accelerator.__main__
    import accelerator.cli  # the CLI modules must not shadow the function

    report = accelerator.evaluate(accelerator.AcceleratorConfig(), {"w": np.ones((4, 4), bool)})
    assert report.nonzeros == 16


def test_workload_mapping_order_from_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(2)
    density = rng.uniform(0.02, 0.5, size=(64, 1, 1, 1))  # filters of very different workload
    masks = tmp_path / "skewed.npz"
    np.savez(masks, conv=rng.random((64, 16, 3, 3)) < density)
    ordered = tmp_path / "ordered.yaml"
    ordered.write_text(
        PAPER_K.read_text().replace("mapping_order: fixed", "mapping_order: workload")
    )
    reports = []
    for config in (PAPER_K, ordered):
        assert main([str(config), str(masks), "--json"]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    fixed, workload = reports
    assert (fixed["mapping_order"], workload["mapping_order"]) == ("fixed", "workload")
    assert workload["nonzeros"] == fixed["nonzeros"]
    assert workload["layers"][0]["latency"] < fixed["layers"][0]["latency"]
    assert workload["utilization"] > fixed["utilization"]
