"""GET /api/openapi.json: the OpenAPI 3.1 description of every route (public, like the probes).

The document is built from ``openapi_document.OPERATIONS``; docs/openapi.md says
how to use it and how it is kept in step with the routes.
"""

from __future__ import annotations

from quart import Blueprint, Response

from dwtrio.http.envelope import json_response
from dwtrio.http.openapi_document import build_document
from dwtrio.runtime import Runtime


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("openapi", __name__)

    @bp.get("/api/openapi.json")
    async def openapi() -> Response:
        return json_response(build_document(rt.version))

    return bp
