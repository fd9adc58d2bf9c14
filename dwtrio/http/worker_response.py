"""Worker-plane answers: a report's outcome after its commit, and long-polls."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec

import trio

from dwtrio import wire
from dwtrio.engine.outcome import Outcome, QueueKey
from dwtrio.errors import StoreUnavailableError
from dwtrio.http.worker_plane import Handler, Reply, WorkerCall
from dwtrio.matching.poll import Client, poll_for_task
from dwtrio.runtime import Runtime
from dwtrio.store.pool import Op

P = ParamSpec("P")
log = logging.getLogger(__name__)

#: How long a poll whose claim failed waits for the database to put back what
#: that claim may have leased (its worker's retry finds it otherwise).
RELEASE_WAIT_S = 2.0


async def worker_outcome(
    rt: Runtime, op: Op[P, Outcome], *args: P.args, **kwargs: P.kwargs
) -> Reply:
    """Run a worker's report (complete, fail, ...) as one transaction; only once it has
    committed, wake the queues it touched and nudge the timer loop if it armed a timer."""
    outcome = await rt.store.transaction(op, *args, **kwargs)
    rt.publish_wakes(outcome.wakes)
    if outcome.timer_armed:
        rt.timer_nudge.set()
    return Reply(outcome.body, outcome.status)


def task_report(rt: Runtime, model: type, op: Op[..., Outcome], *extra: Any) -> Handler:
    """The handler of ``POST .../{task_id}/<report>``: the body as ``model``, then
    ``op(conn, namespace, task_id, body, *extra)`` through :func:`worker_outcome`."""

    async def handler(call: WorkerCall, task_id: str) -> Reply:
        req: Any = wire.structure(call.json, model)
        return await worker_outcome(rt, op, call.namespace, task_id, req, *extra)

    return handler


def poll_timeout_s(rt: Runtime, requested: int | None) -> float:
    """The requested long-poll time (0-60 s), or DW_WORKER_POLL_TIMEOUT when none was asked for."""
    return float(rt.settings.worker_poll_timeout_s if requested is None else min(requested, 60))


async def create_with_handoff(
    rt: Runtime,
    key: QueueKey,
    accepts: Callable[[Any], bool],
    create: Callable[[Any], Awaitable[Outcome | None]],
    release_op: Op[..., QueueKey | None],
) -> Outcome | None:
    """Create a task, handing it to a poll parked on ``key`` in this process if one
    ``accepts`` it (sync match, see ``matching/waiters.py``).

    ``create(offer)`` runs the creating store operation: with the reserved
    poll's offer it writes the task leased to that poll and returns its body as
    ``outcome.handoff``; with None it creates a ready task and asks for a wake
    as usual. A poll that ended before the delivery gets nothing: the lease is
    released and the queue woken. (A lease whose outcome is lost all the same, the
    connection failing after the commit, expires and is repaired like any other.)
    """
    waiter = rt.waiters.reserve(key, accepts)
    if waiter is None:
        return await create(None)
    outcome = None
    try:
        # Shielded like a claim: a lease this statement commits must be delivered or
        # released, not left to expire because the creating request was cancelled.
        with trio.CancelScope(shield=True):
            outcome = await create(waiter.offer)
    finally:
        if outcome is None or outcome.handoff is None:
            rt.waiters.unreserve(waiter)
    handoff = None if outcome is None else outcome.handoff
    if handoff is not None and not rt.waiters.deliver(waiter, handoff):
        try:
            with trio.CancelScope(shield=True):
                queue = await rt.store.transaction(release_op, handoff)
        except Exception:
            # The start itself succeeded; the lease expires and is repaired.
            log.warning("could not release a task its poll left", exc_info=True)
        else:
            if queue is not None:
                rt.publish_wakes({queue})
    return outcome


async def long_poll(
    rt: Runtime,
    key: QueueKey,
    params: Any,
    claim_op: Op[..., dict[str, Any] | None],
    release_op: Op[..., QueueKey | None],
    *,
    timeout_seconds: int | None,
    atomic: bool = True,
    typed: bool = False,
    client: Client | None = None,
    offer: object = None,
    release_polled_op: Op[..., QueueKey | None] | None = None,
) -> Reply:
    """Answer a task poll: claim at once or park until woken; ``{"task": null}`` at the deadline.

    ``atomic=False`` runs the claim without an explicit transaction (two round
    trips fewer) for claims whose only write is a single statement. ``typed``:
    the claim only takes the worker's declared types. ``client`` tells whether the
    worker went away (see ``poll_for_task``). ``offer``: what the poll would lease,
    for requests that hand a new task straight to it (:func:`create_with_handoff`).

    The first claim of a poll may replay the task a retried ``poll_request_id``
    already leased; a task claimed for a client that went away is released and
    its queue woken again.

    While the database is unreachable a claim waits for it, but never past the
    poll's own deadline. A claim whose connection failed after the claim reached
    the database may have leased a task nobody will receive:
    ``release_polled_op(conn, params)`` puts it back before the poll answers
    503 (and should that fail too, the worker's retry with the same
    ``poll_request_id`` is given that task).
    """
    first = True
    timeout_s = poll_timeout_s(rt, timeout_seconds)
    deadline = trio.current_time() + timeout_s

    async def claim() -> dict[str, Any] | None:
        nonlocal first
        replay, first = first, False
        run = rt.store.transaction if atomic else rt.store.autocommit
        try:
            with rt.store.wait_until(deadline):
                return await run(claim_op, params, replay_poll=replay)
        except StoreUnavailableError as exc:
            if exc.maybe_applied and release_polled_op is not None:
                await release_polled(release_polled_op, params)
            raise

    async def release_polled(op: Op[..., QueueKey | None], params: Any) -> None:
        try:
            with rt.store.wait_until(trio.current_time() + RELEASE_WAIT_S):
                queue = await rt.store.transaction(op, params)
        except StoreUnavailableError:
            log.warning("could not release what a failed claim may have leased", exc_info=True)
            return
        if queue is not None:
            rt.publish_wakes({queue})

    async def release(task: dict[str, Any]) -> None:
        queue = await rt.store.transaction(release_op, task)
        if queue is not None:
            rt.publish_wakes({queue})

    task = await poll_for_task(
        rt.waiters,
        key,
        claim,
        release,
        timeout_s=timeout_s,
        recheck_s=rt.settings.worker_poll_interval_ms / 1000,
        draining=rt.draining,
        typed=typed,
        client=client,
        offer=offer,
    )
    if task is None:
        return Reply({"task": None, "poll_status": "empty"})
    return Reply({"task": task})
