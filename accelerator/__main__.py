"""``python -m accelerator CONFIG MASKS.npz [--profile P] [--json] [--grid GRID.yaml --out DIR]``
(:mod:`accelerator.cli`)."""

from __future__ import annotations

from accelerator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
