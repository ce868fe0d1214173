"""BPTT training with frozen pruned weights, evaluation, and spike-activity profiling.

* Loss = mean over timesteps of cross-entropy of the per-timestep logits.
* Prediction = argmax of the logits summed over timesteps.
* Pruned weights stay exactly 0: gradients are masked before the optimizer step and the mask is
  re-applied to the weights after every step (weight decay and momentum would otherwise revive
  them).
* The cosine schedule is torch's ``CosineAnnealingLR`` over all the run's batches, stepped per
  batch (smooth even for 1-2 epoch runs): batch ``s`` of ``S`` uses
  ``lr_s = lr / 2 * (1 + cos(pi * s / S))``.
* On a GPU, ``precision="bf16"`` (autocast of the forward pass and loss) and ``channels_last``
  speed training up; both are off by default and work on the CPU too.
* Deterministic on CPU for a seed: the shuffling (and augmentation) generator is seeded, and the
  global torch RNG too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from snn.data import SizedDataset, Splits
from snn.models import SpikingNet
from snn.prune import MaskLike, apply_masks, to_torch_masks


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


class TrainConfig(BaseModel):
    """Optimizer and schedule. Defaults are the paper's (arXiv 2302.06746, experimental set-up):
    SGD lr 0.1, momentum 0.9, weight decay 5e-4, cosine schedule, batch 128, 200 epochs (see
    :meth:`paper`); small runs override
    ``epochs`` (and usually ``batch_size``)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(200, ge=0, le=100_000, description="Training epochs per round.")
    batch_size: int = Field(128, ge=1, le=65_536, description="Mini-batch size.")
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="Optimizer.")
    lr: float = Field(0.1, gt=0.0, le=1e12, description="Initial learning rate.")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum (ignored by Adam).")
    weight_decay: float = Field(5e-4, ge=0.0, le=1.0, description="L2 weight decay.")
    schedule: Literal["cosine", "none"] = Field(
        "cosine", description="Learning-rate schedule (cosine annealing to 0, per batch)."
    )
    num_threads: int | None = Field(
        None, ge=1, le=1024, description="torch intra-op threads during training (None: leave)."
    )
    max_grad_norm: float | None = Field(
        None, gt=0.0, description="Clip the global gradient norm to this (None: no clipping)."
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="Training arithmetic: fp32, or bf16 autocast of the forward pass and loss "
        "(weights, gradients and optimizer state stay fp32; evaluation is always fp32). Meant "
        "for GPUs with bf16 tensor cores; it also runs on the CPU.",
    )
    channels_last: bool = Field(
        False,
        description="Keep conv weights and images in channels-last (NHWC) memory order; "
        "faster convolutions on GPUs, usually with precision bf16. Same results up to "
        "rounding.",
    )
    device: str = Field(
        "cpu",
        min_length=1,
        max_length=32,
        description="torch device to train on: 'cpu', 'cuda', 'cuda:1', ... or 'auto' (cuda if "
        "available). Bit-exact reproducibility is only promised on CPU.",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v != "auto":
            try:
                torch.device(v)
            except RuntimeError as err:
                raise ValueError(f"not a torch device: {v!r}") from err
        return v

    def torch_device(self) -> torch.device:
        """The resolved device ('auto' -> cuda when available, else cpu)."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    @classmethod
    def paper(cls, **overrides: Any) -> TrainConfig:
        """The paper's set-up (SGD 0.1/0.9/5e-4, cosine, batch 128, 200 epochs) + overrides."""
        base: dict[str, Any] = dict(
            epochs=200,
            batch_size=128,
            optimizer="sgd",
            lr=0.1,
            momentum=0.9,
            weight_decay=5e-4,
            schedule="cosine",
        )
        return cls(**{**base, **overrides})


@dataclass
class TrainResult:
    """Per-epoch history and the requested weight snapshots (epoch -> cloned state_dict).

    Snapshot ``E`` holds the weights after ``E`` epochs of this call (0 = initial weights).
    """

    train_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    snapshots: dict[int, dict[str, Tensor]] = field(default_factory=dict)
    seconds: float = 0.0
    samples_per_second: float = 0.0


@dataclass
class EvalResult:
    """Accuracy over the dataset and, with ``profile=True``, the spike profile dict."""

    accuracy: float
    n_samples: int
    profile: dict[str, Any] | None = None
    seconds: float = 0.0


def clone_state(
    model: torch.nn.Module, device: torch.device | str | None = None
) -> dict[str, Tensor]:
    """Detached clone of the state_dict, optionally on ``device`` (never ``copy.deepcopy``: it
    fails on snntorch modules after a forward pass with grad)."""
    if device is None:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {k: v.detach().to(device, copy=True) for k, v in model.state_dict().items()}


def iter_batches(
    dataset: SizedDataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (x, y) batches. TensorDatasets and datasets with ``get_batch(index, generator)``
    are indexed in one vectorized step; others fall back to per-item access."""
    n = len(dataset)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if isinstance(dataset, TensorDataset):
            yield dataset.tensors[0][idx], dataset.tensors[1][idx]
        elif hasattr(dataset, "get_batch"):
            yield dataset.get_batch(idx, generator)
        else:
            items = [dataset[int(i)] for i in idx]
            yield torch.stack([x for x, _ in items]), torch.as_tensor([int(y) for _, y in items])


class _Threads:
    """Set torch's intra-op thread count for a block, restoring it afterwards."""

    def __init__(self, n: int | None) -> None:
        self.n, self.old = n, torch.get_num_threads()

    def __enter__(self) -> None:
        if self.n is not None:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        if self.n is not None:
            torch.set_num_threads(self.old)


def train(
    model: SpikingNet,
    splits: Splits,
    cfg: TrainConfig,
    *,
    masks: MaskLike | None = None,
    seed: int,
    epochs: int | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    snapshot_epochs: set[int] | frozenset[int] = frozenset(),
) -> TrainResult:
    """Train ``model`` in place on ``splits.train`` with BPTT (``epochs`` overrides cfg.epochs).

    The model is moved to ``cfg.device`` first (and stays there); snapshots are on that device.

    ``masks`` (True = keep) are applied first and enforced after every step. ``on_epoch(e,
    stats)`` is called after epoch ``e`` (1-based) with train_loss, val_accuracy, lr, seconds.
    Raises :class:`DivergedError` on a NaN/inf loss.
    """
    n_epochs = cfg.epochs if epochs is None else epochs
    bad = sorted(e for e in snapshot_epochs if not 0 <= e <= n_epochs)
    if bad:
        raise ValueError(f"snapshot epochs {bad} outside 0..{n_epochs}")
    result = TrainResult()
    with _Threads(cfg.num_threads):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        device = cfg.torch_device()
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        model.to(device)
        if cfg.channels_last:  # torch's stubs omit Module.to's memory_format keyword
            model.to(memory_format=fmt)  # type: ignore[call-overload]
        autocast = (
            torch.autocast(device_type=device.type, dtype=torch.bfloat16)
            if cfg.precision == "bf16"
            else nullcontext()
        )
        layers = model.prunable()
        tmasks = to_torch_masks(masks) if masks is not None else {}
        apply_masks(model, tmasks)
        frozen = [(layers[n].weight, ~m.to(layers[n].weight.device)) for n, m in tmasks.items()]
        params = [p for p in model.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
        else:
            opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        n_train = len(splits.train)
        steps_per_epoch = math.ceil(n_train / cfg.batch_size)
        total_steps = max(1, n_epochs * steps_per_epoch)
        sched = (
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps, eta_min=0.0)
            if cfg.schedule == "cosine"
            else None
        )
        lr_used = cfg.lr
        if 0 in snapshot_epochs:
            result.snapshots[0] = clone_state(model)
        t_start, seen = time.perf_counter(), 0
        for epoch in range(1, n_epochs + 1):
            t_epoch = time.perf_counter()
            model.train()
            loss_sum, count = 0.0, 0
            for b, (x, y) in enumerate(
                iter_batches(splits.train, cfg.batch_size, shuffle=True, generator=gen)
            ):
                lr_used = float(opt.param_groups[0]["lr"])
                if len(y) < 2:  # BatchNorm cannot train on a single sample
                    if sched is not None:
                        sched.step()
                    continue
                x = x.to(device, memory_format=fmt) if x.ndim == 4 else x.to(device)
                y = y.to(device)
                with autocast:
                    logits = model(x)
                    t = logits.shape[0]
                    loss = F.cross_entropy(logits.flatten(0, 1).float(), y.repeat(t))
                if not torch.isfinite(loss):
                    raise DivergedError(
                        f"training diverged: loss is {loss.item()} at epoch {epoch} batch {b}"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                for w, pruned in frozen:
                    if w.grad is not None:
                        w.grad.masked_fill_(pruned, 0.0)
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                if sched is not None:
                    sched.step()
                with torch.no_grad():
                    for w, pruned in frozen:
                        w.masked_fill_(pruned, 0.0)
                loss_sum += loss.item() * len(y)
                count += len(y)
            seen += count
            train_loss = loss_sum / max(count, 1)
            val_acc = evaluate(model, splits.val).accuracy if len(splits.val) > 0 else float("nan")
            result.train_loss.append(train_loss)
            result.val_accuracy.append(val_acc)
            if epoch in snapshot_epochs:
                result.snapshots[epoch] = clone_state(model)
            if on_epoch is not None:
                on_epoch(
                    epoch,
                    {
                        "train_loss": train_loss,
                        "val_accuracy": val_acc,
                        "lr": lr_used,
                        "seconds": time.perf_counter() - t_epoch,
                    },
                )
        result.seconds = time.perf_counter() - t_start
        result.samples_per_second = seen / result.seconds if result.seconds > 0 else 0.0
    return result


class SpikeProfiler:
    """Accumulates, per prunable layer, how often its input is non-zero (a record callback).

    Counts per input channel (conv) or input feature (linear): non-zero (neuron, timestep)
    entries and neurons that are zero at all T timesteps. The first layer's input is the analog
    image, so its "spike rate" is the fraction of non-zero pixels. For conv layers it also
    records the geometry the cost model's memory hierarchy needs: input and output map sizes,
    and (from the module, in :meth:`result`) stride and padding.
    """

    def __init__(self) -> None:
        self.stats: dict[str, dict[str, Any]] = {}

    def __call__(self, name: str, x: Tensor, y: Tensor) -> None:
        t, b, c = x.shape[0], x.shape[1], x.shape[2]
        nz = x.reshape(t, b, c, -1) != 0
        nonzero = nz.sum(dim=(0, 1, 3)).cpu()
        all_zero = (~nz.any(dim=0)).sum(dim=(0, 2)).cpu()
        s = self.stats.get(name)
        if s is None:
            positions = int(y.shape[3] * y.shape[4]) if y.ndim == 5 else 1
            s = self.stats[name] = dict(
                nonzero=torch.zeros(c, dtype=torch.int64),
                all_zero=torch.zeros(c, dtype=torch.int64),
                samples=0,
                spatial=nz.shape[-1],
                timesteps=t,
                positions=positions,
            )
            if x.ndim == 5 and y.ndim == 5:
                s["input_size"] = [int(x.shape[3]), int(x.shape[4])]
                s["output_size"] = [int(y.shape[3]), int(y.shape[4])]
        s["nonzero"] += nonzero
        s["all_zero"] += all_zero
        s["samples"] += b

    def result(self, order: list[str] | dict[str, Any]) -> dict[str, Any]:
        """The profile dict (JSON-ready) with layers in ``order``; given the modules by name
        (``model.prunable()``), conv layers also get their stride and padding."""
        modules = order if isinstance(order, dict) else {}
        layers: dict[str, Any] = {}
        for name in order:
            s = self.stats[name]
            per_neuron = s["samples"] * s["spatial"]
            ch_rate = s["nonzero"].double() / (per_neuron * s["timesteps"])
            ch_zero = s["all_zero"].double() / per_neuron
            layers[name] = {
                "positions": s["positions"],
                "timesteps": s["timesteps"],
                "spike_rate": float(ch_rate.mean()),
                "tick_zero_fraction": float(ch_zero.mean()),
                "channel_spike_rate": ch_rate.tolist(),
                "channel_tick_zero_fraction": ch_zero.tolist(),
            }
            if "input_size" in s:
                layers[name]["input_size"] = s["input_size"]
                layers[name]["output_size"] = s["output_size"]
            module = modules.get(name)
            if isinstance(module, torch.nn.Conv2d):
                stride, padding = module.stride, module.padding
                if (
                    stride[0] == stride[1]
                    and isinstance(padding, tuple)
                    and padding[0] == padding[1]
                ):
                    layers[name]["stride"] = int(stride[0])
                    layers[name]["padding"] = int(padding[0])
        return {"layers": layers}


@torch.no_grad()
def evaluate(
    model: SpikingNet,
    dataset: SizedDataset,
    *,
    batch_size: int = 256,
    profile: bool = False,
    profile_samples: int = 512,
) -> EvalResult:
    """Accuracy (argmax of logits summed over T) on ``dataset``; with ``profile``, also the spike
    profile of every prunable layer's input over the first ``profile_samples`` samples."""
    t0 = time.perf_counter()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    profiler = SpikeProfiler() if profile else None
    correct, n, profiled = 0, 0, 0
    try:
        for x, y in iter_batches(dataset, batch_size):
            x, y = x.to(device), y.to(device)
            take = min(len(y), profile_samples - profiled) if profiler is not None else 0
            if take > 0:
                assert profiler is not None

                def cb(name: str, xi: Tensor, yo: Tensor, k: int = take) -> None:
                    profiler(name, xi[:, :k], yo[:, :k])

                with model.record_inputs(cb):
                    logits = model(x)
                profiled += take
            else:
                logits = model(x)
            correct += int((logits.sum(0).argmax(-1) == y).sum())
            n += len(y)
    finally:
        model.train(was_training)
    if profiler is not None and profiled == 0:
        raise ValueError("cannot profile an empty dataset")
    prof = profiler.result(model.prunable()) if profiler is not None else None
    acc = correct / n if n else float("nan")
    return EvalResult(accuracy=acc, n_samples=n, profile=prof, seconds=time.perf_counter() - t0)
