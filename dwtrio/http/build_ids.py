"""/api/task-queues/{tq}/build-ids: the build-id cohorts of a task queue, and drain,
resume and promote of one cohort (control-plane.md §9, schedules-and-admission.md §3;
the rules are in ``engine/build_ids.py``).

Namespace-scoped operator routes without the ``control_plane`` envelope. A body must
hold ``build_id`` (null for the unversioned cohort); other keys are ignored. A queue
nothing runs on has no cohorts; a name no worker or start can use (NUL, longer than
255 characters) is a 422, as for ``GET /api/task-queues/{tq}``.
"""

from __future__ import annotations

from quart import Blueprint, Response, g

from dwtrio import wire
from dwtrio.engine import build_ids as engine
from dwtrio.engine.outcome import Outcome
from dwtrio.errors import ValidationFailedError, merge_field_errors
from dwtrio.http.envelope import json_response, outcome_response
from dwtrio.http.pipeline import json_body
from dwtrio.protocol.build_ids import BuildIdRolloutChange, task_queue_errors
from dwtrio.protocol.responses import render
from dwtrio.runtime import Runtime
from dwtrio.store.pool import Op

#: ``engine.drain``, ``resume`` or ``promote``: (namespace, task queue, build id) -> Outcome.
Change = Op[[str, str, str | None], Outcome]


def _parse_change(task_queue: str) -> BuildIdRolloutChange:
    """The body's cohort, with every problem of body and path in one 422."""
    errors: dict[str, list[str]] = {}
    req = None
    try:
        req = wire.structure(json_body(), BuildIdRolloutChange)
    except ValidationFailedError as exc:
        errors = exc.errors
    if queue_errors := task_queue_errors(task_queue):
        merge_field_errors(errors, {"task_queue": queue_errors})
    if errors or req is None:
        raise ValidationFailedError(errors)
    return req


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("build_ids", __name__)
    stale_after_s = rt.settings.effective_worker_stale_after_s

    @bp.get("/api/task-queues/<path:task_queue>/build-ids")
    async def list_build_ids(task_queue: str) -> Response:
        if errors := task_queue_errors(task_queue):
            raise ValidationFailedError({"task_queue": errors})
        body = await rt.store.read(engine.list_cohorts, g.namespace, task_queue, stale_after_s)
        return json_response(render(body))

    async def change(op: Change, task_queue: str) -> Response:
        req = _parse_change(task_queue)
        outcome = await rt.store.transaction(op, g.namespace, task_queue, req.build_id)
        rt.publish_wakes(outcome.wakes)
        return outcome_response(outcome)

    @bp.post("/api/task-queues/<path:task_queue>/build-ids/drain")
    async def drain_build_id(task_queue: str) -> Response:
        return await change(engine.drain, task_queue)

    @bp.post("/api/task-queues/<path:task_queue>/build-ids/resume")
    async def resume_build_id(task_queue: str) -> Response:
        return await change(engine.resume, task_queue)

    @bp.post("/api/task-queues/<path:task_queue>/build-ids/promote")
    async def promote_build_id(task_queue: str) -> Response:
        return await change(engine.promote, task_queue)

    return bp
