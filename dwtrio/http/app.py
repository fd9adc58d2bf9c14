"""create_app(rt): the Quart-Trio application, its pipeline hooks and error handler."""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from dwtrio.http import cluster, envelope, health, namespaces, pipeline
from dwtrio.runtime import Runtime


def create_app(rt: Runtime) -> QuartTrio:
    app = QuartTrio("dwtrio")
    # The body gate enforces DW_MAX_PAYLOAD_BYTES itself; Quart's own cap is a backstop.
    app.config["MAX_CONTENT_LENGTH"] = rt.settings.max_payload_bytes + 1
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.url_map.strict_slashes = False

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

    for module in (health, cluster, namespaces):
        app.register_blueprint(module.blueprint(rt))
    return app
