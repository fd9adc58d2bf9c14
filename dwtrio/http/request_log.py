"""One log line per request, and the request id.

:class:`RequestLog` wraps the whole ASGI application (worker plane and Quart
app alike). For each HTTP request it

* takes the client's ``X-Request-Id`` when it is sane (1 to 128 characters out
  of ASCII letters, digits, ``.``, ``_``, ``:`` and ``-``) and makes up one
  otherwise (32 hex digits), so a client cannot put arbitrary text in the logs;
* keeps what is learned about the request in a :class:`RequestContext` held by
  a context variable: every log record emitted while the request is served
  (also from Trio tasks it starts) is stamped with the request id by
  ``observability.RequestIdFilter``, and error bodies carry it
  (``envelope.error_body``);
* adds ``X-Request-Id`` to the response's headers, whatever answered it;
* counts and times it in the request metrics (``http/metrics.observe``);
* logs one line (logger ``dwtrio.request``, at INFO) once the request is done:
  method, route template, status, duration in milliseconds, and the namespace,
  worker id, workflow id and run id when the request named them. A long poll
  logs when it answers; a request whose client left before the answer logs
  ``action=client_gone`` and no status.

The handlers and gates fill in the context through :func:`note` and
:func:`note_route` (cheap no-ops outside a request).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from dwtrio.observability import RequestContext, current_request

log = logging.getLogger("dwtrio.request")

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

HEADER = b"x-request-id"
MAX_REQUEST_ID_LENGTH = 128
_SANE = re.compile(rb"[A-Za-z0-9._:\-]{1,%d}" % MAX_REQUEST_ID_LENGTH)
#: Quart rule placeholders (``<workflow_id>``, ``<int:n>``) -> ``{workflow_id}``.
_PLACEHOLDER = re.compile(r"<(?:[^:<>]*:)?([^<>]+)>")
_templates: dict[str, str] = {}


def sane_request_id(raw: bytes | None) -> str | None:
    """The client's request id if it is safe to log and echo, else None."""
    if raw is not None and _SANE.fullmatch(raw):
        return raw.decode("ascii")
    return None


def new_request_id() -> str:
    return uuid.uuid4().hex


def route_template(rule: str) -> str:
    """A Quart rule written the way worker routes are (``{name}`` placeholders)."""
    template = _templates.get(rule)
    if template is None:
        template = _templates.setdefault(rule, _PLACEHOLDER.sub(r"{\1}", rule))
    return template


def note_route(route: str) -> None:
    if (ctx := current_request.get()) is not None:
        ctx.route = route


def note(
    *,
    namespace: str | None = None,
    worker_id: object = None,
    workflow_id: object = None,
    run_id: object = None,
) -> None:
    """Record what the request turned out to be about; the first value seen sticks,
    and only strings count (bodies are the client's)."""
    ctx = current_request.get()
    if ctx is None:
        return
    if namespace is not None and ctx.namespace is None:
        ctx.namespace = namespace
    if isinstance(worker_id, str) and ctx.worker_id is None:
        ctx.worker_id = worker_id
    if isinstance(workflow_id, str) and ctx.workflow_id is None:
        ctx.workflow_id = workflow_id
    if isinstance(run_id, str) and ctx.run_id is None:
        ctx.run_id = run_id


def note_body(body: Mapping[str, Any]) -> None:
    """Workflow and run ids from an answer: top-level, or the ``task`` a poll hands out."""
    task = body.get("task")
    if isinstance(task, dict):
        note(workflow_id=task.get("workflow_id"), run_id=task.get("run_id"))
    note(workflow_id=body.get("workflow_id"), run_id=body.get("run_id"))


def current_request_id() -> str | None:
    ctx = current_request.get()
    return ctx.request_id if ctx is not None else None


#: ``observe(scope, status, seconds)``: told of each HTTP request as it ends (metrics).
Observer = Callable[[Any, int | None, float], None]


class RequestLog:
    """The ASGI middleware (see the module docstring); ``observe``, if given, is
    told of each HTTP request as it ends (the request metrics)."""

    def __init__(self, app: ASGIApp, observe: Observer | None = None) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = None
        for name, value in scope["headers"]:
            if name == HEADER:
                sent = value
                break
        request_id = sane_request_id(sent) or new_request_id()
        ctx = RequestContext(request_id, scope["method"])
        token = current_request.set(ctx)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, IdEchoingSend(send, ctx))
        finally:
            current_request.reset(token)
            seconds = time.perf_counter() - started
            if self.observe is not None:
                self.observe(scope, ctx.status, seconds)
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    extra={
                        "request_id": request_id,
                        "method": ctx.method,
                        "route": ctx.route,
                        "status": ctx.status,
                        "duration_ms": round(seconds * 1000, 2),
                        "namespace": ctx.namespace,
                        "worker_id": ctx.worker_id,
                        "workflow_id": ctx.workflow_id,
                        "run_id": ctx.run_id,
                        "action": None if ctx.status is not None else "client_gone",
                    },
                )


class IdEchoingSend:
    """An ASGI ``send`` that adds ``X-Request-Id`` to the response and notes its status
    in the request's context. A slotted object rather than a closure: every parked
    long-poll holds one."""

    __slots__ = ("ctx", "send")

    def __init__(self, send: Any, ctx: RequestContext) -> None:
        self.send, self.ctx = send, ctx

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            ctx = self.ctx
            ctx.status = message["status"]
            echoed = (HEADER, ctx.request_id.encode())
            message["headers"] = [*message.get("headers", ()), echoed]
        await self.send(message)
