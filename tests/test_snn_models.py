"""snn.models: builders, output shapes, prunable order, LIF dynamics, input recording."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import snntorch
import torch
from pydantic import ValidationError
from torch import nn

from snn.models import MODELS, ModelConfig, MultiStepLeaky, build_model


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("in_shape", [(3, 32, 32), (1, 28, 28), (1, 8, 8)])
def test_each_model_builds_and_forward_shape(name: str, in_shape: tuple[int, int, int]) -> None:
    width = 1 / 16 if name in ("vgg16", "resnet19") else 0.25
    cfg = ModelConfig(name=name, width=width, timesteps=3)
    model = build_model(cfg, in_shape, 7, seed=0)
    out = model(torch.rand(2, *in_shape))
    assert out.shape == (3, 2, 7)
    out.sum().backward()
    assert all(m.weight.grad is not None for m in model.prunable().values())


def test_prunable_order_and_shapes() -> None:
    conv = build_model(ModelConfig(name="convnet"), (1, 8, 8), 10)
    assert list(conv.prunable()) == ["conv1", "conv2", "fc"]
    shapes = {n: tuple(m.weight.shape) for n, m in conv.prunable().items()}
    assert shapes == {"conv1": (16, 1, 3, 3), "conv2": (32, 16, 3, 3), "fc": (10, 512)}

    vgg = build_model(ModelConfig(name="vgg16", width=1 / 16), (3, 32, 32), 10)
    assert list(vgg.prunable()) == [f"conv{i}" for i in range(1, 14)] + ["fc"]
    assert tuple(vgg.prunable()["fc"].weight.shape) == (10, 32)

    res = build_model(ModelConfig(name="resnet19", width=1 / 16), (3, 32, 32), 10)
    names = list(res.prunable())
    assert len(names) == 22  # stem + 16 block convs + 3 shortcuts + 2 FC
    assert names[:4] == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.0.shortcut.0"]
    assert names[-2:] == ["fc1", "fc2"]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in res.prunable().values())
    assert tuple(res.prunable()["fc1"].weight.shape) == (16, 32)
    assert tuple(res.prunable()["layer3.0.conv1"].weight.shape) == (32, 16, 3, 3)
    # prunable() order is named_modules() order
    order = [n for n, _ in res.named_modules()]
    assert names == sorted(names, key=order.index)


def _reference_lif(x: torch.Tensor, beta: float, thr: float, reset: str) -> torch.Tensor:
    """Zero reset: v <- 0 after a spike, then v <- beta v + (1 - beta) x (the paper).
    Subtract (snntorch's convention): v <- beta v + (1 - beta) x - s_prev * thr."""
    v = torch.zeros_like(x[0])
    s = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        if reset == "zero":
            v = beta * (v * (1 - s)) + (1 - beta) * x[t]
        else:
            v = beta * v + (1 - beta) * x[t] - s * thr
        s = (v > thr).float()
        out.append(s)
    return torch.stack(out)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_lif_matches_paper_dynamics(reset: str) -> None:
    t, beta, thr = 6, 0.25, 1.0
    x = torch.rand(t, 5, 7) * 3.0
    lif = MultiStepLeaky(t, beta=beta, threshold=thr, reset=reset)  # type: ignore[arg-type]
    got = lif(x.flatten(0, 1)).view(t, 5, 7)
    assert torch.equal(got, _reference_lif(x, beta, thr, reset))


@pytest.mark.parametrize("surrogate", ["atan", "sigmoid", "fast_sigmoid", "triangular"])
def test_surrogates_give_gradients(surrogate: str) -> None:
    cfg = ModelConfig(name="convnet", width=0.25, timesteps=2, surrogate=surrogate)
    model = build_model(cfg, (1, 8, 8), 10, seed=0)
    model(torch.rand(4, 1, 8, 8)).pow(2).sum().backward()
    grad = model.prunable()["conv1"].weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0


def test_forward_passes_are_independent_and_no_state_leaks() -> None:
    before = len(snntorch.SpikingNeuron.instances)
    model = build_model(ModelConfig(name="convnet", width=0.5), (1, 8, 8), 10, seed=0).eval()
    assert len(snntorch.SpikingNeuron.instances) == before
    x = torch.rand(3, 1, 8, 8)
    first = model(x)
    model(torch.rand(5, 1, 8, 8) * 4)  # a different batch in between
    assert torch.equal(first, model(x))
    model.train()
    model(x).sum().backward()
    copy.deepcopy(model)  # no graph-holding state left on the neurons


def test_build_seed_deterministic_and_keeps_global_rng() -> None:
    cfg = ModelConfig(name="mlp", width=0.25)
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(cfg, (1, 8, 8), 10, seed=7)
    assert torch.equal(torch.rand(1), expected)
    b = build_model(cfg, (1, 8, 8), 10, seed=7)
    c = build_model(cfg, (1, 8, 8), 10, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["fc1.weight"], sc["fc1.weight"])


def test_model_config_validation() -> None:
    assert ModelConfig().model_dump()["beta"] == 0.25
    with pytest.raises(ValidationError, match="allowed: convnet"):
        ModelConfig(name="alexnet")
    with pytest.raises(ValidationError):
        ModelConfig(beta=1.0)
    with pytest.raises(ValidationError):
        ModelConfig(timesteps=0)
    with pytest.raises(ValidationError):
        ModelConfig(widht=2.0)  # type: ignore[call-arg]


def test_record_inputs_shapes_and_first_layer_is_the_image() -> None:
    model = build_model(ModelConfig(name="convnet", width=0.5, timesteps=3), (1, 8, 8), 10)
    x = torch.rand(4, 1, 8, 8)
    with model.record_inputs() as rec:
        model(x)
    assert list(rec) == ["conv1", "conv2", "fc"]
    assert rec["conv1"][0].shape == (3, 4, 1, 8, 8)
    assert torch.equal(rec["conv1"][0][2], x)
    assert rec["conv2"][0].shape == (3, 4, 8, 4, 4)
    assert rec["fc"][0].shape == (3, 4, 16 * 16)
    spikes = torch.cat([rec["conv2"][0].flatten(), rec["fc"][0].flatten()])
    assert set(torch.unique(spikes).tolist()) <= {0.0, 1.0}
    model(x)  # hooks are gone after the context
    assert len(rec["conv1"]) == 1


def test_import_snn_is_cheap_and_lazy() -> None:
    code = (
        "import sys, snn\n"
        "heavy = {'torch', 'snntorch', 'mlxtend', 'torchvision', 'sklearn'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert snn.find_ticket.__module__ == 'snn.ticket'\n"
        "assert not {'accelerator', 'dse', 'mlxtend'} & set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
