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
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar

import attrs
import trio

from dwtrio import metrics
from dwtrio.errors import AdmissionLockBusyError, StoreUnavailableError
from dwtrio.matching.batches import MAX_BATCH, ClaimBatches
from dwtrio.matching.poll import Client, poll_for_task
from dwtrio.matching.waiters import MAX_CLAIMS_IN_FLIGHT, RESERVED, QueueKey, Waiter, WaiterSet
from dwtrio.protocol.admission import AdmissionPolicy, Blocked, QueueCaps, Throttled
from dwtrio.settings import Settings
from dwtrio.store import offers
from dwtrio.store.pool import Conn, Op, Store, call_on_trio

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
A = ParamSpec("A")
T = TypeVar("T")


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
    #: ``lease_created(conn, params, task_id)``: lease the ready task ``task_id``, just
    #: written by the caller's transaction, to the poll of ``params`` and build its body;
    #: None when that poll's claim could not take it (:func:`transaction_with_handoffs`).
    lease_created: Callable[[Conn, P, str], Awaitable[Task | None]] | None = None
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


class SyncMatch:
    """The parked polls one creating store operation reserved (sync match, ``waiters.py``),
    right whatever run of the operation commits.

    A poll is reserved (:meth:`reserve`) before the task is written, by the
    caller before the store call or by the operation itself
    (``offers.offer_task``). The store may run an operation again (a deadlock,
    a serialization failure, a connection lost before any effect): a
    reservation outlives the run that took it, and the next run reuses it
    before reserving another poll. Only what the committed run leased
    (:meth:`lease`, :meth:`leased`) is delivered; :meth:`settle` gives every
    other reserved poll back to its queue (it looks again), and a lease whose
    poll left before the delivery is released and its queue woken. Kinds
    without ``sync_match``, and capped queues (which dispatch only through
    admitted claims), get no reservation.
    """

    def __init__(self, host: Host, kinds: Iterable[TaskKind[Any]]) -> None:
        self._host = host
        self._kinds = {kind.kind: kind for kind in kinds if kind.sync_match}
        #: Where the parked polls live (the operation itself runs on the store's side).
        self._trio_thread = threading.get_ident()
        self._trio_token = trio.lowlevel.current_trio_token()
        #: Every poll reserved so far, by any run, with its queue.
        self._reserved: dict[Waiter, QueueKey] = {}
        #: The reservations the current run has used.
        self._taken: set[Waiter] = set()
        #: What the current run leased to its reserved polls: the task bodies.
        self._leased: dict[Waiter, Task] = {}
        #: The current run's tasks to hand over after its commit (:meth:`defer`).
        self._deferred: list[offers.Offered] = []

    def begin(self) -> None:
        """A run of the operation starts: an earlier run's leases were rolled back."""
        self._taken.clear()
        self._leased.clear()
        self._deferred = []

    def defer(self, offered: list[offers.Offered]) -> None:
        """The run's ready tasks, for :meth:`hand_over_deferred` after its commit."""
        self._deferred = offered

    def maybe_parked(self, key: QueueKey) -> bool:
        """Whether a poll of ``key`` may be parked here: a hint read without locking,
        from any thread (a poll parking a moment later is woken as before)."""
        return key[2] in self._kinds and self._host.waiters.waiting(key) > 0

    async def reserve(self, wanted: list[tuple[QueueKey, str | None]]) -> list[Waiter | None]:
        """:meth:`reserve_one` for each (queue, task type), on the Trio thread."""

        def reserve_all() -> list[Waiter | None]:
            return [self.reserve_one(key, task_type) for key, task_type in wanted]

        if threading.get_ident() == self._trio_thread:
            return reserve_all()
        return await call_on_trio(self._trio_token, reserve_all)

    def reserve_one(self, key: QueueKey, task_type: str | None) -> Waiter | None:
        """A parked poll of ``key`` whose types accept ``task_type`` (None: unknown,
        any poll; the lease checks), not yet used by this run, reserved for it; None
        when there is none. On the Trio thread."""
        kind = self._kinds.get(key[2])
        if kind is None or self._host.admission.caps(*key) is not None:
            return None

        def accepts(offer: Any) -> bool:
            types = kind.types(offer)
            return not types or task_type is None or task_type in types

        for waiter, reserved_key in self._reserved.items():
            if (
                reserved_key == key
                and waiter not in self._taken
                and waiter.state is RESERVED
                and accepts(waiter.offer)
            ):
                break
        else:
            found = self._host.waiters.reserve(key, accepts)
            if found is None:
                return None
            waiter = found
            self._reserved[waiter] = key
        self._taken.add(waiter)
        return waiter

    async def lease(self, conn: Conn, reservation: Any, task_id: str) -> bool:
        """Lease the ready task ``task_id`` to the reserved poll, in the caller's run."""
        waiter: Waiter = reservation
        kind = self._kinds[self._reserved[waiter][2]]
        assert kind.lease_created is not None
        body = await kind.lease_created(conn, waiter.offer, task_id)
        if body is None:
            return False
        self.leased(waiter, body)
        return True

    def leased(self, waiter: Waiter, body: Task) -> None:
        """The current run leased ``body`` to the reserved ``waiter``."""
        self._leased[waiter] = body

    def settle(self, *, committed: bool) -> list[tuple[TaskKind[Any], Task]]:
        """After the store call: deliver what the committed run leased (nothing when
        it did not commit) and unreserve every other poll. Returns the leases whose
        poll has left, for :meth:`release`."""
        leased = self._leased if committed else {}
        orphans: list[tuple[TaskKind[Any], Task]] = []
        waiters = self._host.waiters
        for waiter, key in self._reserved.items():
            body = leased.get(waiter)
            kind = self._kinds[key[2]]
            if body is None:
                waiters.unreserve(waiter)
            elif waiters.deliver(waiter, body):
                metrics.sync_match(kind.kind).inc()
            else:
                orphans.append((kind, body))
        self._reserved.clear()
        return orphans

    async def hand_over_deferred(self) -> None:
        """After an operation without a transaction committed (:meth:`defer`): each of
        its ready tasks leased, by a statement of its own, to a poll reserved now, or
        its queue woken (in the operation's outcome) when none takes it."""
        deferred, self._deferred = self._deferred, []
        if not deferred:
            return
        self.begin()
        try:
            for item in deferred:
                waiter = self.reserve_one(item.key, item.task_type)
                if waiter is None or not await self._lease_alone(waiter, item.task_id):
                    item.wakes.wake(*item.key)
        finally:
            orphans = self.settle(committed=True)
        await self.release(orphans)

    async def _lease_alone(self, waiter: Waiter, task_id: str) -> bool:
        leased = False
        try:
            with trio.CancelScope(shield=True):  # a committed lease is delivered or released
                leased = await self._host.store.autocommit(self.lease, waiter, task_id)
        except StoreUnavailableError:
            # Perhaps leased all the same: that lease expires and is repaired.
            log.warning("could not hand over a task", exc_info=True)
        return leased

    async def release(self, orphans: list[tuple[TaskKind[Any], Task]]) -> None:
        """Put back leases whose poll left before the delivery, and wake their queues."""
        for kind, body in orphans:
            try:
                with trio.CancelScope(shield=True):
                    await _release(self._host, kind.release, body)
            except Exception:
                # The creation itself succeeded; the lease expires and is repaired.
                log.warning("could not release a task its poll left", exc_info=True)


async def transaction_with_handoffs(
    host: Host,
    kinds: Iterable[TaskKind[Any]],
    op: Callable[Concatenate[Conn, A], Awaitable[T]],
    *args: A.args,
    **kwargs: A.kwargs,
) -> T:
    """Run ``op`` as one transaction (``store.transaction``), handing the ready tasks of
    ``kinds`` it writes (``offers.offer_task``) to polls parked in this process.

    Not shielded: cancelling the caller cancels the transaction, which then rolls
    back and leases nothing (its reservations are undone). A transaction that
    committed before it saw the cancellation still returns here (``store/bridge.py``
    hands back a result the asyncio side produced), so its leases are delivered or
    released. (A shield here held a server's shutdown for the whole outage wait
    when its database stopped answering.) What it could not hand over is in its
    outcome's wakes, as without sync match.
    """
    sync = SyncMatch(host, kinds)
    committed = False
    try:
        result = await host.store.transaction(offers.bind(sync, op), *args, **kwargs)
        committed = True
    finally:
        orphans = sync.settle(committed=committed)
    await sync.release(orphans)
    return result


async def autocommit_with_handoffs(
    host: Host,
    kinds: Iterable[TaskKind[Any]],
    op: Callable[Concatenate[Conn, A], Awaitable[T]],
    *args: A.args,
    **kwargs: A.kwargs,
) -> T:
    """Run ``op`` without a transaction (``store.autocommit``: its one
    writing statement commits alone), then hand the ready tasks it wrote
    (``offers.offer_task``) to polls parked here, each leased by a statement of
    its own (:meth:`SyncMatch.hand_over_deferred`). Nothing is reserved until the
    operation has committed, so a retry or a failure of it has nothing to undo,
    and a failed lease never fails the operation: that task's queue is woken.
    """
    sync = SyncMatch(host, kinds)
    bound = offers.bind(sync, op, in_transaction=False)
    result = await host.store.autocommit(bound, *args, **kwargs)
    await sync.hand_over_deferred()
    return result


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
    released and the queue woken (:class:`SyncMatch`). (A lease whose outcome is
    lost all the same, the connection failing after the commit, expires and is
    repaired like any other.)
    """
    sync = SyncMatch(host, (kind,))
    waiter = sync.reserve_one((namespace, task_queue, kind.kind), task_type)
    if waiter is None:
        return await create(None)
    created = None
    try:
        # Shielded like a claim: a lease this statement commits must be delivered or
        # released, not left to expire because the creating request was cancelled.
        with trio.CancelScope(shield=True):
            created = await create(waiter.offer)
        if created is not None and created.handoff is not None:
            sync.leased(waiter, created.handoff)
    finally:
        orphans = sync.settle(committed=created is not None)
    await sync.release(orphans)
    return created
