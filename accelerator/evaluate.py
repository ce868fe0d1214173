"""``python -m accelerator.evaluate``: see :mod:`accelerator.cli`.

Importing this module would shadow the function ``accelerator.evaluate``, so the module object
is made callable and forwards to :func:`accelerator.cost.evaluate`.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from accelerator.cli import main
from accelerator.cost import evaluate as _evaluate


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _evaluate(*args, **kwargs)


if __name__ == "__main__":
    raise SystemExit(main())
sys.modules[__name__].__class__ = _CallableModule
