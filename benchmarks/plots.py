"""Plots for RESULTS.md from the benchmark JSON files (no re-measuring).

Run: ``python benchmarks/plots.py``. Reads ``results/*.json`` and writes next to them:
``cost_model.png``, ``balance.png``, ``reproduce_tables.png``, ``table3.png``, ``samplers.png``,
``search.png`` and ``tickets_full_replay.png``; a missing JSON skips its plot.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, seed_mean_curve


def _load(name: str) -> Any:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def cost_model(data: Any, plt: Any) -> Any:
    """Evaluate time vs the count_nonzero floor, per network/sparsity/dataflow, 16 and 64 PEs."""
    rows = data["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, pe in zip(axes, (16, 64), strict=True):
        sel = [r for r in rows if r["pe"] == pe]
        labels = [f"{r['network']}\n{int(100 * r['sparsity'])}% {r['dataflow']}" for r in sel]
        x = np.arange(len(sel))
        ax.bar(x - 0.2, [r["evaluate_ms"] for r in sel], 0.4, label="accelerator.evaluate")
        ax.bar(x + 0.2, [r["count_nonzero_ms"] for r in sel], 0.4, label="np.count_nonzero floor")
        ax.set_xticks(x, labels, fontsize=5, rotation=90)
        ax.set_title(f"{pe} PEs")
    axes[0].set_ylabel("ms per network evaluation")
    axes[0].legend(fontsize=7)
    return fig


def balance(data: Any, plt: Any) -> Any:
    """Balancing time per network/sparsity/dataflow, 16 and 64 PEs."""
    rows = data["rows"]
    fig, ax = plt.subplots(figsize=(9, 3.4))
    for pe, marker in ((16, "o"), (64, "s")):
        for flow in ("K", "C", "KC"):
            sel = [r for r in rows if r["pe"] == pe and r["dataflow"] == flow]
            labels = [f"{r['network']} {int(100 * r['sparsity'])}%" for r in sel]
            ax.plot(
                labels, [r["balance_ms"] for r in sel], marker=marker, label=f"{flow}, {pe} PEs"
            )
    ax.set_ylabel("ms per balancing step")
    ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=2)
    ax.tick_params(axis="x", labelsize=7)
    return fig


def reproduce_tables(data: Any, plt: Any) -> Any:
    """LTH vs u-Ticket: latency and accuracy against sparsity, per dataset and mapping."""
    rows = data["rows"]
    panels = [(d, f) for d in ("digits", "mnist5k") for f in ("K", "C")]
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.5))
    for col, (dataset, flow) in enumerate(panels):
        for method in ("LTH", "u-Ticket"):
            where = {"dataset": dataset, "dataflow": flow, "method": method}
            curve = seed_mean_curve(rows, where)
            if curve is None:
                continue
            sp, lat, acc = curve.T
            axes[0, col].plot(100 * sp, lat, marker="o", label=method)
            axes[1, col].plot(100 * sp, 100 * acc, marker="o", label=method)
        axes[0, col].set_title(f"{dataset}, dataflow {flow}")
        axes[0, col].set_ylabel("latency (us)")
        axes[1, col].set_ylabel("test accuracy (%)")
        axes[1, col].set_xlabel("sparsity (%)")
    axes[0, 0].legend()
    return fig


def table3(data: Any, plt: Any) -> Any:
    """Latency and energy against PE count, normalized to 2 PEs, with the paper's figures."""
    rows = data["rows"]
    pe = [r["pe"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(pe, [r["compute_latency_norm"] for r in rows], "o-", label="compute latency (model)")
    ax.plot(pe, [r["latency_norm"] for r in rows], "o--", label="latency (model)")
    ax.plot(pe, [r["pe_energy_norm"] for r in rows], "s-", label="PE energy (model)")
    paper = data.get("paper", {})
    if paper:
        ks = sorted(paper, key=int)
        ax.plot([int(k) for k in ks], [paper[k][0] for k in ks], "x:", label="latency (paper)")
        ax.plot([int(k) for k in ks], [paper[k][1] for k in ks], "+:", label="energy (paper)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("PEs")
    ax.set_ylabel("relative to 2 PEs")
    ax.legend(fontsize=7)
    return fig


def samplers(data: Any, plt: Any) -> Any:
    """Hypervolume against trials per sampler (mean ± std over seeds), both spaces."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, space in zip(axes, ("cheap_space", "default_space"), strict=True):
        for sampler, curve in data[space]["hv"].items():
            n = sorted(curve, key=int)
            mean = np.array([curve[k][0] for k in n])
            std = np.array([curve[k][1] for k in n])
            x = [int(k) for k in n]
            ax.plot(x, mean, marker="o", label=sampler)
            ax.fill_between(x, mean - std, mean + std, alpha=0.2)
        ax.set_title(space.replace("_", " "))
        ax.set_xlabel("trials")
        ax.set_ylabel("hypervolume")
        ax.legend(fontsize=7)
    return fig


def search(data: Any, plt: Any) -> Any:
    """Throughput with 1 and 2 workers (default space and fixed work per trial), and training
    per trial with and without the ticket cache."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    labels = ["1 worker", "2 workers"]
    axes[0].bar(labels, [data[f"workers_{i}"]["trials_per_minute"] for i in (1, 2)])
    axes[0].set_title("default space, no cache", fontsize=9)
    axes[0].set_ylabel("trials per minute")
    if "fixed_work_workers_1" in data:
        axes[1].bar(labels, [data[f"fixed_work_workers_{i}"]["trials_per_minute"] for i in (1, 2)])
    axes[1].set_title("same work in every trial, no cache", fontsize=9)
    axes[1].set_ylabel("trials per minute")
    c = data["cache"]
    if "with_cache_train_seconds_per_trial" in c:
        axes[2].bar(
            ["no cache", "cache"],
            [c["without_cache_train_seconds_per_trial"], c["with_cache_train_seconds_per_trial"]],
        )
        axes[2].set_ylabel("training seconds per trial")
    else:
        axes[2].bar(
            ["no cache", "cache"],
            [c["without_cache_trainings_per_trial"], c["with_cache_trainings_per_trial"]],
        )
        axes[2].set_ylabel("trainings per trial")
    axes[2].set_title("ticket cache, 2 workers", fontsize=9)
    return fig


def _step(curve: list[dict[str, float]], key: str, grid: np.ndarray) -> np.ndarray:
    """``key`` of the last curve point at or before each training-seconds value of ``grid``
    (NaN before the first point and after the run's last one)."""
    x = np.array([p["train_seconds"] for p in curve])
    y = np.array([p[key] for p in curve], dtype=float)
    idx = np.searchsorted(x, grid, side="right") - 1
    return np.where((idx >= 0) & (grid <= x[-1]), y[np.maximum(idx, 0)], np.nan)


def tickets_full_replay(data: Any, plt: Any) -> Any:
    """Epsilon and exact-front points found against training seconds, median and range over
    sampler seeds, per search (replayed on the exact run's tickets)."""
    runs = data["replay"]["runs"]
    top = max(p["train_seconds"] for r in runs for p in r["curve"])
    grid = np.linspace(0, top, 200)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before a first paid step
    for name in dict.fromkeys(r["search"] for r in runs):
        mine = [r for r in runs if r["search"] == name and r["curve"]]
        for ax, key in zip(axes, ("epsilon", "found"), strict=True):
            ys = np.array([_step(r["curve"], key, grid) for r in mine])
            med = np.nanmedian(ys, axis=0) if len(ys) else grid * np.nan
            (line,) = ax.plot(grid, med, label=f"{name} ({len(mine)} seeds)")
            ax.fill_between(
                grid,
                np.nanmin(ys, axis=0),
                np.nanmax(ys, axis=0),
                alpha=0.15,
                color=line.get_color(),
            )
    axes[0].axhline(0.02, color="k", lw=0.8, ls="--")
    axes[0].set_ylabel("additive epsilon to the exact front")
    axes[0].set_ylim(0, 0.3)
    axes[1].axhline((data["exact"]["front_points"] + 1) // 2, color="k", lw=0.8, ls="--")
    axes[1].set_ylabel(f"exact-front points found (of {data['exact']['front_points']})")
    for ax in axes:
        ax.set_xlabel("training seconds charged (median over the runs still going)")
        ax.legend(fontsize=7)
    return fig


PLOTS: dict[str, Callable[[Any, Any], Any]] = {
    "tickets_full_replay": tickets_full_replay,
    "cost_model": cost_model,
    "balance": balance,
    "reproduce_tables": reproduce_tables,
    "table3": table3,
    "samplers": samplers,
    "search": search,
}


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, fn in PLOTS.items():
        data = _load(name)
        if data is None:
            print(f"skip {name}: no results/{name}.json")
            continue
        fig = fn(data, plt)
        fig.tight_layout()
        fig.savefig(RESULTS / f"{name}.png", dpi=110)
        plt.close(fig)
        print(f"wrote results/{name}.png")


if __name__ == "__main__":
    main()
