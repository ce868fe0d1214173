"""The cost model against SATA_Sim on its own dense VGG-16 workload (17 conv + FC 8192->256,
T = 5, 400 MHz, 8-bit weights), set up as SATA_Sim is (``benchmarks/data/satasim/``: SATA_Sim,
github RuokaiYin/SATA_Sim commit d447058).

Dense masks: SATA_Sim's cycles and DRAM traffic do not depend on sparsity, so its figures at any
sparsity knob are dense figures. Run: ``python benchmarks/bench_satasim.py``. Writes
``benchmarks/results/satasim.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, single_thread

single_thread()

import numpy as np

from accelerator import evaluate, load_accelerator, load_profile

DATA = Path(__file__).resolve().parent / "data" / "satasim"


def main() -> None:
    shapes = json.loads((DATA / "workload_shapes.json").read_text())
    ref = json.loads((DATA / "sata_ref.json").read_text())
    profile = load_profile(DATA / "profile_sata.json")
    masks = {name: np.ones(shape, dtype=bool) for name, shape in shapes.items()}
    dense_weight_bits = 8 * sum(int(np.prod(s)) for s in shapes.values())
    rows = []
    every = (
        "cycles",
        "mac_ops",
        "pe_op_nJ",
        "pe_ungated_nJ",
        "compute_nJ",
        "dram_w_nJ",
        "dram_i_nJ",
        "dram_o_nJ",
        "dram_nJ",
        "sram_dyn_nJ",
        "leakage_nJ",
        "total_nJ",
    )
    # the 4x4 run exists at sparsity knob 0.98 only: its cycles and cycle-driven terms are dense
    # (SATA_Sim's cycles ignore sparsity), its operation counts and total are not
    for label, config_file, sata, keys in (
        ("16x8", "satasim_16x8.yaml", ref["128_s0"], every),
        ("4x4", "satasim_4x4.yaml", ref["16_s0.98"], ("cycles", "pe_ungated_nJ", "leakage_nJ")),
    ):
        config = load_accelerator(DATA / config_file)
        r = evaluate(config, masks, profile)
        e = r.energy_pj
        ops = {
            k: sum(layer.dram_bits_by_operand[k] for layer in r.layers)
            for k in ("weights", "inputs", "outputs")
        }
        n_work = sum(layer.positions * layer.timesteps * layer.nonzeros for layer in r.layers)
        spad = config.energy.scratchpad_read * n_work
        always_on = config.energy.pe_always_on * config.n_pe * r.cycles
        ours = {
            "cycles": r.cycles,
            "mac_ops": float(n_work),
            "pe_op_nJ": (e["compute"] - always_on + spad) * 1e-3,
            "pe_ungated_nJ": always_on * 1e-3,
            "compute_nJ": (e["compute"] + spad) * 1e-3,
            "dram_w_nJ": ops["weights"] * config.energy.dram_per_bit * 1e-3,
            "dram_i_nJ": ops["inputs"] * config.energy.dram_per_bit * 1e-3,
            "dram_o_nJ": ops["outputs"] * config.energy.dram_per_bit * 1e-3,
            "dram_nJ": e["dram"] * 1e-3,
            "sram_dyn_nJ": (e["onchip_memory"] - spad) * 1e-3,
            "leakage_nJ": e["leakage"] * 1e-3,
            "lif_nJ": e["lif"] * 1e-3,
            "total_nJ": e["total"] * 1e-3,
            "dram_weight_bits": ops["weights"],
        }
        sata_leak = sata.get("sram_leak_nJ", 0.0) + sata.get("pe_leak_nJ", 0.0)
        theirs = {**sata, "leakage_nJ": sata_leak}
        row = {
            "array": label,
            "ours": ours,
            "satasim": {k: theirs[k] for k in keys},
            "dense_weight_bits": dense_weight_bits,
        }
        rows.append(row)
        print(f"SATA_Sim {label} dense: ours vs SATA_Sim")
        for key in keys:
            if key in theirs:
                ratio = ours[key] / theirs[key] if theirs[key] else float("nan")
                print(f"  {key:14s} {ours[key]:16.4g} {theirs[key]:16.4g}  ratio {ratio:6.3f}")
        print(
            f"  DRAM weight bits {ours['dram_weight_bits']:.0f} (dense weight bits "
            f"{dense_weight_bits})"
        )
    path = save("satasim", {"rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
