import importlib
import logging
import pkgutil

import pytest
import trio

import dwtrio.store
from dwtrio.store import migrate
from dwtrio.store.pool import Conn, connect_once
from dwtrio.store.queries import BOUND, QUERIES, RowQuery, parse_queries, row_columns

from conftest import Databases


async def _bootstrap(dsn: str) -> migrate.BootstrapReport:
    return await connect_once(
        dsn, migrate.bootstrap, default_namespace="Default", retention_days=30
    )


async def test_all_migrations_apply_and_every_named_query_prepares(databases: Databases) -> None:
    dsn = databases.dsn(await databases.create(empty=True))
    report = await _bootstrap(dsn)
    assert report.applied == tuple(f"{m.version:04d}_{m.name}" for m in migrate.list_migrations())
    assert report.namespace_created

    for module in pkgutil.iter_modules(dwtrio.store.__path__):
        importlib.import_module(f"dwtrio.store.{module.name}")  # binds every query

    async def prepare_all(conn: Conn) -> list[str]:
        failures = []
        for name, query in QUERIES.items():
            try:
                statement = await conn.prepare(query.sql)  # type: ignore[attr-defined]
            except Exception as exc:  # collect every broken query, not just the first
                failures.append(f"{name}: {exc}")
                continue
            if len(statement.get_parameters()) != len(query.params):
                failures.append(f"{name}: parameters {query.params}")
            bound = BOUND.get(name)
            if isinstance(bound, RowQuery):
                # Rows are built positionally: the columns must be the row's, in order.
                columns = tuple(a.name for a in statement.get_attributes())
                if columns != row_columns(bound.row):
                    failures.append(f"{name}: {columns} for {bound.row.__name__}")
        return failures

    assert await connect_once(dsn, prepare_all) == []
    assert await connect_once(dsn, migrate.pending_migrations) == []


async def test_bootstrap_twice_is_a_no_op(databases: Databases) -> None:
    dsn = databases.dsn(await databases.create(empty=True))
    first = await _bootstrap(dsn)
    second = await _bootstrap(dsn)
    assert first.applied and first.namespace_created
    assert second.applied == ()
    assert second.already_applied == len(migrate.list_migrations())
    assert second.namespace_created is False

    async def names(conn: Conn) -> list[str]:
        return [r["name"] for r in await conn.fetch("SELECT name FROM namespaces")]

    assert await connect_once(dsn, names) == ["default"]  # seeded lowercased, once


async def test_concurrent_bootstraps_apply_each_migration_once(databases: Databases) -> None:
    dsn = databases.dsn(await databases.create(empty=True))
    reports: list[migrate.BootstrapReport] = []

    async def run() -> None:
        reports.append(await _bootstrap(dsn))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(run)
    applied = [name for r in reports for name in r.applied]
    assert sorted(applied) == sorted(f"{m.version:04d}_{m.name}" for m in migrate.list_migrations())
    assert sum(r.namespace_created for r in reports) == 1

    async def count(conn: Conn) -> int:
        return int(await conn.fetchval("SELECT count(*) FROM dwtrio_schema_migrations"))

    assert await connect_once(dsn, count) == len(migrate.list_migrations())


def test_query_file_parser() -> None:
    text = "-- name: get_thing\n-- Fetch one thing.\nSELECT 1;\n\n-- name: put_thing\nINSERT INTO t VALUES ($1)\n"
    parsed = parse_queries(text)
    assert list(parsed) == ["get_thing", "put_thing"]
    assert parsed["get_thing"].description == "Fetch one thing."
    assert parsed["get_thing"].sql == "SELECT 1"


def test_query_file_parser_rejects_duplicates_and_stray_sql() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")
    with pytest.raises(ValueError, match="before the first"):
        parse_queries("SELECT 0;\n-- name: a\nSELECT 1;\n")
    with pytest.raises(ValueError, match="empty"):
        parse_queries("-- name: a\n-- nothing here\n")


async def _insert_future_migration(conn: Conn) -> None:
    await conn.execute(
        "INSERT INTO dwtrio_schema_migrations (version, name, checksum)"
        " VALUES (9999, 'from_a_newer_release', 'x')"
    )


async def test_migrations_of_a_newer_release_are_reported_never_refused(
    databases: Databases, caplog: pytest.LogCaptureFixture
) -> None:
    """A rolling upgrade migrates the database before the last node of the previous release
    stops: that node's bootstrap must neither fail nor touch what it does not know."""
    dsn = databases.dsn(await databases.create(empty=True))
    await _bootstrap(dsn)
    await connect_once(dsn, _insert_future_migration)

    state = await connect_once(dsn, migrate.schema_state)
    assert state == migrate.SchemaState(pending=(), newer=("9999_from_a_newer_release",))
    with caplog.at_level(logging.WARNING, logger="dwtrio.store.migrate"):
        report = await _bootstrap(dsn)
    assert report.applied == ()
    assert report.already_applied == len(migrate.list_migrations()) + 1
    assert "newer dwtrio release (9999_from_a_newer_release)" in caplog.text
    assert await connect_once(dsn, migrate.pending_migrations) == []


async def test_schema_state_lists_the_migrations_this_release_lacks(databases: Databases) -> None:
    dsn = databases.dsn(await databases.create(empty=True))
    assert await connect_once(dsn, migrate.schema_state) == migrate.SchemaState(
        pending=tuple(migrate.label(m.version, m.name) for m in migrate.list_migrations()),
        newer=(),
    )
    await _bootstrap(dsn)
    last = migrate.list_migrations()[-1]

    async def forget_last(conn: Conn) -> None:
        await conn.execute("DELETE FROM dwtrio_schema_migrations WHERE version = $1", last.version)

    await connect_once(dsn, forget_last)
    state = await connect_once(dsn, migrate.schema_state)
    assert state == migrate.SchemaState(pending=(migrate.label(last.version, last.name),), newer=())
