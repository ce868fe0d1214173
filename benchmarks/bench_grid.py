"""Whole-grid scoring speed: ``accelerator.evaluate_grid`` on a 98 %-sparse VGG-16 ticket over
about 110,000 hardware configurations with 384 distinct PE partitions, on one core.

The masks are random at 2 % density with the real VGG-16 (CIFAR-10) shapes; the profile gives
each layer its 32x32 / 16x16 / 8x8 / 4x4 / 2x2 output map, T = 4 and a 10 % spike rate. A sample
of rows is checked against ``accelerator.evaluate`` on that configuration alone.

Run: ``OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_grid.py``.
Writes ``benchmarks/results/grid.json``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import random_masks, save, single_thread, vgg16_shapes

single_thread()

import numpy as np

from accelerator import AcceleratorConfig, evaluate, evaluate_grid, summarize

VGG16_SIDES = [32, 32, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 2]
"""Output side of each VGG-16 conv layer on 32x32 CIFAR-10 images (max-pool after 2, 4, 7, 10)."""

REPEATS = 5
"""Timed runs; the median is reported."""

GRID = {
    "dataflow": ["K", "C", "KC"],
    "pe_array.rows": list(range(1, 17)),
    "pe_array.cols": list(range(1, 9)),
    "memory.global_buffer_bytes": [1 << k for k in range(14, 22)],  # 16 KiB .. 2 MiB
    "clock_mhz": [200.0, 400.0, 600.0, 800.0],
    "energy.dram_per_bit": [3.7, 7.0, 13.0],
    "memory.dram_bandwidth_gbps": [6.4, 12.8, 25.6],
}


def vgg16_profile(names: list[str], timesteps: int = 4, rate: float = 0.1) -> dict[str, object]:
    """Per-layer geometry of VGG-16 on CIFAR-10 ('same' 3x3 convolutions, stride 1)."""
    return {
        "layers": {
            n: {
                "positions": s * s,
                "output_size": [s, s],
                "timesteps": timesteps,
                "spike_rate": rate,
            }
            for n, s in zip(names, VGG16_SIDES, strict=True)
        }
    }


def main() -> None:
    masks = random_masks(vgg16_shapes(), 0.98)
    profile = vgg16_profile(list(masks))
    summary = summarize(masks)
    base = AcceleratorConfig()
    n = int(np.prod([len(v) for v in GRID.values()]))
    partitions = len(GRID["dataflow"]) * len(GRID["pe_array.rows"]) * len(GRID["pe_array.cols"])
    evaluate_grid(base, {k: v[:1] for k, v in GRID.items()}, summary, profile)  # warm imports
    times, cpu = [], []
    for _ in range(REPEATS):
        t0, c0 = time.perf_counter(), time.process_time()
        frame = evaluate_grid(base, GRID, summary, profile)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    seconds = float(np.median(times))
    rate = n / seconds
    cpu_rate = n / float(np.median(cpu))
    rng = np.random.default_rng(0)
    worst = 0.0
    for i in rng.choice(n, size=20, replace=False):
        row = frame.iloc[int(i)]
        config = base.with_updates(
            {k: row[k].item() if hasattr(row[k], "item") else row[k] for k in GRID}
        )
        r = evaluate(config, summary, profile)
        for col, ref in (
            ("cycles", r.cycles),
            ("energy_uj", r.energy_pj["total"] * 1e-6),
            ("area_mm2", r.area_mm2),
        ):
            worst = max(worst, abs(row[col] - ref) / abs(ref))
    print(
        f"{n} configurations ({partitions} PE partitions) in {seconds:.2f} s (median of "
        f"{REPEATS}; best {min(times):.2f} s) = {rate:,.0f} "
        f"configurations/s wall, {cpu_rate:,.0f}/s of process CPU time, on one core; "
        f"worst relative difference to evaluate() over 20 "
        f"sampled rows {worst:.1e}"
    )
    path = save(
        "grid",
        {
            "configurations": n,
            "partitions": partitions,
            "seconds": seconds,
            "seconds_runs": times,
            "configurations_per_second": rate,
            "cpu_seconds_runs": cpu,
            "configurations_per_cpu_second": cpu_rate,
            "worst_relative_difference": worst,
            "grid": GRID,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
