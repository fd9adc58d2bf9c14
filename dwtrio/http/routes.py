"""Which gates apply to which path: the route policy table, as a pure function.

The request pipeline (``pipeline.py``) runs gates in the documented order:
body, authentication, role, version header, namespace, handler. What differs
per route is captured here, keyed on method and path, so unknown routes get
the same gates (and a reasoned 404) as known ones.
"""

from __future__ import annotations

from typing import Literal

import attrs

Plane = Literal["public", "discovery", "control", "worker", "metrics", "other"]

OPERATOR = ("operator", "admin")
ADMIN = ("admin",)
WORKER = ("worker",)
ANY_ROLE = ("worker", "operator", "admin")


@attrs.frozen
class RoutePolicy:
    plane: Plane
    roles: tuple[str, ...] = ()
    check_namespace: bool = False

    @property
    def authenticated(self) -> bool:
        return self.plane not in ("public", "other")


PUBLIC = RoutePolicy("public")
DISCOVERY = RoutePolicy("discovery", ANY_ROLE)
OUTSIDE_API = RoutePolicy("other")
#: Prometheus scrapes: operator or admin credentials (or DW_METRICS_TOKEN, see
#: ``pipeline.admit``); no version header, no namespace.
METRICS_PATH = "/metrics"
METRICS = RoutePolicy("metrics", OPERATOR)


def classify(method: str, path: str) -> RoutePolicy:
    """The policy for ``method path`` (path as received, before percent-decoding)."""
    if path == METRICS_PATH:
        return METRICS
    if path != "/api" and not path.startswith("/api/"):
        return OUTSIDE_API
    parts = [p for p in path[len("/api/") :].split("/") if p]
    head = parts[0] if parts else ""
    if head in ("live", "health", "ready", "openapi.json") and len(parts) == 1:
        return PUBLIC
    if parts == ["cluster", "info"]:
        return DISCOVERY
    if head == "worker":
        return RoutePolicy("worker", WORKER, check_namespace=True)
    if head == "namespaces":
        return RoutePolicy("control", OPERATOR if method in ("GET", "HEAD") else ADMIN)
    if head in ("system", "storage"):
        return RoutePolicy("control", ADMIN, check_namespace=True)
    if head == "workers" and method == "DELETE":
        return RoutePolicy("control", ADMIN, check_namespace=True)
    return RoutePolicy("control", OPERATOR, check_namespace=True)
