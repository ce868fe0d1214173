"""Results of a study written into its run directory: the tables (:mod:`dse.tables`) and the
plots (:mod:`dse.plots`). The front, tables and summary are re-exported from here.

Every file is written to a temporary name in the same directory, flushed to disk and renamed
over the target (``os.replace``), so a crash or a full disk never leaves a half-written file:
readers see the old file or the new one. Write failures raise :class:`ResultsError` with one
line naming the file and the reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import optuna

from dse.files import ResultsError as ResultsError  # re-exported: raised by write_results
from dse.files import atomic_write
from dse.plots import pair_plot, utilization_plot
from dse.tables import (
    KEY_ATTRS,
    complete_trials,
    is_feasible,
    objectives,
    pareto_json,
    pareto_trials,
    sorted_by_first,
    summary_table,
    trials_csv,
)

__all__ = [  # what callers imported from here before the split into tables and plots
    "KEY_ATTRS",
    "ResultsError",
    "is_feasible",
    "objectives",
    "pareto_trials",
    "summary_table",
    "write_results",
]


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
    complete = complete_trials(study)
    front = sorted_by_first(pareto_trials(study), directions)
    front_numbers = {t.number for t in front}

    written: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        written[name] = atomic_write(out / name, data)

    put("trials.csv", trials_csv(trials, objs))
    put("pareto.csv", trials_csv(front, objs))
    put("pareto.json", pareto_json(study, front, objs))
    if complete:
        for i in range(len(objs)):
            for j in range(i + 1, len(objs)):
                name = f"pareto_{_safe(objs[i][0])}_vs_{_safe(objs[j][0])}.png"
                put(name, pair_plot(complete, front_numbers, objs, i, j))
        png = utilization_plot(complete, front_numbers)
        if png is not None:
            put("utilization_vs_sparsity.png", png)
    return written
