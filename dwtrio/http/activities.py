"""/api/activities: start, describe and list standalone activities (docs/standalone-activities.md).

The rules are ``engine/standalone_activities.py``. Cancel and terminate are the
workflow routes' (``POST /api/workflows/{activity_id}/cancel``), since each
standalone activity is a workflow instance of the same id. These routes carry no
``control_plane`` envelope (they are not workflow operations). A start's activity
task goes to an activity poll parked in this process when one takes it; otherwise
its queue is woken after commit.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, g

from dwtrio import payloads, wire
from dwtrio.engine import standalone_activities as engine
from dwtrio.errors import (
    ActivityNotFoundError,
    InvalidPayloadError,
    ValidationFailedError,
    merge_field_errors,
)
from dwtrio.http.envelope import json_response, outcome_response
from dwtrio.http.pipeline import json_body
from dwtrio.http.workflows import could_exist, parse_query
from dwtrio.matching.dispatch import transaction_with_handoffs
from dwtrio.protocol.activities import ListActivities, StartActivity
from dwtrio.protocol.commands import Name, NonBlank, ScheduleActivity
from dwtrio.protocol.ids import new_id
from dwtrio.protocol.responses import render
from dwtrio.protocol.workflows import DEFAULT_TASK_QUEUE
from dwtrio.runtime import Runtime
from dwtrio.task_kinds import SYNC_MATCHED


def parse_start(body: Any, namespace: str) -> engine.StartActivityCommand:
    """Validate a start body into a command; every field problem in one 422.

    Raises:
        ValidationFailedError: field errors (``InvalidPayloadError`` as such when
            ``input`` is the only problem).
    """
    errors: dict[str, list[str]] = {}
    try:
        req: StartActivity | None = wire.structure(body, StartActivity)
    except ValidationFailedError as exc:
        req = None
        merge_field_errors(errors, exc.errors)
    try:
        blob = payloads.start_input(
            body.get("input") if isinstance(body, dict) else None, field="input"
        )
    except InvalidPayloadError as exc:
        if not errors:
            raise
        merge_field_errors(errors, exc.errors)
    if req is None or errors:
        raise ValidationFailedError(errors)
    task_queue = req.task_queue.strip() if req.task_queue else ""
    task_queue = task_queue or DEFAULT_TASK_QUEUE
    return engine.StartActivityCommand(
        namespace=namespace,
        activity_id=req.activity_id or new_id(),
        activity_type=req.activity_type,
        activity_class=req.activity_class,
        task_queue=task_queue,
        input_blob=blob,
        business_key=req.business_key,
        schedule=ScheduleActivity(
            activity_type=Name(req.activity_type),
            queue=NonBlank(task_queue),
            retry_policy=req.retry_policy,
            start_to_close_timeout=req.start_to_close_timeout_seconds,
            schedule_to_start_timeout=req.schedule_to_start_timeout_seconds,
            schedule_to_close_timeout=req.schedule_to_close_timeout_seconds,
            heartbeat_timeout=req.heartbeat_timeout_seconds,
        ),
    )


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("activities", __name__)

    @bp.post("/api/activities")
    async def start_activity() -> Response:
        cmd = parse_start(json_body(), g.namespace)
        outcome = await transaction_with_handoffs(rt, SYNC_MATCHED, engine.start_activity, cmd)
        rt.publish_wakes(outcome.wakes)
        return outcome_response(outcome)

    @bp.get("/api/activities")
    async def list_activities() -> Response:
        q = parse_query(ListActivities)
        page = await rt.store.read(
            engine.list_activities,
            g.namespace,
            status=q.status,
            page_size=q.page_size,
            page_token=q.next_page_token,
        )
        return json_response(render(page))

    @bp.get("/api/activities/<activity_id>")
    async def describe_activity(activity_id: str) -> Response:
        if not could_exist(activity_id):
            raise ActivityNotFoundError("Standalone activity not found.", activity_id=activity_id)
        view = await rt.store.read(engine.describe_activity, g.namespace, activity_id)
        return json_response(render(view))

    return bp
