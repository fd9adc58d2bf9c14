"""The request pipeline: gates before every handler, headers after.

Gate order (first failure answers): body (413/415/400) -> authentication
(500/401) -> role (403) -> version header (400) -> namespace (404) -> strings
(422) -> handler. The body gate also refuses JSON nested deeper than
``wire.MAX_JSON_DEPTH`` (400 malformed_json); the strings gate refuses a body
with NUL in any string or key (422 validation_failed, one entry per field path).
The body is always read, even when nobody needs it, because an unread body
can hang the next request on a keep-alive connection.

The gates are plain functions of the method, path, headers and body, shared by
the two ways a request is served: the Quart app (control plane, discovery,
probes) runs them in its ``before_request`` hook through :func:`run_gates`;
the worker plane (``worker_plane.py``, below Quart) calls :func:`admit`
directly.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Mapping
from typing import Any

import attrs
from quart import Response, g, request
from quart.wrappers.response import IterableBody
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout

from dwtrio import wire
from dwtrio.errors import (
    AmbiguousFramingError,
    ForbiddenError,
    HeadersTooLargeError,
    MalformedJsonError,
    MissingControlPlaneVersionError,
    MissingProtocolVersionError,
    NamespaceNotFoundError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UnsupportedControlPlaneVersionError,
    UnsupportedMediaTypeError,
    UnsupportedProtocolVersionError,
    ValidationFailedError,
)
from dwtrio.http import request_log
from dwtrio.http.auth import Principal, authenticate, metrics_token_matches, role_allowed
from dwtrio.http.routes import RoutePolicy, classify
from dwtrio.manifest import CONTROL_PLANE_HEADER, CONTROL_PLANE_VERSION, WORKER_PROTOCOL_HEADER
from dwtrio.runtime import Runtime

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ACCEPTED_CONTENT_TYPES = ["application/json", "application/*+json"]
COMPRESSION_MIN_BYTES = 1024


@attrs.frozen
class Admitted:
    """What the gates established about a request."""

    policy: RoutePolicy
    #: Whether a body was sent, and its decoded JSON (None when none was).
    has_body: bool
    json: Any
    principal: Principal | None = None
    namespace: str | None = None


def too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"The request body exceeds {limit} bytes.", limit=limit)


def check_head(scope: Mapping[str, Any]) -> None:
    """The head gate: the request line and headers fit in ``wire.MAX_HEAD_BYTES``.

    Hypercorn (h11) refuses a larger head only while it is incomplete, so one that
    arrives in a single read of up to 64 KiB got through; this makes the limit hold
    however the head was sent. A head with both ``Content-Length`` and
    ``Transfer-Encoding`` is refused too: h11 reads such a body as chunked and keeps the
    connection, where RFC 9112 (6.1) has the server close it after answering, since a
    proxy in front may have framed the body the other way (request smuggling).
    """
    size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
    framing = 0
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4  # ": " and CRLF
        if name in (b"content-length", b"transfer-encoding"):
            framing |= 1 if name == b"content-length" else 2
    if framing == 3:
        raise AmbiguousFramingError(
            "A request may not carry both Content-Length and Transfer-Encoding."
        )
    if size > wire.MAX_HEAD_BYTES:
        raise HeadersTooLargeError(
            f"The request line and headers exceed {wire.MAX_HEAD_BYTES} bytes.",
            limit=wire.MAX_HEAD_BYTES,
        )


def body_timed_out() -> RequestTimeoutError:
    return RequestTimeoutError("The request body did not arrive in time.")


def decode_body(
    method: str, raw: bytes, declared: int | None, headers: Mapping[str, str]
) -> tuple[bool, Any]:
    """Gate 1 (after the size check): media type, JSON syntax and nesting depth
    -> (has_body, json)."""
    if not (method in BODY_METHODS and bool(raw or (declared or 0) > 0)):
        return False, None
    media = (headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    encoding = (headers.get("content-encoding") or "identity").strip().lower()
    if not (media == "application/json" or media.endswith("+json")) or encoding not in (
        "",
        "identity",
    ):
        raise UnsupportedMediaTypeError(
            "Request bodies must be uncompressed JSON (Content-Type: application/json).",
            accepted_content_types=ACCEPTED_CONTENT_TYPES,
        )
    try:
        value = wire.loads(raw)
    except ValueError as exc:
        if str(exc).startswith("depth limit exceeded"):  # orjson's own limit (1024)
            raise too_deep() from None
        raise MalformedJsonError(
            "The request body is not valid JSON.", json_error=str(exc)
        ) from None
    if wire.too_deep(value, raw=raw):
        raise too_deep()
    return True, value


def too_deep() -> MalformedJsonError:
    limit = wire.MAX_JSON_DEPTH
    return MalformedJsonError(
        f"The request body nests arrays and objects deeper than {limit} levels.",
        json_error=f"depth limit exceeded: more than {limit} nested arrays and objects",
        max_depth=limit,
    )


def check_strings(raw: bytes, json: Any) -> None:
    """No string or key of the body may hold NUL (PostgreSQL text and jsonb cannot).

    Runs after the namespace gate, so it ranks with the handlers' own validation
    (a 422 after 401/403/400/404), and covers every field, typed or free-form.
    """
    if errors := wire.nul_errors(json, raw):
        raise ValidationFailedError(errors)


def check_control_plane_version(headers: Mapping[str, str], *, required: bool) -> None:
    value = (headers.get(CONTROL_PLANE_HEADER) or "").strip()
    remediation = (
        f"Send {CONTROL_PLANE_HEADER}: {CONTROL_PLANE_VERSION} on every control-plane request."
    )
    if not value:
        if required:
            raise MissingControlPlaneVersionError(
                f"The {CONTROL_PLANE_HEADER} header is required.",
                supported_version=CONTROL_PLANE_VERSION,
                requested_version=None,
                remediation=remediation,
            )
        return
    if value != CONTROL_PLANE_VERSION:
        raise UnsupportedControlPlaneVersionError(
            f"Control-plane version {value!r} is not supported; this server speaks {CONTROL_PLANE_VERSION}.",
            supported_version=CONTROL_PLANE_VERSION,
            requested_version=value,
            remediation=remediation,
        )


def check_worker_protocol_version(headers: Mapping[str, str], advertised: str) -> None:
    value = (headers.get(WORKER_PROTOCOL_HEADER) or "").strip()
    if not value:
        raise MissingProtocolVersionError(
            f"The {WORKER_PROTOCOL_HEADER} header is required on worker routes.",
            supported_version=advertised,
            requested_version=None,
        )
    major, _, minor = advertised.partition(".")
    req_major, _, req_minor = value.partition(".")
    if not (
        req_major == major
        and req_minor.isascii()
        and req_minor.isdigit()
        and int(req_minor) <= int(minor)
    ):
        raise UnsupportedProtocolVersionError(
            f"Worker protocol {value!r} is not supported; this server speaks {major}.0 to {advertised}.",
            supported_version=advertised,
            requested_version=value,
        )


def resolve_namespace(default: str, header: str | None, param: str | None) -> str:
    """X-Namespace, else the ``namespace`` query parameter, else the default (lower-cased)."""
    if header is not None and header.strip():
        return header.strip().lower()
    if param:
        return param.strip().lower()
    return default.lower()


def namespace_could_exist(name: str) -> bool:
    """False for names Postgres cannot store (NUL bytes): never send them to the store."""
    return "\x00" not in name


async def admit(
    rt: Runtime,
    method: str,
    path: str,
    headers: Mapping[str, str],
    raw: bytes,
    *,
    declared: int | None,
    namespace_param: str | None,
) -> Admitted:
    """Every gate after the size check, in the documented order.

    ``headers`` answers ``get`` for lower-case names; ``raw`` is the whole body.
    """
    policy = classify(method, path)
    has_body, json = decode_body(method, raw, declared, headers)
    if not policy.authenticated:
        return Admitted(policy, has_body, json)
    if policy.plane == "metrics" and metrics_token_matches(rt.settings, headers):
        return Admitted(policy, has_body, json)
    principal = authenticate(rt.settings, headers, raw)
    if not role_allowed(principal, policy.roles):
        fields: dict[str, Any] = {"allowed_roles": list(policy.roles)}
        if principal.role is not None:
            fields = {"role": principal.role, **fields}
        raise ForbiddenError("This credential's role may not use this route.", **fields)
    if policy.plane == "control":
        check_control_plane_version(headers, required=True)
    elif policy.plane == "discovery":
        check_control_plane_version(headers, required=False)
    elif policy.plane == "worker":
        check_worker_protocol_version(headers, rt.settings.worker_protocol_version)
    namespace = resolve_namespace(
        rt.settings.default_namespace, headers.get("x-namespace"), namespace_param
    )
    if policy.check_namespace and not (
        namespace_could_exist(namespace) and await rt.namespaces.exists(namespace)
    ):
        raise NamespaceNotFoundError(
            f"Namespace {namespace!r} does not exist.",
            namespace=namespace,
            remediation="Create it with POST /api/namespaces or send an existing X-Namespace.",
        )
    if has_body:
        check_strings(raw, json)
    return Admitted(policy, has_body, json, principal, namespace)


def choose_encoding(accept: str, offered: tuple[str, ...] = ("gzip", "deflate")) -> str | None:
    q: dict[str, float] = {}
    for item in accept.split(","):
        name, *params = (p.strip() for p in item.split(";"))
        if not name:
            continue
        weight = 1.0
        for param in params:
            key, _, val = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(val)
                except ValueError:
                    weight = 0.0
        q[name.lower()] = weight
    star = q.get("*")
    gz = q.get("gzip", star if star is not None else 0.0) if "gzip" in offered else 0.0
    df = q.get("deflate", star if star is not None else 0.0) if "deflate" in offered else 0.0
    if gz > 0 and gz >= df:
        return "gzip"
    if df > 0:
        return "deflate"
    return None


def compress_json(data: bytes, accept_encoding: str) -> tuple[bytes, str | None]:
    """gzip or raw-deflate a JSON body of at least 1 KiB, as Accept-Encoding prefers."""
    if len(data) < COMPRESSION_MIN_BYTES:
        return data, None
    encoding = choose_encoding(accept_encoding)
    if encoding == "gzip":
        return gzip.compress(data, compresslevel=6), encoding
    if encoding == "deflate":
        co = zlib.compressobj(6, zlib.DEFLATED, -15)  # raw DEFLATE, no zlib header
        return co.compress(data) + co.flush(), encoding
    return data, None


# --- the Quart side ---------------------------------------------------------------------


def current_policy() -> RoutePolicy:
    admitted: Admitted | None = getattr(g, "admitted", None)
    return admitted.policy if admitted else classify(request.method, request.path)


def json_body() -> Any:
    """The decoded request body, or ``{}`` when the request had none.

    A body that was sent (even JSON ``null``, ``[]`` or ``0``) is returned as is,
    so the handler's validation rejects it as "not a JSON object".
    """
    admitted: Admitted | None = getattr(g, "admitted", None)
    return admitted.json if admitted and admitted.has_body else {}


async def run_gates(rt: Runtime) -> None:
    """before_request hook: read the body, then every gate, in the documented order."""
    if request.url_rule is not None:
        request_log.note_route(request_log.route_template(request.url_rule.rule))
    if view_args := request.view_args:
        request_log.note(
            workflow_id=view_args.get("wf") or view_args.get("workflow_id"),
            run_id=view_args.get("run_id"),
            worker_id=view_args.get("worker_id"),
        )
    check_head(request.scope)
    limit = rt.settings.max_payload_bytes
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(limit)
    try:
        raw = await request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise too_large(limit) from None
    except RequestTimeout:
        raise body_timed_out() from None
    assert isinstance(raw, bytes)
    if len(raw) > limit:
        raise too_large(limit)
    g.admitted = await admit(
        rt,
        request.method,
        request.path,
        request.headers,  # type: ignore[arg-type]  # werkzeug Headers: case-insensitive get
        raw,
        declared=declared,
        namespace_param=request.args.get("namespace"),
    )
    g.namespace = g.admitted.namespace
    request_log.note(namespace=g.namespace)


async def finish_response(rt: Runtime, response: Response) -> Response:
    """after_request hook: version headers, compression."""
    policy = current_policy()
    if policy.plane == "control":
        response.headers[CONTROL_PLANE_HEADER] = CONTROL_PLANE_VERSION
    elif policy.plane == "worker":
        response.headers[WORKER_PROTOCOL_HEADER] = rt.settings.worker_protocol_version
    if (
        rt.settings.compression_enabled
        and "content-encoding" not in response.headers
        and (response.mimetype or "").endswith("json")
        # a streamed body (history export) goes out as it is made, uncompressed
        and not isinstance(response.response, IterableBody)
    ):
        data = await response.get_data()
        assert isinstance(data, bytes)
        packed, encoding = compress_json(data, request.headers.get("accept-encoding", ""))
        if encoding is not None:
            response.set_data(packed)
            response.headers["Content-Encoding"] = encoding
            response.vary.add("Accept-Encoding")
    return response
