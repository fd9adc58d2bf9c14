"""/api/workflows/{wf}[/runs/{run}]/repair and .../archive (control-plane.md §5.11), and
/api/workflows/{wf}/runs/{run}/redrive.

Operator commands with the shared command rules of ``workflow_commands.py``
(the rules themselves: ``engine/workflow_maintenance.py`` and ``engine/redrive.py``).
The ``control_plane`` envelope (operations ``repair``, ``archive`` and ``redrive``) is
added by the after-request hook. The wakes of a repair and of a redrive (the new run's
workflow task) are published after the commit.
"""

from __future__ import annotations

from quart import Blueprint, Response

from dwtrio import wire
from dwtrio.engine import redrive
from dwtrio.engine import workflow_maintenance as engine
from dwtrio.http.envelope import outcome_response
from dwtrio.http.pipeline import json_body
from dwtrio.http.workflow_commands import _target
from dwtrio.protocol.workflow_commands import CloseWorkflow, RedriveWorkflow, RepairWorkflow
from dwtrio.runtime import Runtime


def parse_repair(wf: str, run_id: str | None) -> engine.RepairCommand:
    req = wire.structure(json_body(), RepairWorkflow)
    return engine.RepairCommand(target=_target(wf, run_id, req.request_id))


def parse_archive(wf: str, run_id: str | None) -> engine.ArchiveCommand:
    req = wire.structure(json_body(), CloseWorkflow)
    return engine.ArchiveCommand(target=_target(wf, run_id, req.request_id), reason=req.reason)


def parse_redrive(wf: str, run_id: str) -> redrive.RedriveCommand:
    req = wire.structure(json_body(), RedriveWorkflow)
    return redrive.RedriveCommand(target=_target(wf, run_id, req.request_id))


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("workflow_maintenance", __name__)

    @bp.post("/api/workflows/<wf>/repair")
    @bp.post("/api/workflows/<wf>/runs/<run_id>/repair")
    async def repair(wf: str, run_id: str | None = None) -> Response:
        outcome = await rt.store.transaction(engine.repair_workflow, parse_repair(wf, run_id))
        rt.publish_wakes(outcome.wakes)
        return outcome_response(outcome)

    @bp.post("/api/workflows/<wf>/archive")
    @bp.post("/api/workflows/<wf>/runs/<run_id>/archive")
    async def archive(wf: str, run_id: str | None = None) -> Response:
        outcome = await rt.store.transaction(engine.archive_workflow, parse_archive(wf, run_id))
        return outcome_response(outcome)

    @bp.post("/api/workflows/<wf>/runs/<run_id>/redrive")
    async def redrive_run(wf: str, run_id: str) -> Response:
        outcome = await rt.store.transaction(redrive.redrive_workflow, parse_redrive(wf, run_id))
        rt.publish_wakes(outcome.wakes)
        return outcome_response(outcome)

    return bp
