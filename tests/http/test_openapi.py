"""The OpenAPI document: it lists exactly the routes the app serves, and is served."""

from __future__ import annotations

import re
import types
from typing import Any

import httpx
from quart_trio import QuartTrio

from dwtrio.http.app import create_app
from dwtrio.http.openapi_document import OPERATIONS, build_document
from dwtrio.http.worker_plane import PREFIX, WorkerPlane
from dwtrio.runtime import Runtime
from dwtrio.settings import Settings
from tests.conftest import CP, RunningServer

_METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH"}


def _quart_path(rule: str) -> str:
    """``/api/workflows/<wf>/runs/<path:x>`` -> ``/api/workflows/{}/runs/{}``."""
    return re.sub(r"<[^>]+>", "{}", rule)


def _find_worker_plane(app: Any) -> WorkerPlane:
    """The WorkerPlane below any ASGI wrappers (each keeps the app it wraps in ``app``)."""
    while not isinstance(app, WorkerPlane):
        app = app.app
    return app


def live_routes() -> set[tuple[str, str]]:
    """(method, path with anonymous parameters) of every route the server answers."""
    # Building the app touches no store: a bare object stands in for it.
    rt = Runtime.build(Settings.from_env({}), store=types.SimpleNamespace())  # type: ignore[arg-type]
    plane = _find_worker_plane(create_app(rt))
    quart = plane.fallback
    assert isinstance(quart, QuartTrio)
    routes = {
        (method, _quart_path(rule.rule))
        for rule in quart.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in (rule.methods or set()) & _METHODS
    }
    routes |= {
        (route.method, _quart_path(PREFIX + route.pattern).replace("{task_id}", "{}"))
        for route in plane.routes
    }
    return {(m, re.sub(r"\{[^}]*\}", "{}", p)) for m, p in routes}


def documented_routes() -> set[tuple[str, str]]:
    doc = build_document("test")
    return {
        (method.upper(), re.sub(r"\{[^}]*\}", "{}", path))
        for path, item in doc["paths"].items()
        for method in item
    }


def test_document_lists_every_served_route_and_no_other() -> None:
    live, documented = live_routes(), documented_routes()
    assert sorted(live - documented) == [], "served but not in openapi_document.OPERATIONS"
    assert sorted(documented - live) == [], "documented but not served"


def test_operation_ids_are_unique_and_path_parameters_declared() -> None:
    ids = [op.operation_id for op in OPERATIONS]
    assert len(ids) == len(set(ids))
    doc = build_document("test")
    for path, item in doc["paths"].items():
        names = set(re.findall(r"\{([^}]+)\}", path))
        for operation in item.values():
            declared = {p["name"] for p in operation["parameters"] if p.get("in") == "path"}
            assert declared == names, (path, declared)


def test_every_body_and_error_schema_resolves() -> None:
    doc = build_document("test")
    schemas = doc["components"]["schemas"]
    refs = re.findall(r"#/components/schemas/(\w+)", str(doc))
    assert set(refs) <= set(schemas)
    assert schemas["Error"]["required"] == ["reason", "message"]
    for item in doc["paths"].values():
        for operation in item.values():
            if operation.get("requestBody"):
                assert operation["responses"]["422"]


async def test_served_without_credentials(server: RunningServer) -> None:
    async with server.client(token=None) as client:
        response = await client.get("/api/openapi.json")
        assert response.status_code == 200
        doc = response.json()
        assert doc["openapi"] == "3.1.0"
        assert doc["paths"].keys() == build_document("test")["paths"].keys()
        # a public route: no version header needed, and none refused
        with_header = await client.get("/api/openapi.json", headers=CP)
        assert with_header.status_code == 200


async def test_document_parses_as_openapi_31(server: RunningServer) -> None:
    import schemathesis

    async with httpx.AsyncClient(base_url=server.url) as client:
        raw = (await client.get("/api/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(raw)
    from schemathesis.core.result import Ok

    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(OPERATIONS)
