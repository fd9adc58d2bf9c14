"""Schedules through the official SDK 2.12.0 against a dwtrio URL; prints JSON.

    python schedules_driver.py <scenario> <base_url> <token>

Runs in its own process (the SDK is asyncio; the test process runs
Trio). A scenario drives the schedule client calls and, where it needs one, a
real worker running the started workflows; it returns what it observed and the
test asserts on it. Every wait is bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from durable_workflow import Client, Worker, activity, workflow
from durable_workflow.client import ScheduleAction, ScheduleSpec
from durable_workflow.errors import (
    DurableWorkflowError,
    WorkflowCancelled,
    WorkflowTerminated,
)

from driver_support import print_result, running

HOURLY = ScheduleSpec(cron_expressions=["0 * * * *"])
EVERY_SECOND = ScheduleSpec(intervals=[{"every": "PT1S"}])
#: Statuses of a run that is still going (schedules-and-admission.md §1.5 step 4).
OPEN = ("pending", "running", "waiting")


# --- the workflows a real worker runs ------------------------------------------------------
@activity.defn(name="greet")
def greet(name: str) -> str:
    return f"Hello, {name}!"


@workflow.defn(name="greeter")
class Greeter:
    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        greeting = yield ctx.schedule_activity("greet", [name])
        return greeting


@workflow.defn(name="gate")
class Gate:
    """Runs until it is sent the ``release`` signal: the long run overlap policies need."""

    def __init__(self) -> None:
        self.released = False

    @workflow.signal("release")
    def release(self) -> None:
        self.released = True

    def run(self, ctx, label):  # type: ignore[no-untyped-def]
        yield ctx.wait_condition(lambda: self.released, key="release")
        return f"{label} released"


@asynccontextmanager
async def worker_for(client: Client, queue: str) -> AsyncIterator[Worker]:
    worker = Worker(
        client, task_queue=queue, workflows=[Greeter, Gate], activities=[greet], poll_timeout=5
    )
    async with running(worker):
        yield worker


# --- helpers ------------------------------------------------------------------------------
def plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def failure(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "schedule_id": getattr(exc, "schedule_id", None),
        "status": getattr(exc, "status", None),
        "body": getattr(exc, "body", None),
    }


async def refused(call: Awaitable[Any]) -> dict[str, Any]:
    """What a call that should fail raised (or ``{"type": None}`` when it did not)."""
    try:
        value = await call
    except DurableWorkflowError as exc:
        return failure(exc)
    return {"type": None, "value": plain(value)}


async def until(
    probe: Callable[[], Awaitable[Any]], *, timeout: float, what: str, poll: float = 0.1
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"after {timeout}s still waiting for {what}")
        await asyncio.sleep(poll)


async def events(client: Client, schedule_id: str) -> list[dict[str, Any]]:
    return [plain(e) async for e in client.iter_schedule_history(schedule_id, limit=500)]


async def triggered(client: Client, schedule_id: str) -> list[dict[str, Any]]:
    return [e for e in await events(client, schedule_id) if e["event_type"] == "ScheduleTriggered"]


async def fires_at_least(client: Client, schedule_id: str, n: int, timeout: float = 8) -> Any:
    async def probe() -> Any:
        d = await client.describe_schedule(schedule_id)
        return d if d.fires_count >= n else None

    return await until(probe, timeout=timeout, what=f"{schedule_id} to fire {n} times")


async def run_info(client: Client, workflow_id: str) -> dict[str, Any]:
    """The instance's current run: status and start/close times."""
    wf = await client.describe_workflow(workflow_id)
    run = await client.describe_workflow_run(workflow_id, wf.run_id or "")
    return {
        "workflow_id": workflow_id,
        "run_id": run.run_id,
        "workflow_type": run.workflow_type,
        "status": run.status,
        "started_at": run.started_at,
        "closed_at": run.closed_at,
    }


async def running_gate(client: Client, workflow_id: str) -> dict[str, Any]:
    """Wait until a worker picked the gate run up (its condition wait is open)."""

    async def probe() -> Any:
        history = await client.get_history(
            workflow_id, (await run_info(client, workflow_id))["run_id"]
        )
        types = [e.get("event_type") for e in history.get("events", [])]
        return "ConditionWaitOpened" in types

    await until(probe, timeout=15, what=f"gate {workflow_id} to wait for its release")
    return await run_info(client, workflow_id)


async def release(client: Client, workflow_id: str) -> Any:
    """Release a gate run and return its result."""
    await client.signal_workflow(workflow_id, "release")
    handle = client.get_workflow_handle(workflow_id)
    return await client.get_result(handle, timeout=15.0, poll_interval=0.1)


def ids(page: Any) -> list[str]:
    return [s.schedule_id for s in page.schedules]


async def all_pages(client: Client, **filters: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    token = None
    while len(pages) < 20:
        page = await client.list_schedules(page_size=2, next_page_token=token, **filters)
        pages.append(ids(page))
        token = page.next_page_token
        if token is None:
            break
    return pages


# --- scenarios without a worker --------------------------------------------------------------
async def scenario_client_calls(client: Client, queue: str) -> dict[str, Any]:
    """create (every option, paused, generated id, duplicate), list, describe, update,
    pause, resume, delete through the client's own methods."""
    greeter = ScheduleAction(workflow_type="greeter", task_queue=queue, input=["world"])
    out: dict[str, Any] = {"before_create": datetime.now(UTC).isoformat()}
    handle = await client.create_schedule(
        schedule_id="nightly",
        spec=HOURLY,
        action=greeter,
        overlap_policy="allow_all",
        jitter_seconds=30,
        max_runs=5,
        memo={"team": "ops"},
        search_attributes={"Env": "prod"},
        note="first",
    )
    out["created_id"] = handle.schedule_id
    out["describe"] = plain(await client.describe_schedule("nightly"))
    held = await client.create_schedule(
        spec=EVERY_SECOND, action=greeter, paused=True, note="held back"
    )
    out["generated_id"] = held.schedule_id
    out["held"] = plain(await client.describe_schedule(held.schedule_id))
    out["duplicate"] = await refused(
        client.create_schedule(schedule_id="nightly", spec=HOURLY, action=greeter)
    )
    for i in range(3):
        await client.create_schedule(
            schedule_id=f"billing-{i}",
            spec=HOURLY,
            action=ScheduleAction(workflow_type="billing", task_queue=queue),
        )

    listed = await client.list_schedules()
    out["list_all"] = ids(listed)
    out["list_all_token"] = listed.next_page_token
    out["list_item"] = plain(next(s for s in listed.schedules if s.schedule_id == "nightly"))
    out["list_paused"] = ids(await client.list_schedules(status="paused"))
    out["list_active"] = ids(await client.list_schedules(status="active"))
    out["list_billing"] = ids(await client.list_schedules(workflow_type="billing"))
    out["list_none"] = ids(await client.list_schedules(status="paused", workflow_type="billing"))
    out["pages"] = await all_pages(client)
    out["billing_pages"] = await all_pages(client, workflow_type="billing")
    first = await client.list_schedules(page_size=2)
    out["token_other_filters"] = await refused(
        client.list_schedules(page_size=2, status="paused", next_page_token=first.next_page_token)
    )
    out["query_filter"] = await refused(client.list_schedules(query="Status = 'active'"))
    out["junk_token"] = await refused(client.list_schedules(next_page_token="@@junk"))
    out["page_size_zero"] = await refused(client.list_schedules(page_size=0))
    out["status_deleted"] = await refused(client.list_schedules(status="deleted"))

    await client.update_schedule(
        "nightly",
        spec=ScheduleSpec(cron_expressions=["30 7 * * *"], timezone="Asia/Tokyo"),
        action=ScheduleAction(workflow_type="greeter", task_queue="other-q", input=["moon"]),
        overlap_policy="buffer_one",
        jitter_seconds=0,
        max_runs=3,
        memo={"team": "dev"},
        search_attributes={"Env": "test"},
        note="tuned",
    )
    out["updated"] = plain(await client.describe_schedule("nightly"))
    await client.update_schedule("nightly", note="only the note")
    out["note_only"] = plain(await client.describe_schedule("nightly"))

    await client.pause_schedule("nightly", note="maintenance")
    out["paused"] = plain(await client.describe_schedule("nightly"))
    await client.pause_schedule("nightly")  # already paused: no-op
    out["paused_again"] = plain(await client.describe_schedule("nightly"))
    await client.resume_schedule("nightly", note="back")
    out["resumed"] = plain(await client.describe_schedule("nightly"))
    await client.resume_schedule("nightly")  # already active: no-op
    out["resumed_again"] = plain(await client.describe_schedule("nightly"))

    await client.delete_schedule("nightly")
    out["after_delete"] = {
        "describe": await refused(client.describe_schedule("nightly")),
        "delete": await refused(client.delete_schedule("nightly")),
        "pause": await refused(client.pause_schedule("nightly")),
        "resume": await refused(client.resume_schedule("nightly")),
        "trigger": await refused(client.trigger_schedule("nightly")),
        "update": await refused(client.update_schedule("nightly", note="x")),
        "backfill": await refused(
            client.backfill_schedule(
                "nightly", start_time="2026-04-20T00:00:00Z", end_time="2026-04-20T01:00:00Z"
            )
        ),
        "list": ids(await client.list_schedules()),
        "history": [e["event_type"] for e in await events(client, "nightly")],
    }
    out["never_created"] = {
        "describe": await refused(client.describe_schedule("no-such-schedule")),
        "history": await refused(client.get_schedule_history("no-such-schedule")),
    }
    out["held_events"] = [e["event_type"] for e in await events(client, held.schedule_id)]
    out["held_final"] = plain(await client.describe_schedule(held.schedule_id))
    # the id is free again once the schedule is deleted
    again = await client.create_schedule(schedule_id="nightly", spec=HOURLY, action=greeter)
    out["recreated_history"] = [e["event_type"] for e in await events(client, again.schedule_id)]
    return out


async def scenario_trigger_backfill_history(client: Client, queue: str) -> dict[str, Any]:
    """trigger (policy override, paused), backfill windows, history pages. No worker: the
    started runs stay pending, which is what the skip policy needs to see."""
    greeter = ScheduleAction(
        workflow_type="greeter", task_queue=queue, input=["world"], execution_timeout_seconds=600
    )
    out: dict[str, Any] = {}
    await client.create_schedule(
        schedule_id="manual", spec=HOURLY, action=greeter, overlap_policy="skip", memo={"m": 1}
    )
    first = await client.trigger_schedule("manual")
    out["first"] = plain(first)
    out["second"] = plain(await client.trigger_schedule("manual"))
    out["override"] = plain(await client.trigger_schedule("manual", overlap_policy="allow_all"))
    out["bad_override"] = await refused(
        client.trigger_schedule("manual", overlap_policy="sometimes")
    )
    await client.pause_schedule("manual")
    out["while_paused"] = plain(await client.trigger_schedule("manual"))
    await client.resume_schedule("manual")
    out["describe"] = plain(await client.describe_schedule("manual"))
    started = await client.describe_workflow(first.workflow_id or "")
    out["started"] = plain(started)

    out["page1"] = plain(await client.get_schedule_history("manual", limit=3))
    out["page2"] = plain(await client.get_schedule_history("manual", limit=3, after_sequence=3))
    out["page3"] = plain(await client.get_schedule_history("manual", limit=3, after_sequence=6))
    out["iterated"] = [
        (e.sequence, e.event_type) async for e in client.iter_schedule_history("manual", limit=2)
    ]
    out["iterated_after"] = [
        e.sequence async for e in client.iter_schedule_history("manual", limit=2, after_sequence=4)
    ]
    out["whole"] = plain(await client.get_schedule_history("manual"))
    out["bad_limit"] = await refused_value(client.get_schedule_history("manual", limit=0))

    half_hourly = ScheduleSpec(intervals=[{"every": "PT30M"}])
    await client.create_schedule(
        schedule_id="bf", spec=half_hourly, action=greeter, overlap_policy="allow_all"
    )
    out["backfill"] = plain(
        await client.backfill_schedule(
            "bf", start_time="2026-04-20T00:00:00Z", end_time="2026-04-20T02:00:00Z"
        )
    )
    out["backfill_skip"] = plain(
        await client.backfill_schedule(
            "bf",
            start_time="2026-04-21T00:00:00+00:00",
            end_time="2026-04-21T01:00:00+00:00",
            overlap_policy="skip",
        )
    )
    out["bf_describe"] = plain(await client.describe_schedule("bf"))
    out["bf_triggered"] = await triggered(client, "bf")
    await client.pause_schedule("bf")
    out["backfill_paused"] = plain(
        await client.backfill_schedule(
            "bf", start_time="2026-04-22T00:00:00Z", end_time="2026-04-22T01:00:00Z"
        )
    )
    out["bf_bad_range"] = await refused(
        client.backfill_schedule(
            "bf", start_time="2026-04-20T02:00:00Z", end_time="2026-04-20T01:00:00Z"
        )
    )
    await client.create_schedule(
        schedule_id="limited",
        spec=half_hourly,
        action=greeter,
        overlap_policy="allow_all",
        max_runs=2,
    )
    out["limited"] = plain(
        await client.backfill_schedule(
            "limited", start_time="2026-04-20T00:00:00Z", end_time="2026-04-20T02:00:00Z"
        )
    )
    out["limited_after"] = await refused(client.describe_schedule("limited"))
    out["limited_events"] = [
        (e["event_type"], (e["payload"] or {}).get("reason"))
        for e in await events(client, "limited")
    ]
    return out


async def refused_value(call: Awaitable[Any]) -> dict[str, Any]:
    """Like :func:`refused`, for the SDK's own argument checks (ValueError)."""
    try:
        value = await call
    except ValueError as exc:
        return {"type": type(exc).__name__, "message": str(exc)}
    return {"type": None, "value": plain(value)}


async def scenario_handle(client: Client, queue: str) -> dict[str, Any]:
    """Every ScheduleHandle method, on a handle from create and one from get_schedule_handle."""
    greeter = ScheduleAction(workflow_type="greeter", task_queue=queue, input=["world"])
    out: dict[str, Any] = {}
    created = await client.create_schedule(
        schedule_id="handled", spec=HOURLY, action=greeter, overlap_policy="skip"
    )
    handle = client.get_schedule_handle("handled")
    out["describe"] = plain(await created.describe())
    await handle.update(note="via handle", overlap_policy="allow_all", memo={"k": "v"})
    out["updated"] = plain(await handle.describe())
    await handle.pause(note="paused via handle")
    out["paused"] = plain(await handle.describe())
    await handle.resume(note="resumed via handle")
    out["resumed"] = plain(await handle.describe())
    out["trigger1"] = plain(await handle.trigger())
    out["trigger2"] = plain(await handle.trigger())  # allow_all: a second run at once
    out["trigger_skip"] = plain(await handle.trigger(overlap_policy="skip"))
    out["backfill"] = plain(
        await handle.backfill(start_time="2026-04-20T00:00:00Z", end_time="2026-04-20T03:00:00Z")
    )
    out["history"] = plain(await handle.history(limit=2))
    out["history_next"] = plain(await handle.history(limit=2, after_sequence=2))
    out["iterated"] = [(e.sequence, e.event_type) async for e in handle.iter_history(limit=3)]
    out["counted"] = plain(await handle.describe())
    await handle.delete()
    out["after_delete"] = await refused(created.describe())
    out["delete_again"] = await refused(handle.delete())
    out["history_after_delete"] = [e.event_type async for e in handle.iter_history()]
    out["missing_handle"] = await refused(client.get_schedule_handle("ghost").describe())
    return out


# --- scenarios with a worker -------------------------------------------------------------------
async def scenario_fires(client: Client, queue: str) -> dict[str, Any]:
    """A 1-second interval schedule fires on its own, a real worker completes the greeter;
    pause stops the fires, resume starts them again."""
    out: dict[str, Any] = {}
    async with worker_for(client, queue):
        handle = await client.create_schedule(
            schedule_id="ticker",
            spec=EVERY_SECOND,
            action=ScheduleAction(workflow_type="greeter", task_queue=queue, input=["world"]),
            overlap_policy="allow_all",
            memo={"from": "schedule"},
            search_attributes={"Env": "prod"},
        )
        out["created"] = plain(await handle.describe())
        await fires_at_least(client, "ticker", 1, timeout=5)
        first = (await triggered(client, "ticker"))[0]
        out["first"] = first
        wid, rid = first["workflow_instance_id"], first["workflow_run_id"]
        result_handle = client.get_workflow_handle(wid, run_id=rid)
        out["result"] = await client.get_result(result_handle, timeout=15.0, poll_interval=0.1)
        out["run"] = plain(await client.describe_workflow_run(wid, rid))
        out["workflow"] = plain(await client.describe_workflow(wid))
        await fires_at_least(client, "ticker", 2, timeout=5)

        await handle.pause()
        out["paused_fires"] = (await handle.describe()).fires_count
        await asyncio.sleep(2.5)
        out["later_fires"] = (await handle.describe()).fires_count
        out["events_at_pause"] = await events(client, "ticker")
        await handle.resume()
        out["resumed_fires"] = (
            await fires_at_least(client, "ticker", out["later_fires"] + 1, timeout=5)
        ).fires_count
        await handle.pause()
        out["events"] = await events(client, "ticker")
        out["final"] = plain(await handle.describe())
        # every run the schedule started completes with the greeting
        results = []
        for event in out["events"]:
            if event["event_type"] == "ScheduleTriggered":
                h = client.get_workflow_handle(event["workflow_instance_id"])
                results.append(await client.get_result(h, timeout=15.0, poll_interval=0.1))
        out["results"] = results
    return out


async def scenario_overlap_skip(client: Client, queue: str) -> dict[str, Any]:
    """skip, with the scheduler's own fires: while the first gate run waits, each fire is
    skipped; once it completes, the next fire starts a new run."""
    out: dict[str, Any] = {}
    async with worker_for(client, queue):
        await client.create_schedule(
            schedule_id="skipper",
            spec=EVERY_SECOND,
            action=ScheduleAction(workflow_type="gate", task_queue=queue, input=["skip"]),
            overlap_policy="skip",
        )
        await fires_at_least(client, "skipper", 1, timeout=5)
        first = (await triggered(client, "skipper"))[0]["workflow_instance_id"]
        out["first"] = await running_gate(client, first)

        async def skipped_twice() -> Any:
            d = await client.describe_schedule("skipper")
            return d if (d.info or {}).get("skipped_trigger_count", 0) >= 2 else None

        out["while_running"] = plain(
            await until(skipped_twice, timeout=6, what="two skipped fires")
        )
        out["first_still"] = await run_info(client, first)
        out["first_result"] = await release(client, first)
        out["first_closed"] = await run_info(client, first)
        after = await fires_at_least(client, "skipper", 2, timeout=5)
        await client.pause_schedule("skipper")
        out["after"] = plain(after)
        # the new run is "running" until a worker took its first task; wait for its gate
        out["second"] = await running_gate(client, after.latest_workflow_instance_id or "")
        out["events"] = await events(client, "skipper")
    return out


async def scenario_overlap_allow_all(client: Client, queue: str) -> dict[str, Any]:
    """allow_all, with the scheduler's own fires: two gate runs are open at once."""
    out: dict[str, Any] = {}
    async with worker_for(client, queue):
        await client.create_schedule(
            schedule_id="everyone",
            spec=EVERY_SECOND,
            action=ScheduleAction(workflow_type="gate", task_queue=queue, input=["all"]),
            overlap_policy="allow_all",
        )
        await fires_at_least(client, "everyone", 2, timeout=6)
        await client.pause_schedule("everyone")
        fired = [e["workflow_instance_id"] for e in await triggered(client, "everyone")]
        out["runs"] = [await running_gate(client, wid) for wid in fired[:2]]
        out["results"] = [await release(client, wid) for wid in fired]
        out["events"] = await events(client, "everyone")
    return out


async def scenario_overlap_buffer(client: Client, queue: str, policy: str) -> dict[str, Any]:
    """buffer_one / buffer_all, with manual triggers: fires during a run are buffered and
    start one by one, each after the run before it completed."""
    out: dict[str, Any] = {}
    extra = 2 if policy == "buffer_one" else 3
    async with worker_for(client, queue):
        sid = policy.replace("_", "-")
        await client.create_schedule(
            schedule_id=sid,
            spec=HOURLY,
            action=ScheduleAction(workflow_type="gate", task_queue=queue, input=[policy]),
            overlap_policy=policy,
        )
        first = await client.trigger_schedule(sid)
        out["first"] = plain(first)
        await running_gate(client, first.workflow_id or "")
        out["more"] = [plain(await client.trigger_schedule(sid)) for _ in range(extra)]
        out["buffered"] = plain(await client.describe_schedule(sid))
        runs = [await run_info(client, first.workflow_id or "")]
        states = []
        current = first.workflow_id or ""
        results = []
        for n in range(2, 2 + len(out["buffered"]["info"]["buffered_actions"])):
            results.append(await release(client, current))
            runs[-1] = await run_info(client, current)
            state = await fires_at_least(client, sid, n, timeout=6)
            states.append(plain(state))
            current = state.latest_workflow_instance_id or ""
            runs.append(await running_gate(client, current))
        results.append(await release(client, current))
        runs[-1] = await run_info(client, current)
        out["states"] = states
        out["runs"] = runs
        out["results"] = results
        await asyncio.sleep(1.2)  # a drain pass after the last run closed starts nothing
        out["final"] = plain(await client.describe_schedule(sid))
        out["events"] = await events(client, sid)
    return out


async def scenario_overlap_close(client: Client, queue: str, policy: str) -> dict[str, Any]:
    """cancel_other / terminate_other: the second fire closes the running first run."""
    out: dict[str, Any] = {}
    async with worker_for(client, queue):
        sid = policy.replace("_", "-")
        await client.create_schedule(
            schedule_id=sid,
            spec=HOURLY,
            action=ScheduleAction(workflow_type="gate", task_queue=queue, input=[policy]),
            overlap_policy=policy,
        )
        first = await client.trigger_schedule(sid)
        out["first"] = plain(first)
        await running_gate(client, first.workflow_id or "")
        second = await client.trigger_schedule(sid)
        out["second"] = plain(second)
        try:
            out["first_result"] = await client.get_result(
                client.get_workflow_handle(first.workflow_id or ""), timeout=10.0
            )
        except (WorkflowCancelled, WorkflowTerminated) as exc:
            out["first_error"] = {"type": type(exc).__name__, "message": str(exc)}
        out["first_run"] = await run_info(client, first.workflow_id or "")
        out["second_run"] = await running_gate(client, second.workflow_id or "")
        await client.delete_schedule(sid)
        out["after_delete"] = await run_info(client, second.workflow_id or "")
        out["second_result"] = await release(client, second.workflow_id or "")
        out["events"] = await events(client, sid)
    return out


SCENARIOS: dict[str, Callable[[Client, str], Awaitable[dict[str, Any]]]] = {
    "client-calls": scenario_client_calls,
    "trigger-backfill-history": scenario_trigger_backfill_history,
    "handle": scenario_handle,
    "fires": scenario_fires,
    "overlap-skip": scenario_overlap_skip,
    "overlap-allow_all": scenario_overlap_allow_all,
}
for _policy in ("buffer_one", "buffer_all"):
    SCENARIOS[f"overlap-{_policy}"] = lambda c, q, p=_policy: scenario_overlap_buffer(c, q, p)
for _policy in ("cancel_other", "terminate_other"):
    SCENARIOS[f"overlap-{_policy}"] = lambda c, q, p=_policy: scenario_overlap_close(c, q, p)


async def main(scenario: str, url: str, token: str) -> dict[str, Any]:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with Client(url, token=token, namespace="default") as client:
        return await SCENARIOS[scenario](client, queue)


if __name__ == "__main__":
    print_result(main, timeout_s=60)
