"""GET /api/workflows/{wf}/runs/{run}/history/export: a run's replay bundle (§6.2).

The body is streamed: the engine yields the canonical bundle a page at a time and
Quart sends each chunk as it comes (chunked transfer encoding), so the export of a
long history holds one page in memory. The bundle carries no ``control_plane``
envelope (control_envelope.py never adds one to this path); an unknown run is
``404 run_not_found`` before anything is streamed. Compression is skipped for the
stream (pipeline.py compresses only bodies it holds whole).
"""

from __future__ import annotations

from datetime import UTC, datetime

from quart import Blueprint, Response, g

from dwtrio.engine import history_export as engine
from dwtrio.errors import RunNotFoundError
from dwtrio.http.workflows import could_exist
from dwtrio.runtime import Runtime


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("history_export", __name__)

    @bp.get("/api/workflows/<wf>/runs/<run_id>/history/export")
    async def export_history(wf: str, run_id: str) -> Response:
        run = None
        if could_exist(wf, run_id):
            run = await engine.find_run(rt.store, g.namespace, wf, run_id)
        if run is None:
            raise RunNotFoundError(
                f"Run {run_id!r} of workflow {wf!r} was not found.", workflow_id=wf, run_id=run_id
            )
        chunks = engine.stream_bundle(
            rt.store,
            run,
            exported_at=datetime.now(UTC),
            signing_key=rt.settings.history_export_signing_key,
            key_id=rt.settings.history_export_signing_key_id,
        )
        response = Response(chunks, status=200, content_type="application/json")
        # A long history may take longer than Quart's default 60 s response timeout;
        # the stream ends on its own (bounded by the run's size) or when the client leaves.
        response.timeout = None
        return response

    return bp
