"""The one registry of metrics a design point reports (objectives and constraints name them).

Each metric is defined once here: its description (space validation and docs), its unit
(tables, CSV headers and plots), whether plots may draw it on a log axis, and how it is
computed from a hardware report and the ticket's accuracies (:func:`metrics_of`), or from a
row of :func:`accelerator.evaluate_grid` (:func:`metrics_of_row`); both go through
:func:`_metrics`, so the two paths name and compute every metric alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from accelerator import MaskSummary, Report


@dataclass(frozen=True)
class Metric:
    """One metric: what it is and how it is shown."""

    name: str
    description: str
    unit: str = ""  # plain ASCII, as printed in tables
    plot_unit: str = ""  # nicer symbols for plots ("" = unit)
    log: bool = False  # drawn on a log axis when its values span more than one decade


REGISTRY: tuple[Metric, ...] = (
    Metric("accuracy", "test accuracy of the final ticket (fraction; reported, never selected)"),
    Metric("val_accuracy", "validation accuracy of the final ticket (fraction)"),
    Metric("latency", "inference latency of one sample (seconds)", "s", log=True),
    Metric("energy", "inference energy of one sample (microjoules)", "uJ", "µJ", log=True),
    Metric("area", "accelerator area (mm^2)", "mm^2", "mm²"),
    Metric("utilization", "PE utilization, Eq. 2 weighted by parameter count"),
    Metric("sparsity", "weight sparsity of the final ticket (fraction)"),
    Metric("edp", "energy-delay product (microjoule-seconds)", "uJ*s", "µJ·s", log=True),
)
BY_NAME: dict[str, Metric] = {m.name: m for m in REGISTRY}
METRICS: dict[str, str] = {m.name: m.description for m in REGISTRY}
"""Metric name -> description, in registry order."""


def _metrics(
    *,
    accuracy: float,
    val_accuracy: float,
    seconds: float,
    energy_uj: float,
    area_mm2: float,
    utilization: float,
    sparsity: float,
) -> dict[str, float]:
    """Every registered metric from the hardware figures and the ticket's accuracies
    (``edp`` = energy x latency)."""
    out = {
        "accuracy": accuracy,
        "val_accuracy": val_accuracy,
        "latency": seconds,
        "energy": energy_uj,
        "area": area_mm2,
        "utilization": utilization,
        "sparsity": sparsity,
        "edp": energy_uj * seconds,
    }
    assert list(out) == list(METRICS)  # the registry and the computation agree
    return out


def metrics_of(report: Report, accuracy: float, val_accuracy: float) -> dict[str, float]:
    """Every registered metric of one scored design point."""
    return _metrics(
        accuracy=accuracy,
        val_accuracy=val_accuracy,
        seconds=report.seconds,
        energy_uj=report.energy_pj["total"] * 1e-6,
        area_mm2=report.area_mm2,
        utilization=report.utilization,
        sparsity=report.sparsity,
    )


def metrics_of_row(
    row: Mapping[str, float], sparsity: float, accuracy: float, val_accuracy: float
) -> dict[str, float]:
    """Every registered metric of one row of :func:`accelerator.evaluate_grid` (columns
    ``seconds``, ``energy_uj``, ``area_mm2``, ``utilization``). The grid has no sparsity
    column (it does not depend on the hardware): pass :func:`mask_sparsity` of the masks."""
    return _metrics(
        accuracy=accuracy,
        val_accuracy=val_accuracy,
        seconds=float(row["seconds"]),
        energy_uj=float(row["energy_uj"]),
        area_mm2=float(row["area_mm2"]),
        utilization=float(row["utilization"]),
        sparsity=sparsity,
    )


def mask_sparsity(summary: MaskSummary) -> float:
    """Share of zero weights over all layers, ``1 - nonzeros / params``: the same integers
    and division as :attr:`accelerator.Report.sparsity`, hence the same float."""
    params = sum(math.prod(c.shape) for c in summary.layers.values())
    nonzeros = sum(int(c.per_channel.sum()) for c in summary.layers.values())
    return 1.0 - nonzeros / params if params else 0.0


def unit(name: str, plot: bool = False) -> str:
    """The unit of metric ``name`` ("" for fractions and unknown names)."""
    m = BY_NAME.get(name)
    if m is None:
        return ""
    return (m.plot_unit or m.unit) if plot else m.unit
