"""Storage under load: 8 workers x 500 short trials through ``python -m dse.search`` on the
JournalStorage file and on PostgreSQL; trials lost or duplicated, storage milliseconds per trial;
and the memory of one worker during a default-space trial.

The load space varies only hardware (PE rows and columns, dataflow, global-buffer bandwidth,
clock) for one plain-LTH ticket of the default network with one pruning round, trained once into
a shared ticket cache before timing: a trial is a cache read plus one cost-model evaluation, so
the storage round-trips are a visible share of it. Eight workers share this machine's cores
through ``--cpus-per-trial 0.25``.

Checked from a fresh process after each run: trial numbers unique and contiguous (none lost or
duplicated), exactly ``--trials`` COMPLETE, none left RUNNING/WAITING. Storage time per trial is
the worker's Optuna ``ask`` + attribute writes + ``tell`` (``timings.jsonl``).

Worker memory: the peak resident set size of the worker actor (``ray::Worker``) while it runs
one trial of the unchanged default space, sampled from ``/proc`` every 0.2 s.

Run: ``python benchmarks/bench_storage_load.py [--trials 500] [--workers 8]
[--postgres URL]`` (``DSE_TEST_POSTGRES_URL`` is used when set; ``bash .ci/postgres.sh`` starts
a throw-away server); writes ``benchmarks/results/storage_load.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import save

HARDWARE_PARAMS = {
    "accelerator.pe_array.rows": {"type": "int", "low": 1, "high": 16},
    "accelerator.pe_array.cols": {"type": "int", "low": 1, "high": 16},
    "accelerator.dataflow": {"type": "categorical", "choices": ["K", "C", "KC"]},
    "accelerator.memory.global_buffer_bandwidth": {
        "type": "int",
        "low": 64,
        "high": 1024,
        "log": True,
    },
    "accelerator.clock_mhz": {"type": "float", "low": 200, "high": 800, "step": 100},
}


def load_space(tmp: Path) -> Path:
    """The default space reduced to hardware parameters over one cached plain-LTH ticket."""
    data = yaml.safe_load((ROOT / "search_spaces" / "default.yaml").read_text())
    data["accelerator"]["base"] = str(ROOT / "accelerator/configs/paper_16pe_k.yaml")
    data["pruning"].update(balance="none", rounds=1)
    data["train"]["epochs"] = 1
    data["params"] = HARDWARE_PARAMS
    data["sampler"] = {"name": "random"}
    data["study"] = "storage-load"
    path = tmp / "load_space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def search(
    space: Path, out: Path, cache: Path, *extra: str, env: dict[str, str] | None = None
) -> float:
    """Run ``dse.search``; returns wall seconds (raises on a non-zero exit)."""
    cmd = [sys.executable, "-m", "dse.search", "--space", str(space), "--out", str(out)]
    cmd += ["--cache", str(cache), "--no-progress", *extra]
    t0 = time.perf_counter()
    done = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - t0


CHECK = """
import json, sys, optuna
from dse.storage import open_storage
study = optuna.load_study(study_name=sys.argv[2], storage=open_storage(sys.argv[1]))
print(json.dumps([[t.number, t.state.name] for t in study.get_trials(deepcopy=False)]))
"""


def check(storage: str, study: str, budget: int) -> dict[str, Any]:
    """Lost / duplicated / exact budget, read back by a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", CHECK, storage, study],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(out.stdout)
    numbers = [n for n, _ in rows]
    states = [s for _, s in rows]
    expected = set(range(max(numbers) + 1)) if numbers else set()
    return {
        "trials": len(rows),
        "complete": states.count("COMPLETE"),
        "failed": states.count("FAIL"),
        "left_running_or_waiting": states.count("RUNNING") + states.count("WAITING"),
        "lost_numbers": len(expected - set(numbers)),
        "duplicated_numbers": len(numbers) - len(set(numbers)),
        "budget_exact": states.count("COMPLETE") == budget,
    }


def storage_ms(timings: Path) -> dict[str, float]:
    """Per-trial storage milliseconds (worker side: ask + attributes + tell)."""
    rows = [json.loads(x) for x in timings.read_text().splitlines()]
    per = sorted(
        1e3 * (r["ask_seconds"] + r["attrs_seconds"] + r.get("tell_seconds", 0.0)) for r in rows
    )
    total = [1e3 * r["seconds"] for r in rows]
    return {
        "rows": len(rows),
        "storage_ms_mean": statistics.fmean(per),
        "storage_ms_median": statistics.median(per),
        "storage_ms_p95": per[int(0.95 * (len(per) - 1))],
        "ask_ms_mean": 1e3 * statistics.fmean(r["ask_seconds"] for r in rows),
        "tell_ms_mean": 1e3 * statistics.fmean(r.get("tell_seconds", 0.0) for r in rows),
        "trial_ms_mean": statistics.fmean(total),
    }


def worker_memory(tmp: Path) -> dict[str, float]:
    """Peak RSS (MiB) of the worker actor during one default-space trial."""
    mark = uuid.uuid4().hex
    peak: dict[int, int] = {}
    stop = threading.Event()

    def sample() -> None:
        want = f"DSE_TEST_MARK={mark}".encode()
        while not stop.wait(0.2):
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    comm = Path(f"/proc/{entry}/comm").read_text().strip()  # 15 chars at most
                    if not comm.startswith("ray::Worker"):  # ray::Worker.run, .__init__...
                        continue
                    if want not in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                        continue
                    status = Path(f"/proc/{entry}/status").read_text()
                except OSError:
                    continue
                rss = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS"))
                peak[int(entry)] = max(peak.get(int(entry), 0), rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t = search(
        ROOT / "search_spaces" / "default.yaml",
        tmp / "memory",
        tmp / "memory-cache",
        "--n-trials",
        "1",
        "--workers",
        "1",
        env={"DSE_TEST_MARK": mark},
    )
    stop.set()
    thread.join()
    if not peak:
        raise RuntimeError("no ray::Worker process was seen")
    return {"peak_rss_mib": max(peak.values()) / 1024, "trial_wall_seconds": t}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--trials", type=int, default=500)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--postgres", default=os.environ.get("DSE_TEST_POSTGRES_URL"))
    p.add_argument("--skip-memory", action="store_true")
    a = p.parse_args()
    cpus = f"{min(1.0, (os.cpu_count() or 1) / a.workers):g}"
    results: dict[str, Any] = {
        "trials": a.trials,
        "workers": a.workers,
        "cpus_per_trial": cpus,
        "runs": {},
    }
    with tempfile.TemporaryDirectory(prefix="dse-load-") as td:
        tmp = Path(td)
        space, cache = load_space(tmp), tmp / "cache"
        search(space, tmp / "warm", cache, "--n-trials", "1", "--workers", "1")  # the ticket
        storages = [("journal", None)]
        if a.postgres:
            storages.append(("postgresql", a.postgres))
        for name, url in storages:
            out = tmp / name
            study = f"storage-load-{uuid.uuid4().hex[:8]}"
            extra = ["--n-trials", str(a.trials), "--workers", str(a.workers)]
            extra += ["--cpus-per-trial", cpus, "--study", study]
            if url:
                extra += ["--storage", url]
            wall = search(space, out, cache, *extra)
            spec = url or f"journal:{(out / 'study.journal').resolve()}"
            row = {"wall_seconds": wall, "trials_per_second": a.trials / wall}
            row.update(check(spec, study, a.trials))
            row.update(storage_ms(out / "timings.jsonl"))
            results["runs"][name] = row
            print(name, json.dumps(row, indent=1), flush=True)
        if not a.skip_memory:
            results["worker_memory"] = worker_memory(tmp)
            print("worker memory", results["worker_memory"], flush=True)
    print(save("storage_load", results))


if __name__ == "__main__":
    main()
