"""u-Ticket balancing speed on VGG-16 / ResNet-19 masks (CIFAR-10 shapes), against a per-PE
Python loop in the style of the authors' public code (torch, one filter / chunk at a time).

Run: ``python benchmarks/bench_balance.py [--quick]`` (one core). Writes
``benchmarks/results/balance.json``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    random_masks,
    resnet19_shapes,
    save,
    single_thread,
    timeit,
    vgg16_shapes,
)

single_thread()

import numpy as np
import torch

from accelerator import AcceleratorConfig, evaluate, pe_index
from snn.uticket import balance


def per_pe_loop(masks: dict[str, torch.Tensor], n_pe: int, flow: str, seed: int) -> None:
    """Reference: the authors' style, walking groups and PEs in Python with torch ops."""
    gen = torch.Generator().manual_seed(seed)
    for m in masks.values():
        k, c = m.shape[:2]
        if flow == "K":
            pes = [[m[f] for f in range(g, min(g + n_pe, k))] for g in range(0, k, n_pe)]
        else:
            chunk = math.ceil(c / n_pe)
            pes = [[m[f, j : j + chunk] for j in range(0, c, chunk)] for f in range(k)]
        for group in pes:
            work = [int(torch.count_nonzero(p)) for p in group]
            target = math.ceil(sum(work) / len(work))
            for p, d in zip(group, work, strict=True):
                flat = p.reshape(-1)
                if d < target:
                    free = torch.nonzero(~flat).flatten()
                    pick = free[torch.randperm(free.numel(), generator=gen)[: target - d]]
                    flat[pick] = True
                elif d > target:
                    held = torch.nonzero(flat).flatten()
                    pick = held[torch.randperm(held.numel(), generator=gen)[: d - target]]
                    flat[pick] = False


def fresh(masks: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Unbalanced torch copies (the loop balances in place; ~2 ms of copying is included)."""
    return {n: torch.from_numpy(m.copy()) for n, m in masks.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="98% sparsity, 16 PEs only")
    args = parser.parse_args()
    nets = {"vgg16": vgg16_shapes(), "resnet19": resnet19_shapes()}
    sparsities = [0.98] if args.quick else [0.90, 0.95, 0.98]
    arrays = [(4, 4)] if args.quick else [(4, 4), (8, 8)]
    rows = []
    for net, shapes in nets.items():
        for s in sparsities:
            masks = random_masks(shapes, s)
            for r, c in arrays:
                for flow in ("K", "C", "KC"):
                    config = AcceleratorConfig(pe_array={"rows": r, "cols": c}, dataflow=flow)
                    index = {n: pe_index(m.shape, config) for n, m in masks.items()}
                    t = timeit(lambda cf=config, ix=index: balance(masks, ix, cf.n_pe, seed=0))
                    out = balance(masks, index, config.n_pe, seed=0)
                    before = evaluate(config, masks).utilization
                    after = evaluate(config, out).utilization
                    row: dict[str, float | int | str] = {
                        "network": net,
                        "sparsity": s,
                        "pe": config.n_pe,
                        "dataflow": flow,
                        "balance_ms": t * 1e3,
                        "utilization_before": before,
                        "utilization_after": after,
                    }
                    if s == 0.98 and config.n_pe == 16 and flow in ("K", "C") and net == "vgg16":
                        t_loop = timeit(
                            lambda f=flow: per_pe_loop(fresh(masks), 16, f, 0),
                            min_time=0,
                            min_runs=2,
                        )
                        row["per_pe_loop_ms"] = t_loop * 1e3
                        row["speedup_vs_loop"] = t_loop / t
                    rows.append(row)
                    loop = (
                        f"  loop {row['per_pe_loop_ms']:.0f} ms ({row['speedup_vs_loop']:.0f}x)"
                        if "per_pe_loop_ms" in row
                        else ""
                    )
                    print(
                        f"{net:9s} s={s:.2f} {config.n_pe:3d} PE {flow:2s}: "
                        f"balance {t * 1e3:7.1f} ms"
                        f"  utilization {before:.3f} -> {after:.3f}{loop}"
                    )
    path = save("balance", {"rows": rows})
    print(f"wrote {path}")
    assert all(np.isclose(float(r["utilization_after"]), 1.0) for r in rows)


if __name__ == "__main__":
    main()
