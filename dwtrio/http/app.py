"""create_app(rt): the Quart-Trio application, its pipeline hooks and error handler."""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from dwtrio.http import (
    activity_tasks,
    cluster,
    envelope,
    health,
    namespaces,
    pipeline,
    queries,
    updates,
    workers,
    workflow_commands,
    workflow_tasks,
    workflows,
)
from dwtrio.runtime import Runtime


def create_app(rt: Runtime) -> QuartTrio:
    app = QuartTrio("dwtrio")
    # The body gate enforces DW_MAX_PAYLOAD_BYTES itself; Quart's own cap is a backstop.
    app.config["MAX_CONTENT_LENGTH"] = rt.settings.max_payload_bytes + 1
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
        return envelope.error_response(
            exc,
            pipeline.current_policy().plane,
            worker_version=rt.settings.worker_protocol_version,
            worker_capabilities=rt.worker_capabilities,
        )

    for module in (health, cluster, namespaces, workers, workflow_tasks, activity_tasks):
        app.register_blueprint(module.blueprint(rt))
    app.register_blueprint(workflows.blueprint(rt))
    app.register_blueprint(queries.blueprint(rt))
    app.register_blueprint(updates.blueprint(rt))
    app.register_blueprint(workflow_commands.blueprint(rt))
    return app
