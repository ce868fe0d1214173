"""One design point end to end: train -> prune rounds (LTH or u-Ticket) -> score on hardware.

``snn`` finds the ticket (it never sees the accelerator); this module hands it the PE map of the
design point's accelerator as plain ``pe_index`` arrays, then scores every round's masks with
``accelerator.evaluate`` using the spike profile recorded while evaluating that round.

With ``accelerator.mapping_order: workload`` the array places filters and channels by workload
(:mod:`accelerator.order`). Plain LTH tickets are then simply scored under that order. u-Ticket
balances each round for the order planned from that round's pruned (pre-balance) masks, and the
round is scored under that same order, which is stored with the round.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from accelerator import (
    AcceleratorConfig,
    ConfigError,
    LayerOrder,
    MappingError,
    Report,
    evaluate,
    evaluate_grid,
    ordered_pe_index,
    pe_index,
    plan_orders,
    summarize,
)
from accelerator.config import accelerator_fields
from accelerator.equations import BROADCAST_FIELDS
from dse.cache import TicketCache, dense_key, ticket_key
from dse.design import DesignPoint
from dse.metrics import mask_sparsity, metrics_of, metrics_of_row
from snn.data import Splits, load_dataset
from snn.models import build_model
from snn.ticket import DenseRun, RoundInfo, find_ticket, train_dense

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage is "dense" or "rounds"."""


@dataclass
class RoundScore:
    """One round of a ticket scored on the design point's hardware (round 0 = dense): the
    flat view of a :class:`snn.ticket.RoundInfo` and its :class:`accelerator.Report` that
    tables, trial attributes and JSON show."""

    round: int
    sparsity: float
    accuracy: float
    val_accuracy: float
    utilization: float
    utilization_effective: float  # Eq. 2 on the work left after tick-batch skipping
    cycles: float
    latency: float
    energy: float  # microjoules, whole accelerator
    energy_pe: float  # microjoules, PE array only (Eq. 3): the paper's "PE-level" energy
    train_seconds: float
    balance_seconds: float

    @classmethod
    def of(cls, info: RoundInfo, report: Report) -> RoundScore:
        return cls(
            round=info.round,
            sparsity=info.sparsity,
            accuracy=info.accuracy,
            val_accuracy=info.val_accuracy,
            utilization=report.utilization,
            utilization_effective=report.utilization_effective,
            cycles=report.cycles,
            latency=report.seconds,
            energy=report.energy_pj["total"] * 1e-6,
            energy_pe=report.energy_pj["compute"] * 1e-6,
            train_seconds=info.train_seconds,
            balance_seconds=info.balance_seconds,
        )


@dataclass
class TrialResult:
    """Everything a trial measured; ``to_dict()`` is JSON-ready and re-runnable."""

    point: DesignPoint
    rounds: list[RoundScore]
    report: Report
    metrics: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)
    cache: dict[str, str] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    profile: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "design_point": self.point.to_dict(),
            "metrics": self.metrics,
            "rounds": [asdict(r) for r in self.rounds],
            "hardware": self.report.to_dict(),
            "timings": self.timings,
            "cache": self.cache,
        }


@lru_cache(maxsize=8)
def _splits(data_json: str, seed: int) -> Splits:
    spec = json.loads(data_json)
    return load_dataset(
        spec["name"],
        seed=seed,
        root=spec["root"],
        val_fraction=spec["val_fraction"],
        test_fraction=spec["test_fraction"],
        cutout=spec["cutout"],
    )


def load_splits(point: DesignPoint) -> Splits:
    """The design point's dataset splits (kept per process: trials share them)."""
    return _splits(json.dumps(point.data.model_dump(mode="json"), sort_keys=True), point.seed)


def weight_shapes(point: DesignPoint, splits: Splits) -> dict[str, tuple[int, ...]]:
    """Shapes of the prunable weights, in network order."""
    model = build_model(point.model, splits.in_shape, splits.n_classes)
    return {n: tuple(m.weight.shape) for n, m in model.prunable().items()}


def _dense_round(
    point: DesignPoint, splits: Splits, cache: TicketCache | None, progress: Progress | None
) -> tuple[DenseRun, str]:
    """The dense round and its rewind point, from the cache when another trial trained it."""
    if cache is None:
        status = "off"
    else:
        key = dense_key(point)
        with cache.lock(key):
            dense = cache.get_dense(key)
            if dense is not None:
                return dense, "hit"
            dense = _train_dense(point, splits, progress)
            cache.put_dense(key, dense)
            return dense, "miss"
    return _train_dense(point, splits, progress), status


def _train_dense(point: DesignPoint, splits: Splits, progress: Progress | None) -> DenseRun:
    if progress is not None:
        progress("dense", 0, point.pruning.rounds + 1)
    return train_dense(
        point.model, splits, point.train, seed=point.seed, rewind_epoch=point.pruning.rewind_epoch
    )


def _ticket_rounds(
    point: DesignPoint,
    splits: Splits,
    dense: DenseRun,
    pe: dict[str, np.ndarray],
    n_pe: int,
    progress: Progress | None,
) -> list[RoundInfo]:
    """Prune rounds from the dense run; every round's masks, accuracy and spike profile (and,
    under a workload-ordered mapping with u-Ticket, the order each round was balanced for)."""
    collected: list[RoundInfo] = []
    planned: list[dict[str, dict[str, list[int]]]] = []
    config = point.accelerator

    def workload_pe(masks: dict[str, np.ndarray], profile: dict[str, Any]) -> dict[str, Any]:
        orders = plan_orders(config, masks, profile)
        planned.append({n: o.to_dict() for n, o in orders.items()})
        return {n: ordered_pe_index(m.shape, config, orders[n]) for n, m in masks.items()}

    def on_round(info: RoundInfo) -> None:
        if info.round > 0 and planned:
            info.orders = planned[-1]
        collected.append(info)
        if progress is not None:
            progress("rounds", info.round + 1, point.pruning.rounds + 1)

    by_workload = config.mapping_order == "workload" and point.pruning.balance == "uticket"
    find_ticket(
        point.model,
        splits,
        point.train,
        point.pruning,
        pe_index=workload_pe if by_workload else pe,
        n_pe=n_pe,
        dense=dense,
        on_round=on_round,
    )
    # the dense round's training is counted by its owner
    collected[0] = replace(collected[0], train_seconds=0.0, eval_seconds=0.0)
    return collected


def round_orders(info: RoundInfo) -> dict[str, LayerOrder] | None:
    """The mapping order a round was balanced for, if any."""
    stored = info.orders
    return None if not stored else {n: LayerOrder.from_dict(o) for n, o in stored.items()}


def ticket_rounds(
    point: DesignPoint,
    *,
    cache: TicketCache | None = None,
    progress: Progress | None = None,
) -> tuple[list[RoundInfo], dict[str, str], dict[str, float]]:
    """Every round of ``point``'s ticket (dense round first, ``point.pruning.rounds + 1`` in
    all): from the cache when an entry with at least that many rounds exists, trained
    otherwise. Returns (rounds, cache status, timings); a cache hit reports zero seconds of
    training, balancing and evaluation (nothing was computed for this point)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    splits = load_splits(point)
    shapes = weight_shapes(point, splits)
    pe = {name: pe_index(shape, point.accelerator) for name, shape in shapes.items()}
    n_pe = point.accelerator.n_pe
    timings["setup_seconds"] = time.perf_counter() - t0
    status = {"dense": "off", "ticket": "off"}
    rounds_wanted = point.pruning.rounds

    t_key = ticket_key(point, pe, n_pe)
    with cache.lock(t_key) if cache is not None else nullcontext():
        t0 = time.perf_counter()
        rounds: list[RoundInfo] | None = None
        if cache is not None:
            rounds = cache.get_rounds(t_key, rounds_wanted)
            status["ticket"] = "hit" if rounds is not None else "miss"
        timings["cache_seconds"] = time.perf_counter() - t0
        if rounds is None:
            dense, status["dense"] = _dense_round(point, splits, cache, progress)
            rounds = _ticket_rounds(point, splits, dense, pe, n_pe, progress)
            if cache is not None:
                t0 = time.perf_counter()
                cache.put_rounds(t_key, rounds)
                timings["cache_seconds"] += time.perf_counter() - t0
            if status["dense"] != "hit":
                rounds[0] = replace(rounds[0], train_seconds=dense.train_seconds)
        else:  # nothing was trained or balanced for this point
            rounds = [
                replace(r, train_seconds=0.0, balance_seconds=0.0, eval_seconds=0.0) for r in rounds
            ]
            if progress is not None:
                progress("rounds", rounds_wanted + 1, rounds_wanted + 1)
    return rounds, status, timings


def score_configs(
    configs: Sequence[AcceleratorConfig],
    rounds: Sequence[RoundInfo],
    round_numbers: Iterable[int],
) -> list[dict[int, Report]]:
    """Hardware reports of rounds ``round_numbers`` of one ticket on every configuration:
    ``out[i][r]`` for ``configs[i]``, round ``r``, one :func:`accelerator.evaluate` each (a
    trial's full report; many points are scored by :func:`score_metrics`). Masks are reduced
    once per round (:func:`accelerator.summarize`); each round is scored under the mapping
    order it was balanced for, if any (:func:`round_orders`).
    """
    numbers = list(round_numbers)
    summaries = {r: summarize(rounds[r].masks) for r in numbers}
    orders = {r: round_orders(rounds[r]) for r in numbers}
    return [
        {r: evaluate(config, summaries[r], rounds[r].profile, orders[r]) for r in numbers}
        for config in configs
    ]


def _dotted(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        node = node[part]
    return node


def config_grid(configs: Sequence[AcceleratorConfig]) -> dict[str, list[Any]] | None:
    """The fields (dotted paths) whose values differ among ``configs`` -> their distinct
    values, in first-seen order: a Cartesian grid on ``configs[0]`` that holds every
    configuration. ``None`` when :func:`accelerator.evaluate_grid` cannot express it well: a
    differing value that is not a scalar (e.g. ``memory.sram_table``), or a grid with more
    combinations of the structural fields (those not in
    :data:`accelerator.equations.BROADCAST_FIELDS`) than there are configurations: the grid
    computes one phase-1 count per structural combination, the loop one per configuration, so
    such a superset costs more than the loop (e.g. a u-Ticket subset 2x8, 4x4, 8x2 of K
    arrays alone: 3x3 combinations for 3 configurations)."""
    dumps = [c.model_dump(mode="json") for c in configs]
    grid: dict[str, list[Any]] = {}
    for f in accelerator_fields():
        if f == "name":  # a label: no cost depends on it
            continue
        values = [_dotted(d, f) for d in dumps]
        if any(not isinstance(v, int | float | str) for v in values):
            if any(v != values[0] for v in values):
                return None
            continue
        distinct = list(dict.fromkeys(values))
        if len(distinct) > 1:
            grid[f] = distinct
    structural = [f for f in grid if f not in BROADCAST_FIELDS]
    if math.prod(len(grid[f]) for f in structural) > len(configs):
        return None
    return grid


def _grid_rows(
    configs: Sequence[AcceleratorConfig], grid: dict[str, list[Any]], frame: pd.DataFrame
) -> list[int]:
    """Row of ``frame`` (an :func:`accelerator.evaluate_grid` result) for each configuration,
    matched on the grid-field values."""
    fields = list(grid)
    if not fields:
        return [0] * len(configs)
    where = {key: i for i, key in enumerate(zip(*(frame[f].tolist() for f in fields), strict=True))}
    dumps = [c.model_dump(mode="json") for c in configs]
    return [where[tuple(_dotted(d, f) for f in fields)] for d in dumps]


def score_metrics(
    configs: Sequence[AcceleratorConfig],
    rounds: Sequence[RoundInfo],
    round_numbers: Iterable[int],
) -> list[dict[int, dict[str, float]]]:
    """Every registered metric of rounds ``round_numbers`` of one ticket on every
    configuration: ``out[i][r]`` for ``configs[i]``, round ``r``.

    A round is scored by one :func:`accelerator.evaluate_grid` call over the Cartesian grid of
    the fields that differ among ``configs`` (:func:`config_grid`: a superset of them when they
    are not a full Cartesian product), and each configuration reads its row;
    the grid has no sparsity column, so it is taken once per round from the masks
    (:func:`dse.metrics.mask_sparsity`). Every row equals ``evaluate`` to relative 1e-9, so a
    derived point and :func:`run_trial` of it agree to that precision. The loop over
    :func:`accelerator.evaluate` (:func:`score_configs`) scores instead: rounds with an
    explicit mapping order (u-Ticket under ``mapping_order: workload``: the grid has no
    per-round orders), configurations whose differences the grid cannot express
    (:func:`config_grid` gives ``None``, or ``evaluate_grid`` rejects the grid or one of its
    combinations with a :class:`accelerator.ConfigError`, a validation or a mapping error).
    """
    numbers = list(round_numbers)
    out: list[dict[int, dict[str, float]]] = [{} for _ in configs]
    grid = config_grid(configs) if configs else None
    for r in numbers:
        info = rounds[r]
        summary = summarize(info.masks)
        orders = round_orders(info)
        frame = None
        if grid is not None and orders is None:
            try:
                frame = evaluate_grid(configs[0], grid, summary, info.profile)
            except (ConfigError, ValidationError, MappingError):
                frame = None
        if frame is None:
            for i, config in enumerate(configs):
                report = evaluate(config, summary, info.profile, orders)
                out[i][r] = metrics_of(report, info.accuracy, info.val_accuracy)
            continue
        assert grid is not None
        sparsity = mask_sparsity(summary)
        records = frame.to_dict("records")
        for i, row in enumerate(_grid_rows(configs, grid, frame)):
            out[i][r] = metrics_of_row(records[row], sparsity, info.accuracy, info.val_accuracy)
    return out


def run_trial(
    point: DesignPoint,
    *,
    cache: TicketCache | None = None,
    progress: Progress | None = None,
) -> TrialResult:
    """Train, prune and score ``point``; reuse cached dense runs and tickets when possible."""
    t_start = time.perf_counter()
    rounds, status, timings = ticket_rounds(point, cache=cache, progress=progress)
    train_s = sum(r.train_seconds for r in rounds)
    balance_s = sum(r.balance_seconds for r in rounds)
    eval_s = sum(r.eval_seconds for r in rounds)

    t0 = time.perf_counter()
    reports = score_configs([point.accelerator], rounds, range(len(rounds)))[0]
    scores = [RoundScore.of(r, reports[i]) for i, r in enumerate(rounds)]
    report = reports[len(rounds) - 1]
    timings["score_seconds"] = time.perf_counter() - t0
    timings["train_seconds"] = train_s
    timings["balance_seconds"] = balance_s
    timings["eval_seconds"] = eval_s
    timings["total_seconds"] = time.perf_counter() - t_start
    final = rounds[-1]
    metrics = metrics_of(report, final.accuracy, final.val_accuracy)
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"non-finite metrics {bad} for this design point")
    return TrialResult(point, scores, report, metrics, timings, status, final.masks, final.profile)
