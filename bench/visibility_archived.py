"""visibility-archived: what hiding archived runs costs the list statements.

Reproduce (the DSN is an admin DSN, a fresh database is created and dropped)::

    python -m bench --dsn postgresql://postgres@127.0.0.1:5432/postgres visibility-archived \\
        --runs-count 100000 --rounds 200

Loads runs as ``bench visibility`` does (same loader, same six lists), archives
``--archived-percent`` of the closed ones straight in SQL (as
``POST .../archive`` stamps them), VACUUM ANALYZEs, then on one connection runs
each list's use case (``engine.visibility.list_workflows``: custom plans, filter
compilation, the statement) ``--rounds`` times with the archived filter off
(``archived=any``, the statement as it was before) and as many times with
``archived=false`` (the default list), the two interleaved in alternating order
after 10 warm-up rounds, and once more with ``archived=true`` (the partial
index). It prints each statement's plan with the filter on, so a plan change
shows. No HTTP: the statement is what changed, and the server and the network
would only add noise.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from bench.harness import bench_database, dwtrio_server, percentiles, table, write_result
from bench.visibility import _load, _register, lists

ARCHIVE_SQL = """
UPDATE workflow_runs SET archived_at = closed_at + interval '1 day',
       archive_command_id = 'bench', archive_reason = 'bench'
 WHERE closed_at IS NOT NULL AND (hashtext(id) & 1023) < $1::int * 1024 / 100
"""
WARM_UP = 10
MODES: dict[str, bool | None] = {"off": None, "archived=false": False, "archived=true": True}


class _Explaining:
    """A connection whose list statement is EXPLAINed instead of run."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.plan = ""

    async def execute(self, sql: str, *args: Any) -> Any:
        return await self.conn.execute(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> Any:
        if "FROM workflow_runs r" not in sql:
            return await self.conn.fetch(sql, *args)
        rows = await self.conn.fetch("EXPLAIN (COSTS OFF) " + sql, *args)
        self.plan = "\n".join(r[0] for r in rows)
        return []

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.conn.fetchval(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self.conn.fetchrow(sql, *args)


async def _time(dsn: str, rounds: int, percent: int) -> dict[str, Any]:
    import asyncpg

    from dwtrio.engine import visibility as ev
    from dwtrio.store.pool import _init_connection

    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    try:
        archived = await conn.execute(ARCHIVE_SQL, percent)
        await conn.execute("VACUUM ANALYZE workflow_runs")
        out: dict[str, Any] = {"archived": archived}
        for name, params in lists(datetime.now(UTC)).items():
            reqs = {
                mode: ev.ListRequest(
                    namespace="default",
                    status=params.get("status"),
                    workflow_type=params.get("workflow_type"),
                    query=params.get("query"),
                    archived=flag,
                    limit=51,
                )
                for mode, flag in MODES.items()
            }
            times: dict[str, list[float]] = {mode: [] for mode in MODES}
            order = list(MODES)
            for i in range(rounds + WARM_UP):
                for mode in order if i % 2 == 0 else order[::-1]:
                    t0 = time.perf_counter()
                    async with conn.transaction():
                        rows = await ev.list_workflows(conn, reqs[mode])
                    if i >= WARM_UP:
                        times[mode].append((time.perf_counter() - t0) * 1000)
                    if i == 0:
                        times[f"{mode} rows"] = [float(len(rows))]
            explained = _Explaining(conn)
            async with conn.transaction():
                await ev.list_workflows(explained, reqs["archived=false"])  # type: ignore[arg-type]
            out[name] = {"ms": times, "plan": explained.plan}
        return out
    finally:
        await conn.close()


def run(args: Any) -> dict[str, Any]:
    if not args.dsn:
        raise SystemExit("visibility-archived needs --dsn (or DWTRIO_BENCH_DSN)")
    with bench_database(args.dsn) as dsn, dwtrio_server(dsn=dsn) as url:
        assert dsn is not None
        asyncio.run(_register(url))
        asyncio.run(_load(dsn, args.runs_count, args.batch))
        measured = asyncio.run(_time(dsn, args.rounds, args.archived_percent))
    rows = []
    for name, m in measured.items():
        if name == "archived":
            continue
        print(f"--- {name}, archived=false plan:\n{m['plan']}")
        row: dict[str, Any] = {"list": name}
        for mode in MODES:
            p = percentiles(m["ms"][mode])
            row[f"{mode} p50"] = round(p["p50"], 2)
            row[f"{mode} p99"] = round(p["p99"], 2)
            row[f"{mode} rows"] = int(m["ms"][f"{mode} rows"][0])
        rows.append(row)
    print(
        f"{args.runs_count} runs, {measured['archived']} ({args.archived_percent}% of the closed"
        f" ones archived), {args.rounds} interleaved rounds per mode (ms):"
    )
    columns = ["list"] + [f"{m} {k}" for m in MODES for k in ("p50", "p99", "rows")]
    print(table(rows, columns))
    result = {"runs_count": args.runs_count, "rounds": args.rounds, "rows": rows}
    write_result("visibility-archived", result)
    return result
