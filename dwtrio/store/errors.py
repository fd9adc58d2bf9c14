"""Translate asyncpg / socket failures into dwtrio's typed errors (the one place)."""

from __future__ import annotations

import asyncpg

from dwtrio.errors import (
    AdmissionLockBusyError,
    AlreadyExistsError,
    DwtrioError,
    NamespaceNotFoundError,
    RetryableStoreError,
    StoreTimeoutError,
    StoreUnavailableError,
)

#: The keys that keep workflow instances and new schedules out of deleted namespaces
#: (0004_live_namespace_guard, 0006_live_namespace_schedules).
LIVE_NAMESPACE_KEYS = frozenset(
    {"workflow_instances_live_namespace_fkey", "schedules_live_namespace_fkey"}
)


def translate(exc: BaseException) -> DwtrioError | None:
    """Return the dwtrio error for a driver exception, or None if it is not a driver error."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return AlreadyExistsError(exc.constraint_name)
    if (
        isinstance(exc, asyncpg.ForeignKeyViolationError)
        and exc.constraint_name in LIVE_NAMESPACE_KEYS
    ):
        # A start or a new schedule that reached the store after its namespace was deleted.
        return NamespaceNotFoundError("The namespace does not exist (it was deleted).")
    if isinstance(exc, asyncpg.LockNotAvailableError):
        # Only admission claims set a lock_timeout (admission.sql lock_admission_scope).
        return AdmissionLockBusyError(str(exc))
    if isinstance(exc, asyncpg.UndefinedTableError):
        return StoreUnavailableError(
            f"the database schema is missing ({exc}); run `dwtrio bootstrap`"
        )
    if isinstance(exc, asyncpg.QueryCanceledError):
        # statement_timeout (DW_DB_STATEMENT_TIMEOUT_SECONDS) or an operator's
        # pg_cancel_backend: the statement was rolled back, the connection is fine.
        timed_out = "statement timeout" in str(exc)
        return StoreTimeoutError(
            f"The database cancelled a statement ({exc}): "
            + (
                "it ran longer than DW_DB_STATEMENT_TIMEOUT_SECONDS (a slow database, or "
                "a lock held elsewhere); retry."
                if timed_out
                else "retry."
            ),
            cause="statement_timeout" if timed_out else "statement_cancelled",
        )
    if isinstance(exc, asyncpg.SerializationError | asyncpg.DeadlockDetectedError):
        return RetryableStoreError(str(exc))
    if isinstance(
        exc,
        OSError
        | ConnectionError
        | asyncpg.PostgresConnectionError
        | asyncpg.CannotConnectNowError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError
        | asyncpg.AdminShutdownError
        | asyncpg.CrashShutdownError
        | asyncpg.TooManyConnectionsError,
    ):
        return StoreUnavailableError(f"database unavailable: {exc}")
    return None
