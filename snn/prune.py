"""Unstructured magnitude pruning with masks, and rewinding (lottery tickets).

Masks are ``dict[str, torch.Tensor]`` of bools keyed by prunable layer name (see
``SpikingNet.prunable``), each with its layer's weight shape; ``True`` = weight kept. Functions
also accept numpy bool arrays for masks (converted with :func:`to_torch_masks`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from snn.models import SpikingNet

Masks = dict[str, Tensor]
MaskLike = Mapping[str, "Tensor | np.ndarray"]


def to_torch_masks(masks: MaskLike) -> Masks:
    """Bool torch tensors from torch or numpy masks (numpy arrays are copied)."""
    return {
        k: (v.bool() if isinstance(v, Tensor) else torch.from_numpy(np.array(v, dtype=bool)))
        for k, v in masks.items()
    }


def to_numpy_masks(masks: MaskLike) -> dict[str, np.ndarray]:
    """Bool numpy arrays from torch or numpy masks (always copies)."""
    return {
        k: (v.detach().cpu().numpy().astype(bool) if isinstance(v, Tensor) else np.array(v, bool))
        for k, v in masks.items()
    }


def prunable_weights(model: SpikingNet) -> dict[str, Tensor]:
    """The weight tensors (parameters, not copies) of the prunable layers, in network order."""
    return {n: m.weight for n, m in model.prunable().items()}


def dense_masks(model: SpikingNet) -> Masks:
    """All-ones masks for every prunable layer."""
    return {n: torch.ones_like(w, dtype=torch.bool) for n, w in prunable_weights(model).items()}


def apply_masks(model: SpikingNet, masks: MaskLike) -> None:
    """Zero the masked-out weights in place (exact +0.0)."""
    layers = model.prunable()
    unknown = set(masks) - set(layers)
    if unknown:
        raise KeyError(f"masks for unknown layers: {sorted(unknown)}")
    with torch.no_grad():
        for name, mask in to_torch_masks(masks).items():
            weight = layers[name].weight
            if mask.shape != weight.shape:
                raise ValueError(
                    f"mask for {name} has shape {tuple(mask.shape)}, weight {tuple(weight.shape)}"
                )
            weight.masked_fill_(~mask.to(weight.device), 0.0)


def _weights_and_masks(
    model_or_weights: SpikingNet | Mapping[str, Tensor], masks: MaskLike
) -> tuple[dict[str, Tensor], Masks]:
    """The prunable weights and the masks as torch tensors; every masked layer needs a weight."""
    weights = (
        prunable_weights(model_or_weights)
        if isinstance(model_or_weights, nn.Module)
        else dict(model_or_weights)
    )
    tmasks = to_torch_masks(masks)
    missing = set(tmasks) - set(weights)
    if missing:
        raise KeyError(f"no weights for masked layers: {sorted(missing)}")
    return weights, tmasks


def magnitude_prune(
    model_or_weights: SpikingNet | Mapping[str, Tensor],
    masks: MaskLike,
    rate: float,
    scope: Literal["global", "layer"] = "global",
) -> Masks:
    """Remove ``rate`` of the surviving weights with the smallest |w|; returns new masks.

    ``global``: one ranking over all prunable layers together (conv + linear, BN excluded);
    ``layer``: each layer loses ``rate`` of its own survivors. The number removed is
    ``round(rate * survivors)``. Ties are broken deterministically by position (network order,
    then flat index): a stable sort ranks equal magnitudes in that order.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    weights, tmasks = _weights_and_masks(model_or_weights, masks)
    names = list(tmasks)
    if scope == "layer":
        return {n: _prune_flat([weights[n]], [tmasks[n]], rate)[0] for n in names}
    if scope == "global":
        return dict(
            zip(
                names,
                _prune_flat([weights[n] for n in names], [tmasks[n] for n in names], rate),
                strict=True,
            )
        )
    raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")


def threshold_prune(
    model_or_weights: SpikingNet | Mapping[str, Tensor],
    masks: MaskLike,
    rate: float,
    scope: Literal["global", "layer"] = "global",
) -> Masks:
    """The authors' pruning rule (their public code, ``prune_by_percentile``); returns new masks.

    The threshold is the ``rate``-quantile of |w| over the *non-zero* weights of the network as
    trained (all prunable layers together for ``global``, each layer for ``layer``); a weight stays
    when it is in ``masks`` and ``|w| >= threshold``. With u-Ticket the trained network holds the
    balanced mask's weights, so weights that balancing recovered take part in the quantile (they
    are non-zero) and weights it removed do not (they were zeroed); ``masks`` is the pre-balance
    mask of the previous round. Quantiles as in that code: ``global`` takes the sorted |w| at index
    ``floor(N * rate)``; ``layer`` takes numpy's linearly interpolated percentile. Without
    balancing this keeps the same weights as :func:`magnitude_prune` up to ties and rounding.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    weights, tmasks = _weights_and_masks(model_or_weights, masks)
    mags = {n: weights[n].detach().float().abs().cpu() for n in tmasks}
    for n, m in tmasks.items():
        if m.shape != mags[n].shape:
            raise ValueError(
                f"mask for {n} has shape {tuple(m.shape)}, weight {tuple(mags[n].shape)}"
            )
    if scope == "global":
        alive = torch.cat([a[a != 0] for a in mags.values()])
        if alive.numel() == 0:
            return {n: m.clone() for n, m in tmasks.items()}
        t = float(torch.sort(alive).values[int(alive.numel() * rate)])
        return {n: tmasks[n] & (mags[n] >= t) for n in tmasks}
    if scope == "layer":
        out: Masks = {}
        for n, m in tmasks.items():
            alive_np = mags[n][mags[n] != 0].numpy()
            if alive_np.size == 0:
                out[n] = m.clone()
                continue
            t = float(np.percentile(alive_np, 100.0 * rate))
            out[n] = m & (mags[n] >= t)
        return out
    raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")


def _prune_flat(weights: list[Tensor], masks: list[Tensor], rate: float) -> list[Tensor]:
    """Jointly rank the survivors of several layers and drop the ``rate`` smallest."""
    flat_m = torch.cat([m.reshape(-1).cpu() for m in masks])
    flat_w = torch.cat([w.detach().reshape(-1).float().abs().cpu() for w in weights])
    n_remove = round(rate * int(flat_m.sum()))
    new = flat_m.clone()
    if n_remove > 0:
        score = flat_w.masked_fill(~flat_m, float("inf"))
        order = torch.sort(score, stable=True).indices
        new[order[:n_remove]] = False
    out, start = [], 0
    for m in masks:
        out.append(new[start : start + m.numel()].view(m.shape))
        start += m.numel()
    return out


def sparsity(masks: MaskLike) -> float:
    """Fraction of pruned weights over all masked layers."""
    tm = to_torch_masks(masks)
    total = sum(m.numel() for m in tm.values())
    kept = sum(int(m.sum()) for m in tm.values())
    return 1.0 - kept / total if total else 0.0


def layer_sparsity(masks: MaskLike) -> dict[str, float]:
    """Fraction of pruned weights per layer."""
    return {k: 1.0 - float(m.float().mean()) for k, m in to_torch_masks(masks).items()}


def rewind(model: SpikingNet, snapshot: Mapping[str, Tensor], masks: MaskLike | None) -> None:
    """Load ``snapshot`` (a state_dict) into ``model`` exactly, then zero the masked weights."""
    model.load_state_dict(dict(snapshot), strict=True)
    if masks is not None:
        apply_masks(model, masks)
