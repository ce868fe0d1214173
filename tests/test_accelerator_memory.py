"""The memory hierarchy on hand-derived layers, stride-aware footprints, monotone DRAM traffic,
and whole-grid scoring against one-at-a-time scoring."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelerator import AcceleratorConfig, evaluate, evaluate_grid, summarize
from accelerator.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAPER_K = ROOT / "accelerator" / "configs" / "paper_16pe_k.yaml"


def cfg(gb_bytes: int = 1 << 20, **kw: object) -> AcceleratorConfig:
    return AcceleratorConfig(memory={"global_buffer_bytes": gb_bytes}, **kw)


def test_tiny_layer_that_fits_moves_each_operand_once() -> None:
    # K=2, C=2, 3x3 dense; 4x4 output, stride 1, T=2; 16-bit weights + 8-bit index
    prof = {"layers": {"c": {"positions": 16, "timesteps": 2, "output_size": [4, 4]}}}
    layer = evaluate(cfg(), {"c": np.ones((2, 2, 3, 3), bool)}, prof).layers[0]
    ops = layer.dram_bits_by_operand
    assert ops == {"weights": 36 * 24, "inputs": 2 * 16 * 2, "outputs": 2 * 16 * 2}
    assert layer.dram_bits == 36 * 24 + 64 + 64
    assert layer.tiling["fits"] and layer.tiling["filter_blocks"] == 1


def test_weights_that_do_not_fit_are_blocked_and_loaded_once() -> None:
    # K=64, C=8, 3x3 dense: W = 64*72*24 = 110592 bits > an 8 KiB buffer (65536 bits); the
    # whole 8x8x8 input (512 bits) fits beside half the filters (55296 + 512 + 32*64 bits), so
    # the weights-outer order streams two filter blocks over a resident input: compulsory traffic.
    prof = {"layers": {"c": {"positions": 64, "timesteps": 1, "output_size": [8, 8]}}}
    layer = evaluate(cfg(8192), {"c": np.ones((64, 8, 3, 3), bool)}, prof).layers[0]
    assert layer.tiling["order"] == "K" and layer.tiling["filter_blocks"] == 2
    assert layer.dram_bits == 110592 + 512 + 64 * 64


def test_weights_and_activations_that_do_not_fit_are_refetched() -> None:
    # 1x1 conv K=64, C=32, 8-bit weights, no index: W = 16384 bits; input 16x16, T=2:
    # I = 32*256*2 = 16384 bits; O = 64*256*2 = 32768 bits; buffer 1 KiB = 8192 bits.
    # Neither operand fits. Weights outer: the fewest filter blocks whose tile fits is n_K = 4
    # (4096 weight bits + 2 input rows x 2 timesteps 2048 + outputs 1024 = 7168), inputs fetched
    # 4 times: 16384 + 4*16384 + 32768. Inputs outer: the fewest input tiles is 4 (4 rows x 2
    # timesteps), weights fetched 4 times: 4*16384 + 16384 + 32768. Both: 114688 bits.
    config = cfg(1024, bits={"weight": 8, "index": 0})
    prof = {"layers": {"c": {"positions": 256, "timesteps": 2, "output_size": [16, 16]}}}
    layer = evaluate(config, {"c": np.ones((64, 32, 1, 1), bool)}, prof).layers[0]
    assert layer.tiling["fits"]
    assert layer.dram_bits == 114688
    assert layer.dram_bits > 16384 + 16384 + 32768  # above compulsory: activations spill


def test_stride_2_reads_four_times_the_input_of_its_output_map() -> None:
    mask = {"c": np.ones((4, 3, 3, 3), bool)}
    same = {"layers": {"c": {"positions": 16, "timesteps": 2, "output_size": [4, 4]}}}
    s2 = {"layers": {"c": {**same["layers"]["c"], "stride": 2}}}
    given_input = {"layers": {"c": {**same["layers"]["c"], "stride": 2, "input_size": [9, 9]}}}
    a, b, c = (evaluate(cfg(), mask, p).layers[0] for p in (same, s2, given_input))
    assert a.dram_bits_by_operand["inputs"] == 3 * 16 * 2
    assert b.dram_bits_by_operand["inputs"] == 3 * 64 * 2  # input map 8x8 ('same' padding)
    assert c.dram_bits_by_operand["inputs"] == 3 * 81 * 2
    # global-buffer input reads follow the input map too (PE level)
    assert b.global_buffer_bits - a.global_buffer_bits == pytest.approx(2 * 3 * 48 * 2)


def test_stride_2_row_tiles_fetch_their_halo() -> None:
    from accelerator.memory import Geometry, choose_tiling

    geo = Geometry(8, 4, 3, 3, h_out=8, w_out=8, h_in=16, w_in=16, stride=2, padding=1)
    # 8 filters x 36 weights x 8 bits = 2304 weight bits; the 4x16x16 input (1024 bits) does
    # not fit 896 bits. Inputs outer, 2 row tiles of 4 output rows, each needing
    # min(16, (4 - 1) * 2 + 3) = 9 input rows (576 bits) beside one filter (288 + 32 bits):
    # weights 2 x 2304 + inputs 2 x 576 bits, the least traffic of all tilings that fit.
    t = choose_tiling(geo, 1, 2304.0, 16, capacity_bits=896.0)
    assert t.fits and t.order == "R" and t.row_blocks == 2 and t.filter_blocks == 8
    assert (t.dram_weight_bits, t.dram_input_bits) == (2 * 2304, 2 * 9 * 4 * 16)


@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(1, 48),
    c=st.integers(1, 48),
    side=st.integers(1, 12),
    t=st.integers(1, 6),
    density=st.floats(0.01, 1.0),
    sizes=st.lists(st.integers(10, 22), min_size=2, max_size=4, unique=True),
    flow=st.sampled_from(["K", "C", "KC"]),
)
def test_dram_traffic_never_grows_with_the_buffer(
    k: int, c: int, side: int, t: int, density: float, sizes: list[int], flow: str
) -> None:
    rng = np.random.default_rng(k * 1000 + c)
    summary = summarize({"c": rng.random((k, c, 3, 3)) < density})
    prof = {"layers": {"c": {"positions": side * side, "timesteps": t}}}
    dram = [
        evaluate(
            AcceleratorConfig(dataflow=flow, memory={"global_buffer_bytes": 1 << s}), summary, prof
        ).dram_bits
        for s in sorted(sizes)
    ]
    assert all(b <= a for a, b in itertools.pairwise(dram))


def _network() -> tuple[dict[str, np.ndarray], dict[str, object]]:
    rng = np.random.default_rng(3)
    masks = {
        "c1": rng.random((16, 3, 3, 3)) < 0.5,
        "c2": rng.random((32, 16, 3, 3)) < 0.1,
        "fc": rng.random((10, 128)) < 0.05,
    }
    geo = {
        "c1": {"positions": 64, "output_size": [8, 8]},
        "c2": {"positions": 16, "output_size": [4, 4], "stride": 2, "input_size": [8, 8]},
        "fc": {"positions": 1},
    }
    prof = {
        "layers": {
            name: {
                **geo[name],
                "timesteps": 4,
                "spike_rate": 0.2,
                "tick_zero_fraction": 0.3,
                "channel_spike_rate": list(rng.random(m.shape[1]) * 0.3),
                "channel_tick_zero_fraction": list(rng.random(m.shape[1])),
            }
            for name, m in masks.items()
        }
    }
    return masks, prof


def test_evaluate_grid_equals_evaluate_row_by_row() -> None:
    masks, prof = _network()
    grid = {
        "dataflow": ["K", "C", "KC"],
        "pe_array.rows": [1, 3],
        "pe_array.cols": [2, 4],
        "mapping_order": ["fixed", "workload"],
        "memory.global_buffer_bytes": [1024, 8192, 147456],
        "clock_mhz": [200.0, 400.0],
        "energy.dram_per_bit": [3.7, 13.0],
        "pe.lif_units": [1, 256],
    }
    base = AcceleratorConfig()
    for p in (None, prof):
        frame = evaluate_grid(base, grid, masks, p)
        assert len(frame) == 3 * 2 * 2 * 2 * 3 * 2 * 2 * 2
        for row in frame.sample(n=60, random_state=0).itertuples(index=False, name=None):
            config = base.with_updates({f: row[_col(frame, f)] for f in grid})
            r = evaluate(config, masks, p)
            got = frame.loc[_match(frame, grid, row)].iloc[0]
            row = tuple(row)
            assert got["cycles"] == pytest.approx(r.cycles, rel=1e-9)
            assert got["seconds"] == pytest.approx(r.seconds, rel=1e-9)
            assert got["energy_uj"] == pytest.approx(r.energy_pj["total"] * 1e-6, rel=1e-9)
            for part, v in r.energy_pj.items():
                assert got[f"energy_pj.{part}"] == pytest.approx(v, rel=1e-9, abs=1e-9)
            assert got["area_mm2"] == pytest.approx(r.area_mm2, rel=1e-9)
            assert got["utilization"] == pytest.approx(r.utilization, rel=1e-9)
            assert got["dram_bits"] == pytest.approx(r.dram_bits, rel=1e-9)


def _col(frame: object, field: str) -> int:
    return list(frame.columns).index(field)  # type: ignore[attr-defined]


def _match(frame: object, grid: dict[str, list[object]], row: tuple[object, ...]) -> object:
    sel = np.ones(len(frame), dtype=bool)  # type: ignore[arg-type]
    for f in grid:
        sel &= (frame[f] == row[_col(frame, f)]).to_numpy()  # type: ignore[index]
    return sel


def test_grid_errors_name_the_field() -> None:
    from accelerator import ConfigError

    with pytest.raises(ConfigError, match=r"pe_array\.depth"):
        evaluate_grid(AcceleratorConfig(), {"pe_array.depth": [1]}, {"w": np.ones((4, 4), bool)})
    with pytest.raises(ConfigError, match=r"pe_array\.rows"):
        evaluate_grid(AcceleratorConfig(), {"pe_array.rows": [0]}, {"w": np.ones((4, 4), bool)})
    with pytest.raises(ConfigError, match="non-empty list"):
        evaluate_grid(AcceleratorConfig(), {"clock_mhz": 400}, {"w": np.ones((4, 4), bool)})


def test_authors_utilization_skips_first_conv_and_linear_layers() -> None:
    masks, _ = _network()
    r = evaluate(AcceleratorConfig(), masks)
    assert r.utilization_authors == pytest.approx(r.layers[1].utilization)
    assert "utilization_authors" in r.to_dict()


def test_cli_grid_writes_csv_front_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    masks, prof = _network()
    npz = tmp_path / "m.npz"
    np.savez(npz, **masks)
    pfile = tmp_path / "p.json"
    pfile.write_text(json.dumps(prof))
    grid = ROOT / "accelerator" / "configs" / "grids" / "example.yaml"
    out = tmp_path / "out"
    argv = [str(PAPER_K), str(npz), "--profile", str(pfile), "--grid", str(grid), "--out", str(out)]
    assert main(argv) == 0
    import pandas as pd

    frame = pd.read_csv(out / "grid.csv")
    front = pd.read_csv(out / "pareto.csv")
    assert len(frame) == 720 and 0 < len(front) < len(frame)
    assert (out / "pareto.png").stat().st_size > 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("pe_array.rows: [1, 2]\nmemory.buffer: [1]\n")
    assert main([str(PAPER_K), str(npz), "--grid", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "memory.buffer" in err and err.count("\n") == 1
    assert main([str(PAPER_K), str(npz), "--grid", str(grid)]) == 2
    assert "go together" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("accumulators", "reloads", "psum_bits", "gb_bits"),
    [
        # 9 weights x 24 bits = 216 > a 128-bit scratchpad: 2 passes. 64 positions, 16
        # accumulators: refetching costs 3 x 216 = 648 bits, spilling 2 x 64 x 24 + 64 = 3136:
        # refetch. GB: reads 36 entries x 24 + 64 inputs, writes 64 outputs, DRAM fills and
        # drains 216 + 64 + 64.
        (16, True, 0.0, 36 * 24 + 64 + 64 + 344),
        # 1 accumulator: refetching costs 63 x 216 bits, so the partial sums spill (3072 bits,
        # half written, half read back) and the inputs stream twice.
        (1, False, 3072.0, (9 * 24 + 2 * 64 + 1536) + (64 + 1536) + 344),
    ],
)
def test_scratchpad_overflow_refetches_or_spills(
    accumulators: int, reloads: bool, psum_bits: float, gb_bits: int
) -> None:
    config = AcceleratorConfig(
        pe_array={"rows": 1, "cols": 1},
        pe={"scratchpad_bytes": 16, "accumulators": accumulators},
    )
    prof = {"layers": {"c": {"positions": 64, "timesteps": 1, "output_size": [8, 8]}}}
    layer = evaluate(config, {"c": np.ones((1, 1, 3, 3), bool)}, prof).layers[0]
    assert layer.scratchpad_reloads is reloads
    assert layer.psum_spill_bits == psum_bits
    assert layer.dram_bits == 216 + 64 + 64
    assert layer.global_buffer_bits == gb_bits
