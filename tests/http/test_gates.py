"""The request pipeline over real HTTP: body gate, auth, roles, version headers,
namespace resolution, routing fallbacks, compression and keep-alive.

Contract: auth-and-headers.md (whole), control-plane.md §1-§2,
cluster-info-and-readiness.md §3.1, worker-plane.md §1.2-§1.4.

Paths under ``/api/worker/no-such-route`` and ``/api/workflows/wf/no-such-route``
are deliberately unknown: they get the full gate chain of their route group and
then a stable ``404 not_found``, whatever handlers exist later.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import zlib
from typing import Any

import h11
import httpx
import pytest
import trio

from conftest import ADMIN_TOKEN, CP, WP, RunningServer, StartServer

CP_HEADER = "X-Durable-Workflow-Control-Plane-Version"
WP_HEADER = "X-Durable-Workflow-Protocol-Version"
JSON_CT = {"Content-Type": "application/json"}
BOTH = {**CP, **WP}

WORKER_ROUTE = "/api/worker/no-such-route"
WORKFLOW_ROUTE = "/api/workflows/wf-1/no-such-route"

ACCEPTED_CONTENT_TYPES = ["application/json", "application/*+json"]


def assert_error(r: httpx.Response, status: int, reason: str, **fields: Any) -> dict[str, Any]:
    """Status, reason, a non-empty message and each given extra field, exactly."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["reason"] == reason, body
    assert isinstance(body["message"], str) and body["message"], body
    for key, value in fields.items():
        assert key in body, (key, body)
        assert body[key] == value, (key, body)
    return body


def assert_control_plane_headers(r: httpx.Response) -> None:
    assert r.headers.get(CP_HEADER) == "2", dict(r.headers)
    assert WP_HEADER not in r.headers


def assert_no_version_headers(r: httpx.Response) -> None:
    assert CP_HEADER not in r.headers, dict(r.headers)
    assert WP_HEADER not in r.headers, dict(r.headers)


def assert_worker_error(
    r: httpx.Response, status: int, reason: str, **fields: Any
) -> dict[str, Any]:
    body = assert_error(r, status, reason, **fields)
    assert body["error"] == body["message"]
    assert body["protocol_version"] == "1.20"
    assert isinstance(body["server_capabilities"], dict)
    assert body["server_capabilities"]["long_poll_timeout"] == 30
    assert body["server_capabilities"]["response_compression"] == ["gzip", "deflate"]
    assert r.headers.get(WP_HEADER) == "1.20"
    assert CP_HEADER not in r.headers
    return body


def sign(key: str, body: bytes) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


class RawHttp:
    """One HTTP/1.1 connection driven by h11, to control framing byte for byte."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, server: RunningServer) -> RawHttp:
        url = httpx.URL(server.url)
        assert url.port is not None
        return cls(await trio.open_tcp_stream(url.host, url.port))

    async def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes = b"",
        *,
        declared_length: int | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request; with ``declared_length`` only the head goes out."""
        length = len(body) if declared_length is None else declared_length
        wire_headers = [("Host", "dwtrio.test"), ("Content-Length", str(length))]
        wire_headers += list(headers.items())
        data = self.conn.send(h11.Request(method=method, target=target, headers=wire_headers))
        if declared_length is None:
            if body:
                data += self.conn.send(h11.Data(data=body))
            data += self.conn.send(h11.EndOfMessage())
        await self.stream.send_all(data)
        return await self._response()

    async def _response(self) -> tuple[int, dict[str, str], bytes]:
        status = 0
        resp_headers: dict[str, str] = {}
        chunks: list[bytes] = []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                resp_headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return status, resp_headers, b"".join(chunks)

    def next_cycle(self) -> None:
        """Reuse the connection (fails if either side wanted it closed)."""
        self.conn.start_next_cycle()

    async def aclose(self) -> None:
        await self.stream.aclose()


# =======================================================================================
# 1. Body gate
# =======================================================================================
async def test_body_over_limit_is_413(start_server: StartServer) -> None:
    srv = await start_server(max_payload_bytes=2048)
    big = b'{"name": "' + b"x" * 3000 + b'"}'
    async with srv.client(**CP) as c:
        r = await c.post("/api/namespaces", content=big, headers=JSON_CT)
        assert_error(r, 413, "payload_too_large", limit=2048)
        assert_control_plane_headers(r)
        # the gate runs on the public probes too, before anything else
        r = await c.post("/api/health", content=big, headers=JSON_CT)
        assert_error(r, 413, "payload_too_large", limit=2048)
        assert_no_version_headers(r)
    # and before authentication
    async with srv.client(token=None) as c:
        r = await c.post("/api/namespaces", content=big, headers=JSON_CT)
        assert_error(r, 413, "payload_too_large", limit=2048)
        # exactly at the limit is fine: the request reaches auth (401 without a token)
        exact = b'"' + b"y" * 2046 + b'"'
        assert len(exact) == 2048
        r = await c.post("/api/namespaces", content=exact, headers=JSON_CT)
        assert_error(r, 401, "unauthorized")


async def test_chunked_body_over_limit_is_413(start_server: StartServer) -> None:
    """No Content-Length: the actual body length is what counts."""
    srv = await start_server(max_payload_bytes=2048)

    async def chunks() -> Any:
        yield b'{"name": "'
        for _ in range(5):
            yield b"x" * 1000
        yield b'"}'

    async with srv.client(**CP) as c:
        r = await c.post("/api/namespaces", content=chunks(), headers=JSON_CT)
        assert "content-length" not in r.request.headers
        assert r.request.headers["transfer-encoding"] == "chunked"
        assert_error(r, 413, "payload_too_large", limit=2048)


async def test_declared_content_length_over_limit_is_413(start_server: StartServer) -> None:
    """A too-large Content-Length is refused from the head alone, body unsent."""
    srv = await start_server(max_payload_bytes=2048)
    raw = await RawHttp.open(srv)
    try:
        with trio.fail_after(5):
            status, headers, body = await raw.request(
                "POST", "/api/health", JSON_CT, declared_length=10_000_000
            )
    finally:
        await raw.aclose()
    assert status == 413
    assert headers["content-type"].startswith("application/json")
    import orjson

    payload = orjson.loads(body)
    assert payload["reason"] == "payload_too_large"
    assert payload["limit"] == 2048
    assert "x-durable-workflow-control-plane-version" not in headers


def filler_headers(total_bytes: int) -> dict[str, str]:
    """Headers of 40 bytes each on the wire (``X-Filler-NNNN: <24 x>`` and CRLF)."""
    return {f"X-Filler-{i:04d}": "x" * 24 for i in range(total_bytes // 40)}


@pytest.mark.parametrize("path", ["/api/namespaces", "/api/worker/register", "/api/health"])
async def test_a_head_over_the_limit_is_431_however_it_arrives(
    server: RunningServer, path: str
) -> None:
    """16 KiB of request line and headers at most. Hypercorn refuses a larger head only
    while it is still arriving (a bare 431), so 700 headers written at once used to be
    served; the head gate answers them 431 in the plane's envelope, before the body is
    read and before authentication."""
    head = {**JSON_CT, **BOTH}
    raw = await RawHttp.open(server)
    try:
        with trio.fail_after(5):
            status, headers, body = await raw.request(
                "POST", path, {**head, **filler_headers(28_000)}, b"{}"
            )
            assert status == 431, body
            assert headers["content-type"].startswith("application/json")
            import orjson

            payload = orjson.loads(body)
            assert payload["reason"] == "headers_too_large", payload
            assert payload["limit"] == 16384
            assert payload["request_id"] == headers["x-request-id"]
            if path.startswith("/api/worker/"):
                # the worker plane ends the connection like any refusal before the body
                assert payload["protocol_version"] == "1.20"
                assert headers["connection"] == "close"
                assert await raw.stream.receive_some() == b""
    finally:
        await raw.aclose()
    # a head under the limit goes through to the route (here: no credential, so 401)
    async with server.client(token=None, **BOTH) as c:
        r = await c.get("/api/namespaces", headers=filler_headers(14_000))
        assert_error(r, 401, "unauthorized")


@pytest.mark.parametrize("path", ["/api/namespaces", "/api/worker/register"])
async def test_content_length_with_transfer_encoding_is_400_and_closes(
    server: RunningServer, path: str
) -> None:
    """Both framings at once: h11 reads the body as chunked and kept the connection (the
    abuse drill got the route's own answer and a reusable connection). RFC 9112 6.1 has
    the server close it after answering, since a proxy in front may have read the body
    by its Content-Length: the head gate refuses such a request and the connection ends."""
    url = httpx.URL(server.url)
    assert url.port is not None
    stream = await trio.open_tcp_stream(url.host, url.port)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: dwtrio.test\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {ADMIN_TOKEN}\r\n{CP_HEADER}: 2\r\n{WP_HEADER}: 1.20\r\n"
        "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    )
    data = b""
    try:
        with trio.fail_after(5):
            await stream.send_all(request.encode())
            while chunk := await stream.receive_some(65536):
                data += chunk
    finally:
        await stream.aclose()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), data
    assert b"connection: close" in head.lower(), head
    import orjson

    assert orjson.loads(body)["reason"] == "ambiguous_framing", body


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/xml"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "application/jsonp"},
        {},  # no Content-Type at all
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
    ],
)
async def test_unsupported_media_type_is_415(
    server: RunningServer, headers: dict[str, str]
) -> None:
    body = b'{"name": "billing"}'
    if headers.get("Content-Encoding") == "gzip":
        body = gzip.compress(body)
    async with server.client(**CP) as c:
        r = await c.post("/api/namespaces", content=body, headers=headers)
        assert_error(
            r, 415, "unsupported_media_type", accepted_content_types=ACCEPTED_CONTENT_TYPES
        )
        assert_control_plane_headers(r)
    # before auth too, and on the public probes
    async with server.client(token=None) as c:
        r = await c.post("/api/namespaces", content=body, headers=headers)
        assert_error(r, 415, "unsupported_media_type")
        r = await c.post("/api/health", content=body, headers=headers)
        assert_error(r, 415, "unsupported_media_type")
        assert_no_version_headers(r)


@pytest.mark.parametrize("body", [b"{", b"{'a': 1}", b"nope", b'{"a": 1,}', b"\xff\xfe"])
async def test_malformed_json_is_400(server: RunningServer, body: bytes) -> None:
    async with server.client(**CP) as c:
        r = await c.post("/api/namespaces", content=body, headers=JSON_CT)
        result = assert_error(r, 400, "malformed_json")
        assert isinstance(result["json_error"], str) and result["json_error"]
        assert_control_plane_headers(r)


async def test_body_gate_precedes_auth(server: RunningServer) -> None:
    async with server.client(token=None) as c:
        r = await c.post("/api/namespaces", content=b"{bad", headers=JSON_CT)
        assert_error(r, 400, "malformed_json")
        r = await c.put("/api/namespaces/default", content=b"{bad", headers=JSON_CT)
        assert_error(r, 400, "malformed_json")
        r = await c.post(WORKER_ROUTE, content=b"{bad", headers=JSON_CT)
        assert_error(r, 400, "malformed_json")
        r = await c.post("/api/health", content=b"{bad", headers=JSON_CT)
        assert_error(r, 400, "malformed_json")
        # a valid body without a token gets the auth error instead
        r = await c.post("/api/namespaces", content=b"{}", headers=JSON_CT)
        assert_error(r, 401, "unauthorized")


async def test_empty_post_passes_the_gate(server: RunningServer) -> None:
    async with server.client(**CP) as c:
        # no body, no Content-Type: reaches the handler (422 for the missing name)
        r = await c.post("/api/namespaces")
        assert r.request.headers.get("content-length") == "0"
        body = assert_error(r, 422, "validation_failed")
        assert "name" in body["errors"]
        r = await c.post("/api/namespaces", headers={"Content-Type": "text/plain"})
        assert_error(r, 422, "validation_failed")
        # POST on a GET-only probe: passes the gate, then 405
        r = await c.post("/api/health")
        assert_error(r, 405, "method_not_allowed")


async def test_get_bodies_are_not_gated(server: RunningServer) -> None:
    async with server.client(**CP) as c:
        r = await c.request(
            "GET", "/api/namespaces", content=b"not json", headers={"Content-Type": "text/plain"}
        )
        assert r.status_code == 200, r.text
        assert [n["name"] for n in r.json()["namespaces"]] == ["default"]


@pytest.mark.parametrize("body", [b"42", b'"billing"', b"null", b"true", b"[]", b'[{"name": "x"}]'])
async def test_json_scalars_pass_the_gate(server: RunningServer, body: bytes) -> None:
    async with server.client(**CP) as c:
        r = await c.post("/api/namespaces", content=body, headers=JSON_CT)
        result = assert_error(r, 422, "validation_failed")
        assert result["errors"] == {"body": ["The request body must be a JSON object."]}
        assert result["validation_errors"] == result["errors"]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.foo+json",
        "application/vnd.durable-workflow.v2+json; charset=UTF-8",
        "application/merge-patch+json",
    ],
)
async def test_json_media_types_accepted(server: RunningServer, content_type: str) -> None:
    async with server.client(**CP) as c:
        r = await c.post(
            "/api/namespaces",
            content=b'{"name": "billing"}',
            headers={"Content-Type": content_type},
        )
        assert r.status_code == 201, r.text
        assert r.json()["name"] == "billing"


# =======================================================================================
# 2. Authentication
# =======================================================================================
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong-token",
        f"Basic {ADMIN_TOKEN}",
        ADMIN_TOKEN,
        f"Bearer {ADMIN_TOKEN.upper()}",
        f"Bearer {ADMIN_TOKEN}x",
    ],
)
async def test_bad_credentials_are_401(server: RunningServer, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with server.client(token=None, **BOTH) as c:
        r = await c.get("/api/namespaces", headers=headers)
        assert_error(r, 401, "unauthorized")
        assert_control_plane_headers(r)
        r = await c.get("/api/cluster/info", headers=headers)
        assert_error(r, 401, "unauthorized")
        assert_no_version_headers(r)
        r = await c.post(WORKER_ROUTE, headers=headers)
        assert_worker_error(r, 401, "unauthorized")


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
async def test_bearer_scheme_case_insensitive(server: RunningServer, scheme: str) -> None:
    async with server.client(token=None, **CP) as c:
        r = await c.get("/api/namespaces", headers={"Authorization": f"{scheme} {ADMIN_TOKEN}"})
        assert r.status_code == 200, r.text


async def test_no_tokens_configured_is_500(start_server: StartServer) -> None:
    srv = await start_server(admin_token=None)
    async with srv.client(token="anything", **BOTH) as c:
        r = await c.get("/api/namespaces")
        assert_error(r, 500, "server_error")
        assert_control_plane_headers(r)
        r = await c.get("/api/cluster/info")
        assert_error(r, 500, "server_error")
        r = await c.post(WORKER_ROUTE)
        assert_worker_error(r, 500, "server_error")
    async with srv.client(token=None) as c:
        # fails closed even without any credential
        r = await c.get("/api/namespaces", headers=CP)
        assert_error(r, 500, "server_error")
        # the probes need no auth
        r = await c.get("/api/health")
        assert r.status_code == 200


async def test_unknown_driver_is_500(start_server: StartServer) -> None:
    srv = await start_server(auth_driver="ldap")
    async with srv.client(**CP) as c:
        r = await c.get("/api/namespaces")
        assert_error(r, 500, "server_error")
        r = await c.get("/api/cluster/info")
        assert_error(r, 500, "server_error")


async def test_legacy_token_alone_has_full_access(start_server: StartServer) -> None:
    srv = await start_server(admin_token=None, auth_token="legacy")
    async with srv.client(token="legacy", **BOTH) as c:
        r = await c.get("/api/cluster/info")
        assert r.status_code == 200, r.text
        r = await c.post("/api/namespaces", json={"name": "legacy-ns"})
        assert r.status_code == 201, r.text
        # worker routes too: past every gate, to the unknown-route 404
        r = await c.post(WORKER_ROUTE)
        assert_worker_error(r, 404, "not_found")
        r = await c.get(WORKFLOW_ROUTE)
        assert_error(r, 404, "not_found")
    async with srv.client(token="other", **CP) as c:
        assert_error(await c.get("/api/namespaces"), 401, "unauthorized")


async def test_legacy_token_with_role_tokens_is_admin_only(start_server: StartServer) -> None:
    srv = await start_server(admin_token=None, auth_token="legacy", worker_token="w")
    async with srv.client(token="legacy", **BOTH) as c:
        r = await c.post("/api/namespaces", json={"name": "by-legacy"})
        assert r.status_code == 201, r.text
        r = await c.post(WORKER_ROUTE)
        assert_worker_error(r, 403, "forbidden", role="admin", allowed_roles=["worker"])
    async with srv.client(token="w", **WP) as c:
        r = await c.post(WORKER_ROUTE)
        assert_worker_error(r, 404, "not_found")


async def test_backward_compatible_false_disables_legacy_token(start_server: StartServer) -> None:
    srv = await start_server(auth_token="legacy", auth_backward_compatible=False)
    async with srv.client(token="legacy", **CP) as c:
        assert_error(await c.get("/api/namespaces"), 401, "unauthorized")
    async with srv.client(**CP) as c:  # the admin token still works
        assert (await c.get("/api/namespaces")).status_code == 200


async def test_backward_compatible_false_and_only_legacy_is_500(start_server: StartServer) -> None:
    srv = await start_server(admin_token=None, auth_token="legacy", auth_backward_compatible=False)
    async with srv.client(token="legacy", **CP) as c:
        assert_error(await c.get("/api/namespaces"), 500, "server_error")


async def test_driver_none_opens_everything(start_server: StartServer) -> None:
    srv = await start_server(auth_driver="none", admin_token=None)
    async with srv.client(token=None, **BOTH) as c:
        assert (await c.get("/api/cluster/info")).status_code == 200
        assert (await c.get("/api/namespaces")).status_code == 200
        r = await c.post("/api/namespaces", json={"name": "open"})
        assert r.status_code == 201, r.text
        assert_worker_error(await c.post(WORKER_ROUTE), 404, "not_found")
        # a garbage credential is simply ignored
        r = await c.get("/api/namespaces", headers={"Authorization": "Bearer garbage"})
        assert r.status_code == 200


# --- role matrix ------------------------------------------------------------------------
ROLE_TOKENS = {"worker": "tok-worker", "operator": "tok-operator", "admin": ADMIN_TOKEN}

# (method, path, allowed roles in documented order, status when allowed or None = "not 401/403")
MATRIX: list[tuple[str, str, list[str], int | None]] = [
    ("GET", "/api/cluster/info", ["worker", "operator", "admin"], 200),
    ("GET", "/api/namespaces", ["operator", "admin"], 200),
    ("GET", "/api/namespaces/default", ["operator", "admin"], 200),
    ("POST", "/api/namespaces", ["admin"], 201),
    ("PUT", "/api/namespaces/default", ["admin"], 200),
    ("PUT", "/api/namespaces/default/external-storage", ["admin"], 200),
    ("POST", WORKER_ROUTE, ["worker"], 404),
    ("POST", "/api/worker/register", ["worker"], None),
    ("POST", "/api/worker/registrations/x/deregister", ["worker"], 422),
    ("GET", "/api/workflows", ["operator", "admin"], None),
    ("GET", WORKFLOW_ROUTE, ["operator", "admin"], 404),
    ("GET", "/api/schedules", ["operator", "admin"], None),
    ("GET", "/api/workers", ["operator", "admin"], None),
    ("DELETE", "/api/workers/x", ["admin"], 404),
    ("GET", "/api/system/metrics", ["admin"], None),
    ("POST", "/api/storage/test", ["admin"], None),
]

MATRIX_BODIES = {
    ("POST", "/api/namespaces"): {"name": "matrix"},
    ("PUT", "/api/namespaces/default"): {"description": "d"},
    ("PUT", "/api/namespaces/default/external-storage"): {"driver": "local"},
}


@pytest.mark.parametrize(("method", "path", "allowed", "ok_status"), MATRIX)
async def test_role_matrix(
    start_server: StartServer,
    method: str,
    path: str,
    allowed: list[str],
    ok_status: int | None,
) -> None:
    srv = await start_server(
        worker_token=ROLE_TOKENS["worker"], operator_token=ROLE_TOKENS["operator"]
    )
    body = MATRIX_BODIES.get((method, path))
    for role, token in ROLE_TOKENS.items():
        async with srv.client(token=token, **BOTH) as c:
            r = await c.request(method, path, json=body)
        if role in allowed:
            assert r.status_code not in (401, 403), (role, r.text)
            if ok_status is not None:
                assert r.status_code == ok_status, (role, r.text)
        else:
            result = assert_error(r, 403, "forbidden", role=role, allowed_roles=allowed)
            assert set(result) >= {"message", "reason", "role", "allowed_roles"}
            if path.startswith("/api/worker/"):
                assert_worker_error(r, 403, "forbidden")
            elif path == "/api/cluster/info":
                assert_no_version_headers(r)
            else:
                assert_control_plane_headers(r)
                # (workflow operation routes add the control_plane envelope)
                assert set(result) - {"control_plane"} == {
                    "message",
                    "reason",
                    "role",
                    "allowed_roles",
                    "request_id",
                }
        if method == "POST" and path == "/api/namespaces" and role == "admin":
            assert r.json()["name"] == "matrix"


# --- signature driver -------------------------------------------------------------------
SIG_KEYS = {"worker": "sig-w", "operator": "sig-o", "admin": "sig-a"}


async def test_signature_driver(start_server: StartServer) -> None:
    srv = await start_server(
        auth_driver="signature",
        worker_signature_key=SIG_KEYS["worker"],
        operator_signature_key=SIG_KEYS["operator"],
        admin_signature_key=SIG_KEYS["admin"],
    )
    body = b'{"name": "signed", "description": "via hmac"}'
    async with srv.client(token=None, **BOTH) as c:
        # GET signs the empty body
        r = await c.get("/api/namespaces", headers={"X-Signature": sign("sig-o", b"")})
        assert r.status_code == 200, r.text
        r = await c.get("/api/cluster/info", headers={"X-Signature": sign("sig-w", b"")})
        assert r.status_code == 200, r.text
        # POST signs the raw body bytes
        r = await c.post(
            "/api/namespaces", content=body, headers={**JSON_CT, "X-Signature": sign("sig-a", body)}
        )
        assert r.status_code == 201, r.text
        assert r.json()["description"] == "via hmac"
        # the operator key is a valid credential with the wrong role
        r = await c.post(
            "/api/namespaces", content=body, headers={**JSON_CT, "X-Signature": sign("sig-o", body)}
        )
        assert_error(r, 403, "forbidden", role="operator", allowed_roles=["admin"])
        # signature of another body, of the empty body, with an unknown key: 401
        for signature in (sign("sig-a", b"{}"), sign("sig-a", b""), sign("nope", body)):
            r = await c.post(
                "/api/namespaces", content=body, headers={**JSON_CT, "X-Signature": signature}
            )
            assert_error(r, 401, "unauthorized")
        # a bearer token means nothing to this driver
        r = await c.get("/api/namespaces", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert_error(r, 401, "unauthorized")
        r = await c.get("/api/namespaces")
        assert_error(r, 401, "unauthorized")
        # worker key on the worker plane
        r = await c.post(WORKER_ROUTE, headers={"X-Signature": sign("sig-w", b"")})
        assert_worker_error(r, 404, "not_found")


async def test_legacy_signature_key_has_full_access(start_server: StartServer) -> None:
    srv = await start_server(auth_driver="signature", admin_token=None, signature_key="legacy-key")
    async with srv.client(token=None, **BOTH) as c:
        r = await c.get("/api/namespaces", headers={"X-Signature": sign("legacy-key", b"")})
        assert r.status_code == 200, r.text
        r = await c.post(WORKER_ROUTE, headers={"X-Signature": sign("legacy-key", b"")})
        assert_worker_error(r, 404, "not_found")
        r = await c.get("/api/namespaces", headers={"X-Signature": sign("other", b"")})
        assert_error(r, 401, "unauthorized")


# =======================================================================================
# 3. Version gates
# =======================================================================================
async def test_missing_control_plane_version(server: RunningServer) -> None:
    async with server.client() as c:
        for method, path in [
            ("GET", "/api/namespaces"),
            ("GET", WORKFLOW_ROUTE),
            ("POST", "/api/namespaces"),
        ]:
            r = await c.request(method, path)
            body = assert_error(
                r,
                400,
                "missing_control_plane_version",
                supported_version="2",
                requested_version=None,
            )
            assert isinstance(body["remediation"], str) and body["remediation"]
            assert_control_plane_headers(r)
        # an empty value counts as missing
        r = await c.get("/api/namespaces", headers={CP_HEADER: ""})
        assert_error(r, 400, "missing_control_plane_version", requested_version=None)
        # the worker header is no substitute
        r = await c.get("/api/namespaces", headers=WP)
        assert_error(r, 400, "missing_control_plane_version")
        assert_control_plane_headers(r)


@pytest.mark.parametrize("version", ["2.0", "3", "1", "v2", "02"])
async def test_unsupported_control_plane_version(server: RunningServer, version: str) -> None:
    async with server.client(**{CP_HEADER: version}) as c:
        r = await c.get("/api/namespaces")
        body = assert_error(
            r,
            400,
            "unsupported_control_plane_version",
            supported_version="2",
            requested_version=version,
        )
        assert isinstance(body["remediation"], str) and body["remediation"]
        assert_control_plane_headers(r)


async def test_version_gate_after_role_check(start_server: StartServer) -> None:
    srv = await start_server(worker_token="w")
    async with srv.client(token="w") as c:  # no version header at all
        r = await c.get("/api/namespaces")
        assert_error(r, 403, "forbidden", role="worker", allowed_roles=["operator", "admin"])
        assert_control_plane_headers(r)
    async with srv.client(token=None) as c:  # and authentication comes first too
        assert_error(await c.get("/api/namespaces"), 401, "unauthorized")


async def test_version_gate_before_namespace_check(server: RunningServer) -> None:
    async with server.client(**{"X-Namespace": "ghost"}) as c:
        r = await c.get(WORKFLOW_ROUTE)
        assert_error(r, 400, "missing_control_plane_version")
        r = await c.get(WORKFLOW_ROUTE, headers={CP_HEADER: "3"})
        assert_error(r, 400, "unsupported_control_plane_version", requested_version="3")
        r = await c.get(WORKFLOW_ROUTE, headers=CP)
        assert_error(r, 404, "namespace_not_found", namespace="ghost")


async def test_control_plane_header_on_every_control_plane_response(
    start_server: StartServer,
) -> None:
    srv = await start_server(worker_token="w")
    async with srv.client(**BOTH) as c:
        responses = [
            await c.get("/api/namespaces"),  # 200
            await c.post("/api/namespaces", json={"name": "hdr"}),  # 201
            await c.post("/api/namespaces", json={"name": "hdr"}),  # 409
            await c.post("/api/namespaces", json={"name": "bad name"}),  # 422
            await c.get("/api/namespaces/ghost"),  # 404 namespace_not_found
            await c.get(WORKFLOW_ROUTE),  # 404 not_found
            await c.patch("/api/namespaces"),  # 405
            await c.post("/api/namespaces", content=b"{", headers=JSON_CT),  # 400
            await c.get("/api/namespaces", headers={CP_HEADER: "9"}),  # 400
        ]
    async with srv.client(token="w", **BOTH) as c:
        responses.append(await c.get("/api/namespaces"))  # 403
    async with srv.client(token=None, **BOTH) as c:
        responses.append(await c.get("/api/namespaces"))  # 401
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 201, 409, 422, 404, 404, 405, 400, 400, 403, 401]
    for r in responses:
        assert_control_plane_headers(r)
        body = r.json()
        assert "protocol_version" not in body
        assert "server_capabilities" not in body


async def test_probes_and_discovery_never_carry_version_headers(server: RunningServer) -> None:
    async with server.client(**BOTH) as c:
        for path in ("/api/health", "/api/ready", "/api/cluster/info"):
            r = await c.get(path)
            assert r.status_code == 200, (path, r.text)
            assert_no_version_headers(r)
        # errors on these paths neither
        r = await c.get("/api/cluster/info", headers={CP_HEADER: "3"})
        assert r.status_code == 400
        assert_no_version_headers(r)
        r = await c.post("/api/health", content=b"{", headers=JSON_CT)
        assert r.status_code == 400
        assert_no_version_headers(r)
    async with server.client(token=None) as c:
        r = await c.get("/api/cluster/info")
        assert r.status_code == 401
        assert_no_version_headers(r)


@pytest.mark.parametrize("headers", [{}, WP, CP, BOTH, {CP_HEADER: ""}])
async def test_cluster_info_version_header_optional(
    start_server: StartServer, headers: dict[str, str]
) -> None:
    srv = await start_server(worker_token="w")
    for token in ("w", ADMIN_TOKEN):
        async with srv.client(token=token, **headers) as c:
            r = await c.get("/api/cluster/info")
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["control_plane"]["version"] == "2"
            assert "protocol_version" not in body
            assert "server_capabilities" not in body
            assert_no_version_headers(r)


@pytest.mark.parametrize("version", ["3", "2.0", "1"])
async def test_cluster_info_rejects_wrong_control_plane_header(
    server: RunningServer, version: str
) -> None:
    async with server.client(**{CP_HEADER: version}) as c:
        r = await c.get("/api/cluster/info")
        assert_error(
            r,
            400,
            "unsupported_control_plane_version",
            supported_version="2",
            requested_version=version,
        )
        assert_no_version_headers(r)


# --- worker protocol version -------------------------------------------------------------
async def test_missing_worker_protocol_version(start_server: StartServer) -> None:
    srv = await start_server(worker_token="w")
    async with srv.client(token="w") as c:
        r = await c.post(WORKER_ROUTE)
        assert_worker_error(
            r, 400, "missing_protocol_version", supported_version="1.20", requested_version=None
        )
        # the control-plane header is no substitute
        r = await c.post(WORKER_ROUTE, headers=CP)
        assert_worker_error(r, 400, "missing_protocol_version")
        r = await c.post(WORKER_ROUTE, headers={WP_HEADER: ""})
        assert_worker_error(r, 400, "missing_protocol_version")


@pytest.mark.parametrize("version", ["2.0", "1.21", "0.20", "1", "1.x", "latest", "1.20.1"])
async def test_unsupported_worker_protocol_version(start_server: StartServer, version: str) -> None:
    srv = await start_server(worker_token="w")
    async with srv.client(token="w", **{WP_HEADER: version}) as c:
        r = await c.post(WORKER_ROUTE)
        assert_worker_error(
            r,
            400,
            "unsupported_protocol_version",
            supported_version="1.20",
            requested_version=version,
        )


@pytest.mark.parametrize("version", ["1.20", "1.19", "1.0", "1.5"])
async def test_supported_worker_protocol_versions_pass(
    start_server: StartServer, version: str
) -> None:
    srv = await start_server(worker_token="w")
    async with srv.client(token="w", **{WP_HEADER: version}) as c:
        r = await c.post(WORKER_ROUTE, json={"worker_id": "w1"})
        assert_worker_error(r, 404, "not_found")
        # the response header is the server's version, not the requested one
        assert r.headers[WP_HEADER] == "1.20"


async def test_worker_gate_order(start_server: StartServer) -> None:
    """Role before version before namespace, on the worker plane too."""
    srv = await start_server(worker_token="w", operator_token="o")
    async with srv.client(token="o", **{"X-Namespace": "ghost"}) as c:
        assert_worker_error(await c.post(WORKER_ROUTE), 403, "forbidden", role="operator")
    async with srv.client(token="w", **{"X-Namespace": "ghost"}) as c:
        assert_worker_error(await c.post(WORKER_ROUTE), 400, "missing_protocol_version")
        r = await c.post(WORKER_ROUTE, headers=WP)
        assert_worker_error(r, 404, "namespace_not_found", namespace="ghost")


# =======================================================================================
# 4. Namespace gate
# =======================================================================================
async def test_namespace_resolution_order(start_server: StartServer) -> None:
    srv = await start_server(default_namespace="fallback")
    async with srv.client(**CP) as c:
        # header beats query parameter
        r = await c.get(
            WORKFLOW_ROUTE,
            params={"namespace": "from-query"},
            headers={"X-Namespace": "From-Header"},
        )
        assert_error(r, 404, "namespace_not_found", namespace="from-header")
        assert_control_plane_headers(r)
        # query parameter when there is no header (any method)
        r = await c.get(WORKFLOW_ROUTE, params={"namespace": "From-Query"})
        assert_error(r, 404, "namespace_not_found", namespace="from-query")
        r = await c.post(WORKFLOW_ROUTE, params={"namespace": "posted"}, json={})
        assert_error(r, 404, "namespace_not_found", namespace="posted")
        # else DW_DEFAULT_NAMESPACE
        r = await c.get(WORKFLOW_ROUTE)
        body = assert_error(r, 404, "namespace_not_found", namespace="fallback")
        assert isinstance(body["remediation"], str) and body["remediation"]


async def test_namespace_is_lowercased(server: RunningServer) -> None:
    async with server.client(**CP) as c:
        for headers, params in [({"X-Namespace": "DEFAULT"}, {}), ({}, {"namespace": "Default"})]:
            r = await c.get(WORKFLOW_ROUTE, headers=headers, params=params)
            # past the namespace gate: the route itself is unknown
            assert_error(r, 404, "not_found")
        r = await c.get(WORKFLOW_ROUTE, headers={"X-Namespace": "GHOST"})
        assert_error(r, 404, "namespace_not_found", namespace="ghost")


async def test_empty_namespace_header_counts_as_absent(server: RunningServer) -> None:
    async with server.client(**{**CP, "X-Namespace": ""}) as c:
        assert_error(await c.get(WORKFLOW_ROUTE), 404, "not_found")  # the default namespace
        r = await c.get(WORKFLOW_ROUTE, params={"namespace": "ghost"})
        assert_error(r, 404, "namespace_not_found", namespace="ghost")


async def test_namespace_not_checked_on_discovery_and_namespace_routes(
    server: RunningServer,
) -> None:
    async with server.client(**{**CP, "X-Namespace": "ghost"}) as c:
        assert (await c.get("/api/cluster/info")).status_code == 200
        r = await c.get("/api/namespaces")
        assert r.status_code == 200, r.text
        r = await c.get("/api/namespaces/default")
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "default"
        r = await c.post("/api/namespaces", json={"name": "created-from-ghost"})
        assert r.status_code == 201, r.text
        r = await c.put("/api/namespaces/default", json={"description": "x"})
        assert r.status_code == 200, r.text
        r = await c.get("/api/namespaces", params={"namespace": "ghost2"})
        assert r.status_code == 200


async def test_namespace_checked_after_role(start_server: StartServer) -> None:
    """A wrong-role token cannot probe which namespaces exist."""
    srv = await start_server(worker_token="w")
    async with srv.client(token="w", **{**CP, "X-Namespace": "ghost"}) as c:
        r = await c.get(WORKFLOW_ROUTE)
        assert_error(r, 403, "forbidden", role="worker")


# =======================================================================================
# 5. Routing fallbacks
# =======================================================================================
@pytest.mark.parametrize(
    "path",
    [
        "/api/nope",
        "/api",
        "/api/workflows/wf/runs/r/bogus/deep",
        "/api/health/extra",
        "/api/cluster",
    ],
)
async def test_unknown_api_route_is_404(server: RunningServer, path: str) -> None:
    async with server.client(**CP) as c:
        r = await c.get(path)
        body = assert_error(r, 404, "not_found")
        assert set(body) == {"message", "reason", "request_id"}
        assert body["request_id"] == r.headers["x-request-id"]
        assert_control_plane_headers(r)


async def test_outside_api_is_reasoned_404(server: RunningServer) -> None:
    async with server.client(token=None) as c:
        r = await c.get("/")
        assert_error(r, 404, "not_found")
        assert_no_version_headers(r)
        r = await c.get("/favicon.ico")
        assert_error(r, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "control_plane"),
    [
        ("POST", "/api/health", False),
        ("DELETE", "/api/ready", False),
        ("POST", "/api/cluster/info", False),
        ("PATCH", "/api/namespaces", True),
        ("DELETE", "/api/namespaces", True),
        ("POST", "/api/namespaces/default", True),
        ("GET", "/api/namespaces/default/external-storage", True),
    ],
)
async def test_wrong_method_is_405(
    server: RunningServer, method: str, path: str, control_plane: bool
) -> None:
    async with server.client(**CP) as c:
        r = await c.request(method, path)
        assert_error(r, 405, "method_not_allowed")
        if control_plane:
            assert_control_plane_headers(r)
        else:
            assert_no_version_headers(r)


async def test_no_500_anywhere(server: RunningServer) -> None:
    requests: list[tuple[str, str, dict[str, str], bytes | None]] = [
        ("GET", "/", {}, None),
        ("GET", "/api", {}, None),
        ("GET", "/api/", CP, None),
        ("OPTIONS", "/api/namespaces", CP, None),
        ("HEAD", "/api/health", {}, None),
        ("GET", "/api/namespaces/%2F", CP, None),
        ("GET", "/api/namespaces/" + "x" * 300, CP, None),
        ("PUT", "/api/namespaces/ghost", CP, b'{"description": "d"}'),
        ("PUT", "/api/namespaces/ghost/external-storage", CP, b'{"driver": "s3"}'),
        ("POST", "/api/namespaces", CP, b'{"name": null}'),
        ("POST", "/api/namespaces", CP, b'{"name": ["x"]}'),
        ("POST", "/api/namespaces", CP, b'{"name": "n", "retention_days": 1e400}'),
        ("POST", "/api/namespaces", CP, b'{"name": "n", "retention_days": 10.5}'),
        ("POST", "/api/namespaces", CP, b'{"name": "n", "description": 5}'),
        ("PUT", "/api/namespaces/default", CP, b'"scalar"'),
        ("PUT", "/api/namespaces/default/external-storage", CP, b'{"driver": "s3", "config": []}'),
        (
            "PUT",
            "/api/namespaces/default/external-storage",
            CP,
            b'{"driver": "s3", "config": {"bucket": 1}}',
        ),
        ("GET", "/api/cluster/info?namespace=", {}, None),
        ("GET", WORKFLOW_ROUTE + "?namespace=%00", CP, None),
        ("GET", "/api/namespaces/%00", CP, None),
        ("PUT", "/api/namespaces/a%00b", CP, b'{"description": "d"}'),
        ("PUT", "/api/namespaces/%00/external-storage", CP, b'{"driver": "s3"}'),
        ("POST", WORKER_ROUTE + "?namespace=%00", WP, b"{}"),
        ("POST", WORKER_ROUTE, WP, b"{}"),
        ("GET", "/api/namespaces", {**CP, "X-Namespace": ""}, None),
    ]
    async with server.client() as c:
        for method, path, headers, body in requests:
            hdrs = dict(headers)
            if body is not None:
                hdrs.update(JSON_CT)
            r = await c.request(method, path, headers=hdrs, content=body)
            assert r.status_code < 500, (method, path, r.status_code, r.text)
            if method != "HEAD":
                assert r.content.startswith(b"{"), (
                    method,
                    path,
                    r.status_code,
                    r.headers,
                    r.content,
                )
                assert isinstance(r.json(), dict), (method, path, r.text)


async def test_response_does_not_reveal_implementation(server: RunningServer) -> None:
    async with server.client(**CP) as c:
        for r in (await c.get("/api/health"), await c.get("/api/nope")):
            assert "x-powered-by" not in r.headers
            server_header = r.headers.get("server", "").lower()
            assert "python" not in server_header
            assert "hypercorn" not in server_header
            assert "quart" not in server_header


# =======================================================================================
# 8. Compression
# =======================================================================================
async def raw_get(
    c: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> tuple[httpx.Response, bytes]:
    async with c.stream("GET", path, headers=headers) as r:
        raw = b"".join([chunk async for chunk in r.aiter_raw()])
    return r, raw


async def test_gzip_compression(server: RunningServer) -> None:
    async with server.client() as c:
        plain = await c.get("/api/cluster/info", headers={"Accept-Encoding": "identity"})
        assert len(plain.content) >= 1024
        r, raw = await raw_get(c, "/api/cluster/info", {"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in r.headers["vary"].lower()
    assert raw[:2] == b"\x1f\x8b"
    assert len(raw) < len(plain.content)
    if "content-length" in r.headers:
        assert int(r.headers["content-length"]) == len(raw)
    import orjson

    decoded = orjson.loads(gzip.decompress(raw))
    assert decoded["control_plane"]["version"] == "2"
    assert decoded["capabilities"]["response_compression"] == ["gzip", "deflate"]
    assert decoded.keys() == plain.json().keys()


async def test_httpx_decodes_gzip_transparently(server: RunningServer) -> None:
    async with server.client() as c:
        r = await c.get("/api/cluster/info", headers={"Accept-Encoding": "gzip"})
        assert r.headers["content-encoding"] == "gzip"
        assert r.json()["control_plane"]["version"] == "2"


async def test_deflate_is_raw_deflate(server: RunningServer) -> None:
    async with server.client() as c:
        r, raw = await raw_get(c, "/api/cluster/info", {"Accept-Encoding": "deflate"})
        assert r.headers["content-encoding"] == "deflate"
        assert "accept-encoding" in r.headers["vary"].lower()
        import orjson

        assert orjson.loads(zlib.decompress(raw, -15))["control_plane"]["version"] == "2"
        with pytest.raises(zlib.error):
            zlib.decompress(raw)  # no zlib header
        # httpx decodes it on its own
        r = await c.get("/api/cluster/info", headers={"Accept-Encoding": "deflate"})
        assert r.json()["control_plane"]["version"] == "2"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("identity", None),
        ("", None),
        ("br", None),
        ("gzip;q=0", None),
        ("gzip;q=0, deflate;q=0", None),
        ("*", "gzip"),
        ("*;q=0", None),
        ("gzip, deflate", "gzip"),
        ("deflate, gzip", "gzip"),
        ("gzip;q=0.5, deflate;q=0.9", "deflate"),
        ("gzip;q=0.9, deflate;q=0.9", "gzip"),
        ("gzip;q=0, deflate", "deflate"),
        ("gzip;q=abc, deflate", "deflate"),
        ("GZIP", "gzip"),
        ("br;q=1, *;q=0.1", "gzip"),
        ("deflate;q=0.5, *;q=0.2", "deflate"),
    ],
)
async def test_accept_encoding_negotiation(
    server: RunningServer, accept: str, expected: str | None
) -> None:
    async with server.client() as c:
        r, raw = await raw_get(c, "/api/cluster/info", {"Accept-Encoding": accept})
    assert r.status_code == 200
    assert r.headers.get("content-encoding") == expected
    if expected is None:
        assert raw.startswith(b"{")
        assert int(r.headers["content-length"]) == len(raw)


async def test_small_responses_are_not_compressed(server: RunningServer) -> None:
    async with server.client(**CP) as c:
        r, raw = await raw_get(c, "/api/health", {"Accept-Encoding": "gzip"})
        assert len(raw) < 1024
        assert "content-encoding" not in r.headers
        assert raw.startswith(b"{")


async def test_compression_disabled(start_server: StartServer) -> None:
    srv = await start_server(compression_enabled=False)
    async with srv.client() as c:
        r, raw = await raw_get(c, "/api/cluster/info", {"Accept-Encoding": "gzip, deflate"})
    assert r.status_code == 200
    assert "content-encoding" not in r.headers
    assert len(raw) >= 1024
    import orjson

    assert orjson.loads(raw)["capabilities"]["response_compression"] == []


# =======================================================================================
# 9. Keep-alive
# =======================================================================================
async def test_keep_alive_survives_unread_bodies(server: RunningServer) -> None:
    """Bodies sent to handlers that never read them must not stall the connection.

    The bodies are close to the 2 MiB limit: far larger than the socket buffers,
    so a body nobody drains blocks the next request on the same connection.
    """
    big = b'{"padding": "' + b"p" * 1_900_000 + b'"}'
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(
        base_url=server.url,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", **CP},
        limits=limits,
        timeout=30,
    ) as c:
        with trio.fail_after(5):
            r = await c.post("/api/health", content=big, headers=JSON_CT)
            assert_error(r, 405, "method_not_allowed")
            r = await c.post("/api/nope", content=big, headers=JSON_CT)
            assert_error(r, 404, "not_found")
            r = await c.post(
                "/api/namespaces", content=big, headers={**JSON_CT, "Authorization": "Bearer x"}
            )
            assert_error(r, 401, "unauthorized")
            r = await c.post("/api/namespaces", content=big, headers={**JSON_CT, CP_HEADER: "3"})
            assert_error(r, 400, "unsupported_control_plane_version")
            for _ in range(5):
                r = await c.get("/api/health")
                assert r.status_code == 200
            r = await c.get("/api/namespaces")
            assert r.status_code == 200


async def test_keep_alive_on_one_raw_connection(server: RunningServer) -> None:
    """The same TCP connection answers request after request (no Connection: close)."""
    raw = await RawHttp.open(server)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}", **CP}
    body = b'{"ignored": "' + b"z" * 1_900_000 + b'"}'
    try:
        with trio.fail_after(5):
            status, _, _ = await raw.request("POST", "/api/health", JSON_CT, body)
            assert status == 405
            raw.next_cycle()
            status, _, _ = await raw.request(
                "POST", "/api/no-such-route", {**auth, **JSON_CT}, body
            )
            assert status == 404
            raw.next_cycle()
            status, _, _ = await raw.request("POST", "/api/namespaces", JSON_CT, body)
            assert status == 401
            raw.next_cycle()
            for _ in range(3):
                status, headers, _ = await raw.request("GET", "/api/namespaces", auth)
                assert status == 200
                assert headers["x-durable-workflow-control-plane-version"] == "2"
                raw.next_cycle()
    finally:
        await raw.aclose()
