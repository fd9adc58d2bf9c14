"""/api/namespaces: list, create, describe, update, external storage policy, delete.

A delete (admin) soft-deletes the namespace and what it owned
(``engine/namespaces.py``), then drops it from this process's namespace cache
so the request gate answers ``namespace_not_found`` at once; other processes
and nodes notice within their cache's TTL (``runtime.NAMESPACE_CACHE_TTL_S``).
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from dwtrio import wire
from dwtrio.engine import namespaces as engine
from dwtrio.errors import NamespaceNotFoundError
from dwtrio.http.envelope import json_response
from dwtrio.http.pipeline import json_body, namespace_could_exist
from dwtrio.http.schedules import command_context
from dwtrio.protocol.namespaces import CreateNamespace, SetExternalStorage, UpdateNamespace
from dwtrio.protocol.responses import render
from dwtrio.runtime import Runtime
from dwtrio.store import namespaces as store
from dwtrio.store.namespaces import NamespaceRow


def namespace_body(
    row: NamespaceRow, *, created: bool = True, updated: bool = True
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": row.name,
        "description": row.description,
        "retention_days": row.retention_days,
        "status": row.status,
        "external_payload_storage": row.external_payload_storage,
    }
    if created:
        body["created_at"] = wire.iso_offset(row.created_at)
    if updated:
        body["updated_at"] = wire.iso_offset(row.updated_at)
    return body


def path_name(name: str) -> str:
    """The namespace named by the path, lowercased; 404 for names that cannot exist."""
    if not namespace_could_exist(name):
        raise NamespaceNotFoundError(f"Namespace {name!r} does not exist.", namespace=name)
    return name.lower()


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("namespaces", __name__)

    @bp.get("/api/namespaces")
    async def list_namespaces() -> Response:
        rows = await rt.store.read(store.list_namespaces)
        return json_response({"namespaces": [namespace_body(r) for r in rows]})

    @bp.post("/api/namespaces")
    async def create_namespace() -> Response:
        req = wire.structure(json_body(), CreateNamespace)
        retention = req.retention_days or rt.settings.history_retention_days
        row = await rt.store.transaction(
            store.create_namespace, req.name.lower(), req.description, retention
        )
        return json_response(namespace_body(row, updated=False), 201)

    @bp.get("/api/namespaces/<name>")
    async def describe_namespace(name: str) -> Response:
        row = await rt.store.read(store.get_namespace, path_name(name))
        return json_response(namespace_body(row))

    @bp.put("/api/namespaces/<name>")
    async def update_namespace(name: str) -> Response:
        req = wire.structure(json_body(), UpdateNamespace)
        row = await rt.store.transaction(
            store.update_namespace, path_name(name), req.description, req.retention_days
        )
        return json_response(namespace_body(row, created=False))

    @bp.put("/api/namespaces/<name>/external-storage")
    async def set_external_storage(name: str) -> Response:
        req = wire.structure(json_body(), SetExternalStorage)
        policy: dict[str, Any] = {"driver": req.driver, "enabled": req.enabled}
        if req.threshold_bytes is not None:
            policy["threshold_bytes"] = req.threshold_bytes
        config = {
            k: v for k, v in wire.unstructure(req.config or {}).items() if v not in (None, "")
        }
        if config:
            policy["config"] = config
        row = await rt.store.transaction(store.set_external_storage, path_name(name), policy)
        return json_response(namespace_body(row))

    @bp.delete("/api/namespaces/<name>")
    async def delete_namespace(name: str) -> Response:
        namespace = path_name(name)
        context = command_context("delete_namespace", "")
        context["server"] = {"namespace": namespace, "command": "delete_namespace"}
        body = await rt.store.transaction(
            engine.delete_namespace,
            namespace,
            default_namespace=rt.settings.default_namespace,
            context=context,
        )
        rt.namespaces.forget(namespace)
        return json_response(render(body))

    return bp
