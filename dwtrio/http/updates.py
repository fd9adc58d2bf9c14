"""Updates: ``POST /api/workflows/{wf}[/runs/{run}]/update/{name}`` (control-plane.md §5.9).

The update is accepted (and its update task created) in one transaction. With
``wait_for=completed`` the caller then parks until the worker's
``complete_update`` / ``fail_update`` commits or ``wait_timeout_seconds``
(default ``DW_V2_UPDATE_WAIT_COMPLETION_TIMEOUT_SECONDS``) passes: 200 when
completed, 422 ``update_status: failed`` when the handler raised, 202 with
``wait_timed_out: true`` when time ran out. ``wait_for=accepted`` answers 202
at once. A repeated ``request_id`` answers for the update it already created.
"""

from __future__ import annotations

import trio
from quart import Blueprint, Response, g

from dwtrio import payloads, wire
from dwtrio.engine import updates as engine
from dwtrio.errors import InstanceNotFoundError, ValidationFailedError
from dwtrio.http.envelope import json_response, outcome_response
from dwtrio.http.pipeline import json_body
from dwtrio.http.workflows import could_exist
from dwtrio.matching.answers import wait_for_answer
from dwtrio.matching.dispatch import transaction_with_handoffs
from dwtrio.protocol.updates import UpdateWorkflow, rejected_field_errors
from dwtrio.protocol.workflow_commands import operation_name_errors
from dwtrio.runtime import Runtime
from dwtrio.task_kinds import SYNC_MATCHED


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("updates", __name__)
    settings = rt.settings

    @bp.post("/api/workflows/<wf>/update/<path:name>")
    @bp.post("/api/workflows/<wf>/runs/<run_id>/update/<path:name>")
    async def update(wf: str, name: str, run_id: str | None = None) -> Response:
        body = json_body()
        if errors := operation_name_errors(name, "update_name") or rejected_field_errors(body):
            raise ValidationFailedError(errors)
        req = wire.structure(body, UpdateWorkflow)
        blob = payloads.start_input(req.input, field="input")
        if not could_exist(wf, run_id or "x"):
            raise InstanceNotFoundError(f"Workflow {wf!r} was not found.", workflow_id=wf)
        namespace = g.namespace
        submitted = await transaction_with_handoffs(
            rt,
            SYNC_MATCHED,
            engine.submit,
            engine.UpdateRequest(
                namespace=namespace,
                workflow_id=wf,
                run_id=run_id,
                update_name=name,
                arguments_blob=blob,
                request_id=req.request_id,
            ),
        )
        rt.publish_wakes(submitted.outcome.wakes)
        view = submitted.update
        if view is None:
            return outcome_response(submitted.outcome)
        timeout_s = None
        timed_out = False
        if req.wait_for == "completed":
            timeout_s = req.wait_timeout_seconds or settings.update_wait_timeout_s
            if view.is_open:
                update_id = view.update_id
                with rt.waiters.register(engine.answer_key(namespace, update_id)) as waiter:
                    closed = await wait_for_answer(
                        waiter,
                        lambda: rt.store.read(engine.read_closed_update, update_id),
                        deadline=trio.current_time() + timeout_s,
                        recheck_s=settings.worker_poll_interval_ms / 1000,
                        draining=rt.draining,
                    )
                timed_out = closed is None
                view = closed or view
        payload, status = engine.update_body(
            view,
            workflow_id=wf,
            wait_for=req.wait_for,
            wait_timeout_seconds=timeout_s,
            wait_timed_out=timed_out,
            retained=submitted.retained,
        )
        return json_response(payload, status)

    return bp
