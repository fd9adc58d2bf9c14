"""Schedules over HTTP (control-plane.md §7, schedules-and-admission.md §1).

The routes' shapes and refusals, the lifecycle, the trigger algorithm's overlap
policies, backfill, history paging and the scheduler firing on its own. A
workflow started by a schedule stays open here (no worker runs it), which is
what the overlap policies need to see a run "still going".
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import trio

from dwtrio.store.pool import Conn, connect_once

from conftest import CP, RunningServer, StartServer

ACTION = {"workflow_type": "greeter", "task_queue": "sched-q", "input": ["world"]}
EVERY_HOUR = {"cron_expressions": ["0 * * * *"]}


def body(**overrides: Any) -> dict[str, Any]:
    return {"spec": EVERY_HOUR, "action": ACTION, **overrides}


async def create(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    r = await client.post("/api/schedules", json=body(**overrides), headers=CP)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def describe(client: httpx.AsyncClient, schedule_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/schedules/{schedule_id}", headers=CP)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def history(client: httpx.AsyncClient, schedule_id: str, **params: Any) -> dict[str, Any]:
    r = await client.get(f"/api/schedules/{schedule_id}/history", params=params, headers=CP)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def event_types(client: httpx.AsyncClient, schedule_id: str) -> list[str]:
    return [e["event_type"] for e in (await history(client, schedule_id, limit=500))["events"]]


async def count_rows(dsn: str, table: str) -> int:
    async def count(conn: Conn) -> int:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))

    return await connect_once(dsn, count)


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


# --- create, describe, list ----------------------------------------------------------------
async def test_create_describe_and_list(server: RunningServer) -> None:
    async with server.client() as c:
        created = await create(
            c,
            schedule_id="nightly",
            overlap_policy="allow_all",
            jitter_seconds=30,
            max_runs=5,
            memo={"team": "ops"},
            search_attributes={"Env": "prod"},
            note="first",
        )
        assert created["schedule_id"] == "nightly" and created["outcome"] == "created"
        assert created["status"] == "active" and created["namespace"] == "default"
        d = await describe(c, "nightly")
        assert d["spec"] == {"cron_expressions": ["0 * * * *"], "timezone": "UTC"}
        assert d["action"] == ACTION
        assert d["overlap_policy"] == "allow_all"
        assert d["state"] == {"status": "active", "paused": False, "note": "first"}
        assert d["status"] == "active" and d["paused"] is False and d["note"] == "first"
        assert d["memo"] == {"team": "ops"} and d["search_attributes"] == {"Env": "prod"}
        assert (d["jitter_seconds"], d["max_runs"], d["remaining_actions"]) == (30, 5, 5)
        assert d["fires_count"] == 0 and d["failures_count"] == 0
        assert d["info"]["recent_actions"] == [] and d["info"]["buffered_actions"] == []
        # next fire: the next full hour, plus at most 30 s of jitter
        nxt = parse(d["next_fire_at"])
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        assert hour <= nxt <= hour + timedelta(seconds=30)
        assert d["info"]["next_fire"] == d["next_fire_at"]

        await create(c, schedule_id="other", action={**ACTION, "workflow_type": "billing"})
        r = await c.get("/api/schedules", headers=CP)
        assert r.status_code == 200
        page = r.json()
        assert [s["schedule_id"] for s in page["schedules"]] == ["other", "nightly"]
        assert page["next_page_token"] is None
        item = page["schedules"][1]
        assert item["workflow_type"] == "greeter" and item["next_fire"] == item["next_fire_at"]
        assert item["jitter_seconds"] == 30 and "jitter_seconds" not in page["schedules"][0]
        r = await c.get("/api/schedules", params={"workflow_type": "billing"}, headers=CP)
        assert [s["schedule_id"] for s in r.json()["schedules"]] == ["other"]


async def test_list_pages_with_a_token_bound_to_its_filters(server: RunningServer) -> None:
    async with server.client() as c:
        for i in range(5):
            await create(c, schedule_id=f"s{i}")
        seen: list[str] = []
        token = None
        while True:
            params: dict[str, Any] = {"page_size": 2}
            if token:
                params["next_page_token"] = token
            r = await c.get("/api/schedules", params=params, headers=CP)
            assert r.status_code == 200, r.text
            seen += [s["schedule_id"] for s in r.json()["schedules"]]
            token = r.json()["next_page_token"]
            if token is None:
                break
        assert seen == ["s4", "s3", "s2", "s1", "s0"]
        r = await c.get("/api/schedules", params={"page_size": 2}, headers=CP)
        token = r.json()["next_page_token"]
        r = await c.get(
            "/api/schedules",
            params={"page_size": 2, "status": "paused", "next_page_token": token},
            headers=CP,
        )
        assert r.status_code == 400 and r.json()["reason"] == "schedule_page_token_filter_mismatch"
        r = await c.get("/api/schedules", params={"next_page_token": "@@junk"}, headers=CP)
        assert r.status_code == 400 and r.json()["reason"] == "malformed_schedule_page_token"
        r = await c.get("/api/schedules", params={"query": "Status = 'active'"}, headers=CP)
        assert r.status_code == 422 and r.json()["reason"] == "unsupported_schedule_list_filter"


async def test_a_duplicate_id_is_409_and_a_deleted_id_can_be_reused(server: RunningServer) -> None:
    async with server.client() as c:
        await create(c, schedule_id="dup")
        r = await c.post("/api/schedules", json=body(schedule_id="dup"), headers=CP)
        assert r.status_code == 409, r.text
        assert r.json()["reason"] == "schedule_already_exists"
        assert r.json()["schedule_id"] == "dup"
        r = await c.delete("/api/schedules/dup", headers=CP)
        assert r.status_code == 200 and r.json()["outcome"] == "deleted"
        for method, path in [
            ("GET", "/api/schedules/dup"),
            ("DELETE", "/api/schedules/dup"),
            ("POST", "/api/schedules/dup/pause"),
            ("POST", "/api/schedules/dup/trigger"),
            ("PUT", "/api/schedules/dup"),
        ]:
            r = await c.request(method, path, json={} if method != "GET" else None, headers=CP)
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["reason"] == "schedule_not_found"
        # the history outlives the schedule
        assert (await event_types(c, "dup"))[-1] == "ScheduleDeleted"
        await create(c, schedule_id="dup")
        assert await event_types(c, "dup") == ["ScheduleCreated"]


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"spec": {"timezone": "UTC"}}, {"spec"}),
        ({"spec": {"cron_expressions": ["61 * * * *"]}}, {"spec.cron_expressions.0"}),
        ({"spec": {"cron_expressions": ["* * * * * *"]}}, {"spec.cron_expressions.0"}),
        ({"spec": {"intervals": [{"every": "PT1X"}]}}, {"spec.intervals.0.every"}),
        ({"spec": {"cron_expressions": ["@hourly"], "timezone": "Mars/Base"}}, {"spec.timezone"}),
        ({"overlap_policy": "sometimes"}, {"overlap_policy"}),
        ({"jitter_seconds": 3601}, {"jitter_seconds"}),
        ({"max_runs": 0}, {"max_runs"}),
        ({"action": {"task_queue": "q"}}, {"action.workflow_type"}),
        ({"action": {**ACTION, "input": 5}}, {"action.input"}),
        ({"action": {**ACTION, "run_timeout_seconds": 0}}, {"action.run_timeout_seconds"}),
        ({"schedule_id": "a/b"}, {"schedule_id"}),
        ({"memo": [1]}, {"memo"}),
        ({"note": "x" * 1001}, {"note"}),
        (
            {"spec": {"cron_expressions": ["bad"]}, "overlap_policy": "no", "action": {}},
            {"spec.cron_expressions.0", "overlap_policy", "action.workflow_type"},
        ),
    ],
)
async def test_bad_input_is_a_422_naming_each_field_and_writes_nothing(
    server: RunningServer, db_dsn: str, overrides: dict[str, Any], fields: set[str]
) -> None:
    async with server.client() as c:
        r = await c.post("/api/schedules", json=body(**overrides), headers=CP)
    assert r.status_code == 422, r.text
    data = r.json()
    assert data["reason"] == "validation_failed"
    assert set(data["errors"]) == fields, data["errors"]
    assert all(isinstance(m, str) and m for ms in data["errors"].values() for m in ms)
    assert await count_rows(db_dsn, "schedules") == 0
    assert await count_rows(db_dsn, "schedule_history_events") == 0


async def test_spec_and_action_are_required(server: RunningServer) -> None:
    async with server.client() as c:
        r = await c.post("/api/schedules", json={}, headers=CP)
    assert r.status_code == 422
    assert set(r.json()["errors"]) == {"spec", "action"}


async def test_action_timeout_aliases_are_renamed(server: RunningServer) -> None:
    async with server.client() as c:
        action = {**ACTION, "workflow_execution_timeout": 60, "custom": {"k": 1}}
        await create(c, schedule_id="alias", action=action)
        d = await describe(c, "alias")
    assert d["action"] == {**ACTION, "execution_timeout_seconds": 60, "custom": {"k": 1}}


# --- lifecycle -------------------------------------------------------------------------------
async def test_update_pause_resume_delete_and_their_history(server: RunningServer) -> None:
    async with server.client() as c:
        await create(c, schedule_id="life", spec={"intervals": [{"every": "PT1H"}]})
        r = await c.put(
            "/api/schedules/life",
            json={
                "spec": {"cron_expressions": ["30 7 * * *"], "timezone": "Asia/Tokyo"},
                "action": {"task_queue": "other-q"},
                "overlap_policy": "buffer_one",
                "max_runs": 3,
                "note": "tuned",
            },
            headers=CP,
        )
        assert r.status_code == 200 and r.json()["outcome"] == "updated", r.text
        d = await describe(c, "life")
        assert d["spec"]["timezone"] == "Asia/Tokyo"
        assert d["action"] == {**ACTION, "task_queue": "other-q"}  # merged, not replaced
        assert d["overlap_policy"] == "buffer_one" and d["note"] == "tuned"
        assert d["remaining_actions"] == 3
        nxt = parse(d["next_fire_at"])
        assert (nxt.hour, nxt.minute) == (22, 30)  # 07:30 in Tokyo

        r = await c.post("/api/schedules/life/pause", json={"note": "maintenance"}, headers=CP)
        assert r.status_code == 200 and r.json()["outcome"] == "paused"
        d = await describe(c, "life")
        assert d["status"] == "paused" and d["paused"] is True and d["paused_at"]
        assert d["note"] == "maintenance"
        r = await c.post("/api/schedules/life/pause", json={}, headers=CP)  # again: no-op
        assert r.status_code == 200
        r = await c.get("/api/schedules", params={"status": "paused"}, headers=CP)
        assert [s["schedule_id"] for s in r.json()["schedules"]] == ["life"]

        r = await c.post("/api/schedules/life/resume", json={}, headers=CP)
        assert r.status_code == 200 and r.json()["outcome"] == "resumed"
        r = await c.post("/api/schedules/life/resume", json={}, headers=CP)  # idempotent
        assert r.status_code == 200 and r.json()["outcome"] == "resumed"
        d = await describe(c, "life")
        assert d["status"] == "active" and d["paused_at"] is None and d["next_fire_at"]

        r = await c.delete("/api/schedules/life", headers=CP)
        assert r.status_code == 200
        page = await history(c, "life")
        types = [e["event_type"] for e in page["events"]]
        assert types == [
            "ScheduleCreated",
            "ScheduleUpdated",
            "SchedulePaused",
            "ScheduleResumed",
            "ScheduleDeleted",
        ]
        updated = page["events"][1]["payload"]
        assert set(updated["changed_fields"]) == {
            "spec",
            "action",
            "overlap_policy",
            "max_runs",
            "note",
        }
        assert updated["command_context"]["server"]["command"] == "update"
        assert page["events"][2]["payload"]["reason"] == "maintenance"
        assert page["events"][-1]["payload"]["reason"] == "deleted"
        assert page["events"][-1]["payload"]["schedule"]["status"] == "deleted"
        assert [e["sequence"] for e in page["events"]] == [1, 2, 3, 4, 5]


async def test_history_pages_and_refuses_a_bad_cursor(server: RunningServer) -> None:
    async with server.client() as c:
        await create(c, schedule_id="paged")
        for _ in range(4):
            r = await c.post("/api/schedules/paged/pause", json={}, headers=CP)
            r = await c.post("/api/schedules/paged/resume", json={}, headers=CP)
        first = await history(c, "paged", limit=3)
        assert [e["sequence"] for e in first["events"]] == [1, 2, 3]
        assert first["has_more"] is True and first["next_cursor"] == 3
        rest = await history(c, "paged", after_sequence=3, limit=100)
        assert [e["sequence"] for e in rest["events"]] == list(range(4, 10))
        assert rest["has_more"] is False and rest["next_cursor"] is None
        assert len((await history(c, "paged", limit=0))["events"]) == 9  # junk -> default
        for junk in ("-1", "²", "1e3", "9" * 12):
            r = await c.get(
                "/api/schedules/paged/history", params={"after_sequence": junk}, headers=CP
            )
            assert r.status_code == 422 and r.json()["reason"] == "invalid_after_sequence"
        for junk in ("--5", "²", "x", "9" * 30):  # a junk limit means the default
            assert len((await history(c, "paged", limit=junk))["events"]) == 9
        r = await c.get("/api/schedules/nope/history", headers=CP)
        assert r.status_code == 404 and r.json()["reason"] == "schedule_not_found"


# --- trigger and overlap ------------------------------------------------------------------------
async def trigger(c: httpx.AsyncClient, schedule_id: str, **body: Any) -> dict[str, Any]:
    r = await c.post(f"/api/schedules/{schedule_id}/trigger", json=body, headers=CP)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def run_status(c: httpx.AsyncClient, workflow_id: str) -> str:
    r = await c.get(f"/api/workflows/{workflow_id}", headers=CP)
    assert r.status_code == 200, r.text
    status: str = r.json()["status"]
    return status


async def test_trigger_starts_a_workflow_with_the_action(server: RunningServer) -> None:
    async with server.client() as c:
        await create(
            c,
            schedule_id="t",
            action={**ACTION, "execution_timeout_seconds": 600},
            memo={"from": "schedule"},
        )
        fired = await trigger(c, "t")
        assert fired["outcome"] == "triggered" and fired["workflow_id"] and fired["run_id"]
        r = await c.get(f"/api/workflows/{fired['workflow_id']}", headers=CP)
        wf = r.json()
        assert wf["workflow_type"] == "greeter" and wf["task_queue"] == "sched-q"
        assert wf["memo"] == {"from": "schedule"}
        d = await describe(c, "t")
        assert d["fires_count"] == 1 and d["latest_workflow_instance_id"] == fired["workflow_id"]
        assert d["info"]["recent_actions"][0]["workflow_id"] == fired["workflow_id"]
        assert d["last_fired_at"]
        page = await history(c, "t")
        triggered = page["events"][-1]
        assert triggered["event_type"] == "ScheduleTriggered"
        assert triggered["workflow_instance_id"] == fired["workflow_id"]
        assert triggered["payload"]["trigger_number"] == 1


@pytest.mark.parametrize(
    ("policy", "second", "closed"),
    [
        ("skip", {"outcome": "skipped", "reason": "overlap_policy_skip"}, None),
        ("allow_all", {"outcome": "triggered"}, None),
        ("cancel_other", {"outcome": "triggered"}, "cancelled"),
        ("terminate_other", {"outcome": "triggered"}, "terminated"),
        ("buffer_one", {"outcome": "buffered", "buffer_depth": 1}, None),
        ("buffer_all", {"outcome": "buffered", "buffer_depth": 1}, None),
    ],
)
async def test_overlap_policies_with_a_run_still_going(
    server: RunningServer, policy: str, second: dict[str, Any], closed: str | None
) -> None:
    async with server.client() as c:
        await create(c, schedule_id="o", overlap_policy=policy)
        first = await trigger(c, "o")
        assert first["outcome"] == "triggered"
        again = await trigger(c, "o")
        assert {k: again[k] for k in second} == second, again
        if closed is not None:
            assert await run_status(c, first["workflow_id"]) == closed
            assert again["workflow_id"] != first["workflow_id"]
        elif policy == "allow_all":
            assert await run_status(c, first["workflow_id"]) == "pending"
        d = await describe(c, "o")
        if second["outcome"] == "skipped":
            assert d["info"]["skipped_trigger_count"] == 1
            assert d["info"]["last_skip_reason"] == "overlap_policy_skip"
            assert (await event_types(c, "o"))[-1] == "ScheduleTriggerSkipped"
        if policy == "buffer_one":
            third = await trigger(c, "o")
            assert third["outcome"] == "buffer_full"
        if policy == "buffer_all":
            third = await trigger(c, "o")
            assert third == {**third, "outcome": "buffered", "buffer_depth": 2}


async def test_a_buffered_fire_starts_when_the_running_workflow_closes(
    server: RunningServer,
) -> None:
    async with server.client() as c:
        await create(c, schedule_id="b", overlap_policy="buffer_one")
        first = await trigger(c, "b")
        assert (await trigger(c, "b"))["outcome"] == "buffered"
        r = await c.post(f"/api/workflows/{first['workflow_id']}/terminate", json={}, headers=CP)
        assert r.status_code == 200, r.text
        with trio.fail_after(5):
            while True:
                d = await describe(c, "b")
                if d["fires_count"] == 2:
                    break
                await trio.sleep(0.1)
        assert d["info"]["buffered_actions"] == []
        assert d["info"]["recent_actions"][-1]["outcome"] == "drained"
        assert d["latest_workflow_instance_id"] != first["workflow_id"]


async def test_trigger_override_and_a_paused_schedule(server: RunningServer) -> None:
    async with server.client() as c:
        await create(c, schedule_id="p", overlap_policy="skip")
        await trigger(c, "p")
        assert (await trigger(c, "p", overlap_policy="allow_all"))["outcome"] == "triggered"
        await c.post("/api/schedules/p/pause", json={}, headers=CP)
        fired = await trigger(c, "p")
        assert fired == {**fired, "outcome": "skipped", "reason": "status_not_triggerable"}
        r = await c.post("/api/schedules/p/trigger", json={"overlap_policy": "nope"}, headers=CP)
        assert r.status_code == 422 and set(r.json()["errors"]) == {"overlap_policy"}


async def test_max_runs_deletes_the_schedule_when_exhausted(server: RunningServer) -> None:
    async with server.client() as c:
        await create(c, schedule_id="m", max_runs=2, overlap_policy="allow_all")
        await trigger(c, "m")
        assert (await describe(c, "m"))["remaining_actions"] == 1
        await trigger(c, "m")
        r = await c.get("/api/schedules/m", headers=CP)
        assert r.status_code == 404
        deleted = (await history(c, "m"))["events"][-1]
        assert deleted["event_type"] == "ScheduleDeleted"
        assert deleted["payload"]["reason"] == "max_runs_exhausted"


# --- backfill ------------------------------------------------------------------------------------
async def test_backfill_starts_one_run_per_occurrence_in_the_window(server: RunningServer) -> None:
    async with server.client() as c:
        await create(
            c,
            schedule_id="bf",
            spec={"intervals": [{"every": "PT30M"}]},
            overlap_policy="skip",
        )
        r = await c.post(
            "/api/schedules/bf/backfill",
            json={"start_time": "2026-04-20T00:00:00Z", "end_time": "2026-04-20T02:00:00Z"},
            headers=CP,
        )
        assert r.status_code == 200, r.text
        data = r.json()
        assert data["outcome"] == "backfill_started" and data["fires_attempted"] == 4
        assert [x["fire_time"] for x in data["results"]] == [
            "2026-04-20T00:00:00+00:00",
            "2026-04-20T00:30:00+00:00",
            "2026-04-20T01:00:00+00:00",
            "2026-04-20T01:30:00+00:00",
        ]
        # skip: the first run is still going, so the others are skipped
        assert [x["outcome"] for x in data["results"]] == [
            "started",
            "skipped",
            "skipped",
            "skipped",
        ]
        r = await c.post(
            "/api/schedules/bf/backfill",
            json={
                "start_time": "2026-04-21T00:00:00Z",
                "end_time": "2026-04-21T01:00:00Z",
                "overlap_policy": "buffer_all",  # counts as allow_all in a backfill
            },
            headers=CP,
        )
        assert [x["outcome"] for x in r.json()["results"]] == ["started", "started"]
        triggered = [
            e
            for e in (await history(c, "bf", limit=500))["events"]
            if e["event_type"] == "ScheduleTriggered"
        ]
        assert [e["payload"]["outcome"] for e in triggered] == ["backfilled"] * 3
        assert triggered[0]["payload"]["occurrence_time"] == "2026-04-20T00:00:00+00:00"


@pytest.mark.parametrize(
    ("payload", "status", "reason"),
    [
        (
            {"start_time": "2026-04-20T02:00:00Z", "end_time": "2026-04-20T01:00:00Z"},
            422,
            "invalid_time_range",
        ),
        ({"start_time": "yesterday", "end_time": "2026-04-20T01:00:00Z"}, 422, "validation_failed"),
        ({"end_time": "2026-04-20T01:00:00Z"}, 422, "validation_failed"),
    ],
)
async def test_backfill_refusals(
    server: RunningServer, payload: dict[str, Any], status: int, reason: str
) -> None:
    async with server.client() as c:
        await create(c, schedule_id="bfr")
        r = await c.post("/api/schedules/bfr/backfill", json=payload, headers=CP)
    assert r.status_code == status and r.json()["reason"] == reason, r.text


# --- the scheduler ------------------------------------------------------------------------------
async def test_the_scheduler_fires_every_occurrence_on_time(server: RunningServer) -> None:
    async with server.client() as c:
        await create(
            c,
            schedule_id="tick",
            spec={"intervals": [{"every": "PT1S"}]},
            overlap_policy="allow_all",
        )
        await trio.sleep(3.5)
        await c.post("/api/schedules/tick/pause", json={}, headers=CP)
        page = await history(c, "tick", limit=500)
    fires = [e["payload"] for e in page["events"] if e["event_type"] == "ScheduleTriggered"]
    assert 2 <= len(fires) <= 5, fires
    occurrences = [parse(f["occurrence_time"]) for f in fires]
    # one fire per second, none twice, none skipped
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(occurrences)]
    assert gaps == [1.0] * (len(occurrences) - 1)
    assert all(f["outcome"] == "scheduled" for f in fires)
    assert max(f["fire_lag_ms"] for f in fires) < 1000


async def test_pause_stops_the_fires(server: RunningServer) -> None:
    async with server.client() as c:
        await create(
            c,
            schedule_id="stop",
            spec={"intervals": [{"every": "PT1S"}]},
            overlap_policy="allow_all",
        )
        await trio.sleep(1.5)
        await c.post("/api/schedules/stop/pause", json={}, headers=CP)
        fired = (await describe(c, "stop"))["fires_count"]
        assert fired >= 1
        await trio.sleep(2.2)
        assert (await describe(c, "stop"))["fires_count"] == fired


async def test_a_restarted_server_fires_recent_occurrences_and_records_older_ones(
    start_server: StartServer,
) -> None:
    first = await start_server(schedule_catchup_window_s=1)
    async with first.client() as c:
        await create(
            c,
            schedule_id="down",
            spec={"intervals": [{"every": "PT1S"}]},
            overlap_policy="allow_all",
        )
    await first.shutdown()
    before = datetime.now(UTC)
    await trio.sleep(4)
    second = await start_server(schedule_catchup_window_s=1)
    async with second.client() as c:
        await trio.sleep(1.5)
        await c.post("/api/schedules/down/pause", json={}, headers=CP)
        page = await history(c, "down", limit=500)
        d = await describe(c, "down")
    missed = [e["payload"] for e in page["events"] if e["event_type"] == "ScheduleFiresMissed"]
    assert len(missed) == 1, page["events"]
    assert missed[0]["missed_count"] >= 2 and missed[0]["catchup_window_seconds"] == 1
    assert parse(missed[0]["first_missed_at"]) >= before - timedelta(seconds=1)
    assert d["info"]["missed_fires_count"] == missed[0]["missed_count"]
    # every occurrence is either fired once or counted as missed: none lost, none twice
    fired = [
        parse(e["payload"]["occurrence_time"])
        for e in page["events"]
        if e["event_type"] == "ScheduleTriggered"
    ]
    assert len(set(fired)) == len(fired)
    first_missed = parse(missed[0]["first_missed_at"])
    last_missed = parse(missed[0]["last_missed_at"])
    after_gap = [t for t in fired if t > last_missed]
    assert after_gap and (after_gap[0] - last_missed).total_seconds() == 1.0
    assert (last_missed - first_missed).total_seconds() == missed[0]["missed_count"] - 1


async def test_an_update_may_set_a_timeout_by_its_alias(server: RunningServer) -> None:
    async with server.client() as c:
        await create(c, schedule_id="al", action={**ACTION, "execution_timeout_seconds": 60})
        r = await c.put(
            "/api/schedules/al", json={"action": {"workflow_execution_timeout": 90}}, headers=CP
        )
        assert r.status_code == 200, r.text
        d = await describe(c, "al")
    assert d["action"] == {**ACTION, "execution_timeout_seconds": 90}


async def test_jitter_longer_than_the_catchup_window_loses_no_fire(
    start_server: StartServer,
) -> None:
    """Lateness counts from the jittered due time: on-time fires are never 'missed'."""
    server = await start_server(schedule_catchup_window_s=2)
    async with server.client() as c:
        await create(
            c,
            schedule_id="jit",
            spec={"intervals": [{"every": "PT1S"}]},
            jitter_seconds=5,
            overlap_policy="allow_all",
        )
        await trio.sleep(6.5)
        await c.post("/api/schedules/jit/pause", json={}, headers=CP)
        types = await event_types(c, "jit")
        d = await describe(c, "jit")
    assert "ScheduleFiresMissed" not in types
    assert d["info"]["missed_fires_count"] == 0 and d["fires_count"] >= 1


async def test_search_attribute_values_must_fit_their_registered_types(
    server: RunningServer, db_dsn: str
) -> None:
    async with server.client() as c:
        r = await c.post(
            "/api/search-attributes", json={"name": "Priority", "type": "int"}, headers=CP
        )
        assert r.status_code == 201, r.text
        r = await c.post(
            "/api/schedules", json=body(search_attributes={"Priority": "high"}), headers=CP
        )
        assert r.status_code == 422, r.text
        assert set(r.json()["errors"]) == {"search_attributes.Priority"}
        assert await count_rows(db_dsn, "schedules") == 0
        await create(c, schedule_id="typed", search_attributes={"Priority": 3})
        r = await c.put(
            "/api/schedules/typed", json={"search_attributes": {"Priority": 1.5}}, headers=CP
        )
        assert r.status_code == 422 and set(r.json()["errors"]) == {"search_attributes.Priority"}
        assert (await describe(c, "typed"))["search_attributes"] == {"Priority": 3}
