"""Surviving storage faults: retries with backoff for transient errors, a clear stop for lasting
ones, and the heartbeat / stale limits that decide when a trial's worker is lost.

Every storage the search opens (:func:`dse.storage.open_storage`) is wrapped in
:class:`RetryingStorage`. A *transient* error (a PostgreSQL restart or a reset connection:
SQLAlchemy's ``OperationalError``/``InterfaceError``; an interrupted or stale file operation) is
retried with exponential backoff (50 ms doubling to 5 s) for up to ``DSE_STORAGE_OUTAGE_SECONDS``
(default 300 s); past that, or at once for an error that waiting cannot fix (a full or read-only
disk, a permission error), it raises :class:`StorageOutage`, whose message names the storage
(password redacted). The search then stops with exit status 1; nothing is lost and re-running the
same command resumes. Journal lock contention needs no retry here: Optuna's file lock waits.

A retried write can reach the storage twice when the first attempt committed but its answer was
lost. Finishing a trial is then answered "already finished": if the stored state is the one asked
for, the retry counts as done.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Container, Iterable, Sequence
from typing import Any, TypeVar

from optuna.distributions import BaseDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.study._frozen import FrozenStudy
from optuna.study._study_direction import StudyDirection
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger("dse.resilience")

OUTAGE_ENV = "DSE_STORAGE_OUTAGE_SECONDS"
DEFAULT_OUTAGE_SECONDS = 300.0
STALE_ENV = "DSE_STALE_SECONDS"
DEFAULT_STALE_SECONDS = 100.0
MAX_HEARTBEAT_SECONDS = 5.0

TRANSIENT_ERRNOS = frozenset(
    {
        errno.EAGAIN,
        errno.EINTR,
        errno.EBUSY,
        errno.ESTALE,
        errno.ETIMEDOUT,
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
    }
)
"""File/socket errors that go away by themselves (NFS hiccups, a restarting server)."""

T = TypeVar("T")


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: must be a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r}: must be > 0")
    return value


def outage_limit() -> float:
    """Seconds a storage may stay unreachable before the search stops
    (``DSE_STORAGE_OUTAGE_SECONDS``, default 300)."""
    return _env_seconds(OUTAGE_ENV, DEFAULT_OUTAGE_SECONDS)


def stale_seconds() -> float:
    """Seconds without a heartbeat after which a RUNNING trial's worker counts as lost
    (``DSE_STALE_SECONDS``, default 100)."""
    return _env_seconds(STALE_ENV, DEFAULT_STALE_SECONDS)


def heartbeat_seconds() -> float:
    """How often a worker stamps its trial: 5 s, or a quarter of a smaller stale limit."""
    return min(MAX_HEARTBEAT_SECONDS, stale_seconds() / 4)


class StorageOutage(RuntimeError):
    """The storage stayed unreachable past the limit, or failed in a way waiting cannot fix.
    The message names the storage (password redacted) and says the study is resumable."""


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def is_transient(exc: BaseException) -> bool:
    """Whether waiting and retrying can fix ``exc`` (checked along its cause chain)."""
    from sqlalchemy import exc as sa  # installed with optuna

    for e in _chain(exc):
        if isinstance(e, StorageOutage | UpdateFinishedTrialError):
            return False
        if isinstance(e, sa.OperationalError | sa.InterfaceError | sa.DisconnectionError):
            return True
        if isinstance(e, sa.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, sa.TimeoutError):  # connection pool exhausted while reconnecting
            return True
        if isinstance(e, ConnectionError):
            return True
        if isinstance(e, OSError) and e.errno in TRANSIENT_ERRNOS:
            return True
    return False


def is_permanent_io(exc: BaseException) -> OSError | None:
    """The file error behind ``exc`` that waiting will not fix (disk full, read-only...)."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno is not None and e.errno not in TRANSIENT_ERRNOS:
            return e
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


class RetryingStorage(BaseStorage):
    """An Optuna storage that retries transient errors of ``inner`` with backoff and turns
    lasting ones into :class:`StorageOutage` naming ``name``."""

    def __init__(self, inner: BaseStorage, name: str, limit: float | None = None) -> None:
        self.inner = inner
        self.name = name
        self.limit = outage_limit() if limit is None else limit
        self.retries = 0
        """Transient errors retried so far (diagnostics and tests)."""

    def _outage(self, why: str) -> StorageOutage:
        return StorageOutage(
            f"storage {self.name} {why}; the study is intact: re-run the same command to resume"
        )

    def _call(
        self, fn: Callable[..., T], *args: Any, finished_ok: Callable[[], bool] | None = None
    ) -> T:
        deadline: float | None = None
        delay = 0.05
        while True:
            try:
                return fn(*args)
            except UpdateFinishedTrialError:
                if deadline is not None and finished_ok is not None and finished_ok():
                    return None  # type: ignore[return-value]  # an earlier attempt landed
                raise
            except StorageOutage:
                raise
            except Exception as exc:
                if not is_transient(exc):
                    io = is_permanent_io(exc)
                    if io is not None:
                        raise self._outage(f"failed: {io.strerror or io}") from None
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.limit
                    log.warning("storage %s: %s; retrying", self.name, _first_line(exc))
                if now >= deadline:
                    raise self._outage(
                        f"unreachable for {self.limit:g} s ({_first_line(exc)})"
                    ) from None
                self.retries += 1
                time.sleep(min(delay, max(deadline - now, 0.0)))
                delay = min(delay * 2, 5.0)

    # --- studies -------------------------------------------------------------------------
    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        return self._call(self.inner.create_new_study, directions, study_name)

    def delete_study(self, study_id: int) -> None:
        self._call(self.inner.delete_study, study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._call(self.inner.set_study_user_attr, study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._call(self.inner.set_study_system_attr, study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._call(self.inner.get_study_id_from_name, study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._call(self.inner.get_study_name_from_id, study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._call(self.inner.get_study_directions, study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._call(self.inner.get_study_user_attrs, study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._call(self.inner.get_study_system_attrs, study_id)

    def get_all_studies(self) -> list[FrozenStudy]:
        return self._call(self.inner.get_all_studies)

    # --- trials --------------------------------------------------------------------------
    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return self._call(self.inner.create_new_trial, study_id, template_trial)

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        self._call(
            self.inner.set_trial_param, trial_id, param_name, param_value_internal, distribution
        )

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._call(
            self.inner.get_trial_id_from_study_id_trial_number, study_id, trial_number
        )

    def get_trial_number_from_id(self, trial_id: int) -> int:
        return self._call(self.inner.get_trial_number_from_id, trial_id)

    def get_trial_param(self, trial_id: int, param_name: str) -> float:
        return self._call(self.inner.get_trial_param, trial_id, param_name)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        def landed() -> bool:
            return self.inner.get_trial(trial_id).state == state

        done = self._call(
            self.inner.set_trial_state_values, trial_id, state, values, finished_ok=landed
        )
        return True if done is None else done

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        self._call(self.inner.set_trial_intermediate_value, trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._call(self.inner.set_trial_user_attr, trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._call(self.inner.set_trial_system_attr, trial_id, key, value)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._call(self.inner.get_trial, trial_id)

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        return self._call(self.inner.get_all_trials, study_id, deepcopy, states)

    def get_n_trials(
        self, study_id: int, state: tuple[TrialState, ...] | TrialState | None = None
    ) -> int:
        return self._call(self.inner.get_n_trials, study_id, state)

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self._call(self.inner.get_best_trial, study_id)

    def get_trial_params(self, trial_id: int) -> dict[str, Any]:
        return self._call(self.inner.get_trial_params, trial_id)

    def get_trial_user_attrs(self, trial_id: int) -> dict[str, Any]:
        return self._call(self.inner.get_trial_user_attrs, trial_id)

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        return self._call(self.inner.get_trial_system_attrs, trial_id)

    def remove_session(self) -> None:
        self.inner.remove_session()

    def check_trial_is_updatable(self, trial_id: int, trial_state: TrialState) -> None:
        self.inner.check_trial_is_updatable(trial_id, trial_state)


def unwrap(storage: BaseStorage) -> BaseStorage:
    """The storage under a :class:`RetryingStorage` (itself otherwise)."""
    return storage.inner if isinstance(storage, RetryingStorage) else storage
