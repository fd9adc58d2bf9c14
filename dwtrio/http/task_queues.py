"""/api/task-queues: the task queues of a namespace, listed and described
(control-plane.md §9; the rules in ``engine/task_queues.py``, docs/task-queues.md).

Namespace-scoped operator routes without the ``control_plane`` envelope
(``routes.classify``). A queue nothing names is described empty, never 404. A
name may hold ``/`` (the SDK sends ``%2F``, decoded before routing), hence the
``path`` converter; the name is taken from the raw path, so a trailing or
doubled ``/`` stays part of it. A name no worker or start can use (NUL, more
than 255 characters) is a 422.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from quart import Blueprint, Response, g, request

from dwtrio.engine import task_queues as engine
from dwtrio.errors import ValidationFailedError
from dwtrio.http.envelope import json_response
from dwtrio.protocol.responses import render
from dwtrio.runtime import Runtime

PREFIX = "/api/task-queues/"
MAX_NAME_LENGTH = 255


def queue_name(routed: str) -> str:
    """The queue a describe names: its raw path after the prefix, percent-decoded."""
    raw = request.scope.get("raw_path")
    path = raw.split(b"?", 1)[0] if isinstance(raw, bytes) else b""
    prefix = PREFIX.encode()
    if path.startswith(prefix):
        name = unquote_to_bytes(path[len(prefix) :]).decode("utf-8", "replace")
    else:
        name = routed
    if "\x00" in name:
        raise ValidationFailedError({"task_queue": ["The task queue may not contain NUL."]})
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationFailedError(
            {"task_queue": [f"The task queue may not be longer than {MAX_NAME_LENGTH} characters."]}
        )
    return name


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("task_queues", __name__)
    view = engine.QueueView(
        admission=rt.admission,
        stale_after_s=rt.settings.effective_worker_stale_after_s,
        repair_interval_s=rt.settings.task_repair_interval_s,
        query_max_pending=rt.settings.query_task_max_pending_per_queue,
    )

    @bp.get("/api/task-queues")
    async def list_task_queues() -> Response:
        body = await rt.store.read(engine.list_task_queues, g.namespace, view)
        return json_response(render(body))

    @bp.get("/api/task-queues/<path:task_queue>")
    async def describe_task_queue(task_queue: str) -> Response:
        name = queue_name(task_queue)
        body = await rt.store.read(engine.describe_task_queue, g.namespace, name, view)
        return json_response(render(body))

    return bp
