"""Plots of a study (matplotlib, Agg backend, PNG bytes): each pair of objectives with the
feasible front highlighted, and PE utilization against sparsity by workload balancing. The
files are written by :func:`dse.export.write_results`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from dse.metrics import BY_NAME
from dse.tables import metric_label, trial_metrics

_DATAFLOW_COLORS = {"K": "tab:blue", "C": "tab:orange", "KC": "tab:green"}
_BALANCE_MARKERS = {"uticket": "o", "none": "x"}
_BALANCE_COLORS = {"uticket": "tab:red", "none": "tab:blue"}
_OTHER_COLOR = "tab:gray"
_OTHER_MARKER = "s"


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


def pair_plot(
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
    ax.set_xlabel(f"{metric_label(nx, plot=True)} ({_direction_note(dx)})")
    ax.set_ylabel(f"{metric_label(ny, plot=True)} ({_direction_note(dy)})")
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


def utilization_plot(complete: Sequence[FrozenTrial], front_numbers: set[int]) -> bytes | None:
    """Utilization (y) against sparsity (x), coloured by balance; None without data."""
    fig = _figure()
    ax = fig.add_subplot()
    groups: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    for t in complete:
        m = trial_metrics(t)
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
