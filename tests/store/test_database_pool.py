"""The tests' databases (conftest.py): a used copy of the template is reused only once it is
back in the template's state; a copy whose schema a test changed is dropped.
"""

from __future__ import annotations

import trio

from dwtrio.store.pool import Conn, connect_once

from conftest import DatabasePool, Databases

#: The tables of the public schema.
TABLES = """
SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 1
"""


async def dump(dsn: str) -> dict[str, list[str]]:
    """Every row of every table, as text."""

    async def op(conn: Conn) -> dict[str, list[str]]:
        tables = [row[0] for row in await conn.fetch(TABLES)]
        return {
            table: [r[0] for r in await conn.fetch(f"SELECT t::text FROM {table} t ORDER BY 1")]
            for table in tables
        }

    return await connect_once(dsn, op)


async def run(dsn: str, *statements: str) -> None:
    async def op(conn: Conn) -> None:
        for statement in statements:
            await conn.execute(statement)

    await connect_once(dsn, op)


async def others(conn: Conn) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    )


async def exists(databases: Databases, name: str) -> bool:
    return bool(
        await connect_once(
            databases.admin_dsn,
            lambda c: c.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name),
        )
    )


def own(databases: Databases, pool: DatabasePool) -> Databases:
    """Databases of this test's own, released by the test rather than the fixture."""
    return Databases(databases.admin_dsn, databases.template, pool)


async def test_a_used_copy_comes_back_like_the_template(
    databases: Databases, database_pool: DatabasePool
) -> None:
    assert database_pool.state is not None  # the test Postgres's admin is a superuser
    template = await dump(databases.dsn(databases.template))
    assert template["public.namespaces"]  # the default namespace
    dbs = own(databases, database_pool)
    name = await dbs.create()
    dsn = dbs.dsn(name)
    await run(
        dsn,
        "UPDATE namespaces SET description = 'changed', retention_days = 7",
        "INSERT INTO namespaces (name) VALUES ('another')",
    )
    assert await dump(dsn) != template
    ended: list[Exception] = []

    async def linger() -> None:
        """A backend left behind (say, by a killed process): the reset ends it."""
        try:
            await connect_once(dsn, lambda c: c.execute("SELECT pg_sleep(60)"))
        except Exception as exc:
            ended.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(linger)
        with trio.fail_after(10):
            while not await connect_once(dsn, others):
                await trio.sleep(0.02)
        await dbs.release()
    assert ended
    assert database_pool.ready[-1] == name
    assert await dump(dsn) == template
    assert await connect_once(dsn, others) == 0


async def test_a_copy_whose_schema_changed_is_dropped(
    databases: Databases, database_pool: DatabasePool
) -> None:
    dbs = own(databases, database_pool)
    name = await dbs.create()
    await run(dbs.dsn(name), "ALTER TABLE namespaces ALTER COLUMN retention_days SET DEFAULT 31")
    await dbs.release()
    assert name not in database_pool.ready
    assert not await exists(databases, name)


async def test_a_copy_with_a_table_of_the_tests_own_is_dropped(
    databases: Databases, database_pool: DatabasePool
) -> None:
    dbs = own(databases, database_pool)
    name = await dbs.create()
    await run(dbs.dsn(name), "CREATE TABLE drill (id bigserial PRIMARY KEY)")
    await dbs.release()
    assert name not in database_pool.ready
    assert not await exists(databases, name)


async def test_an_empty_database_is_dropped(
    databases: Databases, database_pool: DatabasePool
) -> None:
    dbs = own(databases, database_pool)
    name = await dbs.create(empty=True)
    await dbs.release()
    assert name not in database_pool.ready
    assert not await exists(databases, name)
