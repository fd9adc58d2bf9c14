"""The stack's floor: Hypercorn + Trio with dwtrio's HTTP config and no server behind it.

``python -m bench.floor --bind 127.0.0.1:PORT`` serves a bare ASGI app that
answers the few requests the benchmarks send, in the same wire shape, from
memory: no database, no durability, no gates, no history. A workflow-task
poll parks the way dwtrio's does (one task waiting on the ASGI ``receive``
for a disconnect, cancelled by a wake or the deadline); a start hands its
task to the oldest parked poll of the queue or keeps it for the next poll;
an activity-task poll gets a new task at once, as from an endless backlog;
a completion answers at once, a describe with the id it was asked for and a
history read with no events; anything else is 404.

Run beside dwtrio (``--floor`` of ``poll-latency``, ``open-polls``,
``request-cost`` and ``dispatch-throughput``), it shows what any application on this HTTP stack pays on
this machine before doing any work: the difference is dwtrio's own cost.
It is a benchmark fixture, not a server: nothing here is durable, and it is
always one process (compare it with a one-process dwtrio).
"""

from __future__ import annotations

import argparse
import functools
import itertools
from collections import deque
from typing import Any

import orjson
import trio

#: The longest poll dwtrio accepts (it refuses a longer timeout_seconds).
MAX_POLL_S = 60

_ids = itertools.count(1)


class _Queue:
    __slots__ = ("parked", "ready")

    def __init__(self) -> None:
        #: Parked polls, oldest first: [worker id, the cancel scope a handoff cancels, task].
        self.parked: deque[list[Any]] = deque()
        #: Started tasks no poll was parked for.
        self.ready: deque[dict[str, Any]] = deque()


_queues: dict[str, _Queue] = {}


async def _body(receive: Any) -> Any:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    raw = b"".join(chunks)
    return orjson.loads(raw) if raw else {}


async def _answer(send: Any, status: int, body: Any) -> None:
    data = orjson.dumps(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _task(workflow_id: str, queue: str) -> dict[str, Any]:
    n = next(_ids)
    return {
        "task_id": f"floor-task-{n}",
        "workflow_id": workflow_id,
        "run_id": f"floor-run-{n}",
        "task_queue": queue,
        "workflow_task_attempt": 1,
    }


async def _poll(body: dict[str, Any], receive: Any) -> dict[str, Any]:
    worker, name = body.get("worker_id"), body.get("task_queue", "default")
    queue = _queues.setdefault(name, _Queue())
    if queue.ready:
        return {"task": {**queue.ready.popleft(), "lease_owner": worker}}
    timeout = min(float(body.get("timeout_seconds") or 0), MAX_POLL_S)
    if timeout <= 0:
        return {"task": None, "poll_status": "empty"}
    with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
        slot: list[Any] = [worker, scope, None]
        queue.parked.append(slot)
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
            return {"task": None}  # the client left; nobody reads this
        finally:
            if slot[2] is None:
                queue.parked.remove(slot)
    return {"task": slot[2]} if slot[2] is not None else {"task": None, "poll_status": "empty"}


def _activity(body: dict[str, Any]) -> dict[str, Any]:
    """An activity task shaped like dwtrio's claim answer, from an endless backlog."""
    n = next(_ids)
    task = {
        "task_id": f"floor-activity-{n}",
        "workflow_id": f"floor-wf-{n}",
        "run_id": f"floor-run-{n}",
        "activity_execution_id": f"floor-execution-{n}",
        "activity_attempt_id": f"floor-attempt-{n}",
        "attempt_number": 1,
        "activity_type": "bench",
        "payload_codec": "avro",
        "arguments": {"codec": "avro", "blob": "wwHioz3/VYAiNwwA"},
        "task_queue": body.get("task_queue", "default"),
        "lease_owner": body.get("worker_id"),
        "lease_expires_at": "2026-01-01T00:05:00.000000Z",
    }
    return {"task": task}


def _start(body: dict[str, Any]) -> dict[str, Any]:
    name = body.get("task_queue", "default")
    task = _task(body.get("workflow_id") or f"floor-wf-{next(_ids)}", name)
    queue = _queues.setdefault(name, _Queue())
    if queue.parked:
        slot = queue.parked.popleft()
        slot[2] = {**task, "lease_owner": slot[0]}
        slot[1].cancel()
    else:
        queue.ready.append(task)
    return {"workflow_id": task["workflow_id"], "run_id": task["run_id"]}


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    path, method = scope["path"].rstrip("/"), scope["method"]
    body = await _body(receive)
    if body is None:
        return
    if method == "POST" and path == "/api/worker/workflow-tasks/poll":
        await _answer(send, 200, await _poll(body, receive))
    elif method == "POST" and path == "/api/worker/activity-tasks/poll":
        await _answer(send, 200, _activity(body))
    elif method == "POST" and path == "/api/workflows":
        await _answer(send, 201, _start(body))
    elif method == "POST" and path.startswith("/api/worker/") and path.endswith("/complete"):
        await _answer(send, 200, {"outcome": "completed"})
    elif method == "GET" and path in ("/api/health", "/api/ready"):
        await _answer(send, 200, {"status": "ok"})
    elif method == "GET" and path.startswith("/api/workflows/") and path.endswith("/history"):
        await _answer(send, 200, {"events": [], "next_page_token": None})
    elif method == "GET" and path.startswith("/api/workflows/") and path.count("/") == 3:
        await _answer(send, 200, {"workflow_id": path.rsplit("/", 1)[1], "status": "running"})
    else:
        await _answer(send, 404, {"reason": "route_not_found"})


def main() -> None:
    from hypercorn.trio import serve

    from dwtrio.main import hypercorn_config
    from dwtrio.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("--bind", required=True, help="host:port (loopback)")
    args = parser.parse_args()
    # dwtrio's own Hypercorn settings (backlog, keep-alive, no access log).
    config = hypercorn_config(Settings.from_env({}, bind=args.bind))
    trio.run(functools.partial(serve, app, config))


if __name__ == "__main__":
    main()
