"""Results of a study: the feasible Pareto front, CSV / JSON tables, plots and a text summary.

The study names its objectives in ``study.user_attrs["objectives"]`` (a list of
``{"metric", "direction"}``, in the order of the trial values) and its constraints in
``study.user_attrs["constraints"]``. A trial is feasible when every value of its ``constraint``
user attribute (and of the ``constraints`` system attribute an Optuna sampler stores) is <= 0.

Every file is written to a temporary name in the same directory, flushed to disk and renamed
over the target (``os.replace``), so a crash or a full disk never leaves a half-written file:
readers see the old file or the new one. Write failures raise :class:`ResultsError` with one
line naming the file and the reason.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from dse.files import ResultsError as ResultsError  # re-exported: raised by write_results
from dse.files import atomic_write, jsonable
from dse.metrics import BY_NAME
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

_DATAFLOW_COLORS = {"K": "tab:blue", "C": "tab:orange", "KC": "tab:green"}
_BALANCE_MARKERS = {"uticket": "o", "none": "x"}
_BALANCE_COLORS = {"uticket": "tab:red", "none": "tab:blue"}
_OTHER_COLOR = "tab:gray"
_OTHER_MARKER = "s"


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


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [t for t in trials if t.values is not None]


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The feasible Pareto front, in trial-number order: Optuna's ``study.best_trials``
    (non-dominated among the feasible complete trials, so an infeasible design never hides
    a feasible one; equal trials are all kept)."""
    return sorted(study.best_trials, key=lambda t: t.number)


def _sorted_by_first(
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


def _metrics(trial: FrozenTrial) -> dict[str, Any]:
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
    metrics = _union(_metrics(t) for t in trials)
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
    m = _metrics(t)
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


def _csv(trials: Sequence[FrozenTrial], objs: Sequence[tuple[str, StudyDirection]]) -> bytes:
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
        "metrics": _metrics(t),
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


def _pareto_json(
    study: optuna.Study, front: Sequence[FrozenTrial], objs: Sequence[tuple[str, StudyDirection]]
) -> bytes:
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


def _label(metric: str, plot: bool = False) -> str:
    unit = metric_unit(metric, plot)
    return f"{metric} [{unit}]" if unit else metric


def summary_table(study: optuna.Study) -> str:
    """A fixed-width table of the feasible front, best first by the first objective, then a
    line with the trial counts, the front size and the ticket-cache hit rate."""
    objs = objectives(study)
    counts = _counts(study)
    complete = _complete(study)
    front = _sorted_by_first(pareto_trials(study), [d for _, d in objs])
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
        *(_label(name) for name, _ in objs),
        *(_label(name) for name in extra),
    ]
    numeric = [True, False, False, True, False, True, True]
    numeric += [True] * (len(objs) + len(extra))
    rows: list[list[str]] = []
    for t in front:
        a = t.user_attrs
        m = _metrics(t)
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


# --------------------------------------------------------------------------------------------
# plots


def _finite_pos(values: Sequence[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _maybe_log(ax: Any, axis: str, metric: str, values: Sequence[float]) -> None:
    vals = _finite_pos(values)
    if (
        metric in BY_NAME
        and BY_NAME[metric].log
        and vals
        and min(vals) > 0
        and max(vals) / min(vals) > 10
    ):
        from matplotlib import ticker

        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        # Labels at 1 (2, 5) x 10^k written compactly ("0.2", "5e-06"), none on minor ticks:
        # matplotlib's default labels minor ticks of short log ranges, and they overlap.
        target = ax.xaxis if axis == "x" else ax.yaxis
        decades = math.log10(max(vals) / min(vals))
        subs = (1.0, 2.0, 5.0) if decades <= 2 else (1.0,)
        target.set_major_locator(ticker.LogLocator(base=10, subs=subs, numticks=7))
        target.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        target.set_minor_formatter(ticker.NullFormatter())


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 5.0), dpi=110)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.11, top=0.93)  # cheaper than a layout
    return fig


def _direction_note(d: StudyDirection) -> str:
    return "higher is better" if d == StudyDirection.MAXIMIZE else "lower is better"


def _pair_plot(
    complete: Sequence[FrozenTrial],
    front_numbers: set[int],
    objs: Sequence[tuple[str, StudyDirection]],
    iy: int,
    ix: int,
) -> bytes:
    """Objective ``iy`` (y) against objective ``ix`` (x): colour = dataflow, marker = balance."""
    from matplotlib.lines import Line2D

    fig = _figure()
    ax = fig.add_subplot()
    (ny, dy), (nx, dx) = objs[iy], objs[ix]
    points = [
        (t.values[ix], t.values[iy], t)
        for t in complete
        if t.values is not None and math.isfinite(t.values[ix]) and math.isfinite(t.values[iy])
    ]
    groups: dict[tuple[str, str, bool], list[tuple[float, float]]] = {}
    for x, y, t in points:
        key = (
            str(t.user_attrs.get("dataflow")),
            str(t.user_attrs.get("balance")),
            t.number in front_numbers,
        )
        groups.setdefault(key, []).append((x, y))
    for (dataflow, balance, on_front), xy in sorted(groups.items()):
        color = _DATAFLOW_COLORS.get(dataflow, _OTHER_COLOR)
        marker = _BALANCE_MARKERS.get(balance, _OTHER_MARKER)
        filled = marker != "x"
        kwargs: dict[str, Any] = {"c": color, "marker": marker}
        if on_front:
            kwargs.update(s=70, alpha=1.0, zorder=3)
            kwargs.update(
                {"edgecolors": "black", "linewidths": 0.8} if filled else {"linewidths": 2.0}
            )
        else:
            kwargs.update(s=18, alpha=0.25, zorder=2, linewidths=0.8 if not filled else 0.0)
        ax.scatter([p[0] for p in xy], [p[1] for p in xy], **kwargs)
    if len(objs) == 2:
        fr = sorted((x, y) for x, y, t in points if t.number in front_numbers)
        if len(fr) > 1:
            ax.plot([p[0] for p in fr], [p[1] for p in fr], "--", color="0.4", lw=1, zorder=1)
    _maybe_log(ax, "x", nx, [p[0] for p in points])
    _maybe_log(ax, "y", ny, [p[1] for p in points])
    ax.set_xlabel(f"{_label(nx, plot=True)} ({_direction_note(dx)})")
    ax.set_ylabel(f"{_label(ny, plot=True)} ({_direction_note(dy)})")
    n_front = sum(1 for *_, t in points if t.number in front_numbers)
    ax.set_title(f"{ny} vs {nx}: {len(points)} trials, {n_front} on the feasible front")
    ax.grid(True, alpha=0.3)
    if len(objs) > 2:
        others = ", ".join(name for k, (name, _) in enumerate(objs) if k not in (ix, iy))
        fig.subplots_adjust(bottom=0.15)
        fig.text(
            0.5,
            0.01,
            f"a {len(objs)}-objective front: front points that look dominated in this 2-D "
            f"view are better in {others}",
            ha="center",
            va="bottom",
            fontsize="small",
            color="0.35",
        )

    dataflows = sorted({k[0] for k in groups})
    balances = sorted({k[1] for k in groups})
    handles = [
        Line2D([], [], ls="", marker="o", color=_DATAFLOW_COLORS.get(d, _OTHER_COLOR), label=d)
        for d in dataflows
    ]
    handles += [
        Line2D([], [], ls="", marker=_BALANCE_MARKERS.get(b, _OTHER_MARKER), color="0.3", label=b)
        for b in balances
    ]
    handles += [
        Line2D([], [], ls="", marker="o", color="0.5", mec="black", ms=9, label="Pareto front"),
        Line2D([], [], ls="", marker="o", color="0.5", alpha=0.25, label="other trials"),
    ]
    ax.legend(handles=handles, fontsize="small", loc="best", title="dataflow / balance")
    return _png(fig)


def _utilization_plot(complete: Sequence[FrozenTrial], front_numbers: set[int]) -> bytes | None:
    """Utilization (y) against sparsity (x), coloured by balance; None without data."""
    fig = _figure()
    ax = fig.add_subplot()
    groups: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    for t in complete:
        m = _metrics(t)
        try:
            x, y = float(m["sparsity"]), float(m["utilization"])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(x) and math.isfinite(y):
            key = (str(t.user_attrs.get("balance")), t.number in front_numbers)
            groups.setdefault(key, []).append((x, y))
    if not groups:
        return None
    for (balance, on_front), xy in sorted(groups.items()):
        color = _BALANCE_COLORS.get(balance, _OTHER_COLOR)
        marker = _BALANCE_MARKERS.get(balance, _OTHER_MARKER)
        kwargs: dict[str, Any] = {"c": color, "marker": marker, "zorder": 3 if on_front else 2}
        if marker != "x":
            kwargs.update(edgecolors="black" if on_front else "none", linewidths=0.8)
        kwargs.update(s=60 if on_front else 22, alpha=1.0 if on_front else 0.5)
        label = f"{balance} (Pareto front)" if on_front else balance
        ax.scatter([p[0] for p in xy], [p[1] for p in xy], label=label, **kwargs)
    ax.set_xlabel("weight sparsity (fraction pruned)")
    ax.set_ylabel("PE utilization (Eq. 2, weighted by parameters)")
    ax.set_title("utilization vs sparsity by workload balancing")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best", title="balance")
    return _png(fig)


# --------------------------------------------------------------------------------------------
# writing


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_results(study: optuna.Study, out_dir: Path | str) -> dict[str, Path]:
    """Write ``trials.csv``, ``pareto.csv``, ``pareto.json`` and the PNG plots into ``out_dir``.

    Plots (only when there are complete trials): ``pareto_<a>_vs_<b>.png`` for every pair of
    objectives (``a`` on the y axis, ``b`` on the x axis) and ``utilization_vs_sparsity.png``.
    The front files list the feasible front best first by the first objective. Returns
    file name -> path. Raises :class:`ResultsError` when a file cannot be written.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        err = ResultsError(f"cannot create {out}: {e.strerror or e}")
        err.errno = e.errno
        raise err from e
    objs = objectives(study)
    directions = [d for _, d in objs]
    trials = study.get_trials(deepcopy=False)
    complete = _complete(study)
    front = _sorted_by_first(pareto_trials(study), directions)
    front_numbers = {t.number for t in front}

    written: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        written[name] = atomic_write(out / name, data)

    put("trials.csv", _csv(trials, objs))
    put("pareto.csv", _csv(front, objs))
    put("pareto.json", _pareto_json(study, front, objs))
    if complete:
        for i in range(len(objs)):
            for j in range(i + 1, len(objs)):
                name = f"pareto_{_safe(objs[i][0])}_vs_{_safe(objs[j][0])}.png"
                put(name, _pair_plot(complete, front_numbers, objs, i, j))
        png = _utilization_plot(complete, front_numbers)
        if png is not None:
            put("utilization_vs_sparsity.png", png)
    return written
