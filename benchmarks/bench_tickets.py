"""Ticket-centric search against the exact front (issue: every trained ticket pays for its
whole hardware front).

Three measurements on one space (``--full``: ``search_spaces/default.yaml`` as shipped, 7,680
design points; without it the default space cut to 1..4 PE rows and columns at rate 0.5, 480
points, for a quick check):

1. **Exact front** (``exact/``): ``python -m dse.search --set sampler.name=exhaustive`` trains
   every distinct ticket once and scores every design point. Tickets, points, wall time.
   Reused when ``exact/`` already holds a complete run.
2. **Default run** (``--default-run``; ``default/``): ``python -m dse.search`` with the space
   as it is (``sampler: ticket``, its ``n_trials``), fresh ticket cache, real training.
   Its front against the exact front: additive epsilon, exact-front points found,
   hypervolume ratio, tickets trained, points scored, wall time.
3. **Searches against training seconds** (``--replay-seeds N``; ``replay/``): each search
   (``sampler: ticket``, ticket-centric TPE and random, and one-design-point-per-trial TPE
   (``derive: false``)) runs ``--replay-trials`` proposals for sampler seeds ``0..N-1``
   (``sampler.seed``; the space's seed, and so the tickets and the exact front, stay fixed)
   on a copy-free reference to the exact run's ticket cache, so nothing is retrained. What a
   search *would* have spent is charged from the exact run's recorded per-round training
   seconds: a ticket-centric proposal that trains a ticket costs its ``R_max`` rounds; a
   per-point trial costs the rounds it asks for unless its ticket was already trained that far
   in the same run (then nothing), and the dense round is charged once per run. After every
   paid proposal the run's front is compared with the exact front. The tickets are
   deterministic for a seed (tested), so a replayed ticket is the ticket a fresh run trains.

Epsilon is ``moocore.epsilon_additive`` with each objective normalized by the exact front's
range (the smallest shift that makes the run's front weakly dominate every exact-front point);
"found" counts exact-front objective vectors present in the run; the hypervolume ratio uses
``moocore.hypervolume`` with reference point 1.1 in the normalized minimization space.

For the ``sampler: ticket`` runs the replay also tries rounds as fidelities
(:func:`early_stopping`): a ticket stops after the first round whose points the front so far
dominates even when improved by a margin (0, 0.02, 0.05 of the exact front's ranges).

    python benchmarks/bench_tickets.py --full --default-run --replay-seeds 5 --replay-trials 100
    python benchmarks/bench_tickets.py --full --replay-seeds 1 --replay-trials 424 \
        --searches "ticket (default)" "per-point TPE" --tag _long \
        --out runs/bench-tickets-long --exact runs/bench-tickets/exact
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import save

SEARCHES = {
    "ticket (default)": ("ticket", True),
    "ticket-centric TPE": ("tpe", True),
    "ticket-centric random": ("random", True),
    "per-point TPE": ("tpe", False),
}
"""Name -> (sampler.name, sampler.derive) of the replayed searches."""


def make_space(out: Path, full: bool) -> Path:
    """The space under test, written next to the runs."""
    data = yaml.safe_load((ROOT / "search_spaces" / "default.yaml").read_text())
    data["accelerator"]["base"] = str(ROOT / "accelerator/configs/paper_16pe_k.yaml")
    if not full:
        params = dict(data["params"])
        params["accelerator.pe_array.rows"] = {"type": "int", "low": 1, "high": 4}
        params["accelerator.pe_array.cols"] = {"type": "int", "low": 1, "high": 4}
        params["pruning.rate"] = {"type": "categorical", "choices": [0.5]}
        data["params"] = params
    data["timeout"] = None
    out.mkdir(parents=True, exist_ok=True)
    path = out / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(space: Path, out: Path, workers: int, *extra: str) -> float:
    """One ``dse.search`` run; returns its wall-clock seconds."""
    from dse.search import main

    argv = ["--space", str(space), "--out", str(out), "--workers", str(workers)]
    t0 = time.perf_counter()
    code = main([*argv, "--no-progress", *extra])
    if code != 0:
        raise SystemExit(f"dse.search exited {code} on {out}")
    return time.perf_counter() - t0


def study_of(out: Path) -> Any:
    import optuna

    from dse.storage import open_storage, storage_spec

    storage = open_storage(storage_spec(None, out))
    names = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=names[0], storage=storage)


def ticket_docs(out: Path) -> dict[str, dict[str, Any]]:
    """The ticket files of a run: key -> document."""
    docs = (json.loads(p.read_text()) for p in (out / "points").glob("*.json"))
    return {d["ticket"]: d for d in docs}


def vectors(rows: list[dict[str, Any]], objectives: list[str]) -> np.ndarray:
    """Objective values of the feasible rows."""
    ok = [r for r in rows if all(c <= 0 for c in r["constraint"])]
    return np.array([[r["metrics"][m] for m in objectives] for r in ok], dtype=float)


def front_of(values: np.ndarray, maximize: list[bool]) -> np.ndarray:
    """Distinct non-dominated objective vectors."""
    import moocore

    if len(values) == 0:
        return values
    keep = moocore.is_nondominated(values, maximise=maximize)
    return np.unique(values[keep], axis=0)


def compare(front: np.ndarray, exact: np.ndarray, maximize: list[bool]) -> dict[str, float]:
    """Epsilon, points found and hypervolume ratio of ``front`` against ``exact``."""
    import moocore

    sign = np.array([-1.0 if m else 1.0 for m in maximize])
    ex = exact * sign
    lo, hi = ex.min(axis=0), ex.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)

    def norm(x: np.ndarray) -> np.ndarray:
        return (x * sign - lo) / span

    ref_pt = np.full(exact.shape[1], 1.1)
    hv_exact = moocore.hypervolume(norm(exact), ref=ref_pt)
    if len(front) == 0:
        return {"epsilon": float("inf"), "found": 0, "found_share": 0.0, "hv_ratio": 0.0}
    eps = moocore.epsilon_additive(norm(front), ref=norm(exact))
    found = sum(
        bool(np.any(np.all(np.isclose(front, e, rtol=1e-12, atol=0), axis=1))) for e in exact
    )
    hv = moocore.hypervolume(np.clip(norm(front), None, 1.1), ref=ref_pt)
    return {
        "epsilon": float(eps),
        "found": int(found),
        "found_share": found / len(exact),
        "hv_ratio": float(hv / hv_exact) if hv_exact > 0 else float("nan"),
    }


class Costs:
    """Training seconds of the exact run's tickets, per round (from its ticket cache)."""

    def __init__(self, exact_dir: Path, r_max: int) -> None:
        from dse.cache import TicketCache

        cache = TicketCache(exact_dir / "cache")
        self.rounds: dict[str, list[float]] = {}
        dense = 0.0
        for key, doc in ticket_docs(exact_dir).items():
            infos = cache.get_rounds(key, r_max)
            assert infos is not None, f"ticket {key} missing from the exact run's cache"
            self.rounds[key] = [r.train_seconds for r in infos]
            if doc["cache"]["dense"] == "miss":
                dense = max(dense, doc["train_seconds"] - sum(self.rounds[key][1:]))
        self.dense = dense

    def ticket(self, key: str, rounds: int) -> float:
        """Seconds to train ``key`` to ``rounds`` pruning rounds (dense round excluded)."""
        return float(sum(self.rounds[key][1 : rounds + 1]))


def replay_curve(
    out: Path, derive: bool, costs: Costs, exact: np.ndarray, ts: Any
) -> list[dict[str, float]]:
    """Epsilon / found against charged training seconds after each paid proposal of a run."""
    from optuna.trial import TrialState

    study = study_of(out)
    proposed = sorted(
        (
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("source") != "derived"
        ),
        key=lambda t: t.number,
    )
    docs = ticket_docs(out) if derive else {}
    spent = costs.dense
    trained: dict[str, int] = {}
    pool: list[np.ndarray] = []
    curve = []
    for t in proposed:
        if derive:
            key = t.user_attrs["ticket"]
            if t.user_attrs["source"] != "trained":
                continue
            spent += costs.ticket(key, ts.r_max)
            pool.append(vectors(docs[key]["rows"], ts.objectives))
        else:
            point = ts.point(ts.canonical(dict(t.params)))
            key, r = ts.key(point), point.pruning.rounds
            if trained.get(key, -1) < r:
                spent += costs.ticket(key, r)
                trained[key] = r
            feasible = all(c <= 0 for c in t.user_attrs.get("constraint", []))
            if feasible:
                pool.append(np.array([t.values], dtype=float))
        values = np.vstack(pool) if pool else np.zeros((0, len(ts.objectives)))
        cmp = compare(front_of(values, ts.maximize), exact, ts.maximize)
        curve.append({"proposal": t.number, "train_seconds": spent, **cmp})
    return curve


def early_stopping(
    out: Path,
    docs: dict[str, dict[str, Any]],
    costs: Costs,
    exact: np.ndarray,
    ts: Any,
    margin: float,
) -> dict[str, float]:
    """Rounds as fidelities, replayed: the tickets a ticket-centric run trained, in its order,
    each stopped after the first round ``r`` (of the space's rounds values) whose points are
    all dominated by the front so far even when improved by ``margin`` (in units of the
    exact front's range per objective); it then costs ``r`` rounds and serves rounds <= ``r``
    only. Returns the final epsilon / found and training seconds, with and without stopping.
    (The sampler's later choices would differ slightly with fewer points: an approximation.)"""
    import moocore

    sign = np.array([-1.0 if m else 1.0 for m in ts.maximize])
    lo, hi = (exact * sign).min(axis=0), (exact * sign).max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    study = study_of(out)
    order = [
        t.user_attrs["ticket"]
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        if t.user_attrs.get("source") == "trained"
    ]
    kept: list[np.ndarray] = []
    spent = full = costs.dense
    stopped = 0
    for key in order:
        rows = [r for r in docs[key]["rows"] if all(c <= 0 for c in r["constraint"])]
        by_round = {
            r: np.array([[x["metrics"][m] for m in ts.objectives] for x in rows
                         if x["params"].get("pruning.rounds") == r], dtype=float)
            for r in ts.rounds
        }  # fmt: skip
        full += costs.ticket(key, ts.r_max)
        stop = ts.r_max
        for r in ts.rounds[:-1]:
            if not kept or len(by_round[r]) == 0:
                continue
            front = np.vstack(kept) * sign
            front = front[moocore.is_nondominated(front)]
            better = by_round[r] * sign - margin * span  # improved by the margin
            dominated = all(
                bool(np.any(np.all(front <= b, axis=1) & np.any(front < b, axis=1))) for b in better
            )
            if dominated:
                stop = r
                stopped += 1
                break
        spent += costs.ticket(key, stop)
        kept.extend(v for r, v in by_round.items() if r <= stop and len(v))
    values = np.vstack(kept) if kept else np.zeros((0, len(ts.objectives)))
    cmp = compare(front_of(values, ts.maximize), exact, ts.maximize)
    return {
        "margin": margin,
        "tickets": len(order),
        "stopped_early": stopped,
        "train_seconds": spent,
        "train_seconds_without": full,
        **cmp,
    }


def first_reaching(curve: list[dict[str, float]], key: str, ok: Any) -> float | None:
    """Training seconds at which ``ok(point[key])`` first holds (None: never)."""
    for p in curve:
        if ok(p[key]):
            return float(p["train_seconds"])
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="the default space as shipped")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-tickets")
    p.add_argument("--exact", type=Path, help="the exact run's directory (default: OUT/exact)")
    p.add_argument("--default-run", action="store_true", help="measure python -m dse.search")
    p.add_argument("--replay-seeds", type=int, default=0, help="sampler seeds per search")
    p.add_argument("--replay-trials", type=int, default=100, help="proposals per replayed run")
    p.add_argument(
        "--searches",
        nargs="+",
        choices=list(SEARCHES),
        default=list(SEARCHES),
        help="replayed searches (default: all)",
    )
    p.add_argument("--tag", default="", help="suffix of the results file")
    a = p.parse_args()
    space = make_space(a.out, a.full)
    from dse.space import load_space
    from dse.tickets import TicketSpace

    ts = TicketSpace(load_space(space))
    exact_dir = a.exact or a.out / "exact"
    wall = run(space, exact_dir, a.workers, "--set", "sampler.name=exhaustive")
    docs = ticket_docs(exact_dir)
    all_values = np.vstack([vectors(d["rows"], ts.objectives) for d in docs.values()])
    exact = front_of(all_values, ts.maximize)
    record: dict[str, Any] = {
        "space": "default (full)" if a.full else "default, rows/cols 1..4, rate 0.5",
        "design_points": ts.n_points(),
        "exact": {
            "wall_seconds": wall,
            "tickets": len(docs),
            "points": sum(len(d["rows"]) for d in docs.values()),
            "train_seconds": sum(d["train_seconds"] for d in docs.values()),
            "front_points": len(exact),
            "note": "wall time includes Ray start-up; a few seconds when --out already held "
            "the complete exact run (reused): see RESULTS.md for the measured figure",
        },
    }
    print(json.dumps(record["exact"]))
    if a.default_run:
        out = a.out / "default"
        wall = run(space, out, a.workers)
        run_docs = ticket_docs(out)
        values = np.vstack([vectors(d["rows"], ts.objectives) for d in run_docs.values()])
        record["default_run"] = {
            "wall_seconds": wall,
            "tickets": len(run_docs),
            "points": sum(len(d["rows"]) for d in run_docs.values()),
            "train_seconds": sum(d["train_seconds"] for d in run_docs.values()),
            **compare(front_of(values, ts.maximize), exact, ts.maximize),
        }
        print(json.dumps(record["default_run"]))
    if a.replay_seeds:
        costs = Costs(exact_dir, ts.r_max)
        half = (len(exact) + 1) // 2
        record["replay"] = {"trials": a.replay_trials, "dense_seconds": costs.dense, "runs": []}
        for seed in range(a.replay_seeds):
            for name in a.searches:
                sampler, derive = SEARCHES[name]
                out = a.out / "replay" / f"{sampler}-{'tickets' if derive else 'points'}-s{seed}"
                extra = ["--set", f"sampler.name={sampler}", "--set", f"sampler.derive={derive}"]
                extra += ["--set", f"sampler.seed={seed}", "--n-trials", str(a.replay_trials)]
                extra += ["--cache", str(exact_dir / "cache")]
                run(space, out, a.workers, *extra)  # its wall time is not a figure: no training
                curve = replay_curve(out, derive, costs, exact, ts)
                row = {
                    "search": name,
                    "seed": seed,
                    "final": curve[-1] if curve else None,
                    "seconds_to_epsilon_0.02": first_reaching(
                        curve, "epsilon", lambda e: e <= 0.02
                    ),
                    "seconds_to_half_found": first_reaching(curve, "found", lambda f: f >= half),
                    "curve": curve,
                }
                if sampler == "ticket":
                    row["early_stopping"] = [
                        early_stopping(out, docs, costs, exact, ts, m) for m in (0.0, 0.02, 0.05)
                    ]
                record["replay"]["runs"].append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "curve"}))
    save(("tickets_full" if a.full else "tickets") + a.tag, record)


if __name__ == "__main__":
    main()
