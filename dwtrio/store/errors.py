"""Translate asyncpg / socket failures into dwtrio's typed errors (the one place)."""

from __future__ import annotations

import asyncpg

from dwtrio.errors import (
    AlreadyExistsError,
    DwtrioError,
    RetryableStoreError,
    StoreUnavailableError,
)


def translate(exc: BaseException) -> DwtrioError | None:
    """Return the dwtrio error for a driver exception, or None if it is not a driver error."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return AlreadyExistsError(exc.constraint_name)
    if isinstance(exc, asyncpg.UndefinedTableError):
        return StoreUnavailableError(
            f"the database schema is missing ({exc}); run `dwtrio bootstrap`"
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
