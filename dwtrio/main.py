"""The composition root: dwtrio owns ``trio.run``.

Process shape (one server process)::

    trio.run
      asyncio loop thread        (store/bridge.py: asyncpg and Redis run there)
        store (asyncpg pool)
          supervisor nursery
            background loops     (nursery.start, in a fixed order)
            Hypercorn            (programmatic serve, shutdown_trigger = our drain)
            signal watcher       (SIGTERM / SIGINT -> drain)

Shutdown order: the draining flag is set (open long-polls answer at once),
Hypercorn stops accepting and finishes in-flight requests within the graceful
timeout, then the supervisor nursery is cancelled and the pool closes.

With ``DW_WORKERS > 1`` the parent binds the socket once, bootstraps the
database once and starts that many server processes sharing the socket.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Awaitable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.utils import wrap_app
from prometheus_client import multiprocess

from dwtrio import metrics, wire
from dwtrio.background import supervisor
from dwtrio.embedded import EmbeddedPostgres
from dwtrio.errors import DwtrioError
from dwtrio.http.app import create_app
from dwtrio.http.server import close_when_draining, default_max_connections, serve_http
from dwtrio.runtime import Runtime
from dwtrio.settings import Settings
from dwtrio.store import bridge, migrate
from dwtrio.store.migrate import BootstrapReport
from dwtrio.store.pool import Store, connect_once, open_store

log = logging.getLogger(__name__)


def hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [settings.bind]
    config.backlog = settings.backlog
    config.graceful_timeout = settings.graceful_timeout_s
    config.keep_alive_max_requests = 1_000_000
    # Longer than clients keep idle pooled connections (httpx, which the SDK uses: 5 s,
    # Hypercorn's default too): otherwise a client can send on a connection the server
    # is closing at that moment and get a reset instead of an answer.
    config.keep_alive_timeout = settings.keep_alive_timeout_s
    config.include_server_header = False
    # Hypercorn refuses a head over this while it arrives; pipeline.check_head, once it is in.
    config.h11_max_incomplete_size = wire.MAX_HEAD_BYTES
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The DSN to use: DW_DATABASE_URL, or an embedded Postgres owned for the block's duration."""
    if settings.database_url:
        yield settings.database_url
        return
    data_dir = Path(settings.data_dir)
    log.info("no DW_DATABASE_URL: starting embedded Postgres in %s", data_dir)
    with EmbeddedPostgres(data_dir) as dsn:
        yield dsn


async def bootstrap(settings: Settings, dsn: str) -> BootstrapReport:
    """Apply migrations and seed the default namespace, retrying while the database starts."""
    attempts = max(1, settings.bootstrap_retries)
    for attempt in range(1, attempts + 1):
        try:
            return await connect_once(
                dsn,
                migrate.bootstrap,
                default_namespace=settings.default_namespace,
                retention_days=settings.history_retention_days,
            )
        except Exception as exc:
            if attempt == attempts:
                raise
            log.warning("bootstrap attempt %d/%d failed: %s", attempt, attempts, exc)
            await trio.sleep(settings.bootstrap_delay_s)
    raise AssertionError("unreachable")


async def run_bootstrap(settings: Settings, dsn: str) -> BootstrapReport:
    async with bridge.open_loop():
        return await bootstrap(settings, dsn)


async def log_schema_state(store: Store) -> None:
    """Say at start when the schema and this node's release differ: a schema behind it
    (not ready until `dwtrio bootstrap` runs) or ahead of it (a mixed-version cluster
    during a rolling upgrade, which this node serves in)."""
    try:
        state = await store.probe(migrate.schema_state)
    except DwtrioError as exc:
        log.warning("could not compare the schema with this release: %s", exc)
        return
    if state.pending:
        log.warning(
            "the database lacks migrations of this release (%s): not ready until "
            "`dwtrio bootstrap` applies them",
            ", ".join(state.pending),
        )
    migrate.log_newer(state.newer)


#: How long the rest of a shutdown (background loops, the wake bus, the pool, the store's
#: loop thread) may take past DW_GRACEFUL_TIMEOUT_SECONDS before the process exits anyway.
SHUTDOWN_GRACE_S = 20.0


def arm_shutdown_watchdog(limit_s: float) -> threading.Timer:
    """End the process (exit status 1) if it is still running ``limit_s`` from now.

    A shutdown that hangs (a driver call that never comes back from cancellation, a
    peer that stopped answering) must not keep a node alive that its orchestrator
    already counts as gone. A thread, not a Trio task: it fires even if Trio is stuck.
    """

    def give_up() -> None:
        log.error("shutdown did not finish within %g s of the signal; exiting now", limit_s)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(1)

    timer = threading.Timer(limit_s, give_up)
    timer.daemon = True
    timer.start()
    return timer


class ShutdownPhases:
    """Logs how long after the stop each phase of a shutdown ended (one INFO line each),
    so that a slow shutdown says where its time went."""

    def __init__(self) -> None:
        self._began: float | None = None

    def start(self) -> None:
        self._began = trio.current_time()

    def done(self, phase: str) -> None:
        if self._began is not None:
            log.info("shutdown: %s %.2f s after the stop", phase, trio.current_time() - self._began)


async def _watch_signals(
    stop: trio.Event,
    shutdown_limit_s: float,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            log.info("received %s: draining", signal.Signals(signum).name)
            if not stop.is_set():
                arm_shutdown_watchdog(shutdown_limit_s)
            stop.set()


def shield_sends(app: Any) -> Any:
    """ASGI wrapper: the app's ``send`` calls cannot be cancelled.

    Hypercorn re-arms a connection's idle timer inside the final ``send`` of a
    response, which Quart-Trio runs in the request nursery it then cancels; a
    cancelled send leaves idle keep-alive connections open forever, so every
    shutdown would wait the whole graceful timeout while any client is connected.

    The wrapper is a plain function returning the app's own coroutine, and the
    shielded ``send`` a small object: a parked long-poll keeps no frame or
    closure of it (see "Idle long-polls" in docs/performance.md).
    """

    def asgi(scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        return app(scope, receive, ShieldedSend(send))  # type: ignore[no-any-return]

    return asgi


class ShieldedSend:
    """An ASGI ``send`` whose calls run shielded from cancellation (:func:`shield_sends`)."""

    __slots__ = ("send",)

    def __init__(self, send: Any) -> None:
        self.send = send

    async def __call__(self, message: Any) -> None:
        with trio.CancelScope(shield=True):  # see shield_sends: sends must complete
            await self.send(message)


async def serve(
    settings: Settings,
    dsn: str,
    *,
    stop: trio.Event | None = None,
    sockets: Sockets | None = None,
    handle_signals: bool = False,
    bootstrap_first: bool | None = None,
    freeze_heap: bool = False,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``stop`` is set (or a signal arrives); reports the bound URLs when listening.

    A stop that arrives while still starting (bootstrap retries, pool opening)
    cancels the startup at once; once serving, a stop drains gracefully.

    ``freeze_heap`` (a server process of its own, never the tests' shared one):
    once listening, everything alive (modules, the app, the pool) is moved out of
    the garbage collector's reach (``gc.freeze``); it lives as long as the
    process anyway. A full collection then walks only what requests allocated
    since: before, one came every few dozen requests that build many objects (a
    task-queue description with 300 pollers) and stalled the process ~30 ms.
    """
    stop = trio.Event() if stop is None else stop
    serving = False
    phases = ShutdownPhases()
    async with trio.open_nursery() as root:
        if handle_signals:
            await root.start(_watch_signals, stop, settings.graceful_timeout_s + SHUTDOWN_GRACE_S)
        with trio.CancelScope() as startup:

            async def cancel_startup_on_stop() -> None:
                await stop.wait()
                if not serving:
                    startup.cancel()

            root.start_soon(cancel_startup_on_stop)
            async with bridge.open_loop():
                bootstrapped = (
                    settings.auto_bootstrap if bootstrap_first is None else bootstrap_first
                )
                if bootstrapped:
                    report = await bootstrap(settings, dsn)
                    if report.applied:
                        log.info("applied migrations: %s", ", ".join(report.applied))
                async with open_store(
                    dsn,
                    min_size=settings.db_pool_min_size,
                    max_size=settings.db_pool_max_size,
                    outage_wait_s=settings.db_outage_wait_s,
                    statement_timeout_s=settings.db_statement_timeout_s,
                    pool_wait_s=settings.db_pool_wait_s,
                ) as store:
                    if not bootstrapped:  # (a bootstrap has logged what it found)
                        await log_schema_state(store)
                    rt = Runtime.build(settings, store)
                    app = shield_sends(close_when_draining(create_app(rt), rt.draining))

                    async def drain() -> None:
                        await stop.wait()
                        phases.start()
                        rt.drain()

                    async with trio.open_nursery() as nursery:  # the supervisor nursery

                        async def run_http(
                            *,
                            task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
                        ) -> None:
                            try:
                                await serve_http(
                                    wrap_app(app, 0, "asgi"),
                                    hypercorn_config(settings),
                                    max_connections=settings.max_connections
                                    or default_max_connections(settings.db_connections_per_process),
                                    sockets=sockets,
                                    shutdown_trigger=drain,
                                    task_status=task_status,
                                )
                            finally:
                                phases.done("HTTP drained")
                                nursery.cancel_scope.cancel()

                        await supervisor.start_all(nursery, rt)
                        binds = await nursery.start(run_http)
                        serving = True
                        if freeze_heap:
                            gc.freeze()
                        log.info("dwtrio serving on %s", ", ".join(binds))
                        task_status.started(binds)
                    phases.done("background loops stopped")
                phases.done("pool closed")
            phases.done("store loop stopped")
        root.cancel_scope.cancel()  # the signal watcher and the startup guard


def _serve_process(settings: Settings, dsn: str, sockets: Sockets) -> None:
    from dwtrio.observability import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    trio.run(
        partial(
            serve,
            settings,
            dsn,
            sockets=sockets,
            handle_signals=True,
            bootstrap_first=False,
            freeze_heap=True,
        )
    )


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def raise_open_file_limit() -> None:
    """Lift this process's soft open-file limit to its hard limit.

    Every open connection (a parked long-poll is one) holds a descriptor, and
    services often start with a soft limit of 1,024 below a far higher hard
    one; Go's runtime lifts it the same way. DW_MAX_CONNECTIONS's default
    follows the limit, so it rises with it. Server processes started for
    DW_WORKERS inherit it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-file limit from %d: %s", soft, exc)
        return
    log.info("open-file limit raised from %d to %d", soft, target)


def run(settings: Settings) -> None:
    """`dwtrio serve`: run until SIGTERM/SIGINT, owning any embedded Postgres."""
    raise_open_file_limit()
    # Until trio installs its own handler, SIGTERM unwinds normally (stopping an
    # embedded Postgres) instead of killing the process outright.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with database(settings) as dsn:
        if settings.workers == 1:
            if settings.metrics_bind:
                metrics.start_listener(*settings.metrics_host_port)
            trio.run(partial(serve, settings, dsn, handle_signals=True, freeze_heap=True))
            return
        with multiprocess_metrics():
            _run_workers(settings, dsn)


@contextlib.contextmanager
def multiprocess_metrics() -> Iterator[None]:
    """prometheus_client's multiprocess mode for the server processes about to start:
    each writes its metrics under a directory of this run (or the operator's own
    ``PROMETHEUS_MULTIPROC_DIR``), and any scrape sums them (``metrics.scrape_registry``).
    The processes inherit the variable; it must be set before they import anything."""
    own = metrics.MULTIPROC_ENV not in os.environ
    if own:
        os.environ[metrics.MULTIPROC_ENV] = tempfile.mkdtemp(prefix="dwtrio-metrics-")
    try:
        yield
    finally:
        if own:
            shutil.rmtree(os.environ.pop(metrics.MULTIPROC_ENV), ignore_errors=True)


def _run_workers(settings: Settings, dsn: str) -> None:
    """DW_WORKERS server processes on one shared socket, until they all exit."""
    if settings.wake_bus_kind == "local":
        log.warning(
            "DW_WORKERS=%d with DW_WAKE_BUS=local: a wake reaches only pollers in the same "
            "process; pollers in the others see new tasks on their recheck "
            "(DW_WORKER_POLL_INTERVAL_MS)",
            settings.workers,
        )
    if settings.auto_bootstrap:
        trio.run(run_bootstrap, settings, dsn)
    config = hypercorn_config(settings)
    sockets = config.create_sockets()
    for sock in sockets.insecure_sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.listen(settings.backlog)
    ctx = multiprocessing.get_context("spawn")
    children = [
        ctx.Process(target=_serve_process, args=(settings, dsn, sockets), name=f"dwtrio-{i}")
        for i in range(settings.workers)
    ]
    for child in children:
        child.start()
    log.info("started %d server processes", len(children))
    if settings.metrics_bind:
        metrics.start_listener(*settings.metrics_host_port)

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            if child.is_alive() and child.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for child in children:
            child.join()
            if child.pid is not None:  # its live gauges no longer count
                multiprocess.mark_process_dead(child.pid)  # type: ignore[no-untyped-call]
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for sock in sockets.insecure_sockets:
            sock.close()
