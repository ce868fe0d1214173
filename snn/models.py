"""Spiking networks built from torch layers and snntorch ``Leaky`` neurons.

Conventions
-----------
* Direct (analog) input encoding: the same image is fed at every timestep.
* Inside the network activations are *time-folded*: shape (T * B, ...), timestep-major. Stateless
  layers (conv, BN, pooling, linear) therefore run once over all timesteps (large, fast matmuls;
  BN statistics are taken over time and batch), and only :class:`MultiStepLeaky` neurons unfold
  time to integrate membranes step by step.
* ``forward(x)`` takes images (B, C, H, W) and returns logits per timestep (T, B, n_classes);
  the last layer is a plain ``nn.Linear`` without a neuron.
* LIF (the paper's): ``v <- beta * v + (1 - beta) * x``, spike when ``v > threshold``, then hard
  reset to 0 (``reset="zero"``). With ``reset="subtract"`` snntorch's convention applies: the
  threshold is subtracted at the next step, after the decay
  (``v <- beta * v + (1 - beta) * x - s_prev * threshold``). Membranes start at 0 on every forward
  call, so two forward passes are independent (no hidden global state).
* Prunable layers are the ``nn.Conv2d``/``nn.Linear`` modules in ``named_modules`` order; masks
  elsewhere are keyed by these names and have the weight shapes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import snntorch
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from snntorch import surrogate as sg
from torch import Tensor, nn

Surrogate = Literal["atan", "sigmoid", "fast_sigmoid", "triangular"]
RecordCallback = Callable[[str, Tensor, Tensor], None]
"""``callback(layer_name, layer_input (T, B, ...), layer_output (T, B, ...))``."""


class ModelConfig(BaseModel):
    """Which spiking network to build and its neuron parameters."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("convnet", description="Architecture, a key of snn.models.MODELS.")
    timesteps: int = Field(4, ge=1, le=64, description="Simulation timesteps T (paper: 4).")
    width: float = Field(
        1.0, gt=0.0, le=64.0, description="Channel/feature width multiplier (1.0 = paper sizes)."
    )
    beta: float = Field(
        0.25,
        ge=0.0,
        lt=1.0,
        description="Membrane decay; v <- beta*v + (1-beta)*x (paper: 0.25).",
    )
    threshold: float = Field(1.0, gt=0.0, le=100.0, description="Firing threshold.")
    surrogate: Surrogate = Field(
        "atan", description="Surrogate gradient of the spike (authors' code: atan)."
    )
    reset: Literal["zero", "subtract"] = Field(
        "zero", description="Reset after a spike: hard reset to 0 (paper) or subtract threshold."
    )

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in MODELS:
            raise ValueError(f"unknown model {v!r}; allowed: {', '.join(MODELS)}")
        return v


class _Triangle(torch.autograd.Function):
    """Heaviside forward, triangular surrogate ``max(0, 1 - |u|)`` backward."""

    @staticmethod
    def forward(ctx: Any, u: Tensor) -> Tensor:
        ctx.save_for_backward(u)
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        u: Tensor = ctx.saved_tensors[0]
        return grad * (1.0 - u.abs()).clamp_min(0.0)


class _Sigmoid(torch.autograd.Function):
    """Heaviside forward, sigmoid-derivative surrogate ``k sig(ku) (1 - sig(ku))`` backward
    (overflow-free, unlike snntorch's ``exp``-ratio form, which gives NaN for u << 0)."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, slope: float) -> Tensor:
        ctx.save_for_backward(u)
        ctx.slope = slope
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        u: Tensor = ctx.saved_tensors[0]
        sig = torch.sigmoid(ctx.slope * u)
        return grad * ctx.slope * sig * (1.0 - sig), None


def _sigmoid(u: Tensor) -> Tensor:
    out: Tensor = _Sigmoid.apply(u, 25.0)  # type: ignore[no-untyped-call]
    return out


def _triangle(u: Tensor) -> Tensor:
    out: Tensor = _Triangle.apply(u)  # type: ignore[no-untyped-call]
    return out


def surrogate_fn(name: Surrogate) -> Callable[[Tensor], Tensor]:
    """The spike function for ``name``.

    ``atan`` (alpha 2) and ``fast_sigmoid`` (slope 25) are snntorch's. ``sigmoid`` (slope 25) and
    ``triangular`` (``max(0, 1-|u|)``) are ours: snntorch's sigmoid overflows to NaN for very
    negative membranes, and its triangular has a non-vanishing, sign-flipping gradient
    everywhere, which is not the usual triangle surrogate.
    """
    fn: Callable[[Tensor], Tensor]
    if name == "atan":
        fn = sg.atan(alpha=2.0)
    elif name == "sigmoid":
        fn = _sigmoid
    elif name == "fast_sigmoid":
        fn = sg.fast_sigmoid(slope=25)
    elif name == "triangular":
        fn = _triangle
    else:
        raise ValueError(f"unknown surrogate {name!r}")
    return fn


class MultiStepLeaky(snntorch.Leaky):  # type: ignore[misc]
    """snntorch ``Leaky`` run over all T timesteps of a time-folded (T * B, ...) input.

    The input current is scaled by ``1 - beta`` so the update is exactly the paper's
    ``v <- beta v + (1 - beta) x``. The membrane starts at zero on each call and no state is
    kept afterwards (the instance is also removed from snntorch's global instance list, which
    would otherwise keep every neuron ever built alive).
    """

    def __init__(
        self,
        timesteps: int,
        *,
        beta: float,
        threshold: float = 1.0,
        surrogate: Surrogate = "atan",
        reset: Literal["zero", "subtract"] = "zero",
    ) -> None:
        super().__init__(
            beta=beta,
            threshold=threshold,
            spike_grad=surrogate_fn(surrogate),
            init_hidden=False,
            reset_mechanism=reset,
        )
        instances = snntorch.SpikingNeuron.instances
        for i in range(len(instances) - 1, -1, -1):
            if instances[i] is self:
                del instances[i]
                break
        self.timesteps = timesteps
        self.input_scale = 1.0 - beta

    def forward(self, x: Tensor) -> Tensor:
        xs = x.reshape(self.timesteps, -1, *x.shape[1:]) * self.input_scale
        mem = torch.zeros_like(xs[0])
        spikes = []
        for t in range(self.timesteps):
            spk, mem = super().forward(xs[t], mem)
            spikes.append(spk)
        # Drop references to this call's tensors (and autograd graph).
        self.mem = torch.zeros(0, device=x.device)
        self.reset = None
        return torch.stack(spikes).flatten(0, 1)

    def extra_repr(self) -> str:
        return f"T={self.timesteps}, beta={float(self.beta):g}, threshold={float(self.threshold):g}"


class SpikingNet(nn.Module):
    """A sequence of named layers run on time-folded activations; see the module docstring."""

    def __init__(
        self,
        layers: Mapping[str, nn.Module],
        *,
        timesteps: int,
        in_shape: tuple[int, int, int],
        n_classes: int,
        config: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        for name, module in layers.items():
            self.add_module(name, module)
        self.timesteps = timesteps
        self.in_shape = tuple(in_shape)
        self.n_classes = n_classes
        self.config = config

    def forward(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) -> logits per timestep (T, B, n_classes)."""
        b, t = x.shape[0], self.timesteps
        h = x.unsqueeze(0).expand(t, *x.shape).reshape(t * b, *x.shape[1:])
        for layer in self.children():
            h = layer(h)
        return h.view(t, b, -1)

    def prunable(self) -> dict[str, nn.Conv2d | nn.Linear]:
        """Conv and linear layers (BN excluded), in network order, keyed by module name."""
        return {n: m for n, m in self.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}

    @contextmanager
    def record_inputs(
        self, callback: RecordCallback | None = None
    ) -> Iterator[dict[str, list[Tensor]]]:
        """Record every prunable layer's input (the tensor it multiplies) per timestep.

        With ``callback``, each forward pass calls ``callback(name, input, output)`` with
        detached (T, B, ...) tensors (use it to reduce on the fly). Without, the context yields
        a dict ``name -> list of input tensors (T, B, ...)`` (one entry per forward pass). The
        first layer's input is the analog image repeated over T.
        """
        store: dict[str, list[Tensor]] = {}
        t = self.timesteps

        def default(name: str, x: Tensor, _y: Tensor) -> None:
            store.setdefault(name, []).append(x)

        cb = callback or default

        def make(name: str) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
            def hook(_m: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
                x = inputs[0].detach()
                y = output.detach()
                cb(name, x.reshape(t, -1, *x.shape[1:]), y.reshape(t, -1, *y.shape[1:]))

            return hook

        handles = [m.register_forward_hook(make(n)) for n, m in self.prunable().items()]
        try:
            yield store
        finally:
            for h in handles:
                h.remove()


Builder = Callable[[ModelConfig, tuple[int, int, int], int], SpikingNet]


def _ch(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _lif(cfg: ModelConfig) -> MultiStepLeaky:
    return MultiStepLeaky(
        cfg.timesteps,
        beta=cfg.beta,
        threshold=cfg.threshold,
        surrogate=cfg.surrogate,
        reset=cfg.reset,
    )


def _net(
    layers: OrderedDict[str, nn.Module], cfg: ModelConfig, in_shape: tuple[int, int, int], k: int
) -> SpikingNet:
    return SpikingNet(layers, timesteps=cfg.timesteps, in_shape=in_shape, n_classes=k, config=cfg)


def convnet(cfg: ModelConfig, in_shape: tuple[int, int, int], n_classes: int) -> SpikingNet:
    """Small CPU conv net: [conv3x3-BN-LIF-maxpool2] -> conv3x3-BN-LIF -> maxpool to 4x4 -> FC."""
    c, c1, c2 = in_shape[0], _ch(16, cfg.width), _ch(32, cfg.width)
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(c, c1, 3, padding=1, bias=False),
        bn1=nn.BatchNorm2d(c1),
        lif1=_lif(cfg),
        pool1=nn.MaxPool2d(2, ceil_mode=True),
        conv2=nn.Conv2d(c1, c2, 3, padding=1, bias=False),
        bn2=nn.BatchNorm2d(c2),
        lif2=_lif(cfg),
        pool2=nn.AdaptiveMaxPool2d(4),
        flatten=nn.Flatten(),
        fc=nn.Linear(c2 * 16, n_classes),
    )
    return _net(layers, cfg, in_shape, n_classes)


def mlp(cfg: ModelConfig, in_shape: tuple[int, int, int], n_classes: int) -> SpikingNet:
    """Flatten -> [Linear-BN1d-LIF] x 2 (256w, 128w) -> Linear."""
    n_in = in_shape[0] * in_shape[1] * in_shape[2]
    h1, h2 = _ch(256, cfg.width), _ch(128, cfg.width)
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        flatten=nn.Flatten(),
        fc1=nn.Linear(n_in, h1, bias=False),
        bn1=nn.BatchNorm1d(h1),
        lif1=_lif(cfg),
        fc2=nn.Linear(h1, h2, bias=False),
        bn2=nn.BatchNorm1d(h2),
        lif2=_lif(cfg),
        fc3=nn.Linear(h2, n_classes),
    )
    return _net(layers, cfg, in_shape, n_classes)


VGG16_D: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip


def vgg16(cfg: ModelConfig, in_shape: tuple[int, int, int], n_classes: int) -> SpikingNet:
    """VGG-16 (torchvision config "D") with BN + LIF and a single Linear(512w, classes), the
    network of Yin et al. (arXiv 2302.06746, Tables I-III).

    Max pooling uses ``ceil_mode`` and an adaptive average pool to 1x1 precedes the classifier,
    so 32x32 (1x1 after five pools, pooling is then the identity), 28x28 and smaller inputs work.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    c, i, p = in_shape[0], 0, 0
    for v in VGG16_D:
        if v == "M":
            p += 1
            layers[f"pool{p}"] = nn.MaxPool2d(2, ceil_mode=True)
            continue
        i += 1
        out = _ch(int(v), cfg.width)
        layers[f"conv{i}"] = nn.Conv2d(c, out, 3, padding=1, bias=False)
        layers[f"bn{i}"] = nn.BatchNorm2d(out)
        layers[f"lif{i}"] = _lif(cfg)
        c = out
    layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(c, n_classes)
    return _net(layers, cfg, in_shape, n_classes)


class BasicBlock(nn.Module):
    """Spiking ResNet block: LIF(BN(conv(LIF(BN(conv(x))))) + shortcut(x)).

    The shortcut is the identity, or 1x1 conv + BN where the shape changes.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.lif1 = _lif(cfg)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.lif2 = _lif(cfg)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.lif1(self.bn1(self.conv1(x)))))
        spikes: Tensor = self.lif2(out + self.shortcut(x))
        return spikes


def resnet19(cfg: ModelConfig, in_shape: tuple[int, int, int], n_classes: int) -> SpikingNet:
    """ResNet-19 of Yin et al. (arXiv 2302.06746, the network of Tables I-II; layer sizes from
    the authors' public code, github RuokaiYin/u-Ticket ``archs/cifar10/resnet.py``): conv3x3 ->
    64w, BasicBlocks [3, 3, 2] at 128w/256w/512w with stride 2 at each stage start, avgpool,
    FC 512w -> 256w + LIF, FC -> classes."""
    c0 = _ch(64, cfg.width)
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(in_shape[0], c0, 3, padding=1, bias=False),
        bn1=nn.BatchNorm2d(c0),
        lif1=_lif(cfg),
    )
    c = c0
    for s, (blocks, ch) in enumerate(zip((3, 3, 2), (128, 256, 512), strict=True), start=1):
        out = _ch(ch, cfg.width)
        stage = [
            BasicBlock(c if b == 0 else out, out, 2 if b == 0 else 1, cfg) for b in range(blocks)
        ]
        layers[f"layer{s}"] = nn.Sequential(*stage)
        c = out
    hidden = _ch(256, cfg.width)
    layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["fc1"] = nn.Linear(c, hidden)
    layers["lif_fc1"] = _lif(cfg)
    layers["fc2"] = nn.Linear(hidden, n_classes)
    return _net(layers, cfg, in_shape, n_classes)


MODELS: dict[str, Builder] = {
    "convnet": convnet,
    "mlp": mlp,
    "vgg16": vgg16,
    "resnet19": resnet19,
}


def build_model(
    cfg: ModelConfig,
    in_shape: tuple[int, int, int],
    n_classes: int,
    *,
    seed: int | None = None,
) -> SpikingNet:
    """Build ``cfg.name`` for inputs (C, H, W); with ``seed``, initialize deterministically
    without disturbing the global RNG."""
    builder = MODELS[cfg.name]
    if seed is None:
        return builder(cfg, tuple(in_shape), n_classes)  # type: ignore[arg-type]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(cfg, tuple(in_shape), n_classes)  # type: ignore[arg-type]
