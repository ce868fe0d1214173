"""Regenerate the default SRAM table of ``accelerator.config.SramTable`` with CACTI 7.

CACTI 7 (HewlettPackard/cacti) is bundled, compiled, in the ``zigzag-dse`` wheel (a benchmark
dependency, ``pip install -e .[bench]``). This script copies that CACTI tree to a temporary
directory (the installed package is never written), runs it for each capacity at 32 nm with one
read/write port, one bank, a 128-bit port and CACTI's default ``itrs-hp`` cells, and prints the
rows: capacity, read and write energy per bit, standby leakage, area.

Run: ``python benchmarks/sram_table.py`` (about a second per capacity). Writes
``benchmarks/results/sram_table.json``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zigzag
from common import save

CAPACITIES_KIB = [1, 4, 16, 64, 256, 1024, 4096, 16384]
TECH_UM = 0.032
CELLS = "itrs-lop"
"""Low-standby-power cells and periphery (CACTI's default, itrs-hp, leaks about 20x more)."""
PORT_BITS = 128


def run(capacity_bytes: int, root: Path) -> dict[str, float]:
    """One CACTI run; returns the row of the table."""
    subprocess.run(
        [
            sys.executable,
            str(root / "cacti_top.py"),
            "--mem_type",
            "sram",
            "--cache_size",
            str(capacity_bytes),
            "--IO_bus_width",
            str(PORT_BITS),
            "--ex_rd_port",
            "0",
            "--ex_wr_port",
            "0",
            "--rd_wr_port",
            "1",
            "--bank_count",
            "1",
            "--mem_pool_path",
            str(root / "pool.yaml"),
            "--technology",
            str(TECH_UM),
        ],
        cwd=root.parents[2],
        env={**os.environ, "PYTHONPATH": str(root.parents[2])},  # the copy, not the package
        check=True,
        capture_output=True,
    )
    lines = (root / "self_gen" / "cache.cfg.out").read_text().splitlines()
    row = dict(zip([h.strip() for h in lines[0].split(",")], lines[1].split(","), strict=False))
    width = float(row["Output width (bits)"])
    return {
        "kib": capacity_bytes / 1024,
        "read_pj_per_bit": float(row["Dynamic read energy (nJ)"]) * 1e3 / width,
        "write_pj_per_bit": float(row["Dynamic write energy (nJ)"]) * 1e3 / width,
        "leakage_mw": float(row["Standby leakage per bank(mW)"]),
        "area_mm2": float(row["Area (mm2)"]),
    }


def main() -> None:
    src = Path(zigzag.__file__).resolve().parent / "cacti" / "cacti_master"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "zigzag" / "cacti" / "cacti_master"
        shutil.copytree(src, root)
        for pkg in (root.parents[1], root.parent):  # a regular package, so the copy wins
            (pkg / "__init__.py").touch()
        creator = root / "cacti_config_creator.py"
        creator.write_text(creator.read_text().replace('"itrs-hp"', f'"{CELLS}"'))
        for kib in CAPACITIES_KIB:
            rows.append(run(kib * 1024, root))
            r = rows[-1]
            print(
                f"{r['kib']:8.0f} KiB: read {r['read_pj_per_bit']:.5f} pJ/bit, write "
                f"{r['write_pj_per_bit']:.5f} pJ/bit, leakage {r['leakage_mw']:.3f} mW, "
                f"area {r['area_mm2']:.4f} mm^2"
            )
    path = save(
        "sram_table",
        {
            "tool": "CACTI 7 (zigzag-dse bundle)",
            "tech_nm": TECH_UM * 1e3,
            "cells": CELLS,
            "port_bits": PORT_BITS,
            "rows": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
