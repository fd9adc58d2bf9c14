"""request-cost: what one request costs the server, by kind, with nothing else going on.

One client sends requests one after another on one keep-alive connection,
over a plain socket (no HTTP client library, whose own cost would blur the
figure). For each kind of request: latency p50 and the server's CPU time per
request (user + system time of the server process over the batch). Kinds:

* ``worker-404``: a worker-plane path that does not exist (gates, no database);
* ``poll-empty``: a workflow-task poll with ``timeout_seconds: 0`` on an empty
  queue (gates, one claim statement);
* ``health``: ``GET /api/health`` (the Quart side, one ``SELECT 1``);
* ``start``: ``POST /api/workflows`` (the Quart side, the one-statement start);
* ``claim``: a poll that finds one of the workflow tasks the starts created;
* ``complete``: completing that task with ``complete_workflow`` (closes the run);
* ``activity-claim``: an activity poll that finds one of the activity tasks set up
  before the run (starts whose workflow task scheduled one activity, unmeasured);
* ``activity-complete``: completing that activity (its ``ActivityCompleted`` and the
  wake that creates the run's next workflow task).

Each run repeats every kind ``--requests`` times; the reported figures are the
median over ``--runs`` runs. ``--floor`` sends the same requests to
``bench.floor`` (the same HTTP stack, no server behind it): what any
application on this stack pays per request here.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.harness import (
    CP,
    WP,
    RawConnection,
    bench_database,
    dwtrio_server,
    floor_server,
    median_of_runs,
    progress,
    server_processes,
    table,
    write_result,
)

COMPLETE = {"type": "complete_workflow", "result": {"codec": "avro", "blob": "wwHioz3/VYAiNwA="}}
SCHEDULE = {"type": "schedule_activity", "activity_type": "bench", "arguments": COMPLETE["result"]}
ACTIVITY_RESULT = {"codec": "avro", "blob": "wwHioz3/VYAiNwA="}
KINDS = [
    *("worker-404", "poll-empty", "health", "start", "describe", "history", "claim", "complete"),
    *("activity-claim", "activity-complete"),
]


def _cpu_s(procs: list[Any]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def one_run(url: str, procs: list[Any], count: int, bar: Any) -> dict[str, dict[str, float]]:
    conn = RawConnection(url)
    queue = f"cost-{uuid.uuid4().hex[:8]}"
    tasks: list[dict[str, Any]] = []
    started: list[tuple[str, str]] = []  # (workflow id, run id) of each start
    activities: list[dict[str, Any]] = []
    act_queue = f"{queue}-act"

    def poll(q: str, kind: str = "workflow") -> dict[str, Any] | None:
        body = {"worker_id": "bench", "task_queue": q, "timeout_seconds": 0}
        status, answer = conn.request("POST", f"/api/worker/{kind}-tasks/poll", WP, body)
        assert status == 200, answer
        return answer["task"]  # type: ignore[no-any-return]

    def start() -> None:
        body = {"workflow_id": uuid.uuid4().hex, "workflow_type": "bench", "task_queue": queue}
        status, answer = conn.request("POST", "/api/workflows", CP, body)
        assert status == 201, answer
        started.append((answer["workflow_id"], answer["run_id"]))

    def describe() -> None:
        workflow_id, _ = started[len(started) // 2]
        status, answer = conn.request("GET", f"/api/workflows/{workflow_id}", CP)
        assert status == 200, answer

    def history() -> None:
        workflow_id, run_id = started[len(started) // 2]
        path = f"/api/workflows/{workflow_id}/runs/{run_id}/history"
        status, answer = conn.request("GET", path, CP)
        assert status == 200, answer

    def claim() -> None:
        task = poll(queue)
        assert task is not None, "the starts left no task to claim"
        tasks.append(task)

    def complete() -> None:
        task = tasks.pop()
        body = {
            "lease_owner": task["lease_owner"],
            "workflow_task_attempt": task["workflow_task_attempt"],
            "commands": [COMPLETE],
        }
        path = f"/api/worker/workflow-tasks/{task['task_id']}/complete"
        status, answer = conn.request("POST", path, WP, body)
        assert status == 200, answer

    def schedule_activities() -> None:
        """Unmeasured: ``count`` runs whose workflow task scheduled one activity."""
        wf_queue = f"{queue}-wf"
        for _ in range(count):
            body = {
                "workflow_id": uuid.uuid4().hex,
                "workflow_type": "bench",
                "task_queue": wf_queue,
            }
            status, answer = conn.request("POST", "/api/workflows", CP, body)
            assert status == 201, answer
            task = poll(wf_queue)
            assert task is not None
            body = {
                "lease_owner": task["lease_owner"],
                "workflow_task_attempt": task["workflow_task_attempt"],
                "commands": [{**SCHEDULE, "queue": act_queue}],
            }
            path = f"/api/worker/workflow-tasks/{task['task_id']}/complete"
            status, answer = conn.request("POST", path, WP, body)
            assert status == 200, answer

    def activity_claim() -> None:
        task = poll(act_queue, "activity")
        assert task is not None, "no activity task to claim"
        activities.append(task)

    def activity_complete() -> None:
        task = activities.pop()
        body = {
            "activity_attempt_id": task["activity_attempt_id"],
            "lease_owner": task["lease_owner"],
            "result": ACTIVITY_RESULT,
        }
        path = f"/api/worker/activity-tasks/{task['task_id']}/complete"
        status, answer = conn.request("POST", path, WP, body)
        assert status == 200, answer

    cases: dict[str, Callable[[], Any]] = {
        "worker-404": lambda: conn.request("POST", "/api/worker/no-such-route", WP, {}),
        "poll-empty": lambda: poll(f"{queue}-empty"),
        "health": lambda: conn.request("GET", "/api/health", {}),
        "start": start,
        "describe": describe,
        "history": history,
        "claim": claim,
        "complete": complete,
        "activity-claim": activity_claim,
        "activity-complete": activity_complete,
    }
    out: dict[str, dict[str, float]] = {}
    try:
        for kind in KINDS:
            if kind == "activity-claim":
                schedule_activities()
            latencies = []
            cpu0 = _cpu_s(procs)
            for _ in range(count):
                t0 = time.perf_counter()
                cases[kind]()
                latencies.append(time.perf_counter() - t0)
                bar.update()
            cpu = (_cpu_s(procs) - cpu0) / count
            out[kind] = {
                "p50_ms": round(statistics.median(latencies) * 1000, 3),
                "server_cpu_ms": round(cpu * 1000, 3),
            }
    finally:
        conn.close()
    return out


def run(args: Any) -> dict[str, Any]:
    servers: dict[str, list[dict[str, dict[str, float]]]] = {}
    with bench_database(args.dsn) as dsn, dwtrio_server(dsn=dsn) as url:
        servers["dwtrio"] = _runs(url, args)
    if args.floor:
        with floor_server() as url:
            servers["floor"] = _runs(url, args)
    rows = [
        {
            "server": server,
            "request": kind,
            **median_of_runs([r[kind] for r in runs], ["p50_ms", "server_cpu_ms"]),
        }
        for server, runs in servers.items()
        for kind in KINDS
    ]
    print(f"median over {args.runs} runs of {args.requests} requests each:")
    print(table(rows, ["server", "request", "p50_ms", "server_cpu_ms"]))
    path = write_result(
        "request-cost",
        {"requests_per_run": args.requests, "summary": rows, "runs": servers},
    )
    print(f"results: {path}")
    return {"summary": rows}


def _runs(url: str, args: Any) -> list[dict[str, dict[str, float]]]:
    procs = server_processes(url)
    bar = progress(args.runs * args.requests * len(KINDS), "request-cost", "req")
    runs = [one_run(url, procs, args.requests, bar) for _ in range(args.runs)]
    bar.close()
    return runs
