"""The one place where outcomes, errors and payloads become HTTP responses.

* An engine :class:`~dwtrio.engine.outcome.Outcome` gets its HTTP status here
  (:data:`HTTP_STATUS`), from the engine's verdict.
* Every JSON answer of the Quart app is serialized once, in
  :func:`json_response`; a workflow operation's gets its ``control_plane``
  envelope there, just before (``control_envelope.py`` says which and how).
* Every error body is ``{"message", "reason", ...fields}``; 422 adds ``errors``
  and ``validation_errors`` (the same map). Every error answer (4xx/5xx) carries the
  request's ``request_id`` (``request_log.py``).
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
from dwtrio.engine.outcome import Outcome, Verdict
from dwtrio.errors import (
    DwtrioError,
    MethodNotAllowedError,
    RouteNotFoundError,
    ValidationFailedError,
)
from dwtrio.http import control_envelope, request_log
from dwtrio.http.routes import Plane
from dwtrio.protocol.responses import render

log = logging.getLogger(__name__)

JSON = "application/json"


#: The HTTP status of each engine verdict.
HTTP_STATUS: dict[Verdict, int] = {
    Verdict.DONE: 200,
    Verdict.CREATED: 201,
    Verdict.ACCEPTED: 202,
    Verdict.REJECTED: 409,
    Verdict.PARTIAL: 207,
}


def json_response(payload: Any, status: int = 200) -> Response:
    """A Quart-side JSON answer, serialized once (with the control_plane envelope
    when the current request is a workflow operation)."""
    payload = complete(payload, status, control_envelope.current_target())
    return Response(wire.dumps(payload), status=status, content_type=JSON)


def complete(payload: Any, status: int, target: control_envelope.Target | None) -> Any:
    """What every control-plane JSON answer gets before it is serialized, on either
    side of Quart: the request id on a failure, the ``control_plane`` envelope of a
    workflow operation (``target``)."""
    if isinstance(payload, dict):
        request_log.note_body(payload)
        # Failures a handler answers itself (query and update refusals, readiness).
        if (
            status >= 400
            and "request_id" not in payload
            and (request_id := request_log.current_request_id()) is not None
        ):
            payload = {**payload, "request_id": request_id}
        if target is not None:
            payload = control_envelope.add_envelope(dict(payload), target)
    return payload


def outcome_response(outcome: Outcome) -> Response:
    """A control-plane answer from an engine outcome: its body, at its verdict's status."""
    return json_response(render(outcome.body), HTTP_STATUS[outcome.verdict])


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
    request_id = request_log.current_request_id() or uuid.uuid4().hex
    log.error("unhandled error (request_id=%s)", request_id, exc_info=exc)
    return DwtrioError("Server Error", request_id=request_id)


def error_body(err: DwtrioError) -> dict[str, Any]:
    """The error envelope. ``request_id`` is the request's id (the ``X-Request-Id``
    answered), unless the error itself names one: a ``request_id_conflict`` keeps the
    command key the protocol puts there."""
    body: dict[str, Any] = {"message": err.message, "reason": err.reason}
    body.update(err.fields)
    if isinstance(err, ValidationFailedError):
        body["errors"] = err.errors
        body["validation_errors"] = err.errors
    if "request_id" not in body and (request_id := request_log.current_request_id()):
        body["request_id"] = request_id
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
