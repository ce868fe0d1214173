"""snn.ticket: the lottery-ticket round loop, dense-run caching, u-Ticket wiring."""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from snn.data import Splits, load_dataset
from snn.models import ModelConfig, build_model
from snn.ticket import (
    DenseRun,
    RoundInfo,
    TicketConfig,
    balance_layer_names,
    find_ticket,
    train_dense,
)
from snn.train import TrainConfig

MODEL = ModelConfig(name="convnet", width=0.25, timesteps=2)
TRAIN = TrainConfig(epochs=1, batch_size=64, num_threads=1)


@pytest.fixture(scope="module")
def digits() -> Splits:
    return load_dataset("digits", seed=0)


def _k_pe_index(shape: tuple[int, ...]) -> np.ndarray:
    """The "K" mapping: filter k -> group k // n_pe, PE k % n_pe (value k)."""
    k = shape[0]
    return np.broadcast_to(
        np.arange(k, dtype=np.int64).reshape(k, *([1] * (len(shape) - 1))), shape
    )


def _pe_index(model_cfg: ModelConfig) -> dict[str, np.ndarray]:
    model = build_model(model_cfg, (1, 8, 8), 10)
    return {n: _k_pe_index(tuple(m.weight.shape)) for n, m in model.prunable().items()}


def test_find_ticket_end_to_end_and_reproducible(digits: Splits) -> None:
    cfg = TicketConfig(rounds=2, rate=0.25, rewind_epoch=1, seed=5)
    infos: list[RoundInfo] = []
    state = find_ticket(MODEL, digits, TRAIN, cfg, on_round=infos.append)
    assert [i.round for i in infos] == [0, 1, 2]
    assert all(bool(m.all()) for m in infos[0].masks.values()) and infos[0].sparsity == 0.0
    for r, info in enumerate(infos):
        assert info.sparsity == pytest.approx(1 - 0.75**r, abs=1e-3)
        assert set(info.masks) == {"conv1", "conv2", "fc"}
        assert all(m.dtype == np.bool_ for m in info.masks.values())
        assert list(info.profile["layers"]) == ["conv1", "conv2", "fc"]
        assert 0.0 <= info.accuracy <= 1.0
    # The final weights (returned) respect the final round's masks.
    model = build_model(MODEL, (1, 8, 8), 10)
    model.load_state_dict(state)
    final = infos[-1].masks
    for n, layer in model.prunable().items():
        assert bool((layer.weight.detach()[~torch.from_numpy(final[n])] == 0).all())
    # Same configs + seed -> identical masks, accuracies and weights.
    again: list[RoundInfo] = []
    state_b = find_ticket(MODEL, digits, TRAIN, cfg, on_round=again.append)
    assert [i.accuracy for i in infos] == [i.accuracy for i in again]
    assert all(np.array_equal(final[k], again[-1].masks[k]) for k in final)
    assert all(torch.equal(state[k], state_b[k]) for k in state)


def test_dense_run_save_load_and_reuse(digits: Splits, tmp_path: Path) -> None:
    cfg = TicketConfig(rounds=1, rewind_epoch=0, seed=2)
    dense = train_dense(MODEL, digits, TRAIN, seed=2, rewind_epoch=0)
    path = tmp_path / "cache" / "dense.pt"
    dense.save(path)
    loaded = DenseRun.load(path)
    assert loaded.accuracy == dense.accuracy and loaded.profile == dense.profile
    assert loaded.meta["model"] == MODEL.model_dump()
    assert all(
        torch.equal(loaded.rewind_state[k], dense.rewind_state[k]) for k in dense.rewind_state
    )
    fresh: list[RoundInfo] = []
    cached: list[RoundInfo] = []
    find_ticket(MODEL, digits, TRAIN, cfg, on_round=fresh.append)
    find_ticket(MODEL, digits, TRAIN, cfg, dense=loaded, on_round=cached.append)
    assert [i.accuracy for i in fresh] == [i.accuracy for i in cached]
    assert all(np.array_equal(fresh[-1].masks[k], cached[-1].masks[k]) for k in fresh[-1].masks)
    with pytest.raises(ValueError, match="rewind"):
        find_ticket(MODEL, digits, TRAIN, cfg.model_copy(update={"rewind_epoch": 1}), dense=loaded)
    with pytest.raises(ValueError, match="model config"):
        find_ticket(MODEL.model_copy(update={"width": 0.5}), digits, TRAIN, cfg, dense=loaded)


def test_balance_layer_selection() -> None:
    res = build_model(ModelConfig(name="resnet19", width=1 / 16), (3, 32, 32), 10)
    authors = balance_layer_names(res, "authors")
    assert "conv1" not in authors and "fc1" not in authors and "fc2" not in authors
    assert authors[0] == "layer1.0.conv1" and "layer1.0.shortcut.0" in authors
    assert len(authors) == 19 and len(balance_layer_names(res, "all")) == 22
    assert balance_layer_names(res, ["fc2", "conv1"]) == ["conv1", "fc2"]
    with pytest.raises(ValueError, match="unknown layers"):
        balance_layer_names(res, ["nope"])


def _fake_uticket(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Install a stand-in snn.uticket whose balance() recovers every weight of its layers."""
    calls: list[dict[str, Any]] = []

    def balance(
        masks: dict[str, np.ndarray],
        pe_index: dict[str, np.ndarray],
        n_pe: int,
        seed: int,
        mode: str = "random",
        weights: dict[str, np.ndarray] | None = None,
        channel_cost: dict[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        calls.append(
            dict(
                layers=list(masks),
                seed=seed,
                mode=mode,
                n_pe=n_pe,
                weights=weights,
                channel_cost=channel_cost,
            )
        )
        assert all(pe_index[k].shape == masks[k].shape for k in masks)
        assert all(m.dtype == np.bool_ for m in masks.values())
        return {k: np.ones_like(m) for k, m in masks.items()}

    fake = types.ModuleType("snn.uticket")
    fake.balance = balance  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snn.uticket", fake)
    return calls


@pytest.mark.parametrize("carry", ["balanced", "pre_balance"])
def test_uticket_wiring_with_stand_in(
    digits: Splits, monkeypatch: pytest.MonkeyPatch, carry: str
) -> None:
    calls = _fake_uticket(monkeypatch)
    cfg = TicketConfig(
        rounds=2,
        seed=3,
        balance="uticket",
        balance_layers="authors",
        carry=carry,
        balance_mode="magnitude",
    )
    infos: list[RoundInfo] = []
    find_ticket(
        MODEL, digits, TRAIN, cfg, pe_index=_pe_index(MODEL), n_pe=16, on_round=infos.append
    )
    assert [c["layers"] for c in calls] == [["conv2"], ["conv2"]]
    assert [c["seed"] for c in calls] == [4, 5] and calls[0]["n_pe"] == 16
    assert calls[0]["mode"] == "magnitude" and set(calls[0]["weights"]) == {"conv2"}
    r1, r2 = infos[1], infos[2]
    assert bool(r1.masks["conv2"].all()) and not bool(r1.pre_balance_masks["conv2"].all())
    assert np.array_equal(r1.masks["fc"], r1.pre_balance_masks["fc"])
    base = r1.masks if carry == "balanced" else r1.pre_balance_masks
    alive = sum(int(m.sum()) for m in base.values())
    assert sum(int(m.sum()) for m in r2.pre_balance_masks.values()) == alive - round(0.25 * alive)


def test_spike_aware_costs_and_per_round_maps(
    digits: Splits, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fake_uticket(monkeypatch)
    cfg = TicketConfig(rounds=2, seed=1, balance="uticket", balance_cost="expected_work")
    seen: list[tuple[set[str], dict[str, Any]]] = []
    fixed = _pe_index(MODEL)

    def per_round(pre: dict[str, np.ndarray], profile: dict[str, Any]) -> dict[str, np.ndarray]:
        seen.append((set(pre), profile))
        return fixed

    infos: list[RoundInfo] = []
    find_ticket(MODEL, digits, TRAIN, cfg, pe_index=per_round, n_pe=16, on_round=infos.append)
    assert len(seen) == 2 and seen[0][0] == {"conv1", "conv2", "fc"}
    # each round balances with the profile of the network it prunes: the previous round's
    for call, (_, profile), info in zip(calls, seen, infos, strict=False):
        assert profile is info.profile
        z = np.asarray(profile["layers"]["conv2"]["channel_tick_zero_fraction"])
        assert np.allclose(call["channel_cost"]["conv2"], 1 - z)


def test_uticket_needs_pe_index(digits: Splits) -> None:
    cfg = TicketConfig(rounds=1, balance="uticket")
    with pytest.raises(ValueError, match="pe_index"):
        find_ticket(MODEL, digits, TRAIN, cfg)
    bad = {n: a[:1] for n, a in _pe_index(MODEL).items()}
    with pytest.raises(ValueError, match="shape"):
        find_ticket(MODEL, digits, TRAIN, cfg, pe_index=bad, n_pe=16)


@pytest.mark.parametrize("mode", ["random", "magnitude"])
def test_uticket_balances_every_group(digits: Splits, mode: str) -> None:
    """With the real snn.uticket: every PE of every group ends with the same workload."""
    pytest.importorskip("snn.uticket")
    model_cfg = ModelConfig(name="convnet", width=1.0, timesteps=2)
    pe_index, n_pe = _pe_index(model_cfg), 16
    cfg = TicketConfig(
        rounds=2, rate=0.5, seed=0, balance="uticket", balance_layers="all", balance_mode=mode
    )
    infos: list[RoundInfo] = []
    find_ticket(model_cfg, digits, TRAIN, cfg, pe_index=pe_index, n_pe=n_pe, on_round=infos.append)
    for info in infos[1:]:
        assert info.sparsity > 0.2
        for name, mask in info.masks.items():
            idx = pe_index[name].ravel()
            size = n_pe * (int(idx.max()) // n_pe + 1)
            work = np.bincount(idx, weights=mask.ravel(), minlength=size).reshape(-1, n_pe)
            cap = np.bincount(idx, minlength=size).reshape(-1, n_pe)
            for g in range(work.shape[0]):
                d, c = work[g][cap[g] > 0], cap[g][cap[g] > 0]
                target = min(math.ceil(d.mean()), int(c.max()))
                assert np.array_equal(d, np.minimum(target, c)), (name, g, d)


def test_authors_options_prune_the_pre_balance_mask_at_the_trained_quantile(
    digits: Splits,
) -> None:
    """balance_layers=authors + carry=authors (the authors' code) with the real balancer: round
    2 thresholds round 1's pre-balance mask at the 0.25-quantile of round 1's trained non-zero
    weights; only conv layers after the first are balanced."""
    from snn.prune import threshold_prune

    model_cfg = ModelConfig(name="convnet", width=1.0, timesteps=2)
    cfg = TicketConfig(
        rounds=1, rate=0.25, seed=0, balance="uticket", balance_layers="authors", carry="authors"
    )
    pe = _pe_index(model_cfg)
    dense = train_dense(model_cfg, digits, TRAIN, seed=0, rewind_epoch=1)
    first: list[RoundInfo] = []
    one = find_ticket(
        model_cfg, digits, TRAIN, cfg, pe_index=pe, n_pe=16, dense=dense, on_round=first.append
    )
    infos: list[RoundInfo] = []
    find_ticket(
        model_cfg,
        digits,
        TRAIN,
        cfg.model_copy(update={"rounds": 2}),
        pe_index=pe,
        n_pe=16,
        dense=dense,
        on_round=infos.append,
    )
    assert infos[1].accuracy == first[1].accuracy  # round 1 is deterministic
    r1 = infos[1]
    assert not np.array_equal(r1.masks["conv2"], r1.pre_balance_masks["conv2"])  # balanced
    for n in ("conv1", "fc"):  # not balanced by the authors' code
        assert np.array_equal(r1.masks[n], r1.pre_balance_masks[n])
    model = build_model(model_cfg, (1, 8, 8), 10)
    model.load_state_dict(one)
    expected = threshold_prune(model, first[-1].pre_balance_masks, 0.25)
    got = infos[2].pre_balance_masks
    assert all(np.array_equal(got[n], expected[n].numpy()) for n in got)
    # a recovered weight (in round 1's balanced mask, not its pre-balance mask) never survives
    recovered = r1.masks["conv2"] & ~r1.pre_balance_masks["conv2"]
    assert recovered.any() and not (got["conv2"] & recovered).any()
