"""Scoring one trained ticket on every design point it serves: the loop over
``accelerator.evaluate`` against ``accelerator.evaluate_grid`` (issue 12, item 2).

The plain LTH ticket of ``search_spaces/default.yaml`` (balance ``none``, rate 0.5, trained to
``R_max`` = 6 rounds) serves all 192 hardware configurations of the space (8 x 8 arrays x 3
dataflows). Scored twice, as :func:`dse.tickets.score_ticket` scores it:

- **loop** (before): :func:`dse.trial.score_configs` (one ``evaluate`` per configuration and
  round) and :func:`dse.metrics.metrics_of` per report;
- **grid** (after): :func:`dse.trial.score_metrics` (one ``evaluate_grid`` per round, rows
  matched to configurations).

Both on the rounds ``score_ticket`` scores (the space's ``pruning.rounds`` values, 2..6) and on
all 7 rounds of the ticket (0..6); median and best of ``--repeats`` runs, and the largest
relative difference of any metric between the two. The ticket is trained once (digits, about a
minute) and kept in a ticket cache under ``--out``.

    python benchmarks/bench_ticket_scoring.py [--repeats 5] [--out runs/bench-ticket-scoring]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import save


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-ticket-scoring")
    a = p.parse_args()
    from dse.cache import TicketCache
    from dse.metrics import metrics_of
    from dse.space import load_space
    from dse.tickets import TicketSpace
    from dse.trial import score_configs, score_metrics, ticket_rounds

    ts = TicketSpace(load_space(ROOT / "search_spaces" / "default.yaml"))
    lth = ts.trained(
        {
            "accelerator.pe_array.rows": 4,
            "accelerator.pe_array.cols": 4,
            "accelerator.dataflow": "K",
            "pruning.balance": "none",
            "pruning.rate": 0.5,
        }
    )
    point = ts.point(lth)
    served = ts.served(lth, ts.key(point))
    configs = list(
        {
            json.dumps(p.accelerator.model_dump(mode="json"), sort_keys=True): p.accelerator
            for _, p in served
        }.values()
    )
    t0 = time.perf_counter()
    rounds, status, _ = ticket_rounds(point, cache=TicketCache(a.out / "cache"))
    took = time.perf_counter() - t0
    print(f"ticket: {status['ticket']} in {took:.1f} s; {len(configs)} configurations")

    def loop(numbers: list[int]) -> list[dict[int, dict[str, float]]]:
        reports = score_configs(configs, rounds, numbers)
        return [
            {
                r: metrics_of(rep, rounds[r].accuracy, rounds[r].val_accuracy)
                for r, rep in per.items()
            }
            for per in reports
        ]

    def grid(numbers: list[int]) -> list[dict[int, dict[str, float]]]:
        return score_metrics(configs, rounds, numbers)

    record: dict[str, Any] = {
        "space": "search_spaces/default.yaml",
        "ticket": "LTH (balance none), rate 0.5, R_max 6",
        "configurations": len(configs),
        "repeats": a.repeats,
        "note": "shared 2-core machine, busy with other jobs: timings are pessimistic",
        "cases": [],
    }
    for label, numbers in (
        ("rounds 2..6 (what score_ticket scores)", ts.rounds),
        ("all 7 rounds (0..6)", list(range(len(rounds)))),
    ):
        times: dict[str, list[float]] = {"loop": [], "grid": []}
        results: dict[str, Any] = {}
        for _ in range(a.repeats):
            for name, fn in (("loop", loop), ("grid", grid)):
                t0 = time.perf_counter()
                results[name] = fn(list(numbers))
                times[name].append(time.perf_counter() - t0)
        worst = 0.0
        for x, y in zip(results["grid"], results["loop"], strict=True):
            for r, m in y.items():
                for k, v in m.items():
                    worst = max(worst, abs(x[r][k] - v) / abs(v) if v else abs(x[r][k]))
        row = {
            "rounds": label,
            "points": len(configs) * len(numbers),
            "loop_seconds_median": statistics.median(times["loop"]),
            "grid_seconds_median": statistics.median(times["grid"]),
            "loop_seconds_min": min(times["loop"]),
            "grid_seconds_min": min(times["grid"]),
            "speedup_median": statistics.median(times["loop"]) / statistics.median(times["grid"]),
            "max_relative_difference": worst,
        }
        record["cases"].append(row)
        print(json.dumps(row))
    save("ticket_scoring", record)


if __name__ == "__main__":
    main()
