"""File helpers shared by ``dse``: one atomic writer, one JSON sanitizer, one file lock.

Every result file (tables, plots, ticket point files) is written to a temporary name in the same
directory, flushed to disk and renamed over the target (``os.replace``, atomic on POSIX and on a
shared NFS directory), so a crash or a full disk never leaves a half-written file: readers see
the old file or the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class ResultsError(OSError):
    """A results file could not be written (the message names the file and the reason)."""


def atomic_write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a flushed temporary file and ``os.replace``; raises
    :class:`ResultsError` (one line naming the file and the reason) on failure."""
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        err = ResultsError(f"cannot write {path}: {e.strerror or e}")
        err.errno = e.errno
        raise err from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return path


def jsonable(v: Any) -> Any:
    """JSON-safe copy: non-finite floats become None, tuples lists, unknown objects strings."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if v is None or isinstance(v, str | int | bool):
        return v
    if hasattr(v, "item"):  # numpy scalars
        return jsonable(v.item())
    return str(v)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block: a concurrent
    process that needs the same thing waits, then finds it done instead of redoing it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
