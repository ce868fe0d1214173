"""The resolved space a study was run with, so that resuming with a different one is caught.

A study stores its *resolved space*: the validated space as data with the accelerator section
replaced by the full accelerator it resolves to (so an edited base file counts as a change, a
moved one does not). Left out, because they legitimately differ between runs of one study:
the budget and time limit (``n_trials``, ``timeout``), the study name (the key itself), the
sampler (it decides which points are proposed, never what a point scores: switching from TPE
to the ticket sampler, or another ``sampler.seed``, continues the same study), where the data
lives (``data.root``) and where training runs (``train.num_threads``, ``train.device``);
``--workers``, ``--storage``, ``--cache`` and the other command-line flags are not part of the
space at all.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dse.cache import EXECUTION_ONLY
from dse.space import LoadedSpace

STUDY_ATTR = "resolved_space"
DIGEST_ATTR = "space_digest"
IGNORED_TOP = ("n_trials", "timeout", "study", "sampler")


def resolved_space(loaded: LoadedSpace) -> dict[str, Any]:
    """The space as JSON-able data, minus what may differ between runs of one study."""
    data: dict[str, Any] = loaded.space.model_dump(mode="json")
    data["accelerator"] = loaded.base_accelerator().model_dump(mode="json")
    for key in IGNORED_TOP:
        data.pop(key, None)
    data["data"].pop("root", None)
    for key in EXECUTION_ONLY:
        data["train"].pop(key, None)
    return data


def digest(data: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``data``."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted fields whose value differs: ``"train.epochs: 3 -> 2"`` (sorted). Fields left
    out of resolved spaces are ignored in ``stored`` too (a study stored by an older version)."""
    stored = {k: v for k, v in stored.items() if k not in IGNORED_TOP}
    a, b = _flatten(stored), _flatten(current)
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            out.append(f"{key}: {a.get(key, '<absent>')} -> {b.get(key, '<absent>')}")
    return out
