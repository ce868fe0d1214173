"""``python -m dse.evaluate [--space FILE] [--set KEY=VALUE ...] [--json]``: one design point.

Builds the design point of a search space (its base settings, plus ``--set`` overrides of any
field, e.g. ``--set pruning.balance=uticket --set accelerator.dataflow=C``), trains the network,
runs the pruning rounds with or without u-Ticket, scores every round on the accelerator and
prints a table per round (or one JSON object). Exit 2 on bad input, naming file and field.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np

from accelerator import ConfigError
from dse.cache import TicketCache
from dse.design import DesignPoint
from dse.space import DEFAULT_SPACE, load_space
from dse.trial import TrialResult, run_trial
from snn.train import DivergedError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(self.prog, "arguments", message)


def format_rounds(result: TrialResult) -> str:
    """Per-round table: sparsity, accuracy, utilization, cycles, latency, energy."""
    p = result.point
    head = (
        f"{p.model.name} on {p.data.name} (T={p.model.timesteps}), "
        f"{p.accelerator.name}: {p.accelerator.pe_array.rows}x{p.accelerator.pe_array.cols} PEs, "
        f"dataflow {p.accelerator.dataflow.value}, {p.accelerator.mapping_order} order, "
        f"balance {p.pruning.balance}"
        + (f" ({p.pruning.balance_cost})" if p.pruning.balance == "uticket" else "")
    )
    cols = (
        f"{'round':>5} {'sparsity':>9} {'accuracy':>9} {'util':>6} {'cycles':>12} "
        f"{'latency us':>11} {'energy uJ':>10}"
    )
    lines = [head, cols, "-" * len(cols)]
    for r in result.rounds:
        lines.append(
            f"{r.round:>5d} {r.sparsity:>9.4f} {r.accuracy:>9.4f} {r.utilization:>6.3f} "
            f"{r.cycles:>12.0f} {r.latency * 1e6:>11.2f} {r.energy:>10.3f}"
        )
    m, t = result.metrics, result.timings
    lines += [
        "-" * len(cols),
        f"final: accuracy {m['accuracy']:.4f} (val {m['val_accuracy']:.4f}), sparsity "
        f"{m['sparsity']:.4f}, utilization {m['utilization']:.3f} (weighted by parameter count),"
        f" latency {m['latency'] * 1e6:.2f} us, energy {m['energy']:.3f} uJ, area "
        f"{m['area']:.3f} mm^2",
        f"time: {t['total_seconds']:.1f} s total, {t['train_seconds']:.1f} s training, "
        f"{t['balance_seconds'] * 1e3:.1f} ms balancing, {t['score_seconds'] * 1e3:.1f} ms scoring"
        f"; cache dense={result.cache['dense']} ticket={result.cache['ticket']}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m dse.evaluate",
        description="Run one design point end to end: train, prune (LTH / u-Ticket), score.",
    )
    parser.add_argument("--space", default=str(DEFAULT_SPACE), help="search-space YAML")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field, e.g. pruning.balance=uticket or accelerator.dataflow=C",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--cache", help="ticket cache directory (reuse trained tickets)")
    parser.add_argument("--save-masks", help="write the final masks (.npz) and profile (.json)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    try:
        args = parser.parse_args(argv)
        loaded = load_space(args.space, args.set)
        point = DesignPoint.build(loaded, {})
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cache = TicketCache(args.cache) if args.cache else None
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=point.pruning.rounds + 1, desc="rounds", unit="round", file=sys.stderr)

        def progress(stage: str, done: int, total: int) -> None:
            assert bar is not None
            bar.set_description(stage)
            bar.update(done - bar.n)

    try:
        result = run_trial(point, cache=cache, progress=progress if bar is not None else None)
    except (DivergedError, FloatingPointError) as exc:
        print(f"error: {exc} (try a smaller train.lr)", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    if args.save_masks:
        out = Path(args.save_masks)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out.with_suffix(".npz"), **result.masks)  # type: ignore[arg-type]
        out.with_suffix(".json").write_text(json.dumps(result.profile, indent=1))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_rounds(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
