"""Results of a study as data: the objectives, feasibility and the feasible Pareto front, the
CSV / JSON tables (``trials.csv``, ``pareto.csv``, ``pareto.json``) and the text summary.

The study names its objectives in ``study.user_attrs["objectives"]`` (a list of
``{"metric", "direction"}``, in the order of the trial values) and its constraints in
``study.user_attrs["constraints"]``. A trial is feasible when every value of its ``constraint``
user attribute (and of the ``constraints`` system attribute an Optuna sampler stores) is <= 0.
The files themselves are written by :func:`dse.export.write_results`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from dse.files import jsonable
from dse.metrics import unit as metric_unit

KEY_ATTRS = (
    "dataflow",
    "balance",
    "n_pe",
    "pe_rows",
    "pe_cols",
    "rounds",
    "cache_ticket",
    "train_seconds",
    "total_seconds",
    "node",
)
"""Scalar user attributes copied into the CSV files and pareto.json."""


# --------------------------------------------------------------------------------------------
# objectives, feasibility, front


def objectives(study: optuna.Study) -> list[tuple[str, StudyDirection]]:
    """``(metric name, direction)`` per objective, in the order of the trial values.

    Names come from ``study.user_attrs["objectives"]``; without it (or when it does not match
    the study's directions) they are ``value`` / ``value_0``, ``value_1``, ...
    """
    directions = list(study.directions)
    default = ["value"] if len(directions) == 1 else [f"value_{i}" for i in range(len(directions))]
    specs = study.user_attrs.get("objectives")
    names = default
    if isinstance(specs, list) and len(specs) == len(directions):
        names = [
            str(s["metric"]) if isinstance(s, dict) and "metric" in s else d
            for s, d in zip(specs, default, strict=True)
        ]
    seen: set[str] = set()
    unique = []
    for i, name in enumerate(names):
        unique.append(name if name not in seen else f"{name}_{i}")
        seen.add(name)
    return list(zip(unique, directions, strict=True))


def is_feasible(trial: FrozenTrial) -> bool:
    """True when every Optuna constraint of the trial (``trial.constraints``, set through
    ``set_constraint`` or the ``constraints`` system attribute) is <= 0."""
    return all(v <= 0 for v in trial.constraints.values())


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The COMPLETE trials that have values (what the tables, plots and front are made of)."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [t for t in trials if t.values is not None]


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The feasible Pareto front, in trial-number order: Optuna's ``study.best_trials``
    (non-dominated among the feasible complete trials, so an infeasible design never hides
    a feasible one; equal trials are all kept)."""
    return sorted(study.best_trials, key=lambda t: t.number)


def sorted_by_first(
    trials: Iterable[FrozenTrial], directions: Sequence[StudyDirection]
) -> list[FrozenTrial]:
    """Best first by the first objective (ties by trial number)."""
    sign = -1.0 if directions and directions[0] == StudyDirection.MAXIMIZE else 1.0

    def key(t: FrozenTrial) -> tuple[float, int]:
        v = t.values[0] if t.values else math.nan
        return (sign * v if math.isfinite(v) else math.inf, t.number)

    return sorted(trials, key=key)


# --------------------------------------------------------------------------------------------
# tables


def trial_metrics(trial: FrozenTrial) -> dict[str, Any]:
    """The trial's ``metrics`` user attribute ({} when absent or malformed)."""
    m = trial.user_attrs.get("metrics")
    return m if isinstance(m, dict) else {}


def _union(keys: Iterable[Iterable[str]]) -> list[str]:
    seen: dict[str, None] = {}
    for ks in keys:
        for k in ks:
            seen.setdefault(k, None)
    return list(seen)


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, dict | list | tuple):
        return json.dumps(jsonable(v), sort_keys=True)
    return v


def _columns(
    trials: Sequence[FrozenTrial], objs: Sequence[tuple[str, StudyDirection]]
) -> tuple[list[str], list[str], list[str]]:
    """(all columns, parameter names, metric names) of a CSV of these trials."""
    params = _union(t.params for t in trials)
    metrics = _union(trial_metrics(t) for t in trials)
    columns = [
        "number",
        "state",
        *(name for name, _ in objs),
        "feasible",
        "constraint",
        *(f"params_{p}" for p in params),
        *KEY_ATTRS,
        *(f"metrics_{m}" for m in metrics),
        "datetime_start",
        "datetime_complete",
        "duration_s",
        "fail_reason",
        "design_point",
    ]
    return columns, params, metrics


def _row(
    t: FrozenTrial,
    objs: Sequence[tuple[str, StudyDirection]],
    params: Sequence[str],
    metrics: Sequence[str],
) -> dict[str, Any]:
    values = list(t.values) if t.values is not None else [None] * len(objs)
    m = trial_metrics(t)
    row: dict[str, Any] = {"number": t.number, "state": t.state.name}
    row.update({name: v for (name, _), v in zip(objs, values, strict=False)})
    complete = t.state == TrialState.COMPLETE
    row["feasible"] = is_feasible(t) if complete else None
    row["constraint"] = t.user_attrs.get("constraint")
    row.update({f"params_{p}": t.params.get(p) for p in params})
    row.update({k: t.user_attrs.get(k) for k in KEY_ATTRS})
    row.update({f"metrics_{k}": m.get(k) for k in metrics})
    row["datetime_start"] = t.datetime_start.isoformat() if t.datetime_start else None
    row["datetime_complete"] = t.datetime_complete.isoformat() if t.datetime_complete else None
    row["duration_s"] = t.duration.total_seconds() if t.duration is not None else None
    row["fail_reason"] = t.user_attrs.get("fail_reason")
    row["design_point"] = t.user_attrs.get("design_point")
    return {k: _cell(v) for k, v in row.items()}


def trials_csv(trials: Sequence[FrozenTrial], objs: Sequence[tuple[str, StudyDirection]]) -> bytes:
    """A CSV of these trials: objectives, feasibility, params, key attributes, metrics."""
    columns, params, metrics = _columns(trials, objs)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for t in trials:
        writer.writerow(_row(t, objs, params, metrics))
    return buf.getvalue().encode()


def _front_record(t: FrozenTrial, objs: Sequence[tuple[str, StudyDirection]]) -> dict[str, Any]:
    values = list(t.values or [])
    record: dict[str, Any] = {
        "number": t.number,
        "values": {name: v for (name, _), v in zip(objs, values, strict=False)},
        "params": dict(t.params),
        "metrics": trial_metrics(t),
        "design_point": t.user_attrs.get("design_point"),
        "constraint": t.user_attrs.get("constraint"),
    }
    record.update({k: t.user_attrs.get(k) for k in KEY_ATTRS})
    return record


def _counts(study: optuna.Study) -> dict[str, int]:
    counts = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] += 1
    return counts


def pareto_json(
    study: optuna.Study, front: Sequence[FrozenTrial], objs: Sequence[tuple[str, StudyDirection]]
) -> bytes:
    """``pareto.json``: objectives, constraints, trial counts by state and the front."""
    doc = {
        "study": study.study_name,
        "objectives": [{"metric": name, "direction": d.name.lower()} for name, d in objs],
        "constraints": study.user_attrs.get("constraints", []),
        "counts": _counts(study),
        "trials": [_front_record(t, objs) for t in front],
    }
    return (json.dumps(jsonable(doc), indent=2, allow_nan=False) + "\n").encode()


def _fmt(v: Any) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def metric_label(metric: str, plot: bool = False) -> str:
    """``metric [unit]`` (the plot unit when ``plot``), or the bare name without a unit."""
    unit = metric_unit(metric, plot)
    return f"{metric} [{unit}]" if unit else metric


def summary_table(study: optuna.Study) -> str:
    """A fixed-width table of the feasible front, best first by the first objective, then a
    line with the trial counts, the front size and the ticket-cache hit rate."""
    objs = objectives(study)
    counts = _counts(study)
    complete = complete_trials(study)
    front = sorted_by_first(pareto_trials(study), [d for _, d in objs])
    hits = sum(1 for t in complete if t.user_attrs.get("cache_ticket") == "hit")
    rate = f"{100.0 * hits / len(complete):.0f}% ({hits}/{len(complete)})" if complete else "-"
    infeasible = sum(1 for t in complete if not is_feasible(t))
    derived = sum(1 for t in complete if t.user_attrs.get("source") == "derived")
    line = (
        f"trials: {counts['complete']} complete"
        + (f" ({derived} derived from trained tickets)" if derived else "")
        + f", {counts['fail']} failed, "
        f"{counts['pruned']} pruned, {counts['running'] + counts['waiting']} running"
        + (f" ({infeasible} infeasible)" if infeasible else "")
        + f"; front: {len(front)}; cache hit rate: {rate}"
    )
    if not complete:
        return f"no complete trials\n{line}\n"
    if not front:
        return f"no feasible complete trials\n{line}\n"

    # test accuracy is shown beside the objectives, never selected on
    shown = ("accuracy", "area", "sparsity", "utilization")
    extra = [m for m in shown if m not in {name for name, _ in objs}]
    header = [
        "trial",
        "source",
        "dataflow",
        "PE array",
        "balance",
        "rate",
        "rounds",
        *(metric_label(name) for name, _ in objs),
        *(metric_label(name) for name in extra),
    ]
    numeric = [True, False, False, True, False, True, True]
    numeric += [True] * (len(objs) + len(extra))
    rows: list[list[str]] = []
    for t in front:
        a = t.user_attrs
        m = trial_metrics(t)
        rows_cols = a.get("pe_rows"), a.get("pe_cols")
        array = f"{rows_cols[0]}x{rows_cols[1]}" if None not in rows_cols else _fmt(a.get("n_pe"))
        point = a.get("design_point")
        pruning = point.get("pruning") if isinstance(point, dict) else None
        prune_rate = pruning.get("rate") if isinstance(pruning, dict) else None
        rows.append(
            [
                str(t.number),
                _fmt(a.get("source")),
                _fmt(a.get("dataflow")),
                array,
                _fmt(a.get("balance")),
                _fmt(prune_rate),
                _fmt(a.get("rounds")),
                *(_fmt(v) for v in (t.values or [])),
                *(_fmt(m.get(k)) for k in extra),
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def fmt_row(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    lines = [fmt_row(header), "  ".join("-" * w for w in widths)]
    lines += [fmt_row(r) for r in rows]
    lines.append(line)
    return "\n".join(lines) + "\n"
