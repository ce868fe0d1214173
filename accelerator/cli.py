"""``python -m accelerator CONFIG.yaml MASKS.npz [--profile P.json] [--json]
[--grid GRID.yaml --out DIR]`` (``python -m accelerator.evaluate`` is the same command).

Scores pruned masks on one accelerator and prints a per-layer table (or one JSON object). With
``--grid``, scores every combination of the grid's field values (:func:`accelerator.evaluate_grid`)
and writes ``DIR/grid.csv`` (every configuration), ``DIR/pareto.csv`` (the front of latency x
energy x area) and ``DIR/pareto.png``. Bad input exits with status 2 and one line on stderr
naming the file and what is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from accelerator.config import AcceleratorConfig, load_accelerator
from accelerator.cost import ProfileMismatch, evaluate
from accelerator.files import ConfigError, read_yaml
from accelerator.grid import check_grid, evaluate_grid, pareto_front
from accelerator.mapping import MappingError
from accelerator.profile import Profile, load_profile
from accelerator.report import Report
from accelerator.workload import MaskError


class InputError(ValueError):
    """Unusable command-line input; the message is printed as is."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, no usage dump
        raise InputError(f"{self.prog}: {message}")


def load_masks(path: str | Path) -> dict[str, np.ndarray]:
    """Read an ``.npz`` of 0/1 arrays in network order (no pickles are ever loaded)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: file not found")
    try:
        with np.load(p, allow_pickle=False) as data:
            masks = {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise InputError(f"{p}: not a readable .npz of arrays ({exc})") from None
    if not masks:
        raise InputError(f"{p}: contains no arrays; expected one 0/1 mask per prunable layer")
    return masks


def format_table(report: Report) -> str:
    """Human-readable per-layer table with network totals."""
    head = (
        f"{report.accelerator}: dataflow {report.dataflow} ({report.mapping_order} order), "
        f"PE array {report.pe_array[0]}x{report.pe_array[1]} = {report.n_pe} PEs, "
        f"area {report.area_mm2:.3f} mm^2"
    )
    cols = (
        f"{'layer':<16} {'shape':<16} {'sparsity':>8} {'util':>6} {'work':>10} {'idle':>10} "
        f"{'latency':>9} {'cycles':>12} {'bound':>7} {'energy uJ':>11}"
    )
    lines = [head, cols, "-" * len(cols)]
    for r in report.layers:
        util = "  -   " if r.utilization != r.utilization else f"{r.utilization:6.3f}"
        lines.append(
            f"{r.name[:16]:<16} {'x'.join(map(str, r.shape))[:16]:<16} {r.sparsity:8.4f} {util} "
            f"{r.work:>10d} {r.idle:>10d} {r.latency:>9d} {r.cycles:>12.0f} {r.bound:>7} "
            f"{r.energy_pj['total'] * 1e-6:>11.4f}"
        )
    lines.append("-" * len(cols))
    e = report.energy_pj
    lines += [
        f"{'total':<16} {'':<16} {report.sparsity:8.4f} {report.utilization:6.3f} "
        f"{report.nonzeros:>10d} {'':>10} {'':>9} {report.cycles:>12.0f} {'':>7} "
        f"{e['total'] * 1e-6:>11.4f}",
        f"utilization {report.utilization:.4f} (mean of layer Eq. 2 weighted by parameter count; "
        f"unweighted mean {report.utilization_unweighted:.4f}; conv layers but the first, as "
        f"the authors' code prints: {report.utilization_authors:.4f})",
        f"latency {report.seconds * 1e6:.3f} us ({report.cycles:.0f} cycles at the clock)",
        "energy uJ: "
        + ", ".join(
            f"{k} {e[k] * 1e-6:.4f}" for k in ("compute", "lif", "onchip_memory", "dram", "leakage")
        ),
    ]
    return "\n".join(lines)


def run_grid(
    config: AcceleratorConfig,
    masks: dict[str, np.ndarray],
    profile: Profile | None,
    grid_path: str,
    out: Path,
) -> str:
    """Score the grid in ``grid_path``; write the CSVs and the plot under ``out``; return a
    one-line summary."""
    grid = read_yaml(grid_path)
    check_grid(config, grid, grid_path)
    frame = evaluate_grid(config, grid, masks, profile)
    front = pareto_front(frame)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "grid.csv", index=False)
    front.to_csv(out / "pareto.csv", index=False)
    plot_front(frame, front, out / "pareto.png")
    return (
        f"{len(frame)} configurations -> {out / 'grid.csv'}; {len(front)} on the latency x "
        f"energy x area front -> {out / 'pareto.csv'}, {out / 'pareto.png'}"
    )


def plot_front(frame: Any, front: Any, path: Path) -> None:
    """Latency against energy of every configuration (grey) and of the front (coloured by
    area)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(frame["seconds"] * 1e3, frame["energy_uj"], s=4, c="0.8", label="all")
    sc = ax.scatter(
        front["seconds"] * 1e3,
        front["energy_uj"],
        s=18,
        c=front["area_mm2"],
        cmap="viridis",
        label="Pareto front",
    )
    fig.colorbar(sc, ax=ax, label="area (mm$^2$)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers, no crowded minor-tick labels
        axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(ticker.FormatStrFormatter("%.3g"))
        axis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("energy (uJ)")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = _Parser(
        prog="python -m accelerator",
        description="Score pruned SNN masks on an accelerator described in YAML.",
    )
    parser.add_argument("config", help="accelerator YAML (see accelerator/configs/)")
    parser.add_argument("masks", help=".npz with one 0/1 array per prunable layer, network order")
    parser.add_argument("--profile", help="spike profile JSON written by snn (positions, rates)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--grid", help="YAML mapping dotted fields to lists of values: score every combination"
    )
    parser.add_argument("--out", help="output folder of --grid (CSV files and a plot)")
    try:
        args = parser.parse_args(argv)
        if bool(args.grid) != bool(args.out):
            raise InputError("--grid GRID.yaml and --out DIR go together")
        config = load_accelerator(args.config)
        masks = load_masks(args.masks)
        profile = load_profile(args.profile) if args.profile else None
        try:
            if args.grid:
                print(run_grid(config, masks, profile, args.grid, Path(args.out)))
                return 0
            report = evaluate(config, masks, profile)
        except (MaskError, MappingError) as exc:
            raise InputError(f"{args.masks}: {exc}") from None
        except ProfileMismatch as exc:
            raise InputError(f"{args.profile}: {exc}") from None
        except ConfigError as exc:
            if exc.path != "<profile>":
                raise
            raise InputError(f"{args.profile}: {exc.field}: {exc.message}") from None
    except (InputError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_table(report))
    return 0
