"""``GET /metrics``: the Prometheus scrape, and the HTTP metrics of every request.

The route answers prometheus_client's text format (or OpenMetrics when the
scraper asks for it in ``Accept``). Its gates are the route table's
(``routes.METRICS``): operator or admin credentials, or ``DW_METRICS_TOKEN``;
no version header. ``DW_METRICS_BIND`` serves the same text on a listener of
its own without authentication (``dwtrio.main``).

:func:`observe` counts each request by route template, method and status, and
times it; ``request_log.RequestLog``, which wraps the whole ASGI application,
calls it as each request ends (one wrapper fewer for a parked long-poll to hold). The template comes from
whichever side answered: the worker plane puts its route pattern in the ASGI
scope (``WORKER_ROUTE_KEY``), the Quart app its rule (``QUART_ROUTE_KEY``, set
by this blueprint's after-request hook, which runs for error answers too).
"""

from __future__ import annotations

from typing import Any

from prometheus_client.exposition import choose_encoder
from quart import Blueprint, Response, request

from dwtrio import metrics
from dwtrio.runtime import Runtime

#: Scope keys naming the route that answered (the worker plane's pattern below
#: ``/api/worker/``; the Quart rule).
WORKER_ROUTE_KEY = "dwtrio.worker_route"
QUART_ROUTE_KEY = "dwtrio.route"
WORKER_PREFIX = "/api/worker/"


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("metrics", __name__)

    @bp.get("/metrics")
    async def scrape() -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(metrics.scrape_registry()), content_type=content_type)

    @bp.after_app_request
    async def note_route(response: Response) -> Response:
        rule = request.url_rule
        if rule is not None:
            scope: dict[str, Any] = request.scope  # type: ignore[assignment]  # a TypedDict
            scope[QUART_ROUTE_KEY] = rule.rule
        return response

    return bp


def route_of(scope: Any) -> str | None:
    """The template of the route that answered, None when no route matched."""
    worker = scope.get(WORKER_ROUTE_KEY)
    if worker is not None:
        return WORKER_PREFIX + worker  # type: ignore[no-any-return]
    return scope.get(QUART_ROUTE_KEY)  # type: ignore[no-any-return]


def observe(scope: Any, status: int | None, seconds: float) -> None:
    """Count and time one answered HTTP request (``status`` None: no response was sent)."""
    metrics.observe_request(route_of(scope), scope["method"], status, seconds)
