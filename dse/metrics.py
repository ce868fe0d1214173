"""The one registry of metrics a design point reports (objectives and constraints name them).

Each metric is defined once here: its description (space validation and docs), its unit
(tables, CSV headers and plots), whether plots may draw it on a log axis, and how it is
computed from a hardware report and the ticket's accuracies (:func:`metrics_of`).
"""

from __future__ import annotations

from dataclasses import dataclass

from accelerator import Report


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


def metrics_of(report: Report, accuracy: float, val_accuracy: float) -> dict[str, float]:
    """Every registered metric of one scored design point."""
    energy_uj = report.energy_pj["total"] * 1e-6
    out = {
        "accuracy": accuracy,
        "val_accuracy": val_accuracy,
        "latency": report.seconds,
        "energy": energy_uj,
        "area": report.area_mm2,
        "utilization": report.utilization,
        "sparsity": report.sparsity,
        "edp": energy_uj * report.seconds,
    }
    assert list(out) == list(METRICS)  # the registry and the computation agree
    return out


def unit(name: str, plot: bool = False) -> str:
    """The unit of metric ``name`` ("" for fractions and unknown names)."""
    m = BY_NAME.get(name)
    if m is None:
        return ""
    return (m.plot_unit or m.unit) if plot else m.unit
