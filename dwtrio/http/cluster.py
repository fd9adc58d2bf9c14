"""GET /api/cluster/info: the discovery manifest SDKs and the CLI check."""

from __future__ import annotations

from quart import Blueprint, Response, g

from dwtrio.http.envelope import json_response
from dwtrio.manifest import build_cluster_info
from dwtrio.runtime import Runtime


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("cluster", __name__)

    @bp.get("/api/cluster/info")
    async def cluster_info() -> Response:
        manifest = build_cluster_info(
            rt.settings, namespace=g.namespace, version=rt.version, features=rt.features
        )
        return json_response(manifest)

    return bp
