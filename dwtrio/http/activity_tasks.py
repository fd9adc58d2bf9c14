"""/api/worker/activity-tasks/...: poll, complete, fail, heartbeat."""

from __future__ import annotations

from quart import Blueprint, Response, g

from dwtrio import wire
from dwtrio.engine import activity_tasks as engine
from dwtrio.http.worker_response import long_poll, worker_json, worker_outcome
from dwtrio.protocol.worker import (
    CompleteActivityTask,
    FailActivityTask,
    HeartbeatActivityTask,
    PollTasks,
)
from dwtrio.runtime import Runtime


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("activity_tasks", __name__)
    settings = rt.settings

    @bp.post("/api/worker/activity-tasks/poll")
    async def poll() -> Response:
        req = wire.structure(g.json, PollTasks)
        namespace = g.namespace
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
            typed=bool(params.activity_types),
        )

    @bp.post("/api/worker/activity-tasks/<task_id>/complete")
    async def complete(task_id: str) -> Response:
        req = wire.structure(g.json, CompleteActivityTask)
        return await worker_outcome(rt, engine.complete, g.namespace, task_id, req)

    @bp.post("/api/worker/activity-tasks/<task_id>/fail")
    async def fail(task_id: str) -> Response:
        req = wire.structure(g.json, FailActivityTask)
        return await worker_outcome(rt, engine.fail, g.namespace, task_id, req)

    @bp.post("/api/worker/activity-tasks/<task_id>/heartbeat")
    async def heartbeat(task_id: str) -> Response:
        req = wire.structure(g.json, HeartbeatActivityTask)
        body = await rt.store.transaction(
            engine.heartbeat, g.namespace, task_id, req, settings.activity_task_timeout_s
        )
        return worker_json(rt, body)

    return bp
