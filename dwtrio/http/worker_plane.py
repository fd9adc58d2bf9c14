"""The worker plane (``/api/worker/...``), served as plain ASGI below Quart.

Workers make most of a server's requests (a poll and a completion per task)
and hold most of its open connections (thousands of parked long-polls), so
their routes skip Quart's request machinery: no request context, no
werkzeug request and response objects, no request nursery, and one Trio task
per request instead of three. A parked poll watches for its client going away
in that same task (``Wakeup.wait``). See docs/perf/history.md (third pass) for
what it saves.

The busiest control-plane routes (start, describe, a history page: the
resource modules' ``BELOW_QUART`` lists) are served here too, as
:class:`ControlRoute`: the route's handler is one function that its Quart view
(:func:`quart_view`, kept for HEAD and for the paths this plane passes on) calls
as well. Only an exact match (method and path) is taken; anything else, 405s
included, is the Quart app's.

Everything else (the rest of the control plane, discovery, probes, unknown
paths) goes to the Quart app. Both sides run the same gates
(``pipeline.admit``), in the same order, and map errors with the same
functions (``envelope``), so a client cannot tell which side answered: the
parity test (tests/http/test_below_quart_parity.py) holds answers recorded
from Quart. The price is two serving paths to keep alike: a change to the
Quart hooks (``app.py``, ``pipeline.run_gates``, ``pipeline.finish_response``,
the metrics blueprint's route note) must be made in
:meth:`WorkerPlane.serve_control` too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import trio
from quart import g, request

from dwtrio import wire
from dwtrio.engine.outcome import Outcome
from dwtrio.errors import (
    DwtrioError,
    MethodNotAllowedError,
    QueryTaskNotFoundError,
    RouteNotFoundError,
    StoreUnavailableError,
    TaskNotFoundError,
    WorkerNotFoundError,
)
from dwtrio.http import control_envelope, envelope, pipeline, request_log
from dwtrio.http.envelope import JSON, error_body, to_dwtrio_error
from dwtrio.http.metrics import QUART_ROUTE_KEY, WORKER_ROUTE_KEY
from dwtrio.manifest import CONTROL_PLANE_HEADER, CONTROL_PLANE_VERSION, WORKER_PROTOCOL_HEADER
from dwtrio.matching.waiters import ClientGone
from dwtrio.protocol.responses import render
from dwtrio.runtime import Runtime

PREFIX = "/api/worker/"

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


@attrs.frozen
class WorkerCall:
    """What a worker-route handler gets: the admitted namespace and the decoded body."""

    namespace: str
    #: The JSON body as sent (None when the request had none); handlers structure it.
    json: Any
    #: Whether the worker went away (long-polls watch it while parked).
    client: WorkerClient


@attrs.frozen
class Reply:
    """A handler's answer; the plane adds ``protocol_version`` and ``server_capabilities``."""

    body: dict[str, Any]
    status: int = 200


Handler = Callable[..., Awaitable[Reply]]


@attrs.frozen
class Route:
    """``method`` + a pattern below /api/worker/ such as ``activity-tasks/{task_id}/complete``."""

    method: str
    pattern: str
    handler: Handler
    #: The pattern split once, not on every request.
    segments: tuple[str, ...] = attrs.field(init=False)

    @segments.default
    def _split(self) -> tuple[str, ...]:
        return tuple(self.pattern.split("/"))

    def match(self, parts: list[str]) -> dict[str, str] | None:
        return match_segments(self.segments, parts, "{")


def match_segments(
    segments: tuple[str, ...], parts: list[str], opening: str
) -> dict[str, str] | None:
    """The path parameters when ``parts`` fit ``segments`` (a parameter is a segment
    starting with ``opening``, ``{name}`` or ``<name>``, and matches one non-empty
    part), else None."""
    if len(segments) != len(parts):
        return None
    params: dict[str, str] = {}
    for segment, part in zip(segments, parts, strict=True):
        if segment.startswith(opening):
            if not part:
                return None
            params[segment[1:-1]] = part
        elif segment != part:
            return None
    return params


@attrs.frozen
class ControlCall:
    """What a control-route handler gets, on either side of Quart."""

    namespace: str
    #: The decoded body, ``{}`` when none was sent (``pipeline.json_body``).
    json: Any
    #: The query string's parameters, the first value of each.
    args: Mapping[str, str]


@attrs.frozen
class Answer:
    """A control-route handler's answer: the payload before ``envelope.complete``."""

    payload: Any
    status: int = 200


def outcome_answer(outcome: Outcome) -> Answer:
    """An engine outcome's body, at its verdict's status (``envelope.outcome_response``)."""
    return Answer(render(outcome.body), envelope.HTTP_STATUS[outcome.verdict])


ControlHandler = Callable[..., Awaitable[Answer]]


@attrs.frozen
class ControlRoute:
    """A control-plane route served below Quart: ``method`` + its Quart ``rule``
    (``/api/workflows/<wf>``); the handler takes the runtime, a :class:`ControlCall`
    and the path parameters."""

    method: str
    rule: str
    handler: ControlHandler
    #: A long poll: the request watches for its client going away (a second task).
    long_polls: bool = False
    segments: tuple[str, ...] = attrs.field(init=False)

    @segments.default
    def _split(self) -> tuple[str, ...]:
        return tuple(self.rule.split("/"))

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters when this is the route, else None (trailing slashes,
        other methods: left to Quart)."""
        if method != self.method:
            return None
        return match_segments(self.segments, path.split("/"), "<")


async def quart_view(rt: Runtime, handler: ControlHandler, **params: str) -> Any:
    """The Quart view of a control route: the same handler, after ``pipeline.run_gates``."""
    call = ControlCall(g.namespace, pipeline.json_body(), request.args)
    answer = await handler(rt, call, **params)
    return envelope.json_response(answer.payload, answer.status)


@attrs.define
class WorkerClient:
    """The connection behind a worker request: has the worker gone away?

    Implements ``matching.poll.Client``. A parked poll waits in
    :meth:`wait_gone`; after a claim, :meth:`has_gone` looks without waiting.
    Hypercorn hands the application a memory channel's ``receive``, so a
    queued ``http.disconnect`` can be read from the channel directly; under a
    server whose ``receive`` is something else, :meth:`has_gone` knows only
    what :meth:`wait_gone` saw (a lease nobody receives then waits for its
    expiry and the task-repair loop).
    """

    _receive: Any
    _gone: bool = False

    async def wait_gone(self) -> None:
        while not self._gone:
            if (await self._receive())["type"] == "http.disconnect":
                self._gone = True

    def has_gone(self) -> bool:
        take = getattr(getattr(self._receive, "__self__", None), "receive_nowait", None)
        while not self._gone and take is not None:
            try:
                message = take()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            if message["type"] == "http.disconnect":
                self._gone = True
        return self._gone


class Headers(dict[str, str]):
    """Request headers, case-insensitive on ``get`` (the first value of a repeated header)."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    @classmethod
    def from_scope(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        headers = cls()
        for name, value in raw:
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        return headers


def request_path(scope: Any) -> str:
    """The request's path; an absolute-form target (``http://host/path``) is reduced
    to its path, as Quart does."""
    path: str = scope["path"]
    if not path.startswith("/"):
        path = urlsplit(path).path or "/"
    return path


def is_worker_path(path: str) -> bool:
    return path.startswith(PREFIX)


@attrs.define
class WorkerPlane:
    """The ASGI app: worker routes here, everything else to ``fallback`` (the Quart app)."""

    rt: Runtime
    routes: list[Route]
    fallback: ASGIApp
    control: list[ControlRoute] = attrs.field(factory=list)

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        # The chosen side's own coroutine: no frame of this one for a parked poll to hold.
        if scope["type"] != "http":
            return self.fallback(scope, receive, send)
        path = request_path(scope)
        if is_worker_path(path):
            return self.serve(scope, receive, send)
        for route in self.control:
            params = route.match(scope["method"], path)
            if params is not None:
                return self.serve_control(route, params, scope, receive, send)
        return self.fallback(scope, receive, send)

    def find(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        parts = path[len(PREFIX) :].split("/")
        if len(parts) > 1 and parts[-1] == "":  # a trailing slash is tolerated
            parts.pop()
        allowed = False
        for route in self.routes:
            params = route.match(parts)
            if params is None:
                continue
            if route.method == method:
                if any("\x00" in value for value in params.values()):
                    raise no_such(parts[0], params)
                return route, params
            allowed = True
        if allowed:
            raise MethodNotAllowedError("The route does not accept this method.")
        raise RouteNotFoundError("No such route.")

    async def serve(self, scope: Any, receive: Any, send: Any) -> None:
        rt = self.rt
        method: str = scope["method"]
        headers = Headers.from_scope(scope["headers"])
        accept_encoding = headers.get("accept-encoding", "")
        raw = b""
        close = False
        try:
            pipeline.check_head(scope)
            raw, declared = await read_body(
                receive, headers, rt.settings.max_payload_bytes, rt.settings.body_timeout_s
            )
            call, route, params = await self.admit(scope, raw, declared, receive, headers)
            scope[WORKER_ROUTE_KEY] = route.pattern  # the metrics' route label
            del headers  # a parked poll keeps only what it needs
            reply = await route.handler(call, **params)
            body, status = reply.body, reply.status
            request_log.note_body(body)
        except ClientGone:
            return  # nobody to answer (a parked poll that left has claimed nothing)
        except Exception as exc:  # every error becomes the documented envelope
            self.note_route(method, request_path(scope))
            err = to_dwtrio_error(exc)
            body, status, close = error_body(err), err.http_status, err.closes_connection
            body["error"] = err.message
            if isinstance(err, StoreUnavailableError):
                body.update(retry_contract(request_path(scope), raw))
        body["protocol_version"] = rt.settings.worker_protocol_version
        body["server_capabilities"] = rt.worker_capabilities
        if not close:
            await respond(send, rt, method, accept_encoding, status, body)
            return
        # A gate refused the request, perhaps with its body unread: end the connection. Hypercorn
        # may still be queueing body chunks, and the end of the response waits for
        # room in that queue: throw them away while answering.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(discard_body, receive, rt.settings.body_timeout_s)
            await respond(send, rt, method, accept_encoding, status, body, close=True)
            nursery.cancel_scope.cancel()

    async def admit(
        self, scope: Any, raw: bytes, declared: int | None, receive: Any, headers: Headers
    ) -> tuple[WorkerCall, Route, dict[str, str]]:
        """Run the gates on the request and its body (already read), find the route."""
        query = scope.get("query_string") or b""
        path = request_path(scope)
        admitted = await pipeline.admit(
            self.rt,
            scope["method"],
            path,
            headers,
            raw,
            declared=declared,
            namespace_param=namespace_param(query) if b"namespace" in query else None,
        )
        route, params = self.find(scope["method"], path)
        assert admitted.namespace is not None  # worker routes are authenticated
        sent = admitted.json if isinstance(admitted.json, dict) else {}
        request_log.note_route(PREFIX + route.pattern)
        request_log.note(
            namespace=admitted.namespace,
            worker_id=params.get("worker_id") or sent.get("worker_id") or sent.get("lease_owner"),
        )
        return WorkerCall(admitted.namespace, admitted.json, WorkerClient(receive)), route, params

    def note_route(self, method: str, path: str) -> None:
        """For the log line of a refused request: the route it was for, if any."""
        try:
            route, _ = self.find(method, path)
        except DwtrioError:
            return
        request_log.note_route(PREFIX + route.pattern)

    async def serve_control(
        self, route: ControlRoute, params: dict[str, str], scope: Any, receive: Any, send: Any
    ) -> None:
        """A control route, as the Quart app would answer it: ``pipeline.run_gates``,
        the handler, ``envelope.complete``, ``pipeline.finish_response``, the
        error handler of ``app.py`` and the route note of the metrics blueprint."""
        rt = self.rt
        method: str = scope["method"]
        headers = Headers.from_scope(scope["headers"])
        scope[QUART_ROUTE_KEY] = route.rule
        request_log.note_route(request_log.route_template(route.rule))
        request_log.note(workflow_id=params.get("wf"), run_id=params.get("run_id"))
        close = False
        try:
            pipeline.check_head(scope)
            raw, declared = await read_body(
                receive, headers, rt.settings.max_payload_bytes, rt.settings.body_timeout_s
            )
            args = query_args(scope.get("query_string") or b"")
            admitted = await pipeline.admit(
                rt,
                method,
                request_path(scope),
                headers,
                raw,
                declared=declared,
                namespace_param=args.get("namespace"),
            )
            assert admitted.namespace is not None  # control routes are authenticated
            request_log.note(namespace=admitted.namespace)
            call = ControlCall(admitted.namespace, admitted.json if admitted.has_body else {}, args)
            if route.long_polls and "wait_new_event" in args:
                answer = await until_gone(receive, route.handler(rt, call, **params))
            else:
                answer = await route.handler(rt, call, **params)
            payload, status = answer.payload, answer.status
        except ClientGone:
            return
        except Exception as exc:  # every error becomes the documented envelope
            err = to_dwtrio_error(exc)
            payload, status, close = error_body(err), err.http_status, err.closes_connection
        raw_path = scope.get("raw_path")
        target = control_envelope.operation_for(
            method,
            control_envelope.split_path(
                raw_path.decode("latin-1") if isinstance(raw_path, bytes) else request_path(scope)
            ),
        )
        data = wire.dumps(envelope.complete(payload, status, target))
        accept_encoding = headers.get("accept-encoding", "")
        if not close:
            await respond_control(send, rt, accept_encoding, status, data)
            return
        async with trio.open_nursery() as nursery:  # as in serve: drop the unread body
            nursery.start_soon(discard_body, receive, rt.settings.body_timeout_s)
            await respond_control(send, rt, accept_encoding, status, data, close=True)
            nursery.cancel_scope.cancel()


def no_such(resource: str, params: Mapping[str, str]) -> DwtrioError:
    """The 404 for a path id no row can have (PostgreSQL text cannot hold NUL):
    answered without a query, as the control plane does for such workflow ids."""
    if "task_id" in params:
        task_id = params["task_id"]
        if resource == "query-tasks":
            return QueryTaskNotFoundError("Query task not found.", query_task_id=task_id)
        kind = "Workflow" if resource == "workflow-tasks" else "Activity"
        return TaskNotFoundError(f"{kind} task not found.", task_id=task_id)
    if "worker_id" in params:
        return WorkerNotFoundError("The worker is not registered.", worker_id=params["worker_id"])
    return RouteNotFoundError("No such route.")


#: The worker calls whose 503 the SDK retries as the same request (same
#: ``poll_request_id``, same registration), after ``retry_after_seconds``, when the
#: answer names the call and echoes the worker's identity.
RETRIED_CALLS = {
    "workflow-tasks/poll": "poll_workflow_task",
    "activity-tasks/poll": "poll_activity_task",
    "query-tasks/poll": "poll_query_task",
    "register": "register_worker",
    "heartbeat": "heartbeat_worker",
}


def retry_contract(path: str, raw: bytes) -> dict[str, Any]:
    """What a ``503 backend_unavailable`` adds for the worker calls the SDK retries
    by themselves (worker-plane.md): the operation, an unknown outcome, and the
    identity the retry will resend. Other calls get the plain retryable body."""
    tail = path[len(PREFIX) :].rstrip("/")
    operation = RETRIED_CALLS.get(tail)
    task_id = tail.removeprefix("workflow-tasks/").removesuffix("/heartbeat")
    if operation is None and tail == f"workflow-tasks/{task_id}/heartbeat" and "/" not in task_id:
        operation = "heartbeat_workflow_task"
    if operation is None:
        return {}
    try:
        sent = wire.loads(raw) if raw else {}
    except ValueError:
        sent = None
    if not isinstance(sent, dict):
        return {}
    fields: dict[str, Any] = {"operation": operation, "outcome": "unknown"}
    if operation == "heartbeat_workflow_task":
        owner = sent.get("lease_owner")
        fields.update(
            worker_id=owner,
            task_queue=None,
            task_id=task_id,
            lease_owner=owner,
            workflow_task_attempt=sent.get("workflow_task_attempt"),
        )
        return fields
    fields.update(worker_id=sent.get("worker_id"), task_queue=sent.get("task_queue"))
    if operation.startswith("poll_"):
        fields.update(
            task=None,
            poll_status="backend_unavailable",
            poll_request_id=sent.get("poll_request_id"),
            retry_same_poll_request_id=True,
        )
    return fields


async def read_body(
    receive: Any, headers: Mapping[str, str], limit: int, timeout_s: float
) -> tuple[bytes, int | None]:
    """The whole request body (gate 1: at most ``limit`` bytes, within ``timeout_s``,
    DW_BODY_TIMEOUT_SECONDS)."""
    declared_text = headers.get("content-length")
    declared = (
        int(declared_text)
        if declared_text and declared_text.isascii() and declared_text.isdigit()
        else None
    )
    if declared is not None and declared > limit:
        raise pipeline.too_large(limit)
    chunks: list[bytes] = []
    size = 0
    with trio.move_on_after(timeout_s) as timer:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise pipeline.too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
    if timer.cancelled_caught:
        raise pipeline.body_timed_out()
    return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), declared


async def discard_body(receive: Any, timeout_s: float) -> None:
    """Read and drop what is left of a refused request, for at most ``timeout_s``."""
    with trio.move_on_after(timeout_s):
        while (await receive())["type"] != "http.disconnect":
            pass


def query_args(query: bytes) -> dict[str, str]:
    """The query string's parameters, the first value of each (as ``request.args.get``)."""
    if not query:
        return {}
    parsed = parse_qs(query.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in parsed.items()}


async def until_gone(receive: Any, work: Awaitable[Answer]) -> Answer:
    """``work``'s answer, or ClientGone (and ``work`` cancelled) if the client leaves first."""
    answer: list[Answer] = []
    client = WorkerClient(receive)

    async def run() -> None:
        answer.append(await work)
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await client.wait_gone()
        nursery.cancel_scope.cancel()
    if not answer:
        raise ClientGone
    return answer[0]


def namespace_param(query: bytes) -> str | None:
    values = parse_qs(query.decode("utf-8", "replace"), keep_blank_values=True).get("namespace")
    return values[0] if values else None


async def respond(
    send: Any,
    rt: Runtime,
    method: str,
    accept_encoding: str,
    status: int,
    body: dict[str, Any],
    *,
    close: bool = False,
) -> None:
    data = wire.dumps(body)
    out = [
        (b"content-type", JSON.encode()),
        (WORKER_PROTOCOL_HEADER.lower().encode(), rt.settings.worker_protocol_version.encode()),
    ]
    if rt.settings.compression_enabled:
        data, encoding = pipeline.compress_json(data, accept_encoding)
        if encoding is not None:
            out += [(b"content-encoding", encoding.encode()), (b"vary", b"Accept-Encoding")]
    out.append((b"content-length", str(len(data)).encode()))
    if close:
        out.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else data})


async def respond_control(
    send: Any, rt: Runtime, accept_encoding: str, status: int, data: bytes, *, close: bool = False
) -> None:
    """A control-plane JSON answer, headers in the order the Quart app sends them."""
    encoding = None
    if rt.settings.compression_enabled:
        data, encoding = pipeline.compress_json(data, accept_encoding)
    out = [(b"content-type", JSON.encode()), (b"content-length", str(len(data)).encode())]
    if close:
        out.append((b"connection", b"close"))
    out.append((CONTROL_PLANE_HEADER.lower().encode(), CONTROL_PLANE_VERSION.encode()))
    if encoding is not None:
        out += [(b"content-encoding", encoding.encode()), (b"vary", b"Accept-Encoding")]
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": data})
