"""Forward-only schema migrations and the bootstrap of a fresh database.

Migrations are ``schema/migrations/NNNN_what.sql``, applied in order, each in its
own transaction, and recorded in ``dwtrio_schema_migrations``. A session-level
advisory lock serialises concurrent bootstraps (two pods starting at once), so
running bootstrap twice, or twice at the same time, is safe.

Migrations follow expand/contract (docs/rolling-upgrades.md): the previous release
keeps running on a schema migrated by this one. So a database holding migrations
this code does not know is not an error: they belong to a newer release, and a node
of this one keeps serving beside it (``schema_state`` reports them; bootstrap logs
them and applies nothing in their place).
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import attrs

from dwtrio.store.namespaces import seed_namespace
from dwtrio.store.pool import Conn
from dwtrio.store.queries import query, schema_dir

log = logging.getLogger(__name__)

# Arbitrary constant identifying dwtrio's migration lock (pg_advisory_lock key).
MIGRATION_LOCK_KEY = 0x64777472696F  # "dwtrio"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_LOCK_MIGRATIONS = query("lock_migrations")
_UNLOCK_MIGRATIONS = query("unlock_migrations")
_CREATE_MIGRATIONS_TABLE = query("create_migrations_table")
_MIGRATIONS_TABLE_EXISTS = query("migrations_table_exists")
_LIST_APPLIED_MIGRATIONS = query("list_applied_migrations")
_RECORD_MIGRATION = query("record_migration")


@attrs.frozen
class Migration:
    version: int
    name: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def list_migrations(directory: Path | None = None) -> list[Migration]:
    """Every migration file, ordered by version.

    Raises:
        ValueError: a file is misnamed or two files share a version.
    """
    directory = directory or schema_dir() / "migrations"
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _FILE.match(path.name)
        if m is None:
            raise ValueError(f"migration file {path.name!r} is not named NNNN_what.sql")
        version = int(m.group(1))
        if version in found:
            raise ValueError(f"two migrations with version {version:04d}")
        found[version] = Migration(version, m.group(2), path)
    return [found[v] for v in sorted(found)]


@attrs.frozen
class BootstrapReport:
    applied: tuple[str, ...]
    already_applied: int
    namespace_created: bool


@attrs.frozen
class Applied:
    name: str
    checksum: str


@attrs.frozen
class SchemaState:
    """How the database's migrations compare with the ones this code ships."""

    #: Shipped but not applied: the schema is older than this code (`dwtrio bootstrap`).
    pending: tuple[str, ...]
    #: Applied but not shipped: a newer release migrated the database (mixed versions).
    newer: tuple[str, ...]


def label(version: int, name: str) -> str:
    return f"{version:04d}_{name}"


async def applied_migrations(conn: Conn) -> dict[int, Applied] | None:
    """Applied migrations by version, or None if the bookkeeping table does not exist."""
    exists = await _MIGRATIONS_TABLE_EXISTS.fetchval(conn)
    if not exists:
        return None
    rows = await _LIST_APPLIED_MIGRATIONS.fetch(conn)
    return {r["version"]: Applied(r["name"], r["checksum"]) for r in rows}


def compare(applied: dict[int, Applied], shipped: list[Migration]) -> SchemaState:
    known = {m.version for m in shipped}
    return SchemaState(
        pending=tuple(label(m.version, m.name) for m in shipped if m.version not in applied),
        newer=tuple(label(v, a.name) for v, a in sorted(applied.items()) if v not in known),
    )


async def schema_state(conn: Conn) -> SchemaState:
    return compare(await applied_migrations(conn) or {}, list_migrations())


def log_newer(newer: tuple[str, ...]) -> None:
    if newer:
        log.warning(
            "the database has migrations of a newer dwtrio release (%s): this node runs "
            "beside it in a mixed-version cluster; upgrade it soon (docs/rolling-upgrades.md)",
            ", ".join(newer),
        )


async def bootstrap(conn: Conn, *, default_namespace: str, retention_days: int) -> BootstrapReport:
    """Apply pending migrations and seed the default namespace (asyncio side, one connection)."""
    migrations = list_migrations()
    await _LOCK_MIGRATIONS.execute(conn, key=MIGRATION_LOCK_KEY)
    try:
        await _CREATE_MIGRATIONS_TABLE.execute(conn)
        done = await applied_migrations(conn) or {}
        applied: list[str] = []
        for mig in migrations:
            if mig.version in done:
                if done[mig.version].checksum != mig.checksum:
                    log.warning(
                        "migration %04d_%s changed after it was applied", mig.version, mig.name
                    )
                continue
            log.info("applying migration %04d_%s", mig.version, mig.name)
            async with conn.transaction():  # type: ignore[attr-defined]
                await conn.execute(mig.path.read_text())
                await _RECORD_MIGRATION.execute(
                    conn, version=mig.version, name=mig.name, checksum=mig.checksum
                )
            applied.append(label(mig.version, mig.name))
        log_newer(compare(done, migrations).newer)
        created = await seed_namespace(
            conn, default_namespace.lower(), "Default namespace", retention_days
        )
        return BootstrapReport(tuple(applied), len(done), created)
    finally:
        await _UNLOCK_MIGRATIONS.execute(conn, key=MIGRATION_LOCK_KEY)


async def pending_migrations(conn: Conn) -> list[str]:
    """Names of migrations on disk that the database has not applied."""
    return list((await schema_state(conn)).pending)
