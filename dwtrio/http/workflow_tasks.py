"""/api/worker/workflow-tasks/...: poll, history, complete, fail, heartbeat."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, g

from dwtrio import wire
from dwtrio.engine import workflow_tasks as engine
from dwtrio.http.worker_response import worker_json
from dwtrio.matching.poll import poll_for_task
from dwtrio.protocol.worker import (
    CompleteWorkflowTask,
    FailWorkflowTask,
    HistoryPage,
    PollTasks,
    WorkflowTaskLease,
)
from dwtrio.runtime import Runtime


def poll_timeout_s(rt: Runtime, requested: int | None) -> float:
    return float(rt.settings.worker_poll_timeout_s if requested is None else min(requested, 60))


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("workflow_tasks", __name__)
    settings = rt.settings

    @bp.post("/api/worker/workflow-tasks/poll")
    async def poll() -> Response:
        req = wire.structure(g.json, PollTasks)
        namespace = g.namespace
        types, _ = await rt.registrations.types(namespace, req.worker_id, req.task_queue)
        page = min(
            req.history_page_size or settings.history_page_size_default,
            settings.history_page_size_max,
        )
        params = engine.ClaimParams(
            namespace=namespace,
            task_queue=req.task_queue,
            worker_id=req.worker_id,
            poll_request_id=req.poll_request_id,
            workflow_types=tuple(types),
            lease_s=settings.workflow_task_timeout_s,
            page_size=page,
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
            (namespace, req.task_queue, "workflow"),
            claim,
            release,
            timeout_s=poll_timeout_s(rt, req.timeout_seconds),
            recheck_s=settings.worker_poll_interval_ms / 1000,
            draining=rt.draining,
        )
        if task is None:
            return worker_json(rt, {"task": None, "poll_status": "empty"})
        return worker_json(rt, {"task": task})

    @bp.post("/api/worker/workflow-tasks/<task_id>/history")
    async def history(task_id: str) -> Response:
        req = wire.structure(g.json, HistoryPage)
        page = min(settings.history_page_size_default, settings.history_page_size_max)
        body = await rt.store.transaction(
            engine.history_page, g.namespace, task_id, req.next_history_page_token, req, page
        )
        return worker_json(rt, body)

    @bp.post("/api/worker/workflow-tasks/<task_id>/complete")
    async def complete(task_id: str) -> Response:
        req = wire.structure(g.json, CompleteWorkflowTask)
        outcome = await rt.store.transaction(engine.complete, g.namespace, task_id, req)
        rt.publish_wakes(outcome.wakes)
        return worker_json(rt, outcome.body, outcome.status)

    @bp.post("/api/worker/workflow-tasks/<task_id>/fail")
    async def fail(task_id: str) -> Response:
        req = wire.structure(g.json, FailWorkflowTask)
        outcome = await rt.store.transaction(engine.fail, g.namespace, task_id, req)
        rt.publish_wakes(outcome.wakes)
        return worker_json(rt, outcome.body, outcome.status)

    @bp.post("/api/worker/workflow-tasks/<task_id>/heartbeat")
    async def heartbeat(task_id: str) -> Response:
        req = wire.structure(g.json, WorkflowTaskLease)
        body = await rt.store.transaction(
            engine.heartbeat, g.namespace, task_id, req, settings.workflow_task_timeout_s
        )
        return worker_json(rt, body)

    return bp
