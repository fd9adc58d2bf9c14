"""/api/worker/workflow-tasks/...: poll, history, complete, fail, heartbeat."""

from __future__ import annotations

from quart import Blueprint, Response, g

from dwtrio import wire
from dwtrio.engine import workflow_tasks as engine
from dwtrio.engine.commands.context import CommandLimits
from dwtrio.http.worker_response import long_poll, worker_json, worker_outcome
from dwtrio.protocol.worker import (
    CompleteWorkflowTask,
    FailWorkflowTask,
    HistoryPage,
    PollTasks,
    WorkflowTaskLease,
)
from dwtrio.runtime import Runtime


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("workflow_tasks", __name__)
    settings = rt.settings
    limits = CommandLimits.from_settings(settings)

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
        return await long_poll(
            rt,
            (namespace, req.task_queue, "workflow"),
            params,
            engine.claim,
            engine.release,
            timeout_seconds=req.timeout_seconds,
            typed=bool(params.workflow_types),
            atomic=False,  # engine.claim writes with one statement; see its docstring
        )

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
        return await worker_outcome(rt, engine.complete, g.namespace, task_id, req, limits)

    @bp.post("/api/worker/workflow-tasks/<task_id>/fail")
    async def fail(task_id: str) -> Response:
        req = wire.structure(g.json, FailWorkflowTask)
        return await worker_outcome(rt, engine.fail, g.namespace, task_id, req)

    @bp.post("/api/worker/workflow-tasks/<task_id>/heartbeat")
    async def heartbeat(task_id: str) -> Response:
        req = wire.structure(g.json, WorkflowTaskLease)
        body = await rt.store.transaction(
            engine.heartbeat, g.namespace, task_id, req, settings.workflow_task_timeout_s
        )
        return worker_json(rt, body)

    return bp
