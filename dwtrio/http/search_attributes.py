"""/api/search-attributes: list, register and remove custom search attributes
(control-plane.md §8; the rules are in ``engine/search_attributes.py``).

Namespace-scoped operator routes without the ``control_plane`` envelope. A
DELETE answers 200 with a JSON object (SDK 2.12.0 requires one, §2.6).
"""

from __future__ import annotations

from quart import Blueprint, Response, g

from dwtrio import wire
from dwtrio.engine import search_attributes as engine
from dwtrio.http.envelope import json_response
from dwtrio.http.pipeline import json_body
from dwtrio.protocol.search_attributes import SYSTEM_ATTRIBUTES, CreateSearchAttribute
from dwtrio.runtime import Runtime


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("search_attributes", __name__)

    @bp.get("/api/search-attributes")
    async def list_search_attributes() -> Response:
        custom = await rt.store.read(engine.list_custom, g.namespace)
        return json_response(
            {"system_attributes": dict(SYSTEM_ATTRIBUTES), "custom_attributes": custom}
        )

    @bp.post("/api/search-attributes")
    async def create_search_attribute() -> Response:
        req = wire.structure(json_body(), CreateSearchAttribute)
        await rt.store.transaction(
            engine.create, g.namespace, req.name, req.type, rt.settings.max_search_attributes
        )
        return json_response({"name": req.name, "type": req.type, "outcome": "created"}, 201)

    @bp.delete("/api/search-attributes/<name>")
    async def delete_search_attribute(name: str) -> Response:
        await rt.store.autocommit(engine.delete, g.namespace, name)
        return json_response({"name": name, "outcome": "deleted"})

    return bp
