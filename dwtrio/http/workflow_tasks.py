"""/api/worker/workflow-tasks/...: poll, history, complete, fail, heartbeat."""

from __future__ import annotations

from dwtrio import wire
from dwtrio.engine import workflow_tasks as engine
from dwtrio.engine.commands.context import CommandLimits
from dwtrio.http.worker_plane import Reply, Route, WorkerCall
from dwtrio.http.worker_response import Registered, poll_handler, task_report
from dwtrio.protocol.worker import (
    CompleteWorkflowTask,
    FailWorkflowTask,
    HistoryPage,
    PollTasks,
    WorkflowTaskLease,
)
from dwtrio.runtime import Runtime
from dwtrio.task_kinds import WORKFLOW_TASKS


def routes(rt: Runtime) -> list[Route]:
    settings = rt.settings
    limits = CommandLimits.from_settings(settings)

    def claim_params(namespace: str, req: PollTasks, types: Registered) -> engine.ClaimParams:
        page = min(
            req.history_page_size or settings.history_page_size_default,
            settings.history_page_size_max,
        )
        return engine.ClaimParams(
            namespace=namespace,
            task_queue=req.task_queue,
            worker_id=req.worker_id,
            poll_request_id=req.poll_request_id,
            caps=rt.admission.caps(namespace, req.task_queue, "workflow"),
            workflow_types=types[0],
            lease_s=settings.workflow_task_timeout_s,
            page_size=page,
        )

    async def history(call: WorkerCall, task_id: str) -> Reply:
        req = wire.structure(call.json, HistoryPage)
        page = min(settings.history_page_size_default, settings.history_page_size_max)
        body = await rt.store.transaction(
            engine.history_page, call.namespace, task_id, req.next_history_page_token, req, page
        )
        return Reply(body)

    async def heartbeat(call: WorkerCall, task_id: str) -> Reply:
        req = wire.structure(call.json, WorkflowTaskLease)
        body = await rt.store.transaction(
            engine.heartbeat, call.namespace, task_id, req, settings.workflow_task_timeout_s
        )
        return Reply(body)

    return [
        Route("POST", "workflow-tasks/poll", poll_handler(rt, WORKFLOW_TASKS, claim_params)),
        Route("POST", "workflow-tasks/{task_id}/history", history),
        Route(
            "POST",
            "workflow-tasks/{task_id}/complete",
            task_report(rt, CompleteWorkflowTask, engine.complete, limits),
        ),
        Route(
            "POST", "workflow-tasks/{task_id}/fail", task_report(rt, FailWorkflowTask, engine.fail)
        ),
        Route("POST", "workflow-tasks/{task_id}/heartbeat", heartbeat),
    ]
