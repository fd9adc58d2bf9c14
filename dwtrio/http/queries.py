"""Queries: ``POST /api/workflows/{wf}[/runs/{run}]/query/{name}`` (control-plane.md §5.8).

The call admits a query task, wakes the queue's query pollers and parks until
a worker answers (``query_tasks.py``) or ``DW_QUERY_TASK_TIMEOUT`` passes
(``504 query_worker_timeout``). Query tasks never touch history.
"""

from __future__ import annotations

from typing import Any

import trio
from quart import Blueprint, Response, g

from dwtrio import payloads, wire
from dwtrio.engine import queries as engine
from dwtrio.errors import InstanceNotFoundError, QueryWorkerTimeoutError, ValidationFailedError
from dwtrio.http.envelope import json_response
from dwtrio.http.pipeline import json_body
from dwtrio.http.workflows import could_exist
from dwtrio.matching.answers import wait_for_answer
from dwtrio.protocol.ids import new_id
from dwtrio.protocol.queries import QueryWorkflow
from dwtrio.protocol.workflow_commands import operation_name_errors
from dwtrio.runtime import Runtime

#: The worker's failure reason that means "no such query" (404); any other is a 409.
UNKNOWN_QUERY = "rejected_unknown_query"


def answer_response(
    answer: engine.Answer, *, workflow_id: str, run_id: str, scope: str, name: str
) -> Response:
    body: dict[str, Any] = {
        "workflow_id": workflow_id,
        "run_id": run_id,
        "target_scope": scope,
        "query_name": name,
    }
    if answer.completed:
        body.update(result=answer.result, result_envelope=answer.result_envelope, reason=None)
        return json_response(body)
    failure = answer.failure or {}
    reason = failure.get("reason") or engine.DEFAULT_FAILURE_REASON
    body.update(
        message=failure.get("message") or "The query failed.",
        reason=reason,
        result=None,
        result_envelope=None,
    )
    return json_response(body, 404 if reason == UNKNOWN_QUERY else 409)


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("queries", __name__)
    settings = rt.settings

    @bp.post("/api/workflows/<wf>/query/<path:name>")
    @bp.post("/api/workflows/<wf>/runs/<run_id>/query/<path:name>")
    async def query(wf: str, name: str, run_id: str | None = None) -> Response:
        if errors := operation_name_errors(name, "query_name"):
            raise ValidationFailedError(errors)
        req = wire.structure(json_body(), QueryWorkflow)
        blob = payloads.start_input(req.input, field="input")
        if not could_exist(wf, run_id or "x"):
            raise InstanceNotFoundError(f"Workflow {wf!r} was not found.", workflow_id=wf)
        namespace = g.namespace
        timeout_s = settings.effective_query_task_timeout_s
        request = engine.QueryRequest(
            namespace=namespace,
            workflow_id=wf,
            run_id=run_id,
            query_name=name,
            arguments_blob=blob,
            task_id=new_id(),
            timeout_s=timeout_s,
            max_pending=settings.query_task_max_pending_per_queue,
            worker_stale_after_s=settings.effective_worker_stale_after_s,
        )
        deadline = trio.current_time() + timeout_s
        # Registered before the task exists, so the answer's wake cannot be missed.
        with rt.waiters.register(engine.answer_key(namespace, request.task_id)) as waiter:
            admitted = await rt.store.transaction(engine.admit, request)
            rt.publish_wakes({admitted.poll_key(namespace)})
            try:
                answer = await wait_for_answer(
                    waiter,
                    lambda: rt.store.transaction(engine.take_answer, request.task_id),
                    deadline=deadline,
                    recheck_s=settings.worker_poll_interval_ms / 1000,
                    draining=rt.draining,
                )
            except BaseException:
                with trio.CancelScope(shield=True):  # the client went away: forget the task
                    await rt.store.transaction(engine.drop, request.task_id)
                raise
        if answer is None:  # out of time; an answer that arrived just now still counts
            answer = await rt.store.transaction(engine.drop, request.task_id)
        scope = "instance" if run_id is None else "run"
        if answer is None:
            raise QueryWorkerTimeoutError(
                f"No worker answered query {name!r} within {timeout_s} s.",
                workflow_id=wf,
                run_id=admitted.run_id,
                target_scope=scope,
                query_name=name,
            )
        return answer_response(
            answer, workflow_id=wf, run_id=admitted.run_id, scope=scope, name=name
        )

    return bp
