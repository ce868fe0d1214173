"""Lottery-ticket rounds with late rewinding and optional u-Ticket workload balancing
(Yin et al., "Workload-Balanced Pruning for Sparse Spiking Neural Networks", arXiv 2302.06746,
Algorithm 1; ``docs/method.md`` explains the method and every option).

Round 0 trains the dense network (saving the weights after ``rewind_epoch`` epochs). Each later
round: global (or per-layer) magnitude pruning of ``rate`` of the survivors of the previous
round's trained weights -> optional u-Ticket balancing of selected layers for a PE mapping ->
rewind all weights to the rewind checkpoint with the new mask -> retrain ``epochs`` epochs with
the mask enforced -> evaluate (accuracy + spike profile on the test split).

Two documented choices of the paper vs. the authors' code are options:

* ``balance_layers``: ``"all"`` conv + linear layers (our default), or ``"authors"`` (their code:
  conv layers except the first; linear layers are never balanced).
* ``carry``: how the next round prunes. ``"balanced"`` (the paper's text, Algorithm 1; default):
  remove ``rate`` of the balanced mask's survivors by magnitude. ``"authors"`` (their code): the
  threshold is the ``rate``-quantile of |w| over the non-zero trained weights (recovered weights
  included, removed ones excluded since they were zeroed), applied to the *pre-balance* mask (see
  :func:`snn.prune.threshold_prune`). ``"pre_balance"`` (kept for stored spaces and cached
  tickets): remove ``rate`` of the pre-balance mask's members by magnitude; it approximates the
  authors' rule but keeps a different number of weights.

``balance_layers="authors"`` with ``carry="authors"`` is the authors' code.

With ``balance_mode="magnitude"`` the balancer receives the trained weights of the previous
round (the ones magnitude pruning ranked) to choose what to recover/remove. With
``balance_cost="expected_work"`` (spike-aware) it levels non-zeros weighted by ``1 - z_c``, the
share of the weight's input channel that tick batching does not skip, taken from the spike
profile of the network being pruned (the previous round's, measured on the test split like every
profile here; it holds activity only, no labels).

The PE map may depend on the pruned masks (a mapping compiler that places filters by workload):
pass ``pe_index`` as a callable ``(pre_balance_masks, profile) -> {layer: pe_index}``, called once
per round just before balancing.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from snn.data import Splits
from snn.models import ModelConfig, SpikingNet, build_model
from snn.prune import (
    dense_masks,
    magnitude_prune,
    rewind,
    sparsity,
    threshold_prune,
    to_numpy_masks,
    to_torch_masks,
)
from snn.train import TrainConfig, clone_state, evaluate, train


class TicketConfig(BaseModel):
    """Pruning schedule: rounds, rate, rewinding point and u-Ticket balancing options."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(3, ge=0, le=100, description="Pruning rounds after the dense round.")
    rate: float = Field(
        0.25, gt=0.0, lt=1.0, description="Fraction of surviving weights pruned per round."
    )
    rewind_epoch: int = Field(
        1,
        ge=0,
        le=100_000,
        description="Late-rewinding point E of the dense run (paper: 20 of 200).",
    )
    scope: Literal["global", "layer"] = Field(
        "global", description="Rank magnitudes over all layers together or per layer."
    )
    balance: Literal["none", "uticket"] = Field(
        "none", description="Workload balancing after pruning: none (LTH) or u-Ticket."
    )
    balance_mode: Literal["random", "magnitude"] = Field(
        "random", description="u-Ticket recovers/removes weights at random or by magnitude."
    )
    balance_cost: Literal["nonzeros", "expected_work"] = Field(
        "nonzeros",
        description="What u-Ticket levels per PE: non-zero weights (the paper) or expected work, "
        "non-zeros x (1 - tick-zero fraction of the input channel) (spike-aware; differs from "
        "nonzeros when PEs read different channels, i.e. C and KC mappings).",
    )
    balance_layers: Literal["all", "authors"] | list[str] = Field(
        "all",
        description="Layers to balance: all conv+linear, the authors' (conv except the first), "
        "or explicit layer names.",
    )
    carry: Literal["balanced", "authors", "pre_balance"] = Field(
        "balanced",
        description="How the next round prunes: balanced (paper text: rate of the balanced "
        "mask's survivors), authors (their code: threshold = rate-quantile of the non-zero "
        "trained |w|, applied to the pre-balance mask) or pre_balance (rate of the pre-balance "
        "mask's members; an approximation of the authors' rule kept for old spaces).",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed for init, data order, balancing.")


PeIndexFn: TypeAlias = Callable[[dict[str, np.ndarray], dict[str, Any]], Mapping[str, np.ndarray]]
"""``(pre_balance_masks, profile) -> {layer: pe_index}``: a PE map chosen per round."""


@dataclass
class DenseRun:
    """The dense round: final and rewind-point weights plus its evaluation; cacheable.

    ``save``/``load`` use ``torch.save`` of plain dicts and ``torch.load(weights_only=True)``.
    ``meta`` (JSON-like) records the model config, train config, seed and dataset it came from.
    States are kept on the CPU whatever device trained them.
    """

    final_state: dict[str, Tensor]
    rewind_state: dict[str, Tensor]
    rewind_epoch: int
    accuracy: float
    val_accuracy: float
    profile: dict[str, Any]
    train_loss: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        """Write atomically (temp file + rename), safe with concurrent readers."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(fd)
        try:
            torch.save(asdict(self), tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> DenseRun:
        """Read a file written by :meth:`save` (tensors only, no pickled code)."""
        data = torch.load(path, map_location="cpu", weights_only=True)
        return cls(**data)


@dataclass
class RoundInfo:
    """What one round produced (round 0 = dense, all-ones masks): the one round record, from
    here through the ticket cache to scoring (``dse``)."""

    round: int
    masks: dict[str, np.ndarray]
    pre_balance_masks: dict[str, np.ndarray]
    sparsity: float
    accuracy: float
    val_accuracy: float
    profile: dict[str, Any]
    train_loss: list[float]
    train_seconds: float
    balance_seconds: float
    eval_seconds: float
    orders: dict[str, Any] | None = None
    """The PE order this round was balanced for, as plain data, when a :data:`PeIndexFn`
    chose the map (recorded by its caller, which knows what the order is)."""


def train_dense(
    model_cfg: ModelConfig,
    splits: Splits,
    train_cfg: TrainConfig,
    *,
    seed: int,
    rewind_epoch: int,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> DenseRun:
    """Round 0: build with ``seed``, train ``train_cfg.epochs`` epochs, snapshot the rewind
    point, evaluate on the test split with a spike profile."""
    if rewind_epoch > train_cfg.epochs:
        raise ValueError(f"rewind_epoch {rewind_epoch} > training epochs {train_cfg.epochs}")
    model = build_model(model_cfg, splits.in_shape, splits.n_classes, seed=seed)
    tr = train(
        model, splits, train_cfg, seed=seed, snapshot_epochs={rewind_epoch}, on_epoch=on_epoch
    )
    ev = evaluate(model, splits.test, profile=True)
    assert ev.profile is not None
    return DenseRun(
        final_state=clone_state(model, "cpu"),
        rewind_state={k: v.cpu() for k, v in tr.snapshots[rewind_epoch].items()},
        rewind_epoch=rewind_epoch,
        accuracy=ev.accuracy,
        val_accuracy=_last_val(model, splits, tr.val_accuracy),
        profile=ev.profile,
        train_loss=tr.train_loss,
        train_seconds=tr.seconds,
        eval_seconds=ev.seconds,
        meta={
            "model": model_cfg.model_dump(),
            "train": train_cfg.model_dump(),
            "seed": seed,
            "dataset": splits.name,
        },
    )


def _last_val(model: SpikingNet, splits: Splits, history: list[float]) -> float:
    if history:
        return history[-1]
    return evaluate(model, splits.val).accuracy if len(splits.val) else float("nan")


def balance_layer_names(
    model: SpikingNet, which: Literal["all", "authors"] | list[str]
) -> list[str]:
    """The prunable layers that u-Ticket balances, in network order."""
    layers = model.prunable()
    if which == "all":
        return list(layers)
    if which == "authors":
        convs = [n for n, m in layers.items() if isinstance(m, nn.Conv2d)]
        return convs[1:]
    unknown = [n for n in which if n not in layers]
    if unknown:
        raise ValueError(f"balance_layers names unknown layers {unknown}; known: {list(layers)}")
    return [n for n in layers if n in set(which)]


def find_ticket(
    model_cfg: ModelConfig,
    splits: Splits,
    train_cfg: TrainConfig,
    ticket_cfg: TicketConfig,
    *,
    pe_index: Mapping[str, np.ndarray] | PeIndexFn | None = None,
    n_pe: int | None = None,
    dense: DenseRun | None = None,
    on_round: Callable[[RoundInfo], None] | None = None,
) -> dict[str, Tensor]:
    """Run the dense round (or reuse ``dense``) and ``ticket_cfg.rounds`` pruning rounds;
    every round (masks, accuracy, profile, timings) is reported to ``on_round`` as a
    :class:`RoundInfo`. Returns the final round's trained weights (on the CPU).

    ``pe_index``/``n_pe`` (required for ``balance="uticket"``): per-layer int64 arrays with the
    weight shapes, value = group * n_pe + pe, as produced by ``accelerator.pe_index``; or a
    :data:`PeIndexFn` that returns them per round.
    """
    seed = ticket_cfg.seed
    model = build_model(model_cfg, splits.in_shape, splits.n_classes, seed=seed)
    weight_shapes = {n: tuple(m.weight.shape) for n, m in model.prunable().items()}
    names: list[str] = []
    if ticket_cfg.balance == "uticket":
        names = balance_layer_names(model, ticket_cfg.balance_layers)
        _check_pe_index(pe_index, n_pe, names, weight_shapes)
    if dense is None:
        dense = train_dense(
            model_cfg, splits, train_cfg, seed=seed, rewind_epoch=ticket_cfg.rewind_epoch
        )
    else:
        if dense.rewind_epoch != ticket_cfg.rewind_epoch:
            raise ValueError(
                f"dense run rewinds to epoch {dense.rewind_epoch}, "
                f"ticket config asks for {ticket_cfg.rewind_epoch}"
            )
        if dense.meta.get("model", model_cfg.model_dump()) != model_cfg.model_dump():
            raise ValueError("dense run was trained for a different model config")
    model.load_state_dict(dense.final_state)

    masks = dense_masks(model)
    pre = masks
    ones = to_numpy_masks(masks)
    if on_round is not None:
        on_round(
            RoundInfo(
                round=0,
                masks=ones,
                pre_balance_masks=ones,
                sparsity=0.0,
                accuracy=dense.accuracy,
                val_accuracy=dense.val_accuracy,
                profile=dense.profile,
                train_loss=list(dense.train_loss),
                train_seconds=dense.train_seconds,
                balance_seconds=0.0,
                eval_seconds=dense.eval_seconds,
            )
        )
    profile = dense.profile
    for r in range(1, ticket_cfg.rounds + 1):
        if ticket_cfg.carry == "authors":
            pre = threshold_prune(model, pre, ticket_cfg.rate, ticket_cfg.scope)
        else:
            base = masks if ticket_cfg.carry == "balanced" else pre
            pre = magnitude_prune(model, base, ticket_cfg.rate, ticket_cfg.scope)
        t0 = time.perf_counter()
        masks = pre
        if names:
            assert pe_index is not None and n_pe is not None
            masks = {
                **pre,
                **_balance(model, pre, pe_index, n_pe, names, ticket_cfg, r, profile),
            }
        balance_s = time.perf_counter() - t0
        rewind(model, dense.rewind_state, masks)
        tr = train(model, splits, train_cfg, masks=masks, seed=seed + r)
        ev = evaluate(model, splits.test, profile=True)
        assert ev.profile is not None
        profile = ev.profile
        val = _last_val(model, splits, tr.val_accuracy)
        sp = sparsity(masks)
        if on_round is not None:
            on_round(
                RoundInfo(
                    round=r,
                    masks=to_numpy_masks(masks),
                    pre_balance_masks=to_numpy_masks(pre),
                    sparsity=sp,
                    accuracy=ev.accuracy,
                    val_accuracy=val,
                    profile=profile,
                    train_loss=tr.train_loss,
                    train_seconds=tr.seconds,
                    balance_seconds=balance_s,
                    eval_seconds=ev.seconds,
                )
            )
    return clone_state(model, "cpu")


def _check_pe_index(
    pe_index: Mapping[str, np.ndarray] | PeIndexFn | None,
    n_pe: int | None,
    names: list[str],
    shapes: dict[str, tuple[int, ...]],
) -> None:
    if pe_index is None or n_pe is None:
        raise ValueError("balance='uticket' needs pe_index and n_pe (from the accelerator)")
    if n_pe < 1:
        raise ValueError(f"n_pe must be >= 1, got {n_pe}")
    if callable(pe_index):
        return  # checked each round, once it has produced the maps
    missing = [n for n in names if n not in pe_index]
    if missing:
        raise ValueError(f"pe_index has no entry for layers {missing}")
    for n in names:
        if tuple(np.shape(pe_index[n])) != shapes[n]:
            raise ValueError(
                f"pe_index[{n!r}] has shape {tuple(np.shape(pe_index[n]))}, weight {shapes[n]}"
            )


def channel_costs(profile: dict[str, Any], names: list[str]) -> dict[str, np.ndarray]:
    """Expected work per weight of each input channel, ``1 - z_c``, from a spike profile."""
    out: dict[str, np.ndarray] = {}
    for n in names:
        layer = profile.get("layers", {}).get(n, {})
        z = layer.get("channel_tick_zero_fraction")
        if z is None:
            raise ValueError(
                f"balance_cost='expected_work' needs the per-channel tick-zero fraction of layer "
                f"'{n}' in the spike profile"
            )
        out[n] = 1.0 - np.asarray(z, dtype=np.float64)
    return out


def _balance(
    model: SpikingNet,
    pre: dict[str, Tensor],
    pe_index: Mapping[str, np.ndarray] | PeIndexFn,
    n_pe: int,
    names: list[str],
    cfg: TicketConfig,
    round_: int,
    profile: dict[str, Any],
) -> dict[str, Tensor]:
    """Call ``snn.uticket.balance`` on the selected layers; returns their new torch masks."""
    from snn.uticket import balance

    pre_np = {n: pre[n].numpy().copy() for n in names}
    if callable(pe_index):
        pe_index = pe_index(pre_np, profile)
        shapes = {n: tuple(pre[n].shape) for n in names}
        _check_pe_index(dict(pe_index), n_pe, names, shapes)
    layers = model.prunable()
    weights = (
        {n: layers[n].weight.detach().cpu().numpy().copy() for n in names}
        if cfg.balance_mode == "magnitude"
        else None
    )
    costs = channel_costs(profile, names) if cfg.balance_cost == "expected_work" else None
    out = balance(
        pre_np,
        {n: pe_index[n] for n in names},
        n_pe,
        seed=cfg.seed + round_,
        mode=cfg.balance_mode,
        weights=weights,
        channel_cost=costs,
    )
    new = to_torch_masks({n: out[n] for n in names})
    for n in names:
        if tuple(new[n].shape) != tuple(pre[n].shape):
            raise ValueError(f"balance returned shape {tuple(new[n].shape)} for layer {n}")
    return new
