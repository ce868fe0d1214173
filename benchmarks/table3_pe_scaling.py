"""The trend of the paper's Table III from the cost model: a u-Ticket-balanced VGG-16 (CIFAR-10
shapes, 98 % sparsity) on 2 to 64 PEs (mapping K), latency and energy normalized to 2 PEs.

Masks are unstructured at 98 % sparsity and balanced by ``snn.uticket.balance`` for each PE
count. Activity is an assumed CIFAR-like profile (positions of each VGG-16 layer at 32x32 input,
T=4, input spike rate 0.15, 50 % of input neurons silent over all T; the first layer sees the
analog image). Run: ``python benchmarks/table3_pe_scaling.py``; writes
``benchmarks/results/table3.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, random_masks, single_thread, vgg16_shapes

single_thread()

from accelerator import AcceleratorConfig, evaluate, pe_index
from snn.uticket import balance

POSITIONS = [1024, 1024, 256, 256, 64, 64, 64, 16, 16, 16, 4, 4, 4]
PAPER = {
    2: (1, 1),
    4: (0.49, 1.01),
    8: (0.25, 1.02),
    16: (0.12, 0.95),
    32: (0.06, 1.02),
    64: (0.03, 1.04),
}


def main() -> None:
    masks = random_masks(vgg16_shapes(), 0.98)
    profile = {
        "layers": {
            name: {
                "positions": pos,
                "timesteps": 4,
                "spike_rate": 1.0 if i == 0 else 0.15,
                "tick_zero_fraction": 0.0 if i == 0 else 0.5,
            }
            for i, (name, pos) in enumerate(zip(masks, POSITIONS, strict=True))
        }
    }
    rows = []
    for n in PAPER:
        config = AcceleratorConfig(pe_array={"rows": n, "cols": 1}, dataflow="K")
        index = {name: pe_index(m.shape, config) for name, m in masks.items()}
        ticket = balance(masks, index, n, seed=0)
        r = evaluate(config, ticket, profile)
        rows.append(
            {
                "pe": n,
                "utilization": r.utilization,
                "cycles": r.cycles,
                "compute_cycles": sum(layer.compute_cycles for layer in r.layers),
                "energy_pj": r.energy_pj["total"],
                "pe_energy_pj": r.energy_pj["compute"],
            }
        )
    base = rows[0]
    print("PEs  latency  compute-latency  energy  PE-energy   paper latency / energy")
    for row in rows:
        row["latency_norm"] = row["cycles"] / base["cycles"]
        row["compute_latency_norm"] = row["compute_cycles"] / base["compute_cycles"]
        row["energy_norm"] = row["energy_pj"] / base["energy_pj"]
        row["pe_energy_norm"] = row["pe_energy_pj"] / base["pe_energy_pj"]
        lat, en = PAPER[row["pe"]]
        print(
            f"{row['pe']:3d}  {row['latency_norm']:7.3f}  {row['compute_latency_norm']:15.3f}  "
            f"{row['energy_norm']:6.3f}  {row['pe_energy_norm']:9.3f}   {lat:.2f} / {en:.2f}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "table3.json").write_text(json.dumps({"rows": rows, "paper": PAPER}, indent=2))


if __name__ == "__main__":
    main()
