"""SDK 2.12.0 schedules against dwtrio: every schedule client and ScheduleHandle call, the
scheduler firing on its own, and each overlap policy with a real worker running the
started workflows (driver in a subprocess, see ``schedules_driver.py``).

The long-running workflow is ``gate``: it waits on a condition until it is sent the
``release`` signal, so a test decides exactly when a run ends.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest

from conftest import RunningServer, StartServer
from sdk_helpers import run_driver, start_sdk_server

DRIVER = "schedules_driver.py"

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    return await start_sdk_server(start_server)


def at(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event_type"] == event_type]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_type"] for e in events]


def not_found(refusal: dict[str, Any], schedule_id: str) -> bool:
    return refusal["type"] == "ScheduleNotFound" and refusal["schedule_id"] == schedule_id


# --- the client calls, no worker ------------------------------------------------------------
async def test_create_list_describe_update_pause_resume_delete(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "client-calls")

    # create with every option, then describe: the flat fields SDK 2.12.0 reads
    assert out["created_id"] == "nightly"
    d = out["describe"]
    assert d["schedule_id"] == "nightly" and d["status"] == "active"
    assert d["spec"] == {"cron_expressions": ["0 * * * *"], "timezone": "UTC"}
    assert d["action"]["workflow_type"] == "greeter"
    assert d["action"]["input"]["codec"] == "avro"  # the SDK's envelope, stored as sent
    assert d["overlap_policy"] == "allow_all" and d["note"] == "first"
    assert d["memo"] == {"team": "ops"} and d["search_attributes"] == {"Env": "prod"}
    assert (d["jitter_seconds"], d["max_runs"], d["remaining_actions"]) == (30, 5, 5)
    assert (d["fires_count"], d["failures_count"]) == (0, 0)
    assert d["last_fired_at"] is None and d["paused_at"] is None
    assert d["created_at"] and d["updated_at"]
    assert d["info"]["recent_actions"] == [] and d["info"]["buffered_actions"] == []
    # the next full hour, plus at most the 30 s of jitter
    hour = at(out["before_create"]).replace(minute=0, second=0, microsecond=0)
    hour += timedelta(hours=1)
    assert hour <= at(d["next_fire_at"]) <= hour + timedelta(seconds=30)
    assert d["info"]["next_fire"] == d["next_fire_at"]

    # paused=True with no schedule_id: a generated id, paused from the start, never fired
    generated = out["generated_id"]
    assert generated and generated not in ("nightly", "None")
    held = out["held"]
    assert held["schedule_id"] == generated and held["status"] == "paused"
    assert held["paused_at"] and held["note"] == "held back"
    assert held["spec"] == {"intervals": [{"every": "PT1S"}], "timezone": "UTC"}
    assert out["held_events"] == ["ScheduleCreated", "SchedulePaused"]
    assert out["held_final"]["fires_count"] == 0 and out["held_final"]["status"] == "paused"

    # SDK 2.12.0 builds ScheduleAlreadyExists from the request's context, which
    # create_schedule leaves empty: the exception's schedule_id is "" whatever the server says.
    assert out["duplicate"]["type"] == "ScheduleAlreadyExists", out["duplicate"]

    # list: newest first, filters with AND semantics, pages of page_size with a token
    everyone = ["billing-2", "billing-1", "billing-0", generated, "nightly"]
    assert out["list_all"] == everyone and out["list_all_token"] is None
    assert out["list_paused"] == [generated]
    assert out["list_active"] == ["billing-2", "billing-1", "billing-0", "nightly"]
    assert out["list_billing"] == ["billing-2", "billing-1", "billing-0"]
    assert out["list_none"] == []
    assert out["pages"] == [everyone[0:2], everyone[2:4], everyone[4:]]
    assert out["billing_pages"] == [["billing-2", "billing-1"], ["billing-0"]]
    item = out["list_item"]
    assert item["status"] == "active" and item["overlap_policy"] == "allow_all"
    assert item["next_fire_at"] == d["next_fire_at"] and item["created_at"] == d["created_at"]
    assert item["memo"] == {"team": "ops"} and item["spec"] == d["spec"]
    assert (item["jitter_seconds"], item["max_runs"], item["remaining_actions"]) == (30, 5, 5)
    mismatch = out["token_other_filters"]
    assert mismatch["type"] == "ScheduleListError" and mismatch["status"] == 400
    assert mismatch["body"]["reason"] == "schedule_page_token_filter_mismatch"
    query = out["query_filter"]
    assert query["type"] == "ScheduleListError" and query["status"] == 422
    assert query["body"]["reason"] == "unsupported_schedule_list_filter"
    junk = out["junk_token"]
    assert junk["type"] == "ScheduleListError" and junk["status"] == 400
    assert junk["body"]["reason"] == "malformed_schedule_page_token"
    for bad, field in ((out["page_size_zero"], "page_size"), (out["status_deleted"], "status")):
        assert bad["type"] == "ScheduleListError" and bad["status"] == 422, bad
        assert bad["body"]["reason"] == "validation_failed" and field in bad["body"]["errors"]

    # update: spec replaced, action merged, the rest replaced
    u = out["updated"]
    assert u["spec"] == {"cron_expressions": ["30 7 * * *"], "timezone": "Asia/Tokyo"}
    assert u["action"]["task_queue"] == "other-q" and u["action"]["workflow_type"] == "greeter"
    assert u["action"]["input"] != d["action"]["input"]
    assert u["overlap_policy"] == "buffer_one" and u["note"] == "tuned"
    assert u["memo"] == {"team": "dev"} and u["search_attributes"] == {"Env": "test"}
    assert (u["jitter_seconds"], u["max_runs"], u["remaining_actions"]) == (0, 3, 3)
    nxt = at(u["next_fire_at"])
    assert (nxt.hour, nxt.minute, nxt.second) == (22, 30, 0)  # 07:30 in Tokyo, no jitter
    only_note = out["note_only"]
    assert only_note["note"] == "only the note"
    assert {k: v for k, v in only_note.items() if k not in ("note", "updated_at")} == {
        k: v for k, v in u.items() if k not in ("note", "updated_at")
    }

    # pause / resume, each twice (the second is a no-op)
    assert out["paused"]["status"] == "paused" and out["paused"]["paused_at"]
    assert out["paused"]["note"] == "maintenance"
    assert out["paused_again"]["status"] == "paused"
    assert out["paused_again"]["paused_at"] == out["paused"]["paused_at"]
    assert out["paused_again"]["note"] == "maintenance"
    for resumed in (out["resumed"], out["resumed_again"]):
        assert resumed["status"] == "active" and resumed["paused_at"] is None
        assert resumed["note"] == "back" and resumed["next_fire_at"]

    # delete: every call on the schedule is ScheduleNotFound; its history outlives it
    gone = out["after_delete"]
    for call in ("describe", "delete", "pause", "resume", "trigger", "update", "backfill"):
        assert not_found(gone[call], "nightly"), (call, gone[call])
    assert gone["list"] == everyone[:4]
    assert gone["history"] == [
        "ScheduleCreated",
        "ScheduleUpdated",
        "ScheduleUpdated",
        "SchedulePaused",
        "ScheduleResumed",
        "ScheduleDeleted",
    ]
    assert not_found(out["never_created"]["describe"], "no-such-schedule")
    assert not_found(out["never_created"]["history"], "no-such-schedule")
    # a deleted schedule's id can be taken again, with a history of its own
    assert out["recreated_history"] == ["ScheduleCreated"]


async def test_trigger_backfill_and_history_pages(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "trigger-backfill-history")

    # trigger: the first starts a run; skip refuses a second while it is still pending;
    # an allow_all override starts one anyway; a paused schedule is not triggerable
    first = out["first"]
    assert first["outcome"] == "triggered" and first["workflow_id"] and first["run_id"]
    assert out["second"] == {
        "schedule_id": "manual",
        "outcome": "skipped",
        "workflow_id": None,
        "run_id": None,
        "reason": "overlap_policy_skip",
        "buffer_depth": None,
    }
    override = out["override"]
    assert override["outcome"] == "triggered"
    assert override["workflow_id"] not in (None, first["workflow_id"])
    assert out["bad_override"]["type"] == "InvalidArgument"
    assert out["while_paused"]["outcome"] == "skipped"
    assert out["while_paused"]["reason"] == "status_not_triggerable"
    d = out["describe"]
    assert d["fires_count"] == 2 and d["latest_workflow_instance_id"] == override["workflow_id"]
    assert d["info"]["skipped_trigger_count"] == 2
    assert d["info"]["last_skip_reason"] == "status_not_triggerable"
    assert [a["workflow_id"] for a in d["info"]["recent_actions"]] == [
        first["workflow_id"],
        override["workflow_id"],
    ]
    # the started workflow carries the action and the schedule's memo
    started = out["started"]
    assert started["workflow_type"] == "greeter" and started["status"] == "pending"
    assert started["input"] == ["world"] and started["memo"] == {"m": 1}

    # history: limit pages with next_cursor / has_more, iter_schedule_history walks them all
    expected = [
        (1, "ScheduleCreated"),
        (2, "ScheduleTriggered"),
        (3, "ScheduleTriggerSkipped"),
        (4, "ScheduleTriggered"),
        (5, "SchedulePaused"),
        (6, "ScheduleTriggerSkipped"),
        (7, "ScheduleResumed"),
    ]
    pages = [out["page1"], out["page2"], out["page3"]]
    assert [[e["sequence"] for e in p["events"]] for p in pages] == [[1, 2, 3], [4, 5, 6], [7]]
    assert [(p["has_more"], p["next_cursor"]) for p in pages] == [
        (True, 3),
        (True, 6),
        (False, None),
    ]
    assert all(p["schedule_id"] == "manual" and p["namespace"] == "default" for p in pages)
    assert [tuple(x) for x in out["iterated"]] == expected
    assert out["iterated_after"] == [5, 6, 7]
    whole = out["whole"]["events"]
    assert [(e["sequence"], e["event_type"]) for e in whole] == expected
    fired = whole[1]
    assert fired["workflow_instance_id"] == first["workflow_id"]
    assert fired["workflow_run_id"] == first["run_id"]
    assert fired["payload"]["trigger_number"] == 1 and fired["payload"]["outcome"] == "scheduled"
    assert whole[3]["payload"]["effective_overlap_policy"] == "allow_all"
    assert whole[2]["payload"]["reason"] == "overlap_policy_skip"
    assert whole[0]["payload"]["command_context"]["server"]["command"] == "create"
    assert out["bad_limit"]["type"] == "ValueError"  # the SDK's own check

    # backfill: one run per occurrence in [start, end); skip against a pending run skips
    bf = out["backfill"]
    assert bf["outcome"] == "backfill_started" and bf["fires_attempted"] == 4
    assert [r["fire_time"] for r in bf["results"]] == [
        "2026-04-20T00:00:00+00:00",
        "2026-04-20T00:30:00+00:00",
        "2026-04-20T01:00:00+00:00",
        "2026-04-20T01:30:00+00:00",
    ]
    assert [r["outcome"] for r in bf["results"]] == ["started"] * 4
    assert len({r["workflow_id"] for r in bf["results"]}) == 4
    assert [r["outcome"] for r in out["backfill_skip"]["results"]] == ["skipped", "skipped"]
    assert out["backfill_skip"]["results"][0]["reason"] == "overlap_policy_skip"
    assert out["bf_describe"]["fires_count"] == 4
    backfilled = out["bf_triggered"]
    assert [e["payload"]["outcome"] for e in backfilled] == ["backfilled"] * 4
    assert [e["payload"]["occurrence_time"] for e in backfilled] == [
        r["fire_time"] for r in bf["results"]
    ]
    assert [e["workflow_instance_id"] for e in backfilled] == [
        r["workflow_id"] for r in bf["results"]
    ]
    paused = out["backfill_paused"]
    assert [(r["outcome"], r.get("reason")) for r in paused["results"]] == [
        ("skipped", "status_not_triggerable")
    ] * 2
    assert out["bf_bad_range"]["type"] == "InvalidArgument"
    # max_runs=2: the backfill stops after two starts and the schedule is gone
    limited = out["limited"]
    assert limited["fires_attempted"] == 2
    assert [r["outcome"] for r in limited["results"]] == ["started", "started"]
    assert not_found(out["limited_after"], "limited")
    assert [tuple(x) for x in out["limited_events"]] == [
        ("ScheduleCreated", None),
        ("ScheduleTriggered", None),
        ("ScheduleTriggered", None),
        ("ScheduleDeleted", "max_runs_exhausted"),
    ]


async def test_schedule_handle_methods(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "handle")
    assert out["describe"]["schedule_id"] == "handled"
    assert out["describe"]["overlap_policy"] == "skip"
    u = out["updated"]
    assert u["note"] == "via handle" and u["overlap_policy"] == "allow_all"
    assert u["memo"] == {"k": "v"} and u["spec"] == out["describe"]["spec"]
    assert out["paused"]["status"] == "paused" and out["paused"]["note"] == "paused via handle"
    assert out["resumed"]["status"] == "active" and out["resumed"]["note"] == "resumed via handle"
    assert out["trigger1"]["outcome"] == out["trigger2"]["outcome"] == "triggered"
    assert out["trigger1"]["workflow_id"] != out["trigger2"]["workflow_id"]
    assert out["trigger_skip"]["outcome"] == "skipped"
    assert out["trigger_skip"]["reason"] == "overlap_policy_skip"
    bf = out["backfill"]
    assert bf["schedule_id"] == "handled" and bf["fires_attempted"] == 3  # 00:00, 01:00, 02:00
    assert [r["outcome"] for r in bf["results"]] == ["started"] * 3
    assert out["counted"]["fires_count"] == 5
    h, nxt = out["history"], out["history_next"]
    assert [e["sequence"] for e in h["events"]] == [1, 2] and h["has_more"] is True
    assert h["next_cursor"] == 2
    assert [e["event_type"] for e in nxt["events"]] == ["SchedulePaused", "ScheduleResumed"]
    assert nxt["events"][0]["payload"]["reason"] == "paused via handle"
    lifecycle = [
        "ScheduleCreated",
        "ScheduleUpdated",
        "SchedulePaused",
        "ScheduleResumed",
        "ScheduleTriggered",
        "ScheduleTriggered",
        "ScheduleTriggerSkipped",
        "ScheduleTriggered",
        "ScheduleTriggered",
        "ScheduleTriggered",
    ]
    assert [tuple(x) for x in out["iterated"]] == list(enumerate(lifecycle, start=1))
    assert not_found(out["after_delete"], "handled")
    assert not_found(out["delete_again"], "handled")
    assert out["history_after_delete"] == [*lifecycle, "ScheduleDeleted"]
    assert not_found(out["missing_handle"], "ghost")


# --- the scheduler and a real worker -------------------------------------------------------
async def test_an_interval_schedule_fires_on_time_and_pause_stops_it(
    sdk_server: RunningServer,
) -> None:
    out = await run_driver(sdk_server, DRIVER, "fires")
    due = at(out["created"]["next_fire_at"])
    assert due > at(out["created"]["created_at"]) - timedelta(seconds=1)

    # the first fire: the occurrence it was due for, started within a second of it
    first = out["first"]["payload"]
    assert first["outcome"] == "scheduled" and first["trigger_number"] == 1
    assert at(first["occurrence_time"]) == due and at(first["due_at"]) == due
    assert 0 <= first["fire_lag_ms"] < 1000, first
    started = at(out["run"]["started_at"])
    assert due <= started < due + timedelta(seconds=1), (due, started)

    # the real worker ran the greeter; the run carries the schedule's memo and attributes
    assert out["result"] == "Hello, world!"
    run = out["run"]
    assert run["status"] == "completed" and run["workflow_type"] == "greeter"
    assert run["input"] == ["world"] and run["output"] == "Hello, world!"
    assert out["workflow"]["memo"] == {"from": "schedule"}
    assert out["workflow"]["search_attributes"] == {"Env": "prod"}

    # pause stops the fires: the count holds over 2.5 s, and no fire between pause and resume
    assert out["paused_fires"] >= 2
    assert out["later_fires"] == out["paused_fires"]
    assert types(out["events_at_pause"])[-1] == "SchedulePaused"
    events = out["events"]
    paused_at = types(events).index("SchedulePaused")
    resumed_at = types(events).index("ScheduleResumed")
    assert resumed_at == paused_at + 1, types(events)
    # resume fires again, from the next occurrence after the resume
    assert out["resumed_fires"] == out["paused_fires"] + 1
    after = of_type(events[resumed_at:], "ScheduleTriggered")
    assert after, types(events)
    assert after[0]["payload"]["occurrence_time"] == events[resumed_at]["payload"]["next_fire_at"]

    # one fire per occurrence, a second apart, each on time; each run completed
    fires = [e["payload"] for e in of_type(events, "ScheduleTriggered")]
    assert [f["trigger_number"] for f in fires] == list(range(1, len(fires) + 1))
    before_pause = [at(f["occurrence_time"]) for f in fires[: out["paused_fires"]]]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(before_pause)]
    assert gaps == [1.0] * (len(before_pause) - 1)
    assert all(0 <= f["fire_lag_ms"] < 1000 for f in fires), fires
    assert out["results"] == ["Hello, world!"] * len(fires)
    assert out["final"]["fires_count"] == len(fires) and out["final"]["status"] == "paused"
    assert [a["outcome"] for a in out["final"]["info"]["recent_actions"]] == ["scheduled"] * len(
        fires
    )


async def test_skip_skips_fires_while_a_run_is_going(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "overlap-skip")
    first = out["first"]
    assert first["status"] == "waiting"
    running = out["while_running"]
    assert running["fires_count"] == 1
    assert running["info"]["skipped_trigger_count"] >= 2
    assert running["info"]["last_skip_reason"] == "overlap_policy_skip"
    assert out["first_still"]["status"] == "waiting"  # skipping left the run alone
    assert out["first_result"] == "skip released"
    closed = at(out["first_closed"]["closed_at"])

    events = out["events"]
    fired = of_type(events, "ScheduleTriggered")
    skipped = of_type(events, "ScheduleTriggerSkipped")
    assert [e["workflow_instance_id"] for e in fired[:1]] == [first["workflow_id"]]
    assert len(skipped) >= 2
    assert all(e["payload"]["reason"] == "overlap_policy_skip" for e in skipped)
    # every skip happened while the first run was going; the next fire came after it closed
    start = at(first["started_at"]).replace(microsecond=0)
    assert all(start <= at(e["recorded_at"]) <= closed for e in skipped), (start, closed)
    second = out["second"]
    assert len(fired) == 2 and fired[1]["workflow_instance_id"] == second["workflow_id"]
    assert at(fired[1]["payload"]["occurrence_time"]) > closed - timedelta(seconds=1)
    assert at(second["started_at"]) >= closed
    assert second["status"] == "waiting"  # pausing the schedule left it running
    assert out["after"]["fires_count"] == 2


async def test_allow_all_runs_two_at_once(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "overlap-allow_all")
    one, two = out["runs"]
    assert one["workflow_id"] != two["workflow_id"]
    assert one["status"] == two["status"] == "waiting"  # both open at the same time
    assert one["closed_at"] is None and two["closed_at"] is None
    fired = of_type(out["events"], "ScheduleTriggered")
    assert len(fired) >= 2 and not of_type(out["events"], "ScheduleTriggerSkipped")
    assert all(e["payload"]["effective_overlap_policy"] == "allow_all" for e in fired)
    assert out["results"] == ["all released"] * len(fired)


@pytest.mark.parametrize("policy", ["buffer_one", "buffer_all"])
async def test_buffered_fires_start_one_by_one_after_the_run(
    sdk_server: RunningServer, policy: str
) -> None:
    out = await run_driver(sdk_server, DRIVER, f"overlap-{policy}")
    assert out["first"]["outcome"] == "triggered"
    more = [(m["outcome"], m["buffer_depth"]) for m in out["more"]]
    if policy == "buffer_one":
        # one fire is buffered, the next one finds the buffer full
        assert more == [("buffered", 1), ("buffer_full", None)]
        assert out["more"][1]["reason"]
        assert out["buffered"]["info"]["last_skip_reason"] == "buffer_full"
        assert out["buffered"]["info"]["skipped_trigger_count"] == 1
    else:
        assert more == [("buffered", 1), ("buffered", 2), ("buffered", 3)]
    buffered = len(out["more"]) if policy == "buffer_all" else 1
    assert out["buffered"]["fires_count"] == 1
    assert len(out["buffered"]["info"]["buffered_actions"]) == buffered

    # each completion starts exactly one buffered fire: the buffer shrinks by one a time
    states = out["states"]
    assert [s["fires_count"] for s in states] == list(range(2, 2 + buffered))
    assert [len(s["info"]["buffered_actions"]) for s in states] == list(range(buffered - 1, -1, -1))
    assert all(s["info"]["recent_actions"][-1]["outcome"] == "drained" for s in states)
    runs = out["runs"]
    assert len(runs) == 1 + buffered and len({r["workflow_id"] for r in runs}) == len(runs)
    assert all(r["status"] == "completed" for r in runs)
    for before, after in itertools.pairwise(runs):
        assert at(after["started_at"]) >= at(before["closed_at"]), (before, after)
    assert out["results"] == [f"{policy} released"] * len(runs)

    # nothing left to start once the buffer is empty
    assert out["final"]["fires_count"] == len(runs)
    assert out["final"]["info"]["buffered_actions"] == []
    fired = [e["payload"] for e in of_type(out["events"], "ScheduleTriggered")]
    assert [f["outcome"] for f in fired] == ["scheduled"] + ["drained"] * buffered
    assert [f["trigger_number"] for f in fired] == list(range(1, len(runs) + 1))
    assert [e["workflow_instance_id"] for e in of_type(out["events"], "ScheduleTriggered")] == [
        r["workflow_id"] for r in runs
    ]


@pytest.mark.parametrize(
    ("policy", "status", "error"),
    [
        ("cancel_other", "cancelled", "WorkflowCancelled"),
        ("terminate_other", "terminated", "WorkflowTerminated"),
    ],
)
async def test_a_new_fire_closes_the_running_one(
    sdk_server: RunningServer, policy: str, status: str, error: str
) -> None:
    out = await run_driver(sdk_server, DRIVER, f"overlap-{policy}")
    first, second = out["first"], out["second"]
    assert first["outcome"] == second["outcome"] == "triggered"
    assert second["workflow_id"] != first["workflow_id"]
    assert out["first_error"]["type"] == error, out
    assert policy in out["first_error"]["message"]
    assert out["first_run"]["status"] == status
    assert out["second_run"]["status"] == "waiting"
    assert at(out["second_run"]["started_at"]) >= at(out["first_run"]["closed_at"])
    assert out["after_delete"]["status"] == "waiting"  # deleting the schedule left it running
    assert out["second_result"] == f"{policy} released"
    fired = [e["payload"] for e in of_type(out["events"], "ScheduleTriggered")]
    assert [f["effective_overlap_policy"] for f in fired] == [policy, policy]
