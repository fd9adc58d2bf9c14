"""/api/worker/activity-tasks/...: poll, complete, fail, heartbeat."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, g

from dwtrio import wire
from dwtrio.engine import activity_tasks as engine
from dwtrio.http.worker_response import worker_json
from dwtrio.http.workflow_tasks import poll_timeout_s
from dwtrio.matching.poll import poll_for_task
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
        first = True

        async def claim() -> dict[str, Any] | None:
            nonlocal first
            replay, first = first, False
            return await rt.store.transaction(engine.claim, params, replay_poll=replay)

        async def release(task: dict[str, Any]) -> None:
            key = await rt.store.transaction(engine.release, task)
            if key is not None:
                rt.publish_wakes({key})

        task = await poll_for_task(
            rt.waiters,
            (namespace, req.task_queue, "activity"),
            claim,
            release,
            timeout_s=poll_timeout_s(rt, req.timeout_seconds),
            recheck_s=settings.worker_poll_interval_ms / 1000,
            draining=rt.draining,
        )
        if task is None:
            return worker_json(rt, {"task": None, "poll_status": "empty"})
        return worker_json(rt, {"task": task})

    @bp.post("/api/worker/activity-tasks/<task_id>/complete")
    async def complete(task_id: str) -> Response:
        req = wire.structure(g.json, CompleteActivityTask)
        outcome = await rt.store.transaction(engine.complete, g.namespace, task_id, req)
        rt.publish_wakes(outcome.wakes)
        return worker_json(rt, outcome.body, outcome.status)

    @bp.post("/api/worker/activity-tasks/<task_id>/fail")
    async def fail(task_id: str) -> Response:
        req = wire.structure(g.json, FailActivityTask)
        outcome = await rt.store.transaction(engine.fail, g.namespace, task_id, req)
        rt.publish_wakes(outcome.wakes)
        return worker_json(rt, outcome.body, outcome.status)

    @bp.post("/api/worker/activity-tasks/<task_id>/heartbeat")
    async def heartbeat(task_id: str) -> Response:
        req = wire.structure(g.json, HeartbeatActivityTask)
        body = await rt.store.transaction(
            engine.heartbeat, g.namespace, task_id, req, settings.activity_task_timeout_s
        )
        return worker_json(rt, body)

    return bp
