"""Global-buffer size trade-off: DRAM energy, SRAM leakage, total energy and area against the
buffer size, for a 98 %- and a 50 %-sparse VGG-16 on the paper's 16-PE array.

The masks are random at the stated density with the real VGG-16 (CIFAR-10) layer shapes (13
conv layers, 14.7 M weights); the profile gives each layer its 32x32 .. 2x2 output map, T = 4
and a 10 % input spike rate. Everything else is the default configuration (CACTI 32 nm SRAM
table, LPDDR4 DRAM at 13 pJ/bit). Buffer leakage *power* grows with the size; leakage *energy*
is power x run time, so it can fall where a bigger buffer shortens a DRAM-bound run.

Run: ``python benchmarks/bench_buffer_tradeoff.py``. Writes
``benchmarks/results/buffer_tradeoff.json`` and ``benchmarks/results/buffer_tradeoff.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_grid import vgg16_profile
from common import RESULTS, random_masks, save, single_thread, vgg16_shapes

single_thread()

import numpy as np

from accelerator import AcceleratorConfig, evaluate_grid, summarize
from accelerator.equations import sram_figures

SIZES = [1 << k for k in range(12, 25)]  # 4 KiB .. 16 MiB
SPARSITIES = (0.98, 0.50)


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = AcceleratorConfig()
    out: dict[str, object] = {"sizes_bytes": SIZES}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for ax, sparsity in zip(axes, SPARSITIES, strict=True):
        masks = random_masks(vgg16_shapes(), sparsity)
        frame = evaluate_grid(
            base,
            {"memory.global_buffer_bytes": SIZES},
            summarize(masks),
            vgg16_profile(list(masks)),
        )
        dram = frame["energy_pj.dram"].to_numpy() * 1e-6
        leak = frame["energy_pj.leakage"].to_numpy() * 1e-6
        total = frame["energy_uj"].to_numpy()
        area = frame["area_mm2"].to_numpy()
        best = int(np.argmin(total))
        power = sram_figures(base.memory.sram_table, np.array(SIZES) / 1024)[2]
        checks = {
            "dram_non_increasing": bool(np.all(np.diff(frame["dram_bits"].to_numpy()) <= 0)),
            "area_increasing": bool(np.all(np.diff(area) > 0)),
            "leakage_power_increasing": bool(np.all(np.diff(power) > 0)),
            "leakage_energy_increasing": bool(np.all(np.diff(leak) > 0)),
            "total_interior_optimum": 0 < best < len(SIZES) - 1,
        }
        out[f"sparsity_{sparsity}"] = {
            "dram_uj": dram.tolist(),
            "leakage_uj": leak.tolist(),
            "buffer_leakage_mw": power.tolist(),
            "total_uj": total.tolist(),
            "area_mm2": area.tolist(),
            "dram_bits": frame["dram_bits"].tolist(),
            "cycles": frame["cycles"].tolist(),
            "best_size_bytes": SIZES[best],
            **checks,
        }
        kib = np.array(SIZES) / 1024
        print(f"VGG-16, {sparsity:.0%} sparse: " + ", ".join(f"{k}={v}" for k, v in checks.items()))
        for i, k in enumerate(kib):
            mark = "  <- least energy" if i == best else ""
            print(
                f"  {k:8.0f} KiB: DRAM {dram[i]:9.2f} uJ, leakage {leak[i]:8.2f} uJ, total "
                f"{total[i]:9.2f} uJ, area {area[i]:7.3f} mm^2{mark}"
            )
        ax.plot(kib, dram, "o-", label="DRAM energy")
        ax.plot(kib, leak, "s-", label="leakage energy")
        ax.plot(kib, total, "k^-", label="total energy")
        ax.axvline(kib[best], color="0.6", ls=":")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("global buffer (KiB)")
        ax.set_ylabel("energy per inference (uJ)")
        ax.set_title(f"VGG-16, {sparsity:.0%} sparse (random masks), 16 PEs")
        twin = ax.twinx()
        twin.plot(kib, area, "r--", label="area")
        twin.set_ylabel("area (mm$^2$)", color="r")
        if ax is axes[0]:
            ax.legend(loc="upper center", fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    fig.savefig(RESULTS / "buffer_tradeoff.png", dpi=120)
    path = save("buffer_tradeoff", out)
    print(f"wrote {path} and {RESULTS / 'buffer_tradeoff.png'}")


if __name__ == "__main__":
    main()
