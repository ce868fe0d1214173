"""snn.train: frozen pruned weights, divergence, snapshots, determinism, profile, accuracy."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from torch.utils.data import TensorDataset

from snn.data import Splits, load_dataset
from snn.models import ModelConfig, SpikingNet, build_model
from snn.prune import dense_masks, magnitude_prune
from snn.train import DivergedError, TrainConfig, evaluate, train

PROFILE_KEYS = {
    "positions",
    "timesteps",
    "spike_rate",
    "tick_zero_fraction",
    "channel_spike_rate",
    "channel_tick_zero_fraction",
}


@pytest.fixture(scope="module")
def digits() -> Splits:
    return load_dataset("digits", seed=0)


def _model(width: float = 0.5, t: int = 2, name: str = "convnet") -> SpikingNet:
    return build_model(ModelConfig(name=name, width=width, timesteps=t), (1, 8, 8), 10, seed=0)


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = dict(epochs=2, batch_size=64, num_threads=1)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize(
    "opt", [dict(optimizer="sgd", lr=0.1, momentum=0.9), dict(optimizer="adam", lr=1e-2)]
)
def test_pruned_weights_stay_exactly_zero(digits: Splits, opt: dict[str, object]) -> None:
    model = _model()
    masks = magnitude_prune(model, dense_masks(model), 0.6)
    before = {n: m.weight.detach().clone() for n, m in model.prunable().items()}
    train(model, digits, _cfg(weight_decay=5e-2, **opt), masks=masks, seed=0)
    for name, layer in model.prunable().items():
        w = layer.weight.detach()
        assert bool((w[~masks[name]] == 0).all()), name
        assert not torch.equal(w[masks[name]], before[name][masks[name]]), name


def test_nan_loss_raises_diverged(digits: Splits) -> None:
    with pytest.raises(DivergedError, match=r"epoch \d+ batch \d+"):
        train(_model(width=0.25), digits, _cfg(lr=1e6), seed=0)
    assert issubclass(DivergedError, RuntimeError)


def test_snapshot_semantics_and_history(digits: Splits) -> None:
    model = _model()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    seen: list[int] = []
    res = train(
        model, digits, _cfg(), seed=0, snapshot_epochs={0, 2}, on_epoch=lambda e, _: seen.append(e)
    )
    assert seen == [1, 2] and len(res.train_loss) == 2 and len(res.val_accuracy) == 2
    assert res.train_loss[1] < res.train_loss[0]
    assert all(torch.equal(res.snapshots[0][k], init[k]) for k in init)
    final = model.state_dict()
    assert all(torch.equal(res.snapshots[2][k], final[k]) for k in final)
    assert res.snapshots[2]["conv1.weight"] is not final["conv1.weight"]  # a clone
    with pytest.raises(ValueError, match="snapshot"):
        train(model, digits, _cfg(), seed=0, snapshot_epochs={3})


def test_training_is_deterministic_for_a_seed(digits: Splits) -> None:
    runs = []
    for _ in range(2):
        model = _model()
        res = train(model, digits, _cfg(epochs=1), seed=3)
        runs.append((res.train_loss, model.state_dict()))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_thread_count_restored(digits: Splits) -> None:
    old = torch.get_num_threads()
    train(_model(width=0.25), digits, _cfg(epochs=0, num_threads=1), seed=0)
    assert torch.get_num_threads() == old


def test_profile_exact_shape_and_values(digits: Splits) -> None:
    model = _model(width=0.5, t=3)
    ev = evaluate(model, digits.test, profile=True, profile_samples=100)
    assert ev.profile is not None and list(ev.profile) == ["layers"]
    layers = ev.profile["layers"]
    assert list(layers) == ["conv1", "conv2", "fc"]
    expect = {"conv1": (64, 1), "conv2": (16, 8), "fc": (1, 256)}  # positions, input channels
    for name, entry in layers.items():
        geometry = {"input_size", "output_size", "stride", "padding"} if name != "fc" else set()
        assert set(entry) == PROFILE_KEYS | geometry
        assert entry["positions"] == expect[name][0] and entry["timesteps"] == 3
        assert len(entry["channel_spike_rate"]) == expect[name][1]
        assert len(entry["channel_tick_zero_fraction"]) == expect[name][1]
        values = [entry["spike_rate"], entry["tick_zero_fraction"]]
        values += entry["channel_spike_rate"] + entry["channel_tick_zero_fraction"]
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in values)
        assert isinstance(entry["positions"], int)
    # conv geometry for the cost model's memory hierarchy: 8x8 digits, max-pool 2 between convs
    assert (layers["conv1"]["input_size"], layers["conv1"]["output_size"]) == ([8, 8], [8, 8])
    assert (layers["conv2"]["input_size"], layers["conv2"]["output_size"]) == ([4, 4], [4, 4])
    assert layers["conv2"]["stride"] == 1 and layers["conv2"]["padding"] == 1
    # Zero at all T implies zero at each step: the spike rate is at most 1 - tick_zero.
    assert all(e["spike_rate"] <= 1 - e["tick_zero_fraction"] + 1e-12 for e in layers.values())

    # Matches a direct computation over the same 100 samples.
    x = digits.test.tensors[0][:100]  # type: ignore[attr-defined]
    with torch.no_grad(), model.record_inputs() as rec:
        model.eval()
        model(x)
    for name, (inp,) in rec.items():
        nz = inp.reshape(3, 100, inp.shape[2], -1) != 0
        assert layers[name]["spike_rate"] == pytest.approx(float(nz.float().mean()))
        tz = (~nz.any(0)).float()
        assert layers[name]["tick_zero_fraction"] == pytest.approx(float(tz.mean()))
        per_ch = nz.float().mean(dim=(0, 1, 3)).tolist()
        assert layers[name]["channel_spike_rate"] == pytest.approx(per_ch)
        assert layers[name]["channel_tick_zero_fraction"] == pytest.approx(
            tz.mean(dim=(0, 2)).tolist()
        )


def test_evaluate_restores_mode_and_counts(digits: Splits) -> None:
    model = _model().train()
    ev = evaluate(model, digits.val, batch_size=50)
    assert model.training and ev.profile is None
    assert ev.n_samples == len(digits.val) and 0.0 <= ev.accuracy <= 1.0


def test_digits_convnet_learns(digits: Splits) -> None:
    model = _model(width=1.0, t=4)
    res = train(model, digits, _cfg(epochs=3), seed=0)
    acc = evaluate(model, digits.test).accuracy
    assert acc > 0.8, (acc, res.train_loss)
    assert res.samples_per_second > 0


def test_train_config_defaults_and_validation() -> None:
    paper = TrainConfig.paper()
    assert (paper.epochs, paper.batch_size, paper.optimizer) == (200, 128, "sgd")
    assert (paper.lr, paper.momentum, paper.weight_decay, paper.schedule) == (
        0.1,
        0.9,
        5e-4,
        "cosine",
    )
    assert TrainConfig.paper(epochs=3).epochs == 3
    assert TrainConfig(device="auto").torch_device().type in ("cpu", "cuda")
    assert TrainConfig().torch_device() == torch.device("cpu")
    with pytest.raises(ValidationError, match="not a torch device"):
        TrainConfig(device="gpu0")
    for bad in (dict(epochs=-1), dict(lr=0.0), dict(optimizer="rmsprop"), dict(foo=1)):
        with pytest.raises(ValidationError):
            TrainConfig(**bad)


def test_cosine_schedule_reaches_zero(digits: Splits) -> None:
    lrs: list[float] = []
    train(
        _model(width=0.25),
        digits,
        _cfg(epochs=2, lr=0.2),
        seed=0,
        on_epoch=lambda _e, d: lrs.append(d["lr"]),
    )
    steps = math.ceil(len(digits.train) / 64)
    assert lrs[0] == pytest.approx(0.1 * (1 + math.cos(math.pi * (steps - 1) / (2 * steps))))
    assert lrs[1] < 1e-3


def _small(digits: Splits, n: int) -> Splits:
    """The first ``n`` training images of digits (one batch per epoch with batch_size >= n)."""
    x, y = digits.train.tensors  # type: ignore[attr-defined]
    return Splits(
        TensorDataset(x[:n], y[:n]), digits.val, digits.test, digits.in_shape, 10, "digits"
    )


def test_cosine_schedule_is_per_batch_cosine(digits: Splits) -> None:
    """One batch per epoch: the lr of epoch e is the cosine at batch e - 1 of all 6 batches."""
    lrs: list[float] = []
    small = _small(digits, 64)
    train(
        _model(width=0.25),
        small,
        _cfg(epochs=6, lr=0.3),
        seed=0,
        on_epoch=lambda _e, d: lrs.append(d["lr"]),
    )
    expected = [0.15 * (1 + math.cos(math.pi * s / 6)) for s in range(6)]
    assert lrs == pytest.approx(expected, rel=1e-12, abs=1e-15)
    flat: list[float] = []
    train(
        _model(width=0.25),
        small,
        _cfg(epochs=3, lr=0.3, schedule="none"),
        seed=0,
        on_epoch=lambda _e, d: flat.append(d["lr"]),
    )
    assert flat == [0.3, 0.3, 0.3]


@pytest.mark.parametrize(
    "opts",
    [dict(precision="bf16"), dict(channels_last=True), dict(precision="bf16", channels_last=True)],
)
def test_bf16_and_channels_last_train_on_cpu(digits: Splits, opts: dict[str, object]) -> None:
    """The GPU options run on the CPU too: finite loss, fp32 weights, pruned weights stay 0, and
    channels_last alone matches the default up to rounding."""
    small = _small(digits, 256)
    ref_model, model = _model(), _model()
    masks = magnitude_prune(model, dense_masks(model), 0.5)
    ref = train(ref_model, small, _cfg(epochs=1), masks=masks, seed=0)
    res = train(model, small, _cfg(epochs=1, **opts), masks=masks, seed=0)
    assert math.isfinite(res.train_loss[0])
    for name, layer in model.prunable().items():
        assert layer.weight.dtype == torch.float32
        assert bool((layer.weight.detach()[~masks[name]] == 0).all()), name
    if opts.get("channels_last"):
        conv = model.prunable()["conv1"].weight
        assert conv.is_contiguous(memory_format=torch.channels_last)
    if "precision" not in opts:
        assert res.train_loss[0] == pytest.approx(ref.train_loss[0], rel=1e-4)
    else:  # bf16 rounding: close, not equal
        assert res.train_loss[0] == pytest.approx(ref.train_loss[0], rel=0.1)
        assert res.train_loss[0] != ref.train_loss[0]
    assert 0.0 <= evaluate(model, digits.test).accuracy <= 1.0
