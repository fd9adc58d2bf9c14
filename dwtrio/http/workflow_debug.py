"""GET /api/workflows/{wf}/debug and .../runs/{run}/debug (control-plane.md §5.5).

A bounded diagnostic snapshot of one run (the rules and the fields:
``engine/workflow_debug.py``, docs/workflow-maintenance.md). The
``control_plane`` envelope (operation ``debug_workflow``) is added by the
after-request hook. ``include_last_event_payload`` takes ``true``/``1`` or
``false``/``0``; anything else is a 422.
"""

from __future__ import annotations

from quart import Blueprint, Response, g, request

from dwtrio.engine import task_queues
from dwtrio.engine import workflow_debug as engine
from dwtrio.errors import InstanceNotFoundError, RunNotFoundError, ValidationFailedError
from dwtrio.http.envelope import json_response
from dwtrio.http.workflows import could_exist
from dwtrio.protocol.responses import render
from dwtrio.runtime import Runtime

_FLAG = {"true": True, "1": True, "false": False, "0": False, "": False}


def include_last_event_payload() -> bool:
    value = request.args.get("include_last_event_payload", "")
    if value.lower() not in _FLAG:
        raise ValidationFailedError(
            {
                "include_last_event_payload": [
                    "The include last event payload must be true or false."
                ]
            }
        )
    return _FLAG[value.lower()]


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("workflow_debug", __name__)
    view = task_queues.QueueView(
        admission=rt.admission,
        stale_after_s=rt.settings.effective_worker_stale_after_s,
        repair_interval_s=rt.settings.task_repair_interval_s,
        query_max_pending=rt.settings.query_task_max_pending_per_queue,
    )

    @bp.get("/api/workflows/<wf>/debug")
    @bp.get("/api/workflows/<wf>/runs/<run_id>/debug")
    async def debug(wf: str, run_id: str | None = None) -> Response:
        req = engine.DebugRequest(
            namespace=g.namespace,
            workflow_id=wf,
            run_id=run_id,
            include_last_event_payload=include_last_event_payload(),
        )
        body = None
        if could_exist(wf, run_id or "x"):
            body = await rt.store.read(engine.debug_run, req, view)
        if body is None and run_id is None:
            raise InstanceNotFoundError(f"Workflow {wf!r} was not found.", workflow_id=wf)
        if body is None:
            raise RunNotFoundError(
                f"Run {run_id!r} of workflow {wf!r} was not found.", workflow_id=wf, run_id=run_id
            )
        return json_response(render(body))

    return bp
