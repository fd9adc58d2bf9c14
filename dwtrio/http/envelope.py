"""The one place where errors and payloads become HTTP responses.

* Every error body is ``{"message", "reason", ...fields}``; 422 adds ``errors``
  and ``validation_errors`` (the same map).
* Worker-plane bodies (success and error) carry ``protocol_version`` and
  ``server_capabilities``; errors also carry ``error`` (= message).
* Unknown exceptions become ``500 server_error`` with a request id, logged once.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from quart import Response
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from dwtrio import wire
from dwtrio.errors import (
    DwtrioError,
    MethodNotAllowedError,
    RouteNotFoundError,
    ValidationFailedError,
)
from dwtrio.http.routes import Plane

log = logging.getLogger(__name__)

JSON = "application/json"


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(wire.dumps(payload), status=status, content_type=JSON)


def worker_body(
    payload: dict[str, Any], version: str, capabilities: dict[str, Any]
) -> dict[str, Any]:
    """Add the worker-plane fields every worker response carries."""
    payload["protocol_version"] = version
    payload["server_capabilities"] = capabilities
    return payload


def unwrap(exc: BaseException) -> BaseException:
    """Peel single-exception groups (Trio nurseries wrap errors in them)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def to_dwtrio_error(exc: BaseException) -> DwtrioError:
    exc = unwrap(exc)
    if isinstance(exc, DwtrioError):
        return exc
    if isinstance(exc, MethodNotAllowed):
        return MethodNotAllowedError("The route does not accept this method.")
    if isinstance(exc, NotFound):
        return RouteNotFoundError("No such route.")
    if isinstance(exc, HTTPException) and exc.code and exc.code < 500:
        err = DwtrioError(exc.description or exc.name)
        err.http_status = exc.code  # type: ignore[misc]
        err.reason = exc.name.lower().replace(" ", "_")  # type: ignore[misc]
        return err
    request_id = uuid.uuid4().hex
    log.error("unhandled error (request_id=%s)", request_id, exc_info=exc)
    return DwtrioError("Server Error", request_id=request_id)


def error_body(err: DwtrioError) -> dict[str, Any]:
    body: dict[str, Any] = {"message": err.message, "reason": err.reason}
    body.update(err.fields)
    if isinstance(err, ValidationFailedError):
        body["errors"] = err.errors
        body["validation_errors"] = err.errors
    return body


def error_response(
    exc: BaseException,
    plane: Plane,
    *,
    worker_version: str,
    worker_capabilities: dict[str, Any],
) -> Response:
    err = to_dwtrio_error(exc)
    body = error_body(err)
    if plane == "worker":
        body["error"] = err.message
        worker_body(body, worker_version, worker_capabilities)
    return json_response(body, err.http_status)
