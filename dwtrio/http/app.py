"""create_app(rt): the ASGI application.

The worker plane (``/api/worker/...``) and the busiest control-plane routes
(``workflows.BELOW_QUART``) are served below Quart by
``worker_plane.WorkerPlane`` (see its docstring for why); everything else is
the Quart-Trio app built by :func:`create_quart_app`, with its pipeline hooks
and error handler.
"""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from dwtrio.http import (
    activities,
    activity_tasks,
    build_ids,
    cluster,
    envelope,
    health,
    history_export,
    metrics,
    namespaces,
    openapi,
    pipeline,
    queries,
    query_tasks,
    request_log,
    schedules,
    search_attributes,
    system_metrics,
    system_passes,
    task_queues,
    updates,
    workers,
    workers_admin,
    workflow_commands,
    workflow_debug,
    workflow_maintenance,
    workflow_streams,
    workflow_tasks,
    workflows,
)
from dwtrio.http.worker_plane import WorkerPlane
from dwtrio.runtime import Runtime


def create_app(rt: Runtime) -> request_log.RequestLog:
    routes = [
        route
        for module in (workers, workflow_tasks, activity_tasks, query_tasks)
        for route in module.routes(rt)
    ]
    # Outermost: the request id, the request's log line and metrics cover both planes.
    return request_log.RequestLog(
        WorkerPlane(rt, routes, fallback=create_quart_app(rt), control=workflows.BELOW_QUART),
        observe=metrics.observe,
    )


def create_quart_app(rt: Runtime) -> QuartTrio:
    app = QuartTrio("dwtrio")
    # The body gate enforces DW_MAX_PAYLOAD_BYTES itself; Quart's own cap is a backstop.
    app.config["MAX_CONTENT_LENGTH"] = rt.settings.max_payload_bytes + 1
    # The body gate answers a body slower than this 408 (pipeline.body_timed_out).
    app.config["BODY_TIMEOUT"] = rt.settings.body_timeout_s
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.url_map.strict_slashes = False
    # No 308 HTML redirects for "//" (e.g. a decoded "%2F" segment): unknown routes get a JSON 404.
    app.url_map.merge_slashes = False

    @app.before_request
    async def gates() -> None:
        await pipeline.run_gates(rt)

    @app.after_request
    async def finish(response: Response) -> Response:
        return await pipeline.finish_response(rt, response)

    @app.errorhandler(Exception)
    async def on_error(exc: Exception) -> Response:
        response = envelope.error_response(
            exc,
            pipeline.current_policy().plane,
            worker_version=rt.settings.worker_protocol_version,
            worker_capabilities=rt.worker_capabilities,
        )
        if getattr(envelope.unwrap(exc), "closes_connection", False):
            response.headers["Connection"] = "close"
        return response

    for module in (
        health,
        metrics,
        cluster,
        namespaces,
        workflows,
        activities,
        queries,
        updates,
        workflow_commands,
        workflow_maintenance,
        workflow_debug,
        workflow_streams,
        schedules,
        search_attributes,
        workers_admin,
        history_export,
        build_ids,
        task_queues,
        system_metrics,
        system_passes,
        openapi,
    ):
        app.register_blueprint(module.blueprint(rt))
    return app
