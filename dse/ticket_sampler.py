"""Proposals that train the ticket most likely to extend the front (``sampler: {name: ticket}``).

In a ticket-centric search (:mod:`dse.tickets`) a proposal costs a training only when its
ticket is new, and a trained ticket is scored on every design point it serves, so the only
choice that matters is *which ticket to train next*. This sampler makes that choice from a
prediction of each untrained ticket's points:

1. **Roots first.** The plain lottery tickets (``pruning.balance: none``) of the space are
   proposed first, one per combination of the other ticket parameters (rate, ...). They need
   no hardware and serve every configuration.
2. **Predicted points.** A u-Ticket ticket is the lottery ticket of the same schedule,
   rebalanced after every round for its PE partition (arXiv 2302.06746, Algorithm 1). Its
   points are predicted from the trained root: every round's masks are rebalanced for the
   ticket's partition (:func:`snn.uticket.balance`, milliseconds, no training) and scored on
   every configuration the ticket serves (:func:`dse.trial.score_metrics`); accuracy is the
   root's. Latency and energy are predicted well; accuracy is not (retraining a rebalanced
   ticket moves it, by a standard deviation of 0.2 at 99.6 % sparsity on the digits space),
   which is why the ticket is then trained rather than trusted. (Raising the predicted
   accuracy by the observed spread, an upper confidence bound, was tried and found fewer
   front points: it chases the sparsest tickets; see benchmarks/RESULTS.md.)
3. **The choice.** The untrained ticket whose predicted feasible points add the largest
   hypervolume (``moocore.hypervolume``, objectives normalized by the range of every point
   scored so far, reference point 1.1) to the front of the scored points is proposed; ties
   (no predicted gain) are broken at random, seeded. Tickets no prediction exists for (no
   root in the space) come after, in random order. A worker claims its ticket with a file
   created exclusively (``points/.claims/<ticket>``), so workers asking at once train
   different tickets.

Once every ticket is trained, proposals are random (they cost nothing: every point is
scored). A space with a continuous ticket parameter has no finite list of tickets: the
sampler then falls back to multivariate TPE entirely.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from accelerator import AcceleratorConfig, pe_index
from dse.cache import TicketCache
from dse.tickets import SOURCE_DERIVED, TicketSpace, _shapes, points_dir
from dse.trial import score_metrics
from dse.worker import constraint_values, distributions
from snn.uticket import balance

BALANCE = "pruning.balance"


class TicketSampler(optuna.samplers.BaseSampler):
    """Propose the untrained ticket with the largest predicted hypervolume gain (see the
    module docstring). One instance per worker; it reads the run directory's ticket files and
    the ticket cache, which every worker of a run shares."""

    def __init__(self, ts: TicketSpace, run_dir: Path, cache: TicketCache, seed: int) -> None:
        self.ts = ts
        self.run_dir = Path(run_dir)
        self.cache = cache
        self.rng = np.random.default_rng(seed)
        self.random = optuna.samplers.RandomSampler(seed=seed)
        self.fallback: optuna.samplers.BaseSampler | None = None
        if ts.continuous():  # no finite list of tickets
            self.fallback = optuna.samplers.TPESampler(seed=seed, multivariate=True)
        self._serving: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] | None = None
        self._predicted: dict[str, np.ndarray] = {}
        self._rows: dict[str, np.ndarray] = {}
        sign = [-1.0 if m else 1.0 for m in ts.maximize]
        self.sign = np.array(sign)

    # -- Optuna's sampler interface ---------------------------------------------------------

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, optuna.distributions.BaseDistribution]:
        if self.fallback is not None:
            return self.fallback.infer_relative_search_space(study, trial)
        return distributions(self.ts.space)

    def sample_relative(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        search_space: dict[str, optuna.distributions.BaseDistribution],
    ) -> dict[str, Any]:
        if self.fallback is not None:
            return self.fallback.sample_relative(study, trial, search_space)
        if not search_space:
            return {}
        key = self.next_ticket(study, trial.number)
        if key is None:
            return {}  # every ticket is trained: any point is free, drawn at random
        return dict(self.serving()[key][0])

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: optuna.distributions.BaseDistribution,
    ) -> Any:
        sampler = self.fallback or self.random
        return sampler.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        self.random.reseed_rng()
        if self.fallback is not None:
            self.fallback.reseed_rng()

    # -- the choice ---------------------------------------------------------------------------

    def serving(self) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Every ticket: key -> (its trained assignments, the hardware assignments it serves)."""
        if self._serving is None:
            self._serving = self.ts.serving()
        return self._serving

    def root_of(self, assignments: dict[str, Any]) -> str | None:
        """Key of the plain lottery ticket a u-Ticket ticket is predicted from (None when the
        space does not offer ``pruning.balance: none``)."""
        spec = self.ts.values.get(BALANCE)
        if not spec or "none" not in spec or assignments.get(BALANCE) != "uticket":
            return None
        return self.ts.key(self.ts.point({**assignments, BALANCE: "none"}))

    def claim(self, key: str, number: int, live: Callable[[], set[int]]) -> bool:
        """Claim ticket ``key`` for trial ``number`` (a file created exclusively, so two
        workers asking at once never pick the same ticket). A claim whose trial is not in
        ``live()`` (read only then, so it is current: a trial is RUNNING before it claims)
        has failed or lost its driver, and is taken over."""
        path = points_dir(self.run_dir) / ".claims" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = int(path.read_text() or -1)
            except (OSError, ValueError):
                owner = -1
            if owner in live():
                return False
            path.write_text(str(number))
            return True
        with os.fdopen(fd, "w") as f:
            f.write(str(number))
        return True

    def next_ticket(self, study: optuna.Study, number: int) -> str | None:
        """Claim and return the ticket to train next (None when every ticket is trained or
        claimed by a live trial)."""

        def live() -> set[int]:
            states = (TrialState.RUNNING, TrialState.WAITING)
            return {
                t.number
                for t in study.get_trials(deepcopy=False, states=states)
                if t.number != number and t.user_attrs.get("source") != SOURCE_DERIVED
            }

        for key in self.ranked(study):
            # a claim taken over from a finished trial: its ticket may have been done since
            # ``ranked`` listed it (ticket files are written before their trial completes)
            done = (points_dir(self.run_dir) / f"{key}.json").exists
            if self.claim(key, number, live) and not done():
                return key
        return None

    def ranked(self, study: optuna.Study) -> list[str]:
        """Untrained tickets, best first: roots, then by predicted gain, then those without a
        prediction yet (ties and roots in seeded random order)."""
        serving = self.serving()
        done = {p.stem for p in points_dir(self.run_dir).glob("*.json")}
        todo = [k for k in serving if k not in done]
        order = {k: float(u) for k, u in zip(todo, self.rng.random(len(todo)), strict=True)}
        roots = sorted(
            (k for k in todo if serving[k][0].get(BALANCE) == "none"), key=lambda k: order[k]
        )
        gains: dict[str, float] = {}
        current = self.scored(done)
        for k in todo:
            root = self.root_of(serving[k][0])
            pred = None if root is None or root not in done else self.predict(k, root)
            if pred is not None:
                gains[k] = self.gain(current, pred)
        predicted = sorted(gains, key=lambda k: (-round(gains[k], 12), order[k]))
        rest = sorted(
            (k for k in todo if k not in gains and k not in roots), key=lambda k: order[k]
        )
        return roots + predicted + rest

    def scored(self, done: set[str]) -> np.ndarray:
        """Objective vectors (minimization form) of every feasible scored point so far."""
        for key in done - set(self._rows):
            path = points_dir(self.run_dir) / f"{key}.json"
            doc = json.loads(path.read_text())
            rows = [r for r in doc["rows"] if all(c <= 0 for c in r["constraint"])]
            self._rows[key] = self._vectors([r["metrics"] for r in rows])
        parts = [self._rows[k] for k in done if k in self._rows]
        return np.vstack(parts) if parts else np.zeros((0, len(self.sign)))

    def _vectors(self, metrics: list[dict[str, float]]) -> np.ndarray:
        names = self.ts.objectives
        values = np.array([[m[n] for n in names] for m in metrics], dtype=float)
        out: np.ndarray = values.reshape(-1, len(names)) * self.sign
        return out

    def predict(self, key: str, root: str) -> np.ndarray | None:
        """Predicted feasible objective vectors of ticket ``key`` from its trained ``root``:
        the root's masks rebalanced for the ticket's partition, scored on every configuration
        it serves (memoized)."""
        if key in self._predicted:
            return self._predicted[key]
        rounds = self.cache.get_rounds(root, self.ts.r_max)
        if rounds is None:
            return None
        assignments, hardware = self.serving()[key]
        point = self.ts.point(assignments)
        d = point.to_dict()
        shapes = _shapes(
            json.dumps(d["model"], sort_keys=True),
            json.dumps(d["data"], sort_keys=True),
            d["seed"],
        )
        pe = {n: pe_index(s, point.accelerator) for n, s in shapes.items()}
        n_pe = point.accelerator.n_pe
        rebalanced = [
            replace(r, masks=balance(r.masks, pe, n_pe, seed=point.seed)) if r.round else r
            for r in rounds
        ]
        configs: list[AcceleratorConfig] = []
        seen: set[str] = set()
        for h in hardware:
            cfg = self.ts.point({**assignments, **h}).accelerator
            text = cfg.model_dump_json()
            if text not in seen:
                seen.add(text)
                configs.append(cfg)
        scored = score_metrics(configs, rebalanced, self.ts.rounds)
        metrics = [m for per in scored for m in per.values()]
        feasible = [m for m in metrics if all(c <= 0 for c in constraint_values(self.ts.space, m))]
        self._predicted[key] = self._vectors(feasible)
        return self._predicted[key]

    @staticmethod
    def gain(current: np.ndarray, predicted: np.ndarray) -> float:
        """Hypervolume that ``predicted`` adds to the front of ``current`` (both minimization
        vectors), normalized by the range of ``current``; reference point 1.1."""
        import moocore

        if len(predicted) == 0:
            return 0.0
        if len(current) == 0:
            return float(len(predicted))
        lo, hi = current.min(axis=0), current.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        ref = np.full(current.shape[1], 1.1)

        def hv(x: np.ndarray) -> float:
            x = (x - lo) / span
            x = x[np.all(x < ref, axis=1)]
            return float(moocore.hypervolume(x, ref=ref)) if len(x) else 0.0

        front = current[moocore.is_nondominated(current)]
        return hv(np.vstack([front, predicted])) - hv(front)
