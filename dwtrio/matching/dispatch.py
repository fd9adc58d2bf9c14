"""Dispatch: a poll gets a task, and a task being created gets a parked poll.

The two entry points of matching, split as Temporal splits them: the HTTP
handlers only parse a request and call :func:`poll` or
:func:`create_with_handoff`; this module owns the database side of the poll
loop (the claim, a retried poll's replay, putting back what a lost claim or a
departed client leased) and sync-match-or-spool for a new task, in one place.
The loop itself, and who waits for what, are ``poll.py`` and ``waiters.py``.

What differs between workflow, activity and query tasks is a
:class:`TaskKind` record: the engine's claim and release operations, the
worker's type filter, whether the claim needs a transaction. It is built
where the engine is known (the worker-plane module of each task resource), so
matching never imports the engine: the engine's functions satisfy the
protocols below.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

import attrs
import trio

from dwtrio import metrics
from dwtrio.errors import AdmissionLockBusyError, StoreUnavailableError
from dwtrio.matching.batches import MAX_BATCH, ClaimBatches
from dwtrio.matching.poll import Client, poll_for_task
from dwtrio.matching.waiters import MAX_CLAIMS_IN_FLIGHT, QueueKey, WaiterSet
from dwtrio.protocol.admission import AdmissionPolicy, Blocked, QueueCaps, Throttled
from dwtrio.settings import Settings
from dwtrio.store.pool import Conn, Op, Store

log = logging.getLogger(__name__)

#: How long a poll whose claim failed waits for the database to put back what
#: that claim may have leased (its worker's retry finds it otherwise).
RELEASE_WAIT_S = 2.0

#: A task as the worker receives it (the wire body a claim builds).
Task = dict[str, Any]

#: How soon a claim that waited too long for its admission lock looks again.
ADMISSION_BUSY_RECHECK_S = 0.1


class Host(Protocol):
    """What dispatch uses of the process (``dwtrio.runtime.Runtime``)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> Store: ...
    @property
    def waiters(self) -> WaiterSet: ...
    @property
    def draining(self) -> trio.Event: ...
    @property
    def admission(self) -> AdmissionPolicy: ...
    @property
    def claim_batches(self) -> ClaimBatches: ...
    def publish_wakes(self, keys: Iterable[QueueKey]) -> None: ...


class PollParams(Protocol):
    """What matching reads of a poll's claim parameters (each kind's ``ClaimParams``)."""

    @property
    def namespace(self) -> str: ...
    @property
    def task_queue(self) -> str: ...
    @property
    def caps(self) -> QueueCaps | None: ...
    @property
    def poll_request_id(self) -> str | None: ...


P = TypeVar("P", bound=PollParams)
P_contra = TypeVar("P_contra", bound=PollParams, contravariant=True)


class ClaimOp(Protocol[P_contra]):
    """``claim(conn, params, *, replay_poll)``: lease the next task of the poll's queue
    and build its body, or None. With ``replay_poll`` (a poll's first claim), a task
    its ``poll_request_id`` already holds is returned again (the worker retried).
    ``Throttled``: an admission cap stopped it; ``Blocked``: the worker may claim
    nothing (its build-id cohort drains)."""

    def __call__(
        self, conn: Conn, params: P_contra, *, replay_poll: bool
    ) -> Awaitable[Task | Throttled | Blocked | None]: ...


class Created(Protocol):
    """What a creating operation returns: a task handed to the reserved poll, if any."""

    @property
    def handoff(self) -> Task | None: ...


C = TypeVar("C", bound=Created)


@attrs.frozen(kw_only=True)
class TaskKind(Generic[P]):
    """One kind of task, as matching dispatches it."""

    #: The last part of its queues' keys: "workflow", "activity", "query".
    kind: str
    claim: ClaimOp[P]
    #: ``release(conn, task)``: put back a leased task nobody received; the queue to wake.
    release: Op[[Task], QueueKey | None]
    #: The types a poll's claim is limited to (empty: any). A claim so filtered
    #: proves nothing about the queue; a new task is handed only to a poll it matches.
    types: Callable[[P], tuple[str, ...]]
    #: The claim runs in a transaction; False: without one (a claim whose only
    #: write is one statement, two round trips fewer).
    transaction: bool = True
    #: ``release_polled(conn, params)``: put back what the poll's ``poll_request_id``
    #: holds, after a claim whose answer was lost; the queue to wake.
    release_polled: Op[[P], QueueKey | None] | None = None
    #: A parked poll offers itself to a request creating a task of this kind.
    sync_match: bool = False
    #: ``claim_batch(conn, polls)``: :attr:`claim` for several polls of one queue and
    #: type filter in one statement, each poll's result in order (``batches.py``);
    #: used for an uncapped queue's claims other than a poll's first with a
    #: ``poll_request_id`` (a replay). Runs without a transaction.
    claim_batch: Op[[list[P]], list[Task | Blocked | None]] | None = None


def poll_timeout_s(settings: Settings, requested: int | None) -> float:
    """The requested long-poll time (0-60 s), or DW_WORKER_POLL_TIMEOUT when none was asked for."""
    return float(settings.worker_poll_timeout_s if requested is None else min(requested, 60))


async def poll(
    host: Host,
    kind: TaskKind[P],
    params: P,
    *,
    timeout_seconds: int | None,
    client: Client | None = None,
) -> Task | None:
    """A task leased to this poll, claimed at once or after parking until woken; None
    at the deadline (``timeout_seconds``, see :func:`poll_timeout_s`) or when the
    server drains.

    ``client`` tells whether the worker went away (see ``poll_for_task``); a task
    claimed for a client that went away is released and its queue woken again.
    A kind with ``sync_match`` parks with ``params`` as its offer, so a request
    creating a task may hand it over (:func:`create_with_handoff`).

    While the database is unreachable a claim waits for it, but never past the
    poll's own deadline. A claim whose connection failed after the claim reached
    the database may have leased a task nobody will receive:
    ``kind.release_polled`` puts it back before the poll raises
    ``StoreUnavailableError`` (and should that fail too, the worker's retry with
    the same ``poll_request_id`` is given that task).
    """
    timeout_s = poll_timeout_s(host.settings, timeout_seconds)
    claims = _Claims(host, kind, params, trio.current_time() + timeout_s)
    open_polls = metrics.polls_open(kind.kind)
    open_polls.inc()
    try:
        task = await poll_for_task(
            host.waiters,
            (params.namespace, params.task_queue, kind.kind),
            claims.claim,
            claims.release,
            timeout_s=timeout_s,
            recheck_s=host.settings.worker_poll_interval_ms / 1000,
            draining=host.draining,
            typed=bool(kind.types(params)),
            client=client,
            offer=params if kind.sync_match else None,
            claims_at_once=_claims_at_once(kind, params),
        )
    finally:
        open_polls.dec()
    metrics.poll_answer(kind.kind, "empty" if task is None else "task").inc()
    return task


def _claims_at_once(kind: TaskKind[P], params: P) -> int:
    """How many claims of the poll's queue may run before it parks without claiming:
    more when its first claim joins a batch (one statement for all of them)."""
    if kind.claim_batch is not None and params.caps is None and not params.poll_request_id:
        return MAX_BATCH
    return MAX_CLAIMS_IN_FLIGHT


class _Claims(Generic[P]):
    """The claim and the release of one poll (:func:`poll`), as bound methods of one
    slotted object: a parked poll holds this, not two closures and their cells."""

    __slots__ = ("deadline", "first", "host", "kind", "params", "run")

    def __init__(self, host: Host, kind: TaskKind[P], params: P, deadline: float) -> None:
        self.host, self.kind, self.params, self.deadline = host, kind, params, deadline
        # A capped queue's claim holds its admission lock until the lease commits.
        store = host.store
        transaction = kind.transaction or params.caps is not None
        self.run = store.transaction if transaction else store.autocommit
        self.first = True

    async def claim(self) -> Task | Throttled | Blocked | None:
        replay, self.first = self.first, False
        host, kind, params = self.host, self.kind, self.params
        batch = kind.claim_batch
        try:
            with host.store.wait_until(self.deadline):
                if (
                    batch is not None
                    and params.caps is None
                    and not (replay and params.poll_request_id)
                ):
                    line = (params.namespace, params.task_queue, kind.kind, kind.types(params))
                    return await host.claim_batches.claim(line, params, self._claim_batch)
                return await self.run(kind.claim, params, replay_poll=replay)
        except AdmissionLockBusyError:
            # Other nodes' claims of the queue held its admission lock for a second.
            return Throttled(ADMISSION_BUSY_RECHECK_S)
        except StoreUnavailableError as exc:
            if exc.maybe_applied and kind.release_polled is not None:
                await _release_polled(host, kind.release_polled, self.params)
            raise

    async def _claim_batch(self, polls: list[P]) -> list[Task | Blocked | None]:
        assert self.kind.claim_batch is not None
        return await self.host.store.autocommit(self.kind.claim_batch, polls)

    async def release(self, task: Task) -> None:
        await _release(self.host, self.kind.release, task)


async def _release(host: Host, op: Op[[Task], QueueKey | None], task: Task) -> None:
    queue = await host.store.transaction(op, task)
    if queue is not None:
        host.publish_wakes({queue})


async def _release_polled(host: Host, op: Op[[P], QueueKey | None], params: P) -> None:
    try:
        with host.store.wait_until(trio.current_time() + RELEASE_WAIT_S):
            queue = await host.store.transaction(op, params)
    except StoreUnavailableError:
        log.warning("could not release what a failed claim may have leased", exc_info=True)
        return
    if queue is not None:
        host.publish_wakes({queue})


async def create_with_handoff(
    host: Host,
    kind: TaskKind[P],
    create: Callable[[P | None], Awaitable[C | None]],
    *,
    namespace: str,
    task_queue: str,
    task_type: str,
) -> C | None:
    """Create a task of ``kind`` and ``task_type`` on ``task_queue``, handing it to a
    poll parked on that queue in this process if one would take it (sync match, see
    ``waiters.py``).

    ``create(offer)`` runs the creating store operation: with the reserved
    poll's offer it writes the task leased to that poll and returns its body as
    ``handoff``; with None it creates a ready task and asks for a wake as
    usual. A poll that ended before the delivery gets nothing: the lease is
    released and the queue woken. (A lease whose outcome is lost all the same, the
    connection failing after the commit, expires and is repaired like any other.)
    """

    def accepts(offer: P) -> bool:
        types = kind.types(offer)
        return not types or task_type in types

    # A capped queue dispatches only through admitted claims.
    capped = host.admission.caps(namespace, task_queue, kind.kind) is not None
    waiter = None if capped else host.waiters.reserve((namespace, task_queue, kind.kind), accepts)
    if waiter is None:
        return await create(None)
    created = None
    try:
        # Shielded like a claim: a lease this statement commits must be delivered or
        # released, not left to expire because the creating request was cancelled.
        with trio.CancelScope(shield=True):
            created = await create(waiter.offer)
    finally:
        if created is None or created.handoff is None:
            host.waiters.unreserve(waiter)
    handoff = None if created is None else created.handoff
    if handoff is not None and host.waiters.deliver(waiter, handoff):
        metrics.sync_match(kind.kind).inc()
    elif handoff is not None:
        try:
            with trio.CancelScope(shield=True):
                await _release(host, kind.release, handoff)
        except Exception:
            # The creation itself succeeded; the lease expires and is repaired.
            log.warning("could not release a task its poll left", exc_info=True)
    return created
