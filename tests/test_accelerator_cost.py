"""The cost model on hand-computed cases, the paper's Table III trend, and re-scoring."""

from __future__ import annotations

import numpy as np
import pytest

from accelerator import AcceleratorConfig, ConfigError, ProfileMismatch, evaluate, summarize

# filter 0: 4 non-zeros, filter 1: 1, filter 2: 2 (channels 0,1), filter 3: none
MASK = np.array([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)[
    :, :, None, None
]


def cfg(rows: int, cols: int, flow: str, **kw: object) -> AcceleratorConfig:
    return AcceleratorConfig(pe_array={"rows": rows, "cols": cols}, dataflow=flow, **kw)


@pytest.mark.parametrize(
    ("rows", "cols", "flow", "util", "idle", "latency", "unmapped"),
    [
        # K, 2 PEs: groups (f0,f1)=[4,1] u=1-(1/4)*2=0.5 ; (f2,f3)=[2,0] u=1-(1/2)*2=0
        (2, 1, "K", 0.25, 3 + 2, 4 + 2, 0),
        # C, 2 PEs, chunks of 2 channels: f0=[2,2] u=1 ; f1=[1,0] d_avg=ceil(.5)=1 u=1 ;
        # f2=[2,0] u=0 ; f3 empty (skipped)
        (2, 1, "C", 2 / 3, 0 + 1 + 2, 2 + 1 + 2, 0),
        # KC 2x2: group (f0,f1) -> PEs [2,2,1,0] u=1 ; group (f2,f3) -> [2,0,0,0]:
        # d_avg=ceil(2/4)=1, u = 1-(1/2)(4/3) = 1/3
        (2, 2, "KC", (1 + 1 / 3) / 2, 3 + 6, 2 + 2, 0),
    ],
)
def test_hand_computed_layer(
    rows: int, cols: int, flow: str, util: float, idle: int, latency: int, unmapped: int
) -> None:
    config = cfg(rows, cols, flow)
    layer = evaluate(config, {"conv": MASK}).layers[0]
    assert layer.work == 7 and layer.nonzeros == 7 and layer.params == 16
    assert layer.utilization == pytest.approx(util)
    assert layer.idle == idle and layer.latency == latency and layer.unmapped_idle == unmapped
    # no profile: one position, one timestep, every input spiking, no skipping
    assert layer.compute_cycles == latency
    e = config.energy
    eq3 = e.accumulate * 7 + e.and_gate * 7 + e.pe_always_on * config.n_pe * latency
    assert layer.energy_pj["compute"] == pytest.approx(eq3)


def test_unmapped_pes_are_charged_but_not_in_utilization() -> None:
    # 3 input channels on 16 PEs (C): 13 PEs hold nothing
    mask = np.ones((2, 3, 1, 1), dtype=bool)
    layer = evaluate(cfg(4, 4, "C"), {"first": mask}).layers[0]
    assert layer.utilization == 1.0
    assert layer.unmapped_idle == 2 * 13 * 1


def balanced(k: int, per_filter: int, c: int = 64) -> np.ndarray:
    mask = np.zeros((k, c, 3, 3), dtype=bool)
    mask.reshape(k, -1)[:, :per_filter] = True
    return mask


@pytest.mark.parametrize("n", [2, 4, 8, 16, 32])
def test_table3_trend_latency_halves_energy_flat(n: int) -> None:
    """A balanced, compute-bound layer: doubling the PEs halves compute latency; compute energy
    stays flat (always-on energy runs over the real cycles, so the layer must be compute-bound:
    1024 positions)."""
    masks = {"conv": balanced(64, 10)}
    prof = {"layers": {"conv": {"positions": 1024}}}
    small = evaluate(cfg(n, 1, "K"), masks, prof).layers[0]
    big = evaluate(cfg(2 * n, 1, "K"), masks, prof).layers[0]
    assert small.bound == big.bound == "compute"
    assert big.compute_cycles == pytest.approx(small.compute_cycles / 2)
    assert big.energy_pj["compute"] == pytest.approx(small.energy_pj["compute"])
    assert small.utilization == big.utilization == 1.0


def test_imbalance_costs_latency_and_energy() -> None:
    even = balanced(16, 10)
    skew = np.zeros_like(even)
    skew.reshape(16, -1)[0, :160] = True  # same work, all on one PE
    a = evaluate(cfg(4, 4, "K"), {"c": even})
    b = evaluate(cfg(4, 4, "K"), {"c": skew})
    assert a.nonzeros == b.nonzeros
    assert b.layers[0].compute_cycles == 16 * a.layers[0].compute_cycles
    assert b.energy_pj["compute"] > a.energy_pj["compute"]
    assert a.utilization == 1.0 and b.utilization == 0.0


def test_profile_positions_timesteps_and_skipping() -> None:
    masks = {"conv": balanced(16, 10)}
    base = evaluate(cfg(4, 4, "K"), masks).layers[0]
    prof = {
        "layers": {
            "conv": {"positions": 49, "timesteps": 8, "spike_rate": 0.1, "tick_zero_fraction": 0.5}
        }
    }
    layer = evaluate(cfg(4, 4, "K"), masks, prof).layers[0]
    # 49 positions x ceil(8/4)=2 tick batches x half of the inputs skipped
    assert layer.compute_cycles == pytest.approx(base.compute_cycles * 49 * 2 * 0.5)
    assert layer.positions == 49 and layer.timesteps == 8


def test_channel_activity_moves_work_between_pes() -> None:
    mask = np.zeros((1, 4, 1, 1), dtype=bool)
    mask[0, :, 0, 0] = True
    prof = {
        "layers": {
            "fc": {
                "channel_tick_zero_fraction": [0.0, 0.0, 1.0, 1.0],
                "channel_spike_rate": [0.5, 0.5, 0.0, 0.0],
            }
        }
    }
    layer = evaluate(cfg(2, 1, "C"), {"fc": mask}, prof).layers[0]
    assert layer.utilization == 1.0  # raw counts are balanced: [2, 2]
    assert layer.utilization_effective == 0.0  # but PE 1 only sees silent channels
    assert layer.compute_cycles == 2


def test_profile_errors() -> None:
    masks = {"conv": balanced(4, 3, c=4)}
    with pytest.raises(ProfileMismatch, match="no entry for layer 'conv'"):
        evaluate(cfg(4, 4, "K"), masks, {"layers": {}})
    with pytest.raises(ConfigError, match="channel_spike_rate"):
        evaluate(cfg(4, 4, "K"), masks, {"layers": {"conv": {"channel_spike_rate": [0.1]}}})
    with pytest.raises(ConfigError, match="spike_rate"):
        evaluate(cfg(4, 4, "K"), masks, {"layers": {"conv": {"spike_rate": 2}}})


def test_summary_rescoring_equals_mask_scoring() -> None:
    rng = np.random.default_rng(1)
    masks = {
        "c1": rng.random((16, 3, 3, 3)) < 0.5,
        "c2": rng.random((32, 16, 3, 3)) < 0.1,
        "fc": rng.random((10, 128)) < 0.05,
    }
    prof = {
        "layers": {
            name: {
                "positions": 9,
                "timesteps": 4,
                "spike_rate": 0.2,
                "tick_zero_fraction": 0.3,
                "channel_spike_rate": list(rng.random(m.shape[1]) * 0.3),
                "channel_tick_zero_fraction": list(rng.random(m.shape[1])),
            }
            for name, m in masks.items()
        }
    }
    summary = summarize(masks)
    for rows, cols in ((4, 4), (2, 8), (3, 5)):
        for flow in ("K", "C", "KC"):
            config = cfg(rows, cols, flow)
            for p in (None, prof):
                a = evaluate(config, masks, p).to_dict()
                b = evaluate(config, summary, p).to_dict()
                assert _close(a, b)


def _close(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-9)
    return a == b


def test_network_totals_and_weighting() -> None:
    masks = {"a": balanced(16, 10), "b": np.eye(8, 64, dtype=bool)}
    r = evaluate(cfg(4, 4, "K"), masks)
    assert r.cycles == sum(layer.cycles for layer in r.layers)
    assert r.energy_pj["total"] == pytest.approx(
        sum(layer.energy_pj["total"] for layer in r.layers)
    )
    w = np.array([layer.params for layer in r.layers])
    u = np.array([layer.utilization for layer in r.layers])
    assert r.utilization == pytest.approx((w * u).sum() / w.sum())
    assert "parameter count" in r.utilization_weighting
    assert r.area_mm2 > 0
    d = r.to_dict()
    assert [layer["name"] for layer in d["layers"]] == ["a", "b"]


def test_memory_bound_with_slow_dram() -> None:
    masks = {"a": balanced(16, 100)}
    slow = cfg(4, 4, "K", memory={"dram_bandwidth_gbps": 0.001})
    layer = evaluate(slow, masks).layers[0]
    assert layer.bound == "memory" and layer.cycles == layer.memory_cycles > layer.compute_cycles
