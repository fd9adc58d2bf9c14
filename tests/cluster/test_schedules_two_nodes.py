"""Two dwtrio nodes on one database, both running the scheduler: every due occurrence
fires exactly once (issue 14).

Each node's pool connects with its own ``dwtrio_test.node`` setting (a query
parameter of its DSN becomes a server setting), and a trigger the test adds to
its own database copies that setting next to every ScheduleTriggered row: the
only record of which node fired what, since dwtrio keeps none. With Redis or
with the in-process wake bus the outcome must be the same: the scheduler shares
the work through ``FOR UPDATE SKIP LOCKED`` in Postgres, not through wakes.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
import trio

from dwtrio.store.pool import Conn, connect_once

from conftest import CP, RunningServer, StartServer

SCHEDULES = 20
RUN_S = 10.0
EVERY_SECOND = {"intervals": [{"every": "PT1S"}]}
ACTION = {"workflow_type": "two-node-tick", "task_queue": "sched-2n", "input": []}

FIRED_BY = """
CREATE TABLE test_fired_by (
    event_id text PRIMARY KEY,
    node     text
);
CREATE FUNCTION test_record_fired_by() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO test_fired_by VALUES (NEW.id, current_setting('dwtrio_test.node', true));
    RETURN NEW;
END $$;
CREATE TRIGGER test_fired_by AFTER INSERT ON schedule_history_events
    FOR EACH ROW WHEN (NEW.event_type = 'ScheduleTriggered')
    EXECUTE FUNCTION test_record_fired_by();
"""


def node_dsn(dsn: str, node: str) -> str:
    """The same database, with ``dwtrio_test.node`` set on every connection."""
    parts = urlsplit(dsn)
    query = urlencode([*parse_qsl(parts.query), ("dwtrio_test.node", node)])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


async def sql(dsn: str, statement: str) -> list[Any]:
    async def run(conn: Conn) -> list[Any]:
        return list(await conn.fetch(statement))

    return await connect_once(dsn, run)


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]


@pytest.fixture(params=["local", "redis"])
def wake_redis(request: pytest.FixtureRequest) -> str | None:
    """The wake bus both nodes use: in-process (no Redis URL) or Redis."""
    if request.param == "local":
        return None
    url: str = request.getfixturevalue("redis_url")
    return url


async def start_nodes(
    start_server: StartServer, db_dsn: str, redis_url: str | None, **b_overrides: Any
) -> tuple[RunningServer, RunningServer]:
    async def instrument(conn: Conn) -> None:
        await conn.execute(FIRED_BY)

    await connect_once(db_dsn, instrument)
    a = await start_server(dsn=node_dsn(db_dsn, "a"), server_id="node-a", redis_url=redis_url)
    b = await start_server(
        dsn=node_dsn(db_dsn, "b"), server_id="node-b", redis_url=redis_url, **b_overrides
    )
    return a, b


async def create_schedules(nodes: list[RunningServer], count: int) -> dict[str, dict[str, Any]]:
    """``count`` one-second schedules, created alternately through each node."""
    created: dict[str, dict[str, Any]] = {}
    clients = [n.client() for n in nodes]
    try:
        for i in range(count):
            r = await clients[i % len(clients)].post(
                "/api/schedules",
                headers=CP,
                json={
                    "schedule_id": f"tick-{i:02d}",
                    "spec": EVERY_SECOND,
                    "action": ACTION,
                    "overlap_policy": "allow_all",
                },
            )
            assert r.status_code == 201, r.text
            created[f"tick-{i:02d}"] = r.json()
    finally:
        for c in clients:
            await c.aclose()
    return created


async def pause_all(nodes: list[RunningServer], schedule_ids: list[str]) -> dict[str, datetime]:
    """Pause every schedule (alternately through each node); returns each one's paused_at."""
    paused: dict[str, datetime] = {}
    clients = [n.client() for n in nodes]
    try:
        for i, schedule_id in enumerate(schedule_ids):
            r = await clients[i % len(clients)].post(
                f"/api/schedules/{schedule_id}/pause", json={}, headers=CP
            )
            assert r.status_code == 200, r.text
            paused[schedule_id] = parse(r.json()["paused_at"])
    finally:
        for c in clients:
            await c.aclose()
    return paused


async def full_history(c: httpx.AsyncClient, schedule_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    for _ in range(20):
        r = await c.get(
            f"/api/schedules/{schedule_id}/history",
            params={"limit": 500, "after_sequence": after},
            headers=CP,
        )
        assert r.status_code == 200, r.text
        page = r.json()
        events += page["events"]
        if not page["has_more"]:
            return events
        after = page["next_cursor"]
    raise AssertionError(f"history of {schedule_id} did not end")


async def check_every_occurrence_fired_once(
    node: RunningServer,
    db_dsn: str,
    created: dict[str, dict[str, Any]],
    paused: dict[str, datetime],
    *,
    min_fires: int,
) -> list[float]:
    """The exactly-once checks over every schedule; returns every fire's lag in ms."""
    lags: list[float] = []
    event_ids: set[str] = set()
    instance_ids: set[str] = set()
    async with node.client() as c:
        for schedule_id, answer in created.items():
            events = await full_history(c, schedule_id)
            fired = [e for e in events if e["event_type"] == "ScheduleTriggered"]
            others = {e["event_type"] for e in events} - {
                "ScheduleCreated",
                "ScheduleTriggered",
                "SchedulePaused",
            }
            assert not others, f"{schedule_id}: unexpected events {others}"
            payloads = [e["payload"] for e in fired]
            occurrences = [parse(p["occurrence_time"]) for p in payloads]
            first = parse(answer["next_fire_at"])
            # consecutive whole seconds from the first due occurrence: none skipped, none twice
            assert occurrences == [first + timedelta(seconds=k) for k in range(len(fired))], (
                f"{schedule_id}: occurrences not consecutive 1 s steps from {first}: "
                f"{[o.isoformat() for o in occurrences]}"
            )
            assert [p["trigger_number"] for p in payloads] == list(range(1, len(fired) + 1))
            assert all(p["outcome"] == "scheduled" for p in payloads), payloads
            # nothing fired after the pause, nothing due well before it was left unfired
            # (paused_at is rendered in whole seconds: the pause happened in [stop, stop + 1 s),
            # and occurrences fall on whole seconds)
            stop = paused[schedule_id]
            assert len(fired) >= min_fires, f"{schedule_id}: only {len(fired)} fires"
            assert occurrences[-1] <= stop, f"{schedule_id}: fired after its pause at {stop}"
            assert occurrences[-1] >= stop - timedelta(seconds=2), (
                f"{schedule_id}: last fire {occurrences[-1]} but paused at {stop}: "
                "occurrences due before the pause never fired"
            )
            for e, p in zip(fired, payloads, strict=True):
                assert e["workflow_instance_id"] == p["workflow_instance_id"]
                assert e["workflow_run_id"] == p["workflow_run_id"]
                assert parse(p["due_at"]) == parse(p["occurrence_time"])  # no jitter
                lags.append(float(p["fire_lag_ms"]))
                instance_ids.add(p["workflow_instance_id"])
                event_ids.add(e["id"])
            r = await c.get(f"/api/schedules/{schedule_id}", headers=CP)
            assert r.status_code == 200, r.text
            d = r.json()
            assert d["fires_count"] == len(fired), (schedule_id, d["fires_count"], len(fired))
            assert d["info"]["fires_count"] == len(fired), d["info"]
            for counter in ("failures_count", "skipped_trigger_count", "missed_fires_count"):
                assert d["info"][counter] == 0, (schedule_id, d["info"])
    total = len(lags)
    assert len(instance_ids) == total, "two fires reported the same workflow instance"
    rows = await sql(db_dsn, "SELECT workflow_id FROM workflow_instances")
    assert {row["workflow_id"] for row in rows} == instance_ids, (
        f"{len(rows)} workflow instances for {total} ScheduleTriggered events"
    )
    attributed = await sql(db_dsn, "SELECT event_id FROM test_fired_by")
    assert {row["event_id"] for row in attributed} == event_ids
    return lags


async def fired_by(db_dsn: str) -> dict[str | None, int]:
    rows = await sql(db_dsn, "SELECT node, count(*) AS n FROM test_fired_by GROUP BY node")
    return {row["node"]: int(row["n"]) for row in rows}


async def test_two_schedulers_fire_every_occurrence_exactly_once(
    start_server: StartServer, db_dsn: str, wake_redis: str | None
) -> None:
    started = trio.current_time()
    a, b = await start_nodes(start_server, db_dsn, wake_redis)
    async with a.client() as c:
        cache = (await c.get("/api/ready")).json()["checks"]["cache"]
    assert (cache.get("store") == "redis") == (wake_redis is not None), cache

    with trio.fail_after(RUN_S + 10):
        created = await create_schedules([a, b], SCHEDULES)
        await trio.sleep(RUN_S)
        paused = await pause_all([b, a], sorted(created))
        await trio.sleep(1.2)  # a fire after the pause would show up by now
    with trio.fail_after(20):
        lags = await check_every_occurrence_fired_once(
            a, db_dsn, created, paused, min_fires=int(RUN_S) - 2
        )
        by_node = await fired_by(db_dsn)

    p50, p99 = percentile(lags, 50), percentile(lags, 99)
    print(
        f"\n[{'redis' if wake_redis else 'local'}] fires={len(lags)} by_node={by_node} "
        f"lag p50={p50:.1f}ms p99={p99:.1f}ms max={max(lags):.1f}ms "
        f"wall={trio.current_time() - started:.1f}s"
    )
    assert p99 < 1000, f"fire lag p99 {p99:.1f} ms (p50 {p50:.1f} ms)"
    assert set(by_node) == {"a", "b"} and min(by_node.values()) > 0, (
        f"both nodes run the scheduler but fires were made by {by_node}"
    )


async def test_one_scheduler_disabled_the_other_fires_everything(
    start_server: StartServer, db_dsn: str
) -> None:
    """Node B serves the routes but runs no scheduler: node A fires every occurrence,
    including those of schedules created and paused through B (no nudge reaches A)."""
    _, b = await start_nodes(start_server, db_dsn, None, scheduler_enabled=False)
    with trio.fail_after(20):
        created = await create_schedules([b], 5)
        await trio.sleep(5)
        paused = await pause_all([b], sorted(created))
        await trio.sleep(1.2)
        lags = await check_every_occurrence_fired_once(b, db_dsn, created, paused, min_fires=3)
        assert await fired_by(db_dsn) == {"a": len(lags)}
    assert percentile(lags, 99) < 1000, sorted(lags)


def test_percentile() -> None:
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
