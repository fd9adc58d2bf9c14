"""/api/workers: the worker roster (control-plane.md §10; the rules in ``engine/workers.py``).

Namespace-scoped routes without the ``control_plane`` envelope: list and
describe are operator routes, DELETE is admin (``routes.classify``). A DELETE
deregisters through the worker plane's own path (``workers.deregister``), so
the worker's leases are given back exactly as when it deregisters itself, and
answers 200 with a JSON object (SDK 2.12.0 requires one, §2.6).
"""

from __future__ import annotations

from quart import Blueprint, Response, g

from dwtrio.engine import workers as engine
from dwtrio.http import workers
from dwtrio.http.envelope import json_response
from dwtrio.http.workflows import parse_query
from dwtrio.protocol.responses import render
from dwtrio.protocol.worker import ListWorkersQuery
from dwtrio.runtime import Runtime


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("workers_admin", __name__)
    stale_after_s = rt.settings.effective_worker_stale_after_s

    @bp.get("/api/workers")
    async def list_workers() -> Response:
        req = parse_query(ListWorkersQuery)
        body = await rt.store.read(
            engine.list_workers, g.namespace, req.task_queue, req.status, stale_after_s
        )
        return json_response(render(body))

    @bp.get("/api/workers/<worker_id>")
    async def describe_worker(worker_id: str) -> Response:
        body = await rt.store.read(engine.describe_worker, g.namespace, worker_id, stale_after_s)
        return json_response(render(body))

    @bp.delete("/api/workers/<worker_id>")
    async def deregister_worker(worker_id: str) -> Response:
        receipt = await workers.deregister(rt, g.namespace, worker_id)
        return json_response(render(receipt))

    return bp
