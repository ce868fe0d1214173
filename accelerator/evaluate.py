"""``python -m accelerator.evaluate``: the same command line as ``python -m accelerator``
(:mod:`accelerator.cli`), kept for existing scripts."""

from __future__ import annotations

from accelerator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
