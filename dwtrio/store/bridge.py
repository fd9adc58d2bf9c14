"""asyncio under Trio: one event loop of its own, in a thread, for asyncpg and Redis.

asyncpg and the Redis client are asyncio libraries; everything else in dwtrio
is Trio. They meet here, and only here. :func:`open_loop` starts a dedicated
asyncio event loop (uvloop when it is installed) in a thread of its own for the
duration of a Trio run; :func:`run` runs a coroutine function on it and
brings its outcome back to the calling Trio task, one hand-off each way.

Why a thread and not trio-asyncio (which runs an asyncio loop *inside* Trio's
scheduler, and was this module's predecessor): there every asyncio callback,
future and task step of the driver went through Trio's run queue, and that
machinery took about a quarter of the server's CPU. On its own loop asyncpg
runs as it was written for, in C under uvloop; the price is two wake-ups of a
thread per call. Measured on this machine (docs/performance.md, "The Postgres
bridge"): a four-statement transaction cost 0.70-0.89 ms of CPU through
trio-asyncio and 0.13-0.15 ms through this bridge.

The rules that follow from running on another thread:

* Store functions stay coroutines that do all their database work in one
  :func:`run` (one hand-off per store operation, as before).
* Code on the asyncio side must not touch Trio objects. A callback that has to
  reach Trio (a wake-bus message, a lost connection) is wrapped with
  :func:`to_trio`, which runs it on the Trio thread.
* Cancelling the Trio task cancels the asyncio task, and the Trio task waits
  until the asyncio side has finished (its ``finally`` blocks, a rollback, a
  connection handed back) before it raises ``trio.Cancelled``, for at most
  :data:`CANCEL_WAIT_S`: then it raises and the asyncio task finishes on its
  own (one warning line). A result the asyncio side produced anyway (it
  finished before it saw the cancellation) is returned; the cancellation is
  then delivered at the caller's next checkpoint.
* The calling task's contextvars travel with the call (as a copy).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

import outcome
import trio

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: Longest the loop's thread may take to finish what is left on it at shutdown.
SHUTDOWN_TIMEOUT_S = 2.0

#: How long a cancelled call waits for its asyncio task to end (its cleanup: a rollback
#: and a connection handed back, each bounded by the store's 2 s) before the Trio side
#: goes on without it. A driver call that ignores cancellation (asyncpg waiting on a
#: database that stopped answering) must not hold a shutdown.
CANCEL_WAIT_S = 4.0


class LoopClosedError(RuntimeError):
    """The asyncio loop stopped before a call could finish (shutdown)."""


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when available (asyncpg is fastest on it), else asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class AsyncioThread:
    """An asyncio event loop running in a daemon thread of its own."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dwtrio-asyncio", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        try:
            self.loop.run_forever()
            # Stopped: whatever is still running there gets cancelled and a bounded
            # moment to finish its cleanup.
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.wait(pending, timeout=SHUTDOWN_TIMEOUT_S))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    async def stop(self) -> None:
        """Stop the loop and wait (in a worker thread, bounded) for its thread to end."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        with trio.move_on_after(SHUTDOWN_TIMEOUT_S + 1.0, shield=True) as scope:
            await trio.to_thread.run_sync(self._thread.join, abandon_on_cancel=True)
        if scope.cancelled_caught:
            log.warning("the asyncio loop's thread did not end in time; abandoned")

    async def run(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)`` on this loop, from a Trio task (see the module
        docstring for cancellation)."""
        token = trio.lowlevel.current_trio_token()
        trio_task = trio.lowlevel.current_task()
        holder: list[asyncio.Future[T]] = []
        cancel: list[Callable[[], Any]] = []
        settled: list[bool] = []

        def settle(result: outcome.Outcome[T]) -> None:  # Trio thread, at most once
            if not settled:
                settled.append(True)
                trio.lowlevel.reschedule(trio_task, result)

        def finish(fut: asyncio.Future[T]) -> None:  # Trio thread
            if fut.cancelled():
                settle(
                    outcome.capture(cancel[0])
                    if cancel
                    else outcome.Error(LoopClosedError("the asyncio loop was stopped"))
                )
            elif (exc := fut.exception()) is not None:
                settle(outcome.Error(exc))
            else:
                settle(outcome.Value(fut.result()))

        def abandon() -> None:  # Trio thread, CANCEL_WAIT_S after the cancellation
            if not settled:
                log.warning(
                    "a call on the asyncio loop (%s) did not end within %g s of its "
                    "cancellation; it is left to finish on its own",
                    getattr(fn, "__qualname__", fn),
                    CANCEL_WAIT_S,
                )
                settle(outcome.capture(cancel[0]))

        def to_trio_soon(callback: Callable[..., None], *args: Any) -> None:
            try:
                token.run_sync_soon(callback, *args)
            except trio.RunFinishedError:
                pass  # Trio has ended: nobody waits any more

        def begin() -> None:  # asyncio thread, in a copy of the caller's context
            fut = asyncio.ensure_future(fn(*args, **kwargs))
            holder.append(fut)
            fut.add_done_callback(lambda f: to_trio_soon(finish, f))

        def cancel_task() -> None:  # asyncio thread
            holder[0].cancel()
            self.loop.call_later(CANCEL_WAIT_S, to_trio_soon, abandon)

        def abort(raise_cancel: Callable[[], Any]) -> trio.lowlevel.Abort:
            cancel.append(raise_cancel)
            self.loop.call_soon_threadsafe(cancel_task)
            return trio.lowlevel.Abort.FAILED  # finish() or abandon() reschedules

        try:
            self.loop.call_soon_threadsafe(begin, context=contextvars.copy_context())
        except RuntimeError as exc:  # the loop is closed
            raise LoopClosedError("the asyncio loop is not running") from exc
        return await trio.lowlevel.wait_task_rescheduled(abort)  # type: ignore[no-any-return]

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run the plain function ``fn(*args)`` on the loop's thread, soon (from any thread)."""
        self.loop.call_soon_threadsafe(fn, *args)


#: The loop of the innermost :func:`open_loop` around the current task. A context
#: variable, not a RunVar: Trio tasks inherit it from where they were spawned, so a
#: loop opened inside another (a test's second session) serves only its own subtree,
#: and nothing ever reaches a connection from a loop that does not own it.
_current: contextvars.ContextVar[AsyncioThread] = contextvars.ContextVar("dwtrio_asyncio_thread")


@asynccontextmanager
async def open_loop() -> AsyncIterator[AsyncioThread]:
    """Start an asyncio loop for the tasks inside this block; stop it on exit (after
    everything that used it, which must have ended by then)."""
    thread = AsyncioThread()
    thread.start()
    token = _current.set(thread)
    try:
        yield thread
    finally:
        _current.reset(token)
        await thread.stop()


def current() -> AsyncioThread:
    """The loop of the innermost :func:`open_loop` around the calling task.

    Raises:
        RuntimeError: no loop is open.
    """
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("no asyncio loop: call inside dwtrio.store.bridge.open_loop()") from None


async def run(fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
    """``await fn(*args, **kwargs)`` on the current asyncio loop (:meth:`AsyncioThread.run`)."""
    return await current().run(fn, *args, **kwargs)


def call_soon(fn: Callable[..., Any], *args: Any) -> None:
    """Run the plain function ``fn(*args)`` on the current asyncio loop (Trio side)."""
    current().call_soon(fn, *args)


def to_trio(fn: Callable[P, None]) -> Callable[P, None]:
    """Wrap the plain function ``fn`` (called with no result wanted) so that calling the
    wrapper from the asyncio thread runs ``fn`` on the Trio thread, soon. Build it on the
    Trio side (it captures the current Trio run)."""
    token = trio.lowlevel.current_trio_token()

    def call(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            token.run_sync_soon(lambda: fn(*args, **kwargs))
        except trio.RunFinishedError:
            pass  # Trio has ended: nobody is left to tell

    return call
