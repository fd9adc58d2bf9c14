"""/api/worker/activity-tasks/...: poll, complete, fail, heartbeat."""

from __future__ import annotations

from dwtrio import wire
from dwtrio.engine import activity_tasks as engine
from dwtrio.http.worker_plane import Reply, Route, WorkerCall
from dwtrio.http.worker_response import long_poll, task_report
from dwtrio.protocol.worker import (
    CompleteActivityTask,
    FailActivityTask,
    HeartbeatActivityTask,
    PollTasks,
)
from dwtrio.runtime import Runtime


def routes(rt: Runtime) -> list[Route]:
    settings = rt.settings

    async def poll(call: WorkerCall) -> Reply:
        req = wire.structure(call.json, PollTasks)
        namespace = call.namespace
        _, types = await rt.registrations.types(namespace, req.worker_id, req.task_queue)
        params = engine.ClaimParams(
            namespace=namespace,
            task_queue=req.task_queue,
            worker_id=req.worker_id,
            poll_request_id=req.poll_request_id,
            activity_types=tuple(types),
            default_lease_s=settings.activity_task_timeout_s,
        )
        return await long_poll(
            rt,
            (namespace, req.task_queue, "activity"),
            params,
            engine.claim,
            engine.release,
            timeout_seconds=req.timeout_seconds,
            client=call.client,
            typed=bool(params.activity_types),
            atomic=False,  # engine.claim writes with one statement; see its docstring
            release_polled_op=engine.release_polled,
        )

    async def heartbeat(call: WorkerCall, task_id: str) -> Reply:
        req = wire.structure(call.json, HeartbeatActivityTask)
        body = await rt.store.transaction(
            engine.heartbeat, call.namespace, task_id, req, settings.activity_task_timeout_s
        )
        return Reply(body)

    return [
        Route("POST", "activity-tasks/poll", poll),
        Route(
            "POST",
            "activity-tasks/{task_id}/complete",
            task_report(rt, CompleteActivityTask, engine.complete),
        ),
        Route(
            "POST", "activity-tasks/{task_id}/fail", task_report(rt, FailActivityTask, engine.fail)
        ),
        Route("POST", "activity-tasks/{task_id}/heartbeat", heartbeat),
    ]
