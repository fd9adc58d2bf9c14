"""Drill 4: an SDK worker SIGKILLed in the middle of an activity and of a workflow task.

Two ``dwtrio serve`` nodes behind nginx carry the drills' workload (``harness.py``) with
short leases (5 s) and a repair pass every second. At the fault a third SDK worker
process joins, the *victim* (``victim.py``): it serves the steady queue like the others
and a queue of its own with two workflows made to be caught in the middle, beside a
fourth, the *rescuer*, which serves the steady queue too. Once the victim is inside the
``slow-greet`` activity of one and the workflow code of the other (it holds both
leases, and whatever steady work it had), it is SIGKILLed, and the rescuer starts
serving the victim's own queue as well.

After the leases expire, the rescuer finishes both: the activity's attempt 1 ended as a
lost lease (``ActivityRetryScheduled``, "activity lease expired"), attempt 2 ran on the
rescuer and completed, within the retry policy; the workflow task went out again as
``workflow_task_attempt`` 2, once repaired. The steady work the victim held is redelivered
the same way, and the books must be clean (a redelivered activity run is counted and
matched by an attempt the server closed as lost). No node answers a 5xx or holds a poll
past its timeout; the other workers survive.

Figures: ``drill_worker_kill``, with the time from the kill until both caught workflows
completed (lease expiry, repair, the rescuer's poll).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from books import check
from cluster.processes import ProcessCluster, process_cluster
from figures import drill_figures, publish, rounded
from harness import (
    LEASE_S,
    SHORT_LEASES,
    DrillLoad,
    SdkProcess,
    Workload,
    late_polls,
    logged_requests,
    run_drill,
)
from services import redis_server

from dwtrio import payloads
from dwtrio.store.pool import Conn, connect_once

from conftest import CP

pytestmark = [pytest.mark.drill, pytest.mark.sdk, pytest.mark.slow]

VICTIM = Path(__file__).with_name("victim.py")
SETTINGS = SHORT_LEASES
LOAD = DrillLoad(seconds=20.0, rate=6.0, fault_at_s=1.0)
#: The victim takes part in the steady load this long before it is caught.
JOIN_S = 2.0
#: The caught workflows complete within this after the kill.
RESCUE_WITHIN_S = 30.0


@attrs.define
class Kill:
    activity_wf: str = ""
    task_wf: str = ""
    slow_runs: Path | None = None
    victim_leases: dict[str, tuple[str, int]] = attrs.field(factory=dict)  # kind -> owner, attempt
    victim_exit: int | None = None
    rescuer: SdkProcess | None = None


async def start_sdk(w: Workload, role: str, slow_queue: str, slow_runs: Path) -> SdkProcess:
    """A ``victim.py`` process (``role``: victim or rescuer), one of the drill's workers."""
    name = f"worker-{len(w.workers)}"
    out, err = w.workdir / f"{name}.out", w.workdir / f"{name}.err"
    s = w.load_settings
    args = [w.cluster.lb_url, w.cluster.token, w.queue, slow_queue]
    args += [str(s.worker_max_s), str(s.poll_timeout_s), str(w.runs_log(name)), str(slow_runs)]
    with out.open("wb") as o, err.open("wb") as e:
        proc = await trio.lowlevel.open_process(
            [sys.executable, str(VICTIM), role, *args],
            stdin=subprocess.DEVNULL,
            stdout=o,
            stderr=e,
        )
    worker = SdkProcess(name, proc, out, err)
    w.workers.append(worker)
    return worker


async def start(c: httpx.AsyncClient, workflow_id: str, workflow_type: str, queue: str) -> None:
    r = await c.post(
        "/api/workflows",
        json={
            "workflow_id": workflow_id,
            "workflow_type": workflow_type,
            "task_queue": queue,
            "input": [workflow_id],
        },
    )
    assert r.status_code == 201, r.text


async def leased(dsn: str, workflow_id: str, kind: str) -> tuple[str, int] | None:
    """Who holds the lease of the workflow's ``kind`` task, and its attempt."""

    async def op(conn: Conn) -> Any:
        return await conn.fetchrow(
            "SELECT lease_owner, attempt FROM workflow_tasks"
            " WHERE workflow_id = $1 AND kind = $2 AND state = 'leased'",
            workflow_id,
            kind,
        )

    row = await connect_once(dsn, op)
    return None if row is None else (row["lease_owner"], int(row["attempt"]))


async def wait_leased(dsn: str, workflow_id: str, kind: str) -> tuple[str, int]:
    with trio.fail_after(20):
        while (lease := await leased(dsn, workflow_id, kind)) is None:
            await trio.sleep(0.05)
    return lease


def read_slow_runs(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def wait_completed(c: httpx.AsyncClient, workflow_ids: list[str], timeout_s: float) -> None:
    with trio.move_on_after(timeout_s):
        while True:
            statuses = [(await c.get(f"/api/workflows/{wid}")).json() for wid in workflow_ids]
            if all(s.get("status") == "completed" for s in statuses):
                return
            await trio.sleep(0.2)


async def kill_a_worker(cluster: ProcessCluster, dsn: str, w: Workload, k: Kill) -> None:
    slow_queue = f"{w.queue}-slow"
    k.activity_wf, k.task_wf = f"kill-{w.queue}-activity", f"kill-{w.queue}-task"
    k.slow_runs = w.workdir / "slow.runs.jsonl"
    victim = await start_sdk(w, "victim", slow_queue, k.slow_runs)
    k.rescuer = await start_sdk(w, "rescuer", slow_queue, k.slow_runs)  # steady queue only
    await w.wait_for_workers(len(w.workers))
    await trio.sleep(JOIN_S)
    headers = {"Authorization": f"Bearer {cluster.token}", **CP}
    async with httpx.AsyncClient(base_url=cluster.lb_url, headers=headers, timeout=30) as c:
        await start(c, k.activity_wf, "drill-slow-activity", slow_queue)
        k.victim_leases["activity"] = await wait_leased(dsn, k.activity_wf, "activity")
        with trio.fail_after(10):  # the activity really runs
            while not read_slow_runs(k.slow_runs):
                await trio.sleep(0.05)
        await start(c, k.task_wf, "drill-slow-task", slow_queue)
        k.victim_leases["workflow"] = await wait_leased(dsn, k.task_wf, "workflow")
        await trio.sleep(0.5)  # inside the workflow code, which holds it for 30 s
        w.mark("fault")
        victim.kill()
        with trio.fail_after(10):
            k.victim_exit = await victim.proc.wait()
        k.rescuer.proc.send_signal(signal.SIGUSR1)  # it takes the slow queue too
        await wait_completed(c, [k.activity_wf, k.task_wf], RESCUE_WITHIN_S)
        w.mark("fault_end")


@attrs.frozen
class Caught:
    """The two caught workflows, as the database holds them."""

    statuses: dict[str, str]
    outputs: dict[str, Any]
    activity_events: list[tuple[str, dict[str, Any]]]  # (type, payload) of activity events
    attempts: list[tuple[int, str, str]]  # activity attempts: number, status, lease owner
    workflow_tasks: list[tuple[int, int, str]]  # the task workflow's: attempt, repairs, state
    sequences_ok: bool


async def read_caught(dsn: str, k: Kill) -> Caught:
    async def op(conn: Conn) -> Caught:
        runs = {
            r["workflow_id"]: r
            for r in await conn.fetch(
                "SELECT id, workflow_id, status, output, last_history_sequence FROM workflow_runs"
                " WHERE workflow_id = ANY($1)",
                [k.activity_wf, k.task_wf],
            )
        }
        sequences_ok = True
        for run in runs.values():
            seqs = [
                r["sequence"]
                for r in await conn.fetch(
                    "SELECT sequence FROM history_events WHERE run_id = $1 ORDER BY sequence",
                    run["id"],
                )
            ]
            sequences_ok &= seqs == list(range(1, run["last_history_sequence"] + 1))
        activity_run = runs[k.activity_wf]["id"]
        events = await conn.fetch(
            "SELECT event_type, payload FROM history_events"
            " WHERE run_id = $1 AND event_type LIKE 'Activity%' ORDER BY sequence",
            activity_run,
        )
        attempts = await conn.fetch(
            "SELECT attempt_number, status, lease_owner FROM activity_attempts"
            " WHERE run_id = $1 ORDER BY attempt_number",
            activity_run,
        )
        tasks = await conn.fetch(
            "SELECT attempt, repair_count, state FROM workflow_tasks"
            " WHERE run_id = $1 AND kind = 'workflow' ORDER BY created_at",
            runs[k.task_wf]["id"],
        )
        return Caught(
            statuses={wid: r["status"] for wid, r in runs.items()},
            outputs={
                wid: payloads.decode_for_view(r["output"]) if r["output"] else None
                for wid, r in runs.items()
            },
            activity_events=[(e["event_type"], e["payload"]) for e in events],
            attempts=[(a["attempt_number"], a["status"], a["lease_owner"]) for a in attempts],
            workflow_tasks=[(t["attempt"], t["repair_count"], t["state"]) for t in tasks],
            sequences_ok=sequences_ok,
        )

    return await connect_once(dsn, op)


async def test_drill_worker_kill(db_dsn: str, tmp_path: Path) -> None:
    k = Kill()
    async with (
        redis_server(tmp_path / "redis") as redis,
        process_cluster(
            tmp_path / "cluster", dsn=db_dsn, redis_url=redis.url, settings=SETTINGS
        ) as cluster,
    ):

        async def fault(w: Workload) -> None:
            await kill_a_worker(cluster, db_dsn, w, k)

        run = await run_drill(cluster, db_dsn, tmp_path / "load", fault=fault, load=LOAD)
        requests = logged_requests(cluster)

    caught = await read_caught(db_dsn, k)
    books = check(run.lines, run.books, run.activity_runs)
    assert k.slow_runs is not None
    slow_runs = read_slow_runs(k.slow_runs)
    rescued_s = run.marks["fault_end"] - run.marks["fault"]
    figures = {
        "fault": (
            f"an SDK worker SIGKILLed inside an activity and a workflow task "
            f"(leases {LEASE_S} s), replaced by another"
        ),
        **drill_figures(run, books),
        "caught_workflows_rescued_s": rounded(rescued_s, 2),
        "caught_activity_attempts": [[n, status] for n, status, _ in caught.attempts],
        "caught_workflow_task_attempts": [t[0] for t in caught.workflow_tasks],
    }
    publish("drill_worker_kill", figures)

    assert len(run.lines) == run.count
    assert books.acknowledged >= 0.9 * run.count, f"most starts failed: {run.unacked[:5]}"
    books.assert_clean()
    assert [x for x in run.lines if x.get("signal_failed")] == []
    assert k.victim_exit == -9
    # Both caught workflows completed, with their results, gap-free.
    assert caught.statuses == {k.activity_wf: "completed", k.task_wf: "completed"}, caught
    assert caught.outputs == {
        k.activity_wf: f"slowly, {k.activity_wf}",
        k.task_wf: f"done, {k.task_wf}",
    }
    assert caught.sequences_ok
    # The activity: attempt 1 held by the victim and lost with it, attempt 2 by the rescuer.
    victim_owner, first_attempt = k.victim_leases["activity"]
    assert first_attempt == 1
    assert caught.attempts[0] == (1, "timed_out", victim_owner), caught.attempts
    assert [a[:2] for a in caught.attempts] == [(1, "timed_out"), (2, "completed")]
    assert caught.attempts[1][2] != victim_owner
    types = [t for t, _ in caught.activity_events]
    assert types == [
        "ActivityScheduled",
        "ActivityStarted",
        "ActivityRetryScheduled",
        "ActivityStarted",
        "ActivityCompleted",
    ], types
    started = [p["attempt_number"] for t, p in caught.activity_events if t == "ActivityStarted"]
    assert started == [1, 2]
    [retry] = [p for t, p in caught.activity_events if t == "ActivityRetryScheduled"]
    assert retry["message"] == "activity lease expired" and retry["retry_after_attempt"] == 1
    assert [(r["attempt_number"], r["worker_id"]) for r in slow_runs] == [
        (1, victim_owner),
        (2, caught.attempts[1][2]),
    ]
    # The workflow task: leased once to the victim, repaired, completed at attempt 2.
    assert k.victim_leases["workflow"][1] == 1
    assert caught.workflow_tasks == [(2, 1, "completed")], caught.workflow_tasks
    assert rescued_s < RESCUE_WITHIN_S
    # The nodes saw nothing wrong; the other workers carried on.
    errors = [r.line for r in requests if r.status is not None and r.status >= 500]
    assert errors == [], "\n".join(errors[:20])
    late = [r.line for r in late_polls(requests, LOAD.poll_timeout_s)]
    assert late == [], "\n".join(late[:20])
    for worker in run.workers:
        assert worker["survived"], worker
    assert figures["disruption_s"] is not None, figures
