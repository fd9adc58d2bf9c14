"""/api/workflows/{wf}[/runs/{run}]/signal|cancel|terminate (control-plane.md §5.6-§5.10).

The ``control_plane`` envelope is added by the after-request hook. Signal
names may contain ``/`` (the SDK sends it as ``%2F``, decoded before routing),
hence the ``path`` converter; workflow ids never do.
"""

from __future__ import annotations

from quart import Blueprint, Response, g

from dwtrio import payloads, wire
from dwtrio.engine import workflow_commands as engine
from dwtrio.engine.workflow_commands import CloseCommand, CloseKind, SignalCommand, Target
from dwtrio.errors import InstanceNotFoundError, ValidationFailedError
from dwtrio.http.envelope import outcome_response
from dwtrio.http.pipeline import json_body
from dwtrio.http.workflows import could_exist
from dwtrio.matching.dispatch import transaction_with_handoffs
from dwtrio.protocol.workflow_commands import CloseWorkflow, SignalWorkflow, operation_name_errors
from dwtrio.runtime import Runtime
from dwtrio.task_kinds import SYNC_MATCHED


def _target(wf: str, run_id: str | None, request_id: str | None) -> Target:
    if not could_exist(wf, run_id or "x"):
        raise InstanceNotFoundError(f"Workflow {wf!r} was not found.", workflow_id=wf)
    return Target(namespace=g.namespace, workflow_id=wf, run_id=run_id, request_id=request_id)


def parse_signal(wf: str, run_id: str | None, name: str) -> SignalCommand:
    """Name checks first (§5.6), then the body; unknown workflows are the engine's 404."""
    if errors := operation_name_errors(name, "signal_name"):
        raise ValidationFailedError(errors)
    req = wire.structure(json_body(), SignalWorkflow)
    arguments = payloads.start_input(req.input, field="input")
    return SignalCommand(
        target=_target(wf, run_id, req.request_id), signal_name=name, arguments=arguments
    )


def parse_close(wf: str, run_id: str | None, kind: CloseKind) -> CloseCommand:
    req = wire.structure(json_body(), CloseWorkflow)
    return CloseCommand(target=_target(wf, run_id, req.request_id), kind=kind, reason=req.reason)


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("workflow_commands", __name__)

    @bp.post("/api/workflows/<wf>/signal/<path:name>")
    @bp.post("/api/workflows/<wf>/runs/<run_id>/signal/<path:name>")
    async def signal(wf: str, name: str, run_id: str | None = None) -> Response:
        # The workflow task a signal creates goes to a poll parked here, if one takes it.
        outcome = await transaction_with_handoffs(
            rt, SYNC_MATCHED, engine.signal_workflow, parse_signal(wf, run_id, name)
        )
        rt.publish_wakes(outcome.wakes)
        return outcome_response(outcome)

    async def close(wf: str, run_id: str | None, kind: CloseKind) -> Response:
        outcome = await rt.store.transaction(engine.close_workflow, parse_close(wf, run_id, kind))
        rt.publish_wakes(outcome.wakes)
        return outcome_response(outcome)

    @bp.post("/api/workflows/<wf>/cancel")
    @bp.post("/api/workflows/<wf>/runs/<run_id>/cancel")
    async def cancel(wf: str, run_id: str | None = None) -> Response:
        return await close(wf, run_id, "cancel")

    @bp.post("/api/workflows/<wf>/terminate")
    @bp.post("/api/workflows/<wf>/runs/<run_id>/terminate")
    async def terminate(wf: str, run_id: str | None = None) -> Response:
        return await close(wf, run_id, "terminate")

    return bp
