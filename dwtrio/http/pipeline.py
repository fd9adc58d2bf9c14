"""The request pipeline: gates before every handler, headers after.

Gate order (first failure answers): body (413/415/400) -> authentication
(500/401) -> role (403) -> version header (400) -> namespace (404) -> handler.
The body is always read here, even when nobody needs it, because an unread
body can hang the next request on a keep-alive connection.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

from quart import Response, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from dwtrio import wire
from dwtrio.errors import (
    ForbiddenError,
    MalformedJsonError,
    MissingControlPlaneVersionError,
    MissingProtocolVersionError,
    NamespaceNotFoundError,
    PayloadTooLargeError,
    UnsupportedControlPlaneVersionError,
    UnsupportedMediaTypeError,
    UnsupportedProtocolVersionError,
)
from dwtrio.http import control_envelope
from dwtrio.http.auth import authenticate, role_allowed
from dwtrio.http.routes import RoutePolicy, classify
from dwtrio.manifest import CONTROL_PLANE_HEADER, CONTROL_PLANE_VERSION, WORKER_PROTOCOL_HEADER
from dwtrio.runtime import Runtime

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ACCEPTED_CONTENT_TYPES = ["application/json", "application/*+json"]
COMPRESSION_MIN_BYTES = 1024


def current_policy() -> RoutePolicy:
    policy: RoutePolicy | None = getattr(g, "policy", None)
    return policy or classify(request.method, request.path)


async def read_body(rt: Runtime) -> Any:
    """Gate 1: size, media type and JSON syntax. Returns the decoded body (or None)."""
    limit = rt.settings.max_payload_bytes
    declared = request.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLargeError(f"The request body exceeds {limit} bytes.", limit=limit)
    try:
        raw = await request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise PayloadTooLargeError(
            f"The request body exceeds {limit} bytes.", limit=limit
        ) from None
    assert isinstance(raw, bytes)
    if len(raw) > limit:
        raise PayloadTooLargeError(f"The request body exceeds {limit} bytes.", limit=limit)
    g.raw_body = raw
    g.has_body = request.method in BODY_METHODS and bool(raw or (declared or 0) > 0)
    if not g.has_body:
        return None
    media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if not (media == "application/json" or media.endswith("+json")) or request.headers.get(
        "content-encoding", "identity"
    ).strip().lower() not in ("", "identity"):
        raise UnsupportedMediaTypeError(
            "Request bodies must be uncompressed JSON (Content-Type: application/json).",
            accepted_content_types=ACCEPTED_CONTENT_TYPES,
        )
    try:
        return wire.loads(raw)
    except ValueError as exc:
        raise MalformedJsonError(
            "The request body is not valid JSON.", json_error=str(exc)
        ) from None


def json_body() -> Any:
    """The decoded request body, or ``{}`` when the request had none.

    A body that was sent (even JSON ``null``, ``[]`` or ``0``) is returned as is,
    so the handler's validation rejects it as "not a JSON object".
    """
    return g.json if getattr(g, "has_body", False) else {}


def check_control_plane_version(*, required: bool) -> None:
    value = (request.headers.get(CONTROL_PLANE_HEADER) or "").strip()
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


def check_worker_protocol_version(advertised: str) -> None:
    value = (request.headers.get(WORKER_PROTOCOL_HEADER) or "").strip()
    if not value:
        raise MissingProtocolVersionError(
            f"The {WORKER_PROTOCOL_HEADER} header is required on worker routes.",
            supported_version=advertised,
            requested_version=None,
        )
    major, _, minor = advertised.partition(".")
    req_major, _, req_minor = value.partition(".")
    if not (req_major == major and req_minor.isdigit() and int(req_minor) <= int(minor)):
        raise UnsupportedProtocolVersionError(
            f"Worker protocol {value!r} is not supported; this server speaks {major}.0 to {advertised}.",
            supported_version=advertised,
            requested_version=value,
        )


def resolve_namespace(default: str) -> str:
    header = request.headers.get("x-namespace")
    if header is not None and header.strip():
        return header.strip().lower()
    param = request.args.get("namespace")
    if param:
        return param.strip().lower()
    return default.lower()


def namespace_could_exist(name: str) -> bool:
    """False for names Postgres cannot store (NUL bytes): never send them to the store."""
    return "\x00" not in name


async def run_gates(rt: Runtime) -> None:
    """before_request hook: every gate, in the documented order."""
    policy = classify(request.method, request.path)
    g.policy = policy
    g.json = await read_body(rt)
    if not policy.authenticated:
        return
    principal = authenticate(rt.settings, request.headers, g.raw_body)  # type: ignore[arg-type]
    g.principal = principal
    if not role_allowed(principal, policy.roles):
        fields: dict[str, Any] = {"allowed_roles": list(policy.roles)}
        if principal.role is not None:
            fields = {"role": principal.role, **fields}
        raise ForbiddenError("This credential's role may not use this route.", **fields)
    if policy.plane == "control":
        check_control_plane_version(required=True)
    elif policy.plane == "discovery":
        check_control_plane_version(required=False)
    elif policy.plane == "worker":
        check_worker_protocol_version(rt.settings.worker_protocol_version)
    g.namespace = resolve_namespace(rt.settings.default_namespace)
    if policy.check_namespace and not (
        namespace_could_exist(g.namespace) and await rt.namespaces.exists(g.namespace)
    ):
        raise NamespaceNotFoundError(
            f"Namespace {g.namespace!r} does not exist.",
            namespace=g.namespace,
            remediation="Create it with POST /api/namespaces or send an existing X-Namespace.",
        )


def _choose_encoding(accept: str, offered: tuple[str, ...]) -> str | None:
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


async def finish_response(rt: Runtime, response: Response) -> Response:
    """after_request hook: version headers, the control_plane envelope, compression."""
    policy = current_policy()
    if policy.plane == "control":
        response.headers[CONTROL_PLANE_HEADER] = CONTROL_PLANE_VERSION
        await control_envelope.attach(response)
    elif policy.plane == "worker":
        response.headers[WORKER_PROTOCOL_HEADER] = rt.settings.worker_protocol_version
    if rt.settings.compression_enabled and "content-encoding" not in response.headers:
        await compress(response)
    return response


async def compress(response: Response) -> None:
    """gzip or raw-deflate a JSON body of at least 1 KiB, as Accept-Encoding prefers."""
    if not (response.mimetype or "").endswith("json"):
        return
    data = await response.get_data()
    assert isinstance(data, bytes)
    if len(data) < COMPRESSION_MIN_BYTES:
        return
    encoding = _choose_encoding(request.headers.get("accept-encoding", ""), ("gzip", "deflate"))
    if encoding is None:
        return
    if encoding == "gzip":
        packed = gzip.compress(data, compresslevel=6)
    else:
        co = zlib.compressobj(6, zlib.DEFLATED, -15)  # raw DEFLATE, no zlib header
        packed = co.compress(data) + co.flush()
    response.set_data(packed)
    response.headers["Content-Encoding"] = encoding
    response.vary.add("Accept-Encoding")
