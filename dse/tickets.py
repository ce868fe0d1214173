"""Ticket-centric search: train each distinct ticket once, score every design point it serves.

Training is nearly all the cost of a design point, and most design points share their ticket:

- **What decides a ticket.** Data, model, training, the pruning schedule (rate, scope,
  balancing, rewinding; *not* the number of rounds) and the seed; for u-Ticket also the PE
  partition of every layer (and a workload-dependent ``accelerator.mapping_order``), exactly
  what :func:`dse.cache.ticket_key` hashes. Every other ``accelerator.*`` parameter only
  decides the scoring. For u-Ticket on the K dataflow, for instance, 4x4, 2x8, 8x2 and 1x16
  arrays partition the network the same way: one ticket.
- **Round prefixes.** Round ``r`` of an ``R``-round schedule is the ``r``-round schedule (same
  seeds, same masks, bit for bit; tested), so a ticket trained with ``R_max`` = the space's
  largest ``pruning.rounds`` serves every rounds value of the space.
- **Derived design points.** Once a ticket is trained, every design point of the space it
  serves is scored: every rounds value x every hardware configuration of the space with the
  same ticket key (all of them for plain LTH). Finite parameters (int, categorical, stepped
  float) are enumerated; a continuous ``accelerator.*`` float takes only the proposed value.
  Equivalent points (same ticket, same accelerator configuration) are scored once, each
  round by one :func:`accelerator.evaluate_grid` call over the configurations
  (:func:`dse.trial.score_metrics`; a loop over ``evaluate`` where the grid cannot express
  them, e.g. rounds balanced for a workload-dependent mapping order).
- **Files.** Each ticket's scored points go to ``<run>/points/<ticket>.json`` (written
  atomically: one file per ticket, so several workers and nodes never write the same file);
  :func:`write_points_csv` merges them into ``points.csv``. A ticket with a file is done:
  resuming never retrains or rescores it.
- **The study.** The points non-dominated among a ticket's feasible points are added to the
  Optuna study as COMPLETE trials with user attributes ``source: derived`` and ``ticket``, and
  their constraints in Optuna's ``constraints:<name>`` system attributes, so that samplers,
  ``study.best_trials`` and optuna-dashboard all see them. Derived trials never count against
  ``--n-trials`` (:func:`budget_states`).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from accelerator import AcceleratorConfig, ConfigError, pe_index
from dse.cache import TicketCache, ticket_key
from dse.design import DesignPoint, base_sections
from dse.files import atomic_write, file_lock, jsonable
from dse.metrics import METRICS
from dse.space import CategoricalParam, FloatParam, IntParam, LoadedSpace, Param, Space
from dse.trial import load_splits, score_metrics, ticket_rounds, weight_shapes
from dse.worker import constraint_values, distributions

ROUNDS = "pruning.rounds"
POINTS_DIR = "points"
POINTS_CSV = "points.csv"
FORMAT = 1
SOURCE_DERIVED = "derived"
SOURCE_TRAINED = "trained"
SOURCE_PROPOSED = "proposed"


def finite_values(spec: Param) -> list[Any] | None:
    """Every value of a finite parameter (int, categorical, stepped float); ``None`` for a
    continuous float. Stepped floats use Optuna's grid ``low + k * step``."""
    if isinstance(spec, CategoricalParam):
        return list(spec.choices)
    if isinstance(spec, IntParam):
        return list(range(spec.low, spec.high + 1, spec.step))
    assert isinstance(spec, FloatParam)
    if spec.step is None:
        return None
    n = math.floor((spec.high - spec.low) / spec.step + 1e-9)
    return [min(round(spec.low + k * spec.step, 12), spec.high) for k in range(n + 1)]


def _norm(v: Any) -> Any:
    """A value as a lookup key (stepped floats from samplers carry rounding noise)."""
    return round(v, 9) if isinstance(v, float) else v


def constraint_names(space: Space) -> list[str]:
    """Optuna constraint name of each constraint of the space (``area_max``, ...)."""
    return [f"{c.metric}_{'max' if c.max is not None else 'min'}" for c in space.constraints]


@lru_cache(maxsize=8)
def _shapes(model_json: str, data_json: str, seed: int) -> dict[str, tuple[int, ...]]:
    point = DesignPoint.from_dict(
        {"model": json.loads(model_json), "data": json.loads(data_json), "seed": seed}
    )
    return weight_shapes(point, load_splits(point))


class TicketSpace:
    """A search space seen as tickets: which parameters decide the ticket, the grid a ticket
    serves, and the ticket key of any design point."""

    def __init__(self, loaded: LoadedSpace) -> None:
        self.loaded = loaded
        self.space = loaded.space
        self.base = base_sections(loaded)
        self.names = list(self.space.params)
        self.values = {n: finite_values(s) for n, s in self.space.params.items()}
        self.hardware = [n for n in self.names if n.startswith("accelerator.")]
        self.ticket_params = [n for n in self.names if n not in self.hardware and n != ROUNDS]
        rounds = self.values.get(ROUNDS) if ROUNDS in self.names else [self.space.pruning.rounds]
        assert rounds is not None  # pruning.rounds is an int field: always finite
        self.rounds = sorted(int(r) for r in rounds)
        self.r_max = self.rounds[-1]
        self.objectives = [o.metric for o in self.space.objectives]
        self.maximize = [o.direction == "maximize" for o in self.space.objectives]

    # -- points and keys --------------------------------------------------------------------

    def point(self, assignments: dict[str, Any]) -> DesignPoint:
        """The design point of ``assignments`` (dotted paths) on the space's base settings."""
        return DesignPoint.apply(self.base, assignments)

    def key(self, point: DesignPoint) -> str:
        """The ticket key of ``point`` (:func:`dse.cache.ticket_key`)."""
        d = point.to_dict()
        shapes = _shapes(
            json.dumps(d["model"], sort_keys=True), json.dumps(d["data"], sort_keys=True), d["seed"]
        )
        pe = {n: pe_index(s, point.accelerator) for n, s in shapes.items()}
        return ticket_key(point, pe, point.accelerator.n_pe)

    def trained(self, assignments: dict[str, Any]) -> dict[str, Any]:
        """The assignments of the ticket that serves ``assignments``: rounds set to ``R_max``."""
        out = dict(assignments)
        if ROUNDS in self.names:
            out[ROUNDS] = self.r_max
        return out

    def canonical(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` with every stepped float snapped to its grid value: samplers return
        e.g. 0.30000000000000004 for 0.3, which would otherwise name another ticket."""
        out = dict(params)
        for n, v in params.items():
            grid = self.values.get(n)
            if isinstance(v, float) and grid and isinstance(self.space.params[n], FloatParam):
                out[n] = min(grid, key=lambda g: abs(float(g) - v))
        return out

    def continuous(self) -> list[str]:
        """Names of the continuous parameters (empty for a finite space)."""
        return [n for n, v in self.values.items() if v is None]

    def _axes(self, names: Sequence[str], given: dict[str, Any]) -> list[list[Any]]:
        out = []
        for n in names:
            vals = self.values[n]
            out.append(list(vals) if vals is not None else [given[n]])
        return out

    def served(
        self, assignments: dict[str, Any], key: str
    ) -> list[tuple[dict[str, Any], DesignPoint]]:
        """Every hardware assignment of the space whose ticket is ``key`` (rounds excluded),
        with its design point; the ticket parameters are those of ``assignments``."""
        fixed = {n: assignments[n] for n in self.ticket_params}
        out = []
        for combo in itertools.product(*self._axes(self.hardware, assignments)):
            a = {**fixed, **dict(zip(self.hardware, combo, strict=True))}
            if ROUNDS in self.names:
                a[ROUNDS] = self.r_max
            try:
                p = self.point(a)
            except ConfigError:
                continue  # not a valid design point: it would fail as a trial too
            if p.pruning.balance == "none" or self.key(p) == key:
                out.append((a, p))
        return out

    def serving(self) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Every distinct ticket of a finite space: key -> (the assignments that train it,
        rounds = ``R_max``, the first in grid order; the hardware assignments it serves),
        in one pass over the grid."""
        out: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        for t_combo in itertools.product(*self._axes(self.ticket_params, {})):
            fixed = dict(zip(self.ticket_params, t_combo, strict=True))
            for h_combo in itertools.product(*self._axes(self.hardware, {})):
                hardware = dict(zip(self.hardware, h_combo, strict=True))
                a = self.trained({**fixed, **hardware})
                try:
                    p = self.point(a)
                except ConfigError:
                    continue  # not a valid design point: it would fail as a trial too
                out.setdefault(self.key(p), (a, []))[1].append(hardware)
        return out

    def tickets(self) -> dict[str, dict[str, Any]]:
        """Every distinct ticket of a finite space: key -> the assignments that train it
        (rounds = ``R_max``), in grid order."""
        return {key: a for key, (a, _) in self.serving().items()}

    def n_points(self) -> int:
        """Design points of a finite space (its grid size)."""
        return math.prod(len(v or []) for v in self.values.values())

    # -- rows -------------------------------------------------------------------------------

    def row(
        self, key: str, assignments: dict[str, Any], metrics: dict[str, float], source: str
    ) -> dict[str, Any]:
        """One scored point as stored in a ticket file."""
        return {
            "ticket": key,
            "source": source,
            "params": {n: assignments[n] for n in self.names},
            "metrics": metrics,
            "constraint": constraint_values(self.space, metrics),
        }


# -- ticket files ---------------------------------------------------------------------------


def points_dir(run_dir: Path) -> Path:
    return run_dir / POINTS_DIR


def read_ticket(run_dir: Path, key: str) -> dict[str, Any] | None:
    """The scored points of ticket ``key``, or ``None`` when it was not scored yet."""
    path = points_dir(run_dir) / f"{key}.json"
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return doc if doc.get("format") == FORMAT else None


def ticket_files(run_dir: Path) -> list[Path]:
    d = points_dir(run_dir)
    return sorted(d.glob("*.json")) if d.is_dir() else []


@dataclass
class Scored:
    """A ticket's scored points and what producing them cost."""

    doc: dict[str, Any]
    computed: bool  # False: read from its ticket file (scored before)


def score_ticket(
    ts: TicketSpace,
    assignments: dict[str, Any],
    run_dir: Path,
    *,
    cache: TicketCache | None,
    threads: int = 1,
    study: optuna.Study | None = None,
    proposal: dict[str, Any] | None = None,
) -> Scored:
    """Make sure the ticket serving ``assignments`` is trained and all its points scored.

    Under a lock per ticket (a second worker wanting the same ticket waits, then reads the
    file). Trains the ``R_max`` ticket (or reads it from ``cache``), scores every served
    design point, adds the ticket's non-dominated feasible points to ``study`` as derived
    trials (except ``proposal``'s own point, which its trial holds) and writes the ticket file.
    """
    trained = ts.trained(ts.canonical(assignments))
    point = ts.point({**trained, "train.num_threads": threads})
    key = ts.key(point)
    with file_lock(points_dir(run_dir) / ".locks" / f"{key}.lock"):
        doc = read_ticket(run_dir, key)
        if doc is not None:
            return Scored(doc, computed=False)
        t0 = time.perf_counter()
        rounds, status, timings = ticket_rounds(point, cache=cache)
        t_trained = time.perf_counter()
        served = ts.served(trained, key)
        unique: dict[str, int] = {}
        configs: list[AcceleratorConfig] = []
        index = []
        for _, p in served:
            cfg = json.dumps(p.accelerator.model_dump(mode="json"), sort_keys=True)
            if cfg not in unique:
                unique[cfg] = len(configs)
                configs.append(p.accelerator)
            index.append(unique[cfg])
        scores = score_metrics(configs, rounds, ts.rounds)
        rows = []
        for (a, _), i in zip(served, index, strict=True):
            for r in ts.rounds:
                params = {**a, ROUNDS: r} if ROUNDS in ts.names else a
                metrics = scores[i][r]
                if not all(math.isfinite(v) for v in metrics.values()):
                    continue
                source = SOURCE_TRAINED if _same(ts, params, trained) else SOURCE_DERIVED
                rows.append(ts.row(key, params, metrics, source))
        t_scored = time.perf_counter()
        doc = {
            "format": FORMAT,
            "ticket": key,
            "trained": trained,
            "balance": point.pruning.balance,
            "cache": status,
            "train_seconds": sum(r.train_seconds for r in rounds),
            "balance_seconds": sum(r.balance_seconds for r in rounds),
            "ticket_seconds": t_trained - t0,
            "score_seconds": t_scored - t_trained,
            "configurations": len(configs),
            "timings": timings,
            "rows": rows,
        }
        if study is not None:
            add_derived(study, ts, doc, exclude=proposal)
        path = points_dir(run_dir) / f"{key}.json"
        atomic_write(path, (json.dumps(jsonable(doc), allow_nan=False) + "\n").encode())
        return Scored(doc, computed=True)


def answer_proposal(
    ts: TicketSpace,
    trial: optuna.Trial,
    run_dir: Path,
    cache: TicketCache | None,
    threads: int,
    timings: dict[str, float],
) -> dict[str, Any]:
    """What a worker does with a proposed trial before scoring it: make sure its ticket is
    trained and scored (training it now if no one did: user attribute ``source: trained``;
    otherwise it costs no training: ``source: proposed``) and return its parameters snapped
    to the grid. Its own scoring then reads the ticket from the cache."""
    params = ts.canonical(dict(trial.params))
    scored = score_ticket(
        ts, params, run_dir, cache=cache, threads=threads, study=trial.study, proposal=params
    )
    trial.set_user_attr("ticket", scored.doc["ticket"])
    trial.set_user_attr("source", SOURCE_TRAINED if scored.computed else SOURCE_PROPOSED)
    trial.set_user_attr(
        "ticket_train_seconds", scored.doc["train_seconds"] if scored.computed else 0.0
    )
    timings["ticket_seconds"] = scored.doc["ticket_seconds"] if scored.computed else 0.0
    return params


def _same(ts: TicketSpace, a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(_norm(a.get(n)) == _norm(b.get(n)) for n in ts.names)


def front_rows(ts: TicketSpace, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The feasible rows no other feasible row dominates (equal ones all kept), by moocore."""
    import moocore

    feasible = [r for r in rows if all(c <= 0 for c in r["constraint"])]
    if not feasible:
        return []
    values = np.array([[r["metrics"][m] for m in ts.objectives] for r in feasible], dtype=float)
    keep = moocore.is_nondominated(values, maximise=ts.maximize, keep_weakly=True)
    return [r for r, k in zip(feasible, keep, strict=True) if k]


def derived_attrs(ts: TicketSpace, row: dict[str, Any]) -> dict[str, Any]:
    """User attributes of a derived trial: what summary tables and CSV files read."""
    p = ts.point(row["params"])
    m = row["metrics"]
    return {
        "source": SOURCE_DERIVED,
        "ticket": row["ticket"],
        "metrics": m,
        **p.attrs(),
        "sparsity": m["sparsity"],
        "utilization": m["utilization"],
        "constraint": row["constraint"],
        "train_seconds": 0.0,
    }


def add_derived(
    study: optuna.Study,
    ts: TicketSpace,
    doc: dict[str, Any],
    exclude: dict[str, Any] | None = None,
) -> int:
    """Add the ticket's non-dominated feasible points to ``study`` as COMPLETE derived trials
    (once per ticket: a ticket already present is skipped). Returns how many were added."""
    key = doc["ticket"]
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("source") == SOURCE_DERIVED and t.user_attrs.get("ticket") == key:
            return 0
    dists = distributions(ts.space)
    names = constraint_names(ts.space)
    trials = []
    for row in front_rows(ts, doc["rows"]):
        if exclude is not None and _same(ts, row["params"], exclude):
            continue
        trials.append(
            optuna.trial.create_trial(
                params=row["params"],
                distributions=dists,
                values=[row["metrics"][m] for m in ts.objectives],
                user_attrs=derived_attrs(ts, row),
                system_attrs={
                    f"constraints:{n}": v for n, v in zip(names, row["constraint"], strict=True)
                },
                state=TrialState.COMPLETE,
            )
        )
    study.add_trials(trials)
    return len(trials)


# -- budget and summary ---------------------------------------------------------------------


class ProposalStartup(optuna.samplers.BaseSampler):
    """Random proposals until ``n_startup`` *proposed* trials are complete, then ``base``.

    TPE and GP count every COMPLETE trial towards their random start-up, derived trials
    included: the first trained ticket adds tens of derived trials, which would end the
    start-up after one ticket and let the model settle on it. This wrapper keeps the start-up
    about proposals. The choice is made once per trial (``before_trial``), so one proposal never
    mixes the two samplers.
    """

    def __init__(self, base: optuna.samplers.BaseSampler, n_startup: int, seed: int) -> None:
        self.base = base
        self.random = optuna.samplers.RandomSampler(seed=seed)
        self.n_startup = n_startup
        self._chosen: dict[int, optuna.samplers.BaseSampler] = {}

    def _of(self, trial: optuna.trial.FrozenTrial) -> optuna.samplers.BaseSampler:
        return self._chosen.get(trial.number, self.base)

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        proposed = budget_states(study)
        done = proposed.get("COMPLETE", 0) + proposed.get("RUNNING", 0) - 1  # minus this one
        sampler = self.random if done < self.n_startup else self.base
        self._chosen[trial.number] = sampler
        sampler.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial
    ) -> dict[str, optuna.distributions.BaseDistribution]:
        return self._of(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        search_space: dict[str, optuna.distributions.BaseDistribution],
    ) -> dict[str, Any]:
        return self._of(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        param_name: str,
        param_distribution: optuna.distributions.BaseDistribution,
    ) -> Any:
        return self._of(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._chosen.pop(trial.number, self.base).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
        self.random.reseed_rng()


def startup_by_proposals(
    sampler: optuna.samplers.BaseSampler, space: Space, seed: int
) -> optuna.samplers.BaseSampler:
    """``sampler`` wrapped in :class:`ProposalStartup` when it has a random start-up (TPE,
    GP); other samplers are returned as they are."""
    if space.sampler.name not in ("tpe", "gp"):
        return sampler
    n = space.sampler.n_startup_trials if space.sampler.n_startup_trials is not None else 10
    return ProposalStartup(sampler, n, seed)


def budget_states(study: optuna.Study) -> dict[str, int]:
    """Trials per state name, derived trials left out: what ``--n-trials`` counts."""
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("source") == SOURCE_DERIVED:
            continue
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def point_columns(space: Space) -> list[str]:
    """Columns of ``points.csv``: as ``trials.csv`` (``params_<path>``, objectives by name,
    ``metrics_<name>``) plus the ticket key and the source (trained / derived)."""
    objectives = [o.metric for o in space.objectives]
    return [
        "ticket",
        "source",
        *(f"params_{n}" for n in space.params),
        *objectives,
        "feasible",
        "constraint",
        *(f"metrics_{m}" for m in METRICS),
    ]


def collect_points(run_dir: Path) -> list[dict[str, Any]]:
    """Every scored point of the run (rows of all ticket files), in ticket-file order."""
    rows: list[dict[str, Any]] = []
    for path in ticket_files(run_dir):
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        rows.extend(doc.get("rows", []))
    return rows


def write_points_csv(space: Space, run_dir: Path) -> Path | None:
    """Merge the ticket files into ``points.csv`` (atomic); ``None`` without ticket files."""
    import csv
    import io

    rows = collect_points(run_dir)
    if not rows:
        return None
    objectives = [o.metric for o in space.objectives]
    columns = point_columns(space)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        m = r["metrics"]
        out: dict[str, Any] = {"ticket": r["ticket"], "source": r["source"]}
        out.update({f"params_{n}": r["params"].get(n) for n in space.params})
        out.update({o: m.get(o) for o in objectives})
        out["feasible"] = all(c <= 0 for c in r["constraint"])
        out["constraint"] = json.dumps(r["constraint"])
        out.update({f"metrics_{k}": m.get(k) for k in METRICS})
        writer.writerow(out)
    return atomic_write(run_dir / POINTS_CSV, buf.getvalue().encode())


@dataclass
class TicketSummary:
    """How many tickets a run trained and how many design points they scored."""

    tickets: int
    points: int
    train_seconds: float

    def line(self) -> str:
        return f"{self.tickets} tickets trained, {self.points} design points scored"


def ticket_summary(run_dir: Path, study: optuna.Study | None = None) -> TicketSummary:
    """Tickets with a file in ``run_dir`` and the points they scored; without ticket files
    (one design point per trial) the trials of ``study`` that trained a ticket and all its
    complete trials."""
    tickets = points = 0
    seconds = 0.0
    for path in ticket_files(run_dir):
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        tickets += 1
        points += len(doc.get("rows", []))
        seconds += float(doc.get("train_seconds", 0.0))
    if tickets == 0 and study is not None:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        trained = [t for t in complete if t.user_attrs.get("cache_ticket") != "hit"]
        seconds = sum(float(t.user_attrs.get("train_seconds", 0.0)) for t in complete)
        return TicketSummary(len(trained), len(complete), seconds)
    return TicketSummary(tickets, points, seconds)
