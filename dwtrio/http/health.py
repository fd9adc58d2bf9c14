"""/api/live, /api/health and /api/ready: the public probes.

``/api/live`` says only that the process answers (its event loop runs); it never
touches the database, so an orchestrator's liveness probe pointed at it does not
restart every node while the database is down. ``/api/health`` is the protocol's
liveness route and reports the database too (503 while it is unreachable);
``/api/ready`` is readiness.
"""

from __future__ import annotations

from typing import Any

import trio
from quart import Blueprint, Response

from dwtrio import wire
from dwtrio.errors import DwtrioError
from dwtrio.http.auth import auth_config_problem
from dwtrio.http.envelope import json_response
from dwtrio.runtime import Runtime
from dwtrio.store import health, migrate, namespaces

PROBE_TIMEOUT_S = 2.0


async def _database_check(rt: Runtime) -> dict[str, Any]:
    try:
        with trio.fail_after(PROBE_TIMEOUT_S):
            await rt.store.probe(health.ping)
    except (DwtrioError, trio.TooSlowError) as exc:
        return {"status": "unavailable", "message": str(exc) or "timed out"}
    return {"status": "ok"}


async def _migrations_check(rt: Runtime) -> dict[str, Any]:
    """Ready when every migration of this release is applied. Migrations of a newer
    release (a rolling upgrade under way) leave it ready: they are listed, that's all."""
    try:
        with trio.fail_after(PROBE_TIMEOUT_S):
            state = await rt.store.probe(migrate.schema_state)
    except (DwtrioError, trio.TooSlowError) as exc:
        return {"status": "unavailable", "message": str(exc) or "timed out"}
    if state.pending:
        return {
            "status": "missing",
            "missing_migrations": list(state.pending),
            "remediation": "Run `dwtrio bootstrap` against this database.",
        }
    if state.newer:
        return {"status": "ok", "newer_migrations": list(state.newer)}
    return {"status": "ok"}


async def _namespace_check(rt: Runtime) -> dict[str, Any]:
    name = rt.settings.default_namespace.lower()
    try:
        with trio.fail_after(PROBE_TIMEOUT_S):
            exists = await rt.store.probe(namespaces.namespace_exists, name)
    except (DwtrioError, trio.TooSlowError) as exc:
        return {"status": "unavailable", "namespace": name, "message": str(exc) or "timed out"}
    except Exception as exc:  # e.g. the namespaces table does not exist yet
        return {"status": "unavailable", "namespace": name, "message": type(exc).__name__}
    if not exists:
        return {"status": "missing", "namespace": name, "remediation": "Run `dwtrio bootstrap`."}
    return {"status": "ok", "namespace": name}


def _auth_check(rt: Runtime) -> dict[str, Any]:
    problem = auth_config_problem(rt.settings)
    if problem is None:
        return {"status": "ok", "driver": rt.settings.auth_driver}
    status, remediation = problem
    return {"status": status, "driver": rt.settings.auth_driver, "remediation": remediation}


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("health", __name__)

    @bp.get("/api/live")
    async def live() -> Response:
        return json_response({"status": "alive", "timestamp": wire.iso_offset(wire.now_utc())}, 200)

    @bp.get("/api/health")
    async def health() -> Response:
        db = await _database_check(rt)
        ok = db["status"] == "ok"
        return json_response(
            {
                "status": "serving" if ok else "degraded",
                "timestamp": wire.iso_offset(wire.now_utc()),
                "checks": {"database": "ok" if ok else "unavailable"},
            },
            200 if ok else 503,
        )

    @bp.get("/api/ready")
    async def ready() -> Response:
        checks: dict[str, Any] = {"database": await _database_check(rt)}
        if checks["database"]["status"] == "ok":
            checks["migrations"] = await _migrations_check(rt)
            checks["default_namespace"] = await _namespace_check(rt)
        else:
            checks["migrations"] = {"status": "unavailable", "message": "database unavailable"}
            checks["default_namespace"] = {
                "status": "unavailable",
                "message": "database unavailable",
            }
        checks["cache"] = rt.wake_bus_health()
        checks["auth"] = _auth_check(rt)
        if rt.draining.is_set():
            checks["draining"] = {"status": "draining"}
        ok = all(c["status"] == "ok" for c in checks.values())
        return json_response(
            {
                "status": "ready" if ok else "not_ready",
                "timestamp": wire.iso_offset(wire.now_utc()),
                "checks": checks,
            },
            200 if ok else 503,
        )

    return bp
