"""The HTTP server: Hypercorn's trio worker with dwtrio's accept loop and connection fix.

dwtrio serves with Hypercorn's protocol machinery (h11/h2 state machines, its
per-connection ``TCPServer``) but does not call
``hypercorn.trio.run.worker_serve``, because three things in that road made a
denial of service easy (issue 12; root cause and upstream patch in
docs/hypercorn.md):

* A connection whose client hung up while it was idle (before its first
  request, or between two requests) kept its socket in CLOSE_WAIT for the whole
  keep-alive timeout: Hypercorn's read loop sees the EOF and returns, but the
  keep-alive timer is a task in the same nursery, so the connection (and its
  file descriptor) lives until the timer runs out. :class:`Connection` stops
  the timer when the read loop ends.
* Nothing bounded the number of open connections. :func:`serve_http` accepts at
  most ``max_connections`` at once (``DW_MAX_CONNECTIONS``); over the cap a new
  connection is closed as soon as it is accepted, and the log says so at most
  once per :data:`LOG_INTERVAL_S`.
* ``trio.serve_listeners`` logs a traceback for every failed accept while the
  process is out of file descriptors, ten a second. Here a failed accept is
  logged once when it starts and once when accepting works again, retried as
  soon as one of our connections closes (at the latest after
  :data:`ACCEPT_RETRY_S`).
* A Trio listener accepts one connection per pass of the scheduler. With
  thousands of busy connections a pass takes tens of milliseconds, so a storm
  of new connections waited seconds in a full listen backlog (and new clients'
  SYNs were dropped) instead of being served or turned away. The accept loop
  here takes up to :data:`ACCEPT_BURST` waiting connections per pass.

The rest mirrors ``worker_serve`` of Hypercorn 0.18: the ASGI lifespan, one
``WorkerContext`` whose ``terminated`` event closes idle connections on
shutdown, and in-flight requests getting ``graceful_timeout`` to finish.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import random
import resource
import socket
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config, Sockets
from hypercorn.events import Closed, Event, Updated
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState
from hypercorn.utils import ShutdownError, raise_shutdown, repr_socket_addr

log = logging.getLogger(__name__)

#: accept(2) errors that mean "out of descriptors or memory": wait, then retry.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
#: Longest wait before retrying a failed accept (a closing connection ends it sooner).
ACCEPT_RETRY_S = 0.1
#: At most one log line per this many seconds while connections are refused or
#: accept keeps failing.
LOG_INTERVAL_S = 10.0
#: Most connections accepted (or turned away) in one pass of the scheduler.
ACCEPT_BURST = 64
#: accept(2) errors about one connection that died in the backlog: skip it (Trio's list).
ACCEPT_SKIP_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "EPERM",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ENOSR",
        "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT",
        "ETIMEDOUT",
        "ECONNRESET",
    )
    if hasattr(errno, name)
)
#: Descriptors kept back from the default cap for everything but client
#: connections (database and Redis connections, the event loop, logs, imports).
FD_RESERVE = 64


def default_max_connections(db_connections: int) -> int:
    """The cap when DW_MAX_CONNECTIONS is unset: the open-file limit minus a reserve.

    The reserve is a tenth of the limit (at least :data:`FD_RESERVE`) plus the
    process's database connections (the pool, and the Postgres wake bus's own),
    so the cap is reached well before accept fails with EMFILE.
    """
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, soft - max(FD_RESERVE, soft // 10) - db_connections)


#: How long, at most, idle keep-alive connections stay open once a drain begins.
DRAIN_LINGER_S = 0.5


async def _linger(gate: ConnectionGate, seconds: float) -> None:
    """Wait ``seconds`` if any connection is open (none: no wait)."""
    if gate.open:
        await trio.sleep(seconds)


class Connection(TCPServer):
    """Hypercorn's ``TCPServer``, closed as soon as its client has gone.

    Hypercorn runs the keep-alive timer (``_idle_timeout``) in the connection's
    nursery and closes the socket only after that nursery exits. When the
    client hangs up on an idle connection, ``_read_data`` returns at the EOF but
    the timer keeps the nursery, and so the socket, open until the keep-alive
    timeout. Here the timer is stopped when reading ends, and it is never
    re-armed afterwards: a response finishing after the EOF closes the
    connection instead of making it idle. A request in flight is unaffected:
    Hypercorn has already told its app ``http.disconnect``, and the connection
    closes when the app returns, as before.
    """

    _reading_done = False

    async def _read_data(self) -> None:
        await super()._read_data()
        # EOF, a reset, or the stream closed by us: nothing more will arrive.
        self._reading_done = True
        await self.idle_task.stop()

    async def protocol_send(self, event: Event) -> None:
        if self._reading_done and isinstance(event, Updated) and event.idle:
            event = Closed()  # idle with no one left to send a request: close
        await super().protocol_send(event)


class ConnectionGate:
    """Counts open connections, turns away those over the cap, and keeps
    refusals and failed accepts from flooding the log."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.open = 0
        self._freed = trio.Event()
        self._refused = 0  # since the last line about it
        self._refusals_logged_at = -math.inf
        self._failing_since: float | None = None
        self._failures = 0  # in the current run of failed accepts
        self._failures_logged_at = -math.inf

    def admit(self) -> bool:
        """Whether a just-accepted connection may stay (and then count it)."""
        if self.open < self.max_connections:
            self.open += 1
            return True
        self._refused += 1
        now = trio.current_time()
        if now - self._refusals_logged_at >= LOG_INTERVAL_S:
            more = "" if self._refused == 1 else f" ({self._refused} refused since the last line)"
            log.warning(
                "connection limit reached: %d connections open (DW_MAX_CONNECTIONS=%d); "
                "closing new connections at once until some close%s",
                self.open,
                self.max_connections,
                more,
            )
            self._refusals_logged_at = now
            self._refused = 0
        return False

    def closed(self) -> None:
        self.open -= 1
        self._freed.set()

    def accept_failed(self, exc: OSError) -> None:
        self._failures += 1
        now = trio.current_time()
        code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        if self._failing_since is None:
            self._failing_since = now
            log.warning(
                "accept failed: %s (%s), %d connections open; retrying whenever a "
                "connection closes (one line per %.0f s while it lasts)",
                code,
                os.strerror(exc.errno or 0),
                self.open,
                LOG_INTERVAL_S,
            )
        elif now - self._failures_logged_at >= LOG_INTERVAL_S:
            log.warning(
                "accept still failing: %s for %.1f s (%d failed accepts), %d connections open",
                code,
                now - self._failing_since,
                self._failures,
                self.open,
            )
        else:
            return
        self._failures_logged_at = now

    def accept_succeeded(self) -> None:
        if self._failing_since is None:
            return
        log.warning(
            "accepting connections again after %.1f s (%d failed accepts)",
            trio.current_time() - self._failing_since,
            self._failures,
        )
        self._failing_since = None
        self._failures = 0

    async def wait_to_retry(self) -> None:
        """Until one of our connections closes, at most :data:`ACCEPT_RETRY_S`."""
        self._freed = trio.Event()
        with trio.move_on_after(ACCEPT_RETRY_S):
            await self._freed.wait()


async def _run_connection(
    stream: trio.abc.Stream, handler: Callable[[Any], Awaitable[object]], gate: ConnectionGate
) -> None:
    try:
        await handler(stream)
    finally:
        try:
            await trio.aclose_forcefully(stream)
        finally:
            gate.closed()


async def _accept_loop(
    listener: socket.socket,
    ssl_context: ssl.SSLContext | None,
    handler: Callable[[Any], Awaitable[object]],
    handler_nursery: trio.Nursery,
    gate: ConnectionGate,
) -> None:
    """Accept on one listening socket (closed when the loop ends) until cancelled: up to
    :data:`ACCEPT_BURST` connections each time it is readable, each handled in
    ``handler_nursery`` or, over the cap, closed at once."""
    listener.setblocking(False)
    with listener:
        while True:
            await trio.lowlevel.wait_readable(listener)
            for _ in range(ACCEPT_BURST):
                try:
                    conn, _address = listener.accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in ACCEPT_SKIP_ERRNOS:
                        continue
                    if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                        raise
                    gate.accept_failed(exc)
                    await gate.wait_to_retry()
                    break
                gate.accept_succeeded()
                if not gate.admit():
                    conn.close()
                    continue
                stream: trio.abc.Stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
                if ssl_context is not None:
                    stream = trio.SSLStream(
                        stream, ssl_context, server_side=True, https_compatible=True
                    )
                handler_nursery.start_soon(_run_connection, stream, handler, gate)


def close_when_draining(app: Any, draining: trio.Event) -> Any:
    """ASGI wrapper: once the server drains, every response says ``Connection: close``.

    Hypercorn closes each connection after its response once it is shutting down, but
    without saying so; a load balancer that keeps connections alive (nginx) then sends
    the next request on it (a worker polls again the moment its poll is answered), finds
    it closed and, as a POST may not be sent twice, answers that client 502. Told to
    close, it opens a new connection instead, which a draining node refuses, and the
    request goes to another node.

    Like ``main.shield_sends``, it returns the app's own coroutine and wraps ``send``
    in a small object, so a parked long-poll keeps no frame of it.
    """

    def asgi(scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        if scope["type"] != "http":
            return app(scope, receive, send)  # type: ignore[no-any-return]
        return app(scope, receive, ClosingSend(send, draining))  # type: ignore[no-any-return]

    return asgi


class ClosingSend:
    """An ASGI ``send`` adding ``Connection: close`` to a response started while the
    server drains (:func:`close_when_draining`)."""

    __slots__ = ("draining", "send")

    def __init__(self, send: Any, draining: trio.Event) -> None:
        self.send, self.draining = send, draining

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start" and self.draining.is_set():
            headers = [*message.get("headers", ()), (b"connection", b"close")]
            message = {**message, "headers": headers}
        await self.send(message)


async def serve_http(
    app: AppWrapper,
    config: Config,
    *,
    max_connections: int,
    sockets: Sockets | None = None,
    shutdown_trigger: Callable[..., Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Hypercorn's ``worker_serve`` (0.18) with :class:`Connection` and a capped,
    quiet accept loop; reports the bound URLs when listening."""
    if sockets is not None and sockets.quic_sockets:
        raise ValueError("dwtrio does not serve HTTP/3")
    config.set_statsd_logger_class(StatsdLogger)
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(app, config, lifespan_state)
    max_requests = None
    if config.max_requests is not None:
        max_requests = config.max_requests + random.randint(0, config.max_requests_jitter)
    context = WorkerContext(max_requests)
    gate = ConnectionGate(max_connections)

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()

        async with trio.open_nursery() as server_nursery:
            if sockets is None:
                sockets = config.create_sockets()
                for sock in [*sockets.secure_sockets, *sockets.insecure_sockets]:
                    sock.listen(config.backlog)
            ssl_context = config.create_ssl_context()
            listeners: list[tuple[socket.socket, ssl.SSLContext | None]] = []
            binds = []
            for sock in sockets.secure_sockets:
                listeners.append((sock, ssl_context))
                binds.append(f"https://{repr_socket_addr(sock.family, sock.getsockname())}")
            for sock in sockets.insecure_sockets:
                listeners.append((sock, None))
                binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
            log.info("accepting at most %d connections at once", max_connections)
            handler = partial(
                Connection, app, config, context, ConnectionState(lifespan_state.copy())
            )
            task_status.started(binds)
            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    if shutdown_trigger is not None:
                        nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(raise_shutdown, context.terminate.wait)
                    for listener, tls in listeners:
                        nursery.start_soon(
                            _accept_loop, listener, tls, handler, server_nursery, gate
                        )
                    await trio.sleep_forever()
            except BaseExceptionGroup as error:
                _, other_errors = error.split((ShutdownError, KeyboardInterrupt))
                if other_errors is not None:
                    raise other_errors from None  # the rest is the shutdown itself
            finally:
                # The listeners are closed now (new connections are refused, which a
                # load balancer passes on safely). Idle keep-alive connections are not
                # closed at once: a request a load balancer sends on one in the instant
                # it closes gets no answer, and a POST cannot be passed on (a 502). For a
                # moment they stay open; what arrives on them is answered with
                # ``Connection: close`` (the server drains), so the balancer drops them.
                await _linger(gate, DRAIN_LINGER_S)
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout

        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
