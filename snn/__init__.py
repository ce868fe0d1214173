"""Spiking networks: datasets, snntorch models, BPTT training, pruning and lottery tickets.

Submodules are imported lazily (PEP 562) so that ``import snn`` stays cheap: torch, snntorch,
scikit-learn and mlxtend load only when a name that needs them is first used. ``snn`` never
imports ``accelerator`` or ``dse``; it meets them in plain data (masks, PE index arrays,
profile dicts).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # data
    "DATASETS": "snn.data",
    "DatasetNotFoundError": "snn.data",
    "ImageDataset": "snn.data",
    "SizedDataset": "snn.data",
    "Splits": "snn.data",
    "load_dataset": "snn.data",
    # models
    "MODELS": "snn.models",
    "ModelConfig": "snn.models",
    "MultiStepLeaky": "snn.models",
    "SpikingNet": "snn.models",
    "build_model": "snn.models",
    # training
    "DivergedError": "snn.train",
    "EvalResult": "snn.train",
    "TrainConfig": "snn.train",
    "TrainResult": "snn.train",
    "SpikeProfiler": "snn.train",
    "clone_state": "snn.train",
    "evaluate": "snn.train",
    "train": "snn.train",
    # pruning
    "apply_masks": "snn.prune",
    "dense_masks": "snn.prune",
    "layer_sparsity": "snn.prune",
    "magnitude_prune": "snn.prune",
    "rewind": "snn.prune",
    "sparsity": "snn.prune",
    "threshold_prune": "snn.prune",
    "to_numpy_masks": "snn.prune",
    "to_torch_masks": "snn.prune",
    # lottery tickets
    "DenseRun": "snn.ticket",
    "RoundInfo": "snn.ticket",
    "TicketConfig": "snn.ticket",
    "balance_layer_names": "snn.ticket",
    "find_ticket": "snn.ticket",
    "train_dense": "snn.ticket",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first access."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'snn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
