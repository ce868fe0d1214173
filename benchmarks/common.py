"""Helpers shared by the benchmark scripts: network shapes, synthetic masks, timing, output."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]

EMBEDDED_SPACES = {
    "digits": ROOT / "search_spaces/default.yaml",
    "mnist5k": ROOT / "search_spaces/mnist5k.yaml",
}
"""The shipped spaces on the embedded data sets."""

TABLE_SETTINGS = ["pruning.rate=0.55", "pruning.rounds=5", "pruning.rewind_epoch=1"]
"""Schedule of the Tables I/II-style runs: rounds 3, 4, 5 reach 90.9 / 95.9 / 98.2 % (LTH)."""


def table_trial(dataset: str, seed: int, overrides: list[str], cache: Any) -> tuple[Any, float]:
    """``dse.trial.run_trial`` on an embedded space with the Tables I/II schedule, the seed and
    ``overrides``; returns ``(TrialResult, wall seconds)``. ``cache`` is a ``TicketCache``."""
    from dse.design import DesignPoint
    from dse.space import load_space
    from dse.trial import run_trial

    space = load_space(EMBEDDED_SPACES[dataset], [*TABLE_SETTINGS, f"seed={seed}", *overrides])
    point = DesignPoint.build(space, {})
    t0 = time.perf_counter()
    result = run_trial(point, cache=cache)
    return result, time.perf_counter() - t0


def seed_mean_curve(
    rows: list[dict[str, Any]],
    where: dict[str, Any],
    keys: tuple[str, ...] = ("sparsity", "latency_us", "accuracy"),
    rounds: range = range(1, 6),
) -> np.ndarray | None:
    """Mean over seeds of ``keys`` per round for the rows matching ``where``, sorted by the first
    key; shape ``(rounds found, len(keys))``, or None when no row matches."""
    pts = []
    for rnd in rounds:
        sel = [r for r in rows if r["round"] == rnd and all(r[k] == v for k, v in where.items())]
        if sel:
            pts.append([float(np.mean([r[k] for r in sel])) for k in keys])
    return np.array(sorted(pts)) if pts else None


VGG16_CFG = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]


def vgg16_shapes(in_channels: int = 3) -> list[tuple[int, ...]]:
    """The 13 conv layers of VGG-16 (CIFAR-10 shapes): 14.7 M weights."""
    shapes, c = [], in_channels
    for k in VGG16_CFG:
        shapes.append((k, c, 3, 3))
        c = k
    return shapes


def resnet19_shapes() -> list[tuple[int, ...]]:
    """Conv + FC layers of ResNet-19 (arXiv 2302.06746): stem, BasicBlocks [3,3,2] at
    128/256/512."""
    shapes: list[tuple[int, ...]] = [(64, 3, 3, 3)]
    c = 64
    for width, blocks in ((128, 3), (256, 3), (512, 2)):
        for b in range(blocks):
            shapes.append((width, c, 3, 3))
            shapes.append((width, width, 3, 3))
            if b == 0:
                shapes.append((width, c, 1, 1))
            c = width
    shapes += [(256, 512), (10, 256)]
    return shapes


def random_masks(
    shapes: list[tuple[int, ...]], sparsity: float, seed: int = 0
) -> dict[str, np.ndarray]:
    """Unstructured masks at a given sparsity (the imbalance LTH leaves is random-like)."""
    rng = np.random.default_rng(seed)
    return {f"layer{i}": rng.random(s) >= sparsity for i, s in enumerate(shapes)}


def timeit(fn: Callable[[], Any], min_time: float = 0.5, min_runs: int = 5) -> float:
    """Median seconds per call over at least ``min_runs`` calls and ``min_time`` seconds."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def single_thread() -> None:
    """Pin numeric libraries to one core (the targets are per core)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def save(name: str, payload: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` with the machine description."""
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
        },
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path
