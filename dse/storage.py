"""Optuna storage for a run: a JournalStorage file by default, any Optuna URL on request.

The journal file lives in the run directory (fast, safe with several local workers through its
file lock, read directly by optuna-dashboard). On a cluster use a database URL, e.g.
``postgresql://optuna:PASSWORD@head:5432/optuna``; it is checked before any work starts and an
unreachable server fails fast with the (password-redacted) URL in the message. Once open, the
storage retries transient errors and stops cleanly on lasting ones (:mod:`dse.resilience`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.storages.journal._file import get_lock_file

from dse.resilience import RetryingStorage

JOURNAL_NAME = "study.journal"


class StorageError(RuntimeError):
    """The storage cannot be opened or reached; the message names it."""


def redact(url: str) -> str:
    """Hide the password of a database URL."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def journal_path(run_dir: Path) -> Path:
    return run_dir / JOURNAL_NAME


def storage_spec(url: str | None, run_dir: Path) -> str:
    """The storage as one string workers can reopen: a URL, or ``journal:<absolute path>``."""
    if url is None:
        return f"journal:{journal_path(run_dir).resolve()}"
    if "://" not in url:
        return f"journal:{Path(url).resolve()}"
    return url


class _AtomicJournalBackend(JournalFileBackend):
    """A journal file whose appends are all-or-nothing: a write cut short (disk full, read-only
    remount) is truncated away under the lock, so the next append cannot glue onto half a line
    and the journal stays readable."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(x, separators=(",", ":")) for x in logs) + "\n").encode()
        with get_lock_file(self._lock):
            fd = os.open(self._file_path, os.O_WRONLY | os.O_APPEND)
            try:  # unbuffered: nothing is left in a buffer to be flushed after the truncation
                start = os.lseek(fd, 0, os.SEEK_END)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                except OSError:
                    try:
                        os.ftruncate(fd, start)
                    except OSError:
                        pass  # a partial last line is still skipped by the reader
                    raise
            finally:
                os.close(fd)


def open_storage(spec: str, *, connect_timeout: int = 10) -> BaseStorage:
    """Open a storage from :func:`storage_spec`; raise :class:`StorageError` if unusable.
    The result retries transient errors (:class:`dse.resilience.RetryingStorage`)."""
    if spec.startswith("journal:"):
        path = Path(spec[len("journal:") :])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            backend = _AtomicJournalBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
            return RetryingStorage(JournalStorage(backend), f"journal {path}")
        except OSError as exc:
            raise StorageError(f"cannot open journal storage {path}: {exc.strerror}") from None
    kwargs: dict[str, object] = {"pool_pre_ping": True}
    if spec.startswith(("postgresql", "mysql")):
        kwargs["connect_args"] = {"connect_timeout": connect_timeout}
    try:
        rdb = RDBStorage(spec, engine_kwargs=kwargs)
    except Exception as exc:  # sqlalchemy raises many types; all mean "cannot use it"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot reach storage {redact(spec)}: {first}") from None
    return RetryingStorage(_CachedStorage(rdb), redact(spec))


def dashboard_target(spec: str) -> str:
    """What to pass to ``optuna-dashboard`` for this storage."""
    return spec[len("journal:") :] if spec.startswith("journal:") else redact(spec)


def count_states(study: optuna.Study) -> dict[str, int]:
    """Trials per state name (COMPLETE, FAIL, RUNNING, WAITING, PRUNED)."""
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out
