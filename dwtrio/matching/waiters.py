"""Who is waiting for what: FIFO parked pollers per (namespace, task queue, kind).

A poller registers a *fresh* :class:`Wakeup` (a one-shot event) before it runs
its claim query, so a wake that lands between the query and the wait is never
lost (the event is already set when it starts waiting). A wake sets the oldest unset event of the
queue: one new task wakes one poller, not the whole herd. A woken poller that
leaves without claiming (timeout, disconnect) passes the wake on.

Only the oldest waiter of a queue (its *head*) rechecks the database on a
timer; the others sleep until woken. So a lost wake costs one recheck per
queue per interval, not one per parked poller (10,000 parked polls would
otherwise mean 10,000 claim queries a second). When the head leaves, the next
waiter is nudged so that it starts rechecking.

At most ``MAX_CLAIMS_IN_FLIGHT`` claims of one queue run at once in a process;
a poll arriving while they run parks instead of claiming (it is *deferred*),
and each claim that finds a task wakes one deferred poll, so a backlog still
drains at full speed. A burst of a thousand polls (every worker reconnecting
after a restart) thus costs a few claims, not a thousand transactions.

A queue whose last claim found nothing less than one recheck interval ago,
with no wake since (not even one that arrived while that claim ran), is
*known empty*: a new poll on it parks without claiming, and a poll that
reaches its deadline unwoken answers without a last claim. Any wake forgets
it, and so does time: a task that became ready without a wake (a retry after
its backoff) is found by the head's recheck or by the next poll once the
mark is a recheck interval old, however short the polls are. A claim filtered
by the worker's types proves nothing about the queue and never marks it.

*Sync match* (Temporal's name for it): a request about to create a task can
hand it straight to a poller parked in this process instead of waking one.
It reserves a parked waiter whose *offer* (what the poll would lease: worker,
poll request, types) accepts the task, writes the task already leased to that
worker in its own statement, and after commit delivers the task body. The
poller answers with it without claiming: one transaction and one wake-up
fewer per task. A reserved waiter takes no wakes; it waits for the outcome
(even a little past its deadline: the creating statement is short) and, if
the statement created nothing, looks again as if woken (a wake skipped
meanwhile is not lost). A poll that has ended refuses the delivery and the
creator releases the lease; one that ends with a delivered task it has not
taken yet releases it itself.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import trio

from dwtrio.engine.outcome import QueueKey

#: Concurrent claims of one queue per process; more polls arriving meanwhile park.
MAX_CLAIMS_IN_FLIGHT = 4


@attrs.frozen
class WaiterStatistics:
    queues: int
    waiters: int
    wakes_sent: int
    wakes_unclaimed: int
    #: Tasks handed to a parked poller by the request that created them.
    sync_matches: int = 0


class ClientGone(Exception):
    """The client of a parked poll went away (see :meth:`Wakeup.wait`)."""


class Wakeup:
    """A one-shot wake-up, like ``trio.Event``, whose wait can also watch the client.

    A parked long-poll must notice both a wake and its client disconnecting.
    Waiting for both in one task (the wait *is* the watch for the disconnect,
    and a wake cancels it) saves a watcher task per parked poll: with
    thousands of idle polls, that is memory and scheduling that matter.
    """

    __slots__ = ("_scope", "_set")

    def __init__(self) -> None:
        self._set = False
        self._scope: trio.CancelScope | None = None

    def set(self) -> None:
        self._set = True
        if self._scope is not None:
            self._scope.cancel()

    def is_set(self) -> bool:
        return self._set

    async def wait(
        self, gone: Callable[[], Awaitable[None]] | None = None, *, until: float = math.inf
    ) -> None:
        """Return once set, or at ``until`` (trio clock). ``gone`` returns when the
        client has disconnected: it is awaited meanwhile, and if it returns,
        :class:`ClientGone` is raised. One cancel scope serves the wake and the
        deadline (a parked poll holds nothing more than it needs)."""
        if self._set:
            await trio.lowlevel.checkpoint()
            return
        with trio.CancelScope(deadline=until) as scope:
            self._scope = scope
            try:
                if gone is None:
                    await trio.sleep_forever()
                await gone()
                raise ClientGone
            finally:
                self._scope = None


@attrs.define
class Waiter:
    event: Wakeup = attrs.field(factory=Wakeup)
    #: Set by the poller once it has run a claim after being woken.
    consumed: bool = False
    #: What this poll would lease, for a sync match (None: it takes no handoffs).
    offer: Any = None
    #: The poller is waiting for a wake (not claiming, not answering).
    parked: bool = False
    #: A creator is writing a task leased to this poll (see :meth:`WaiterSet.reserve`).
    reserved: bool = False
    #: The task body delivered by its creator, until the poller takes it.
    handoff: Any = None
    #: The poll has ended: a delivery is refused.
    gone: bool = False

    def rearm(self) -> None:
        """A fresh, unset event before the next claim (keeping the place in line)."""
        self.event = Wakeup()
        self.consumed = False

    def take(self) -> Any:
        """The delivered task, if any (once)."""
        task, self.handoff = self.handoff, None
        if task is not None:
            self.consumed = True  # the wake that came with it is used up
        return task

    @property
    def wakeable(self) -> bool:
        return not self.event.is_set() and not self.reserved


@attrs.define
class WaiterSet:
    _queues: dict[QueueKey, OrderedDict[int, Waiter]] = attrs.field(factory=dict)
    _next_id: int = 0
    _wakes_sent: int = 0
    _wakes_unclaimed: int = 0
    #: When a claim last found the queue empty (trio clock), if no wake came since.
    _empty_since: dict[QueueKey, float] = attrs.field(factory=dict)
    _claiming: dict[QueueKey, int] = attrs.field(factory=dict)
    #: Wakes counted while claims of the queue run, so a claim can tell one arrived.
    _wake_seq: dict[QueueKey, int] = attrs.field(factory=dict)
    _deferred: dict[QueueKey, int] = attrs.field(factory=dict)
    _sync_matches: int = 0

    def known_empty(self, key: QueueKey, within_s: float) -> bool:
        since = self._empty_since.get(key)
        return since is not None and trio.current_time() - since < within_s

    def should_defer(self, key: QueueKey, within_s: float) -> bool:
        """A new poll parks without claiming: the queue is known empty, or enough
        claims of it are already running (their outcome decides for it)."""
        if self.known_empty(key, within_s):
            return True
        if self._claiming.get(key, 0) >= MAX_CLAIMS_IN_FLIGHT:
            self._deferred[key] = self._deferred.get(key, 0) + 1
            return True
        return False

    @contextmanager
    def claiming(self, key: QueueKey) -> Iterator[int]:
        """Count a claim of ``key`` in flight; yields the wake count to pass to
        :meth:`record_claim`."""
        self._claiming[key] = self._claiming.get(key, 0) + 1
        self._wake_seq.setdefault(key, 0)
        try:
            yield self._wake_seq[key]
        finally:
            left = self._claiming[key] - 1
            if left:
                self._claiming[key] = left
            else:
                del self._claiming[key]

    def record_claim(self, key: QueueKey, *, found: bool, typed: bool, seq: int) -> None:
        """Remember what a claim found (``seq`` from :meth:`claiming`).

        A found task may not be the last one: a poll deferred behind the claim
        is woken to look for the next. An empty result marks the queue empty
        only if the claim was not filtered by type and no wake arrived while it ran.
        """
        woken_meanwhile = self._wake_seq.get(key, 0) != seq
        if key not in self._claiming:
            self._wake_seq.pop(key, None)
        if found:
            self._empty_since.pop(key, None)
            deferred = min(self._deferred.pop(key, 0), self.waiting(key))
            if deferred:
                if deferred > 1:
                    self._deferred[key] = deferred - 1
                self.wake(key)
        elif not typed and not woken_meanwhile:
            self._empty_since[key] = trio.current_time()
            self._deferred.pop(key, None)  # nothing to look for until a wake

    def register(self, key: QueueKey, offer: Any = None) -> QueuePlace:
        """Park a waiter on ``key`` for the duration of a ``with`` block (FIFO order).

        ``offer`` describes what the poll would lease, for a sync match."""
        self._next_id += 1
        waiter = Waiter(offer=offer)
        queue = self._queues.setdefault(key, OrderedDict())
        queue[self._next_id] = waiter
        return QueuePlace(self, key, self._next_id, waiter)

    def _leave(self, key: QueueKey, token: int, waiter: Waiter) -> None:
        waiter.gone = True
        queue = self._queues[key]  # a registered waiter's queue exists until it leaves
        was_head = next(iter(queue), None) == token
        queue.pop(token, None)
        if not queue:
            self._queues.pop(key, None)
            self._deferred.pop(key, None)
        if waiter.event.is_set() and not waiter.consumed:
            # Woken but leaving without looking: hand the wake to the next poller.
            self.wake(key)
        elif was_head and queue:
            # The new head takes over the periodic recheck: nudge it to look now.
            # A nudge is not a wake: the queue stays known empty.
            for other in queue.values():
                if other.wakeable:
                    other.event.set()
                    break

    def reserve(self, key: QueueKey, accepts: Callable[[Any], bool]) -> Waiter | None:
        """Reserve the oldest parked waiter of ``key`` whose offer ``accepts``, for a
        sync match; the caller must then :meth:`deliver` or :meth:`unreserve` it."""
        for waiter in self._queues.get(key, {}).values():
            offer = waiter.offer
            if waiter.parked and waiter.wakeable and offer is not None and accepts(offer):
                waiter.reserved = True
                return waiter
        return None

    def deliver(self, waiter: Waiter, task: Any) -> bool:
        """Hand a committed task, leased to ``waiter``'s offer, to its poller.
        False: the poll has ended, and the caller must release the lease."""
        waiter.reserved = False
        if waiter.gone:
            return False
        waiter.handoff = task
        waiter.event.set()
        self._sync_matches += 1
        return True

    def unreserve(self, waiter: Waiter) -> None:
        """The reservation created nothing: the poller looks for itself."""
        waiter.reserved = False
        if not waiter.gone:
            # Wakes and nudges skipped it while it was reserved: it looks again (and
            # parks again without a claim if the queue is still known to be empty).
            waiter.event.set()

    def wake(self, key: QueueKey, count: int = 1) -> int:
        """Wake up to ``count`` parked waiters on ``key``; returns how many were woken."""
        self._empty_since.pop(key, None)
        if key in self._wake_seq:
            self._wake_seq[key] += 1
        queue = self._queues.get(key)
        woken = 0
        if queue:
            for waiter in queue.values():
                if woken >= count:
                    break
                if waiter.wakeable:
                    waiter.event.set()
                    woken += 1
        self._wakes_sent += woken
        if woken < count:
            self._wakes_unclaimed += count - woken
        return woken

    def wake_all(self) -> None:
        """Wake every parked waiter (the server is draining)."""
        for queue in self._queues.values():
            for waiter in queue.values():
                waiter.event.set()
                waiter.consumed = True  # nobody to pass it on to

    def is_head(self, key: QueueKey, waiter: Waiter) -> bool:
        """Whether ``waiter`` is the oldest parked poller of its queue (it owns the recheck)."""
        queue = self._queues.get(key)
        if not queue:
            return False
        return next(iter(queue.values())) is waiter

    def waiting(self, key: QueueKey) -> int:
        return len(self._queues.get(key, ()))

    def statistics(self) -> WaiterStatistics:
        return WaiterStatistics(
            queues=len(self._queues),
            waiters=sum(len(q) for q in self._queues.values()),
            wakes_sent=self._wakes_sent,
            wakes_unclaimed=self._wakes_unclaimed,
            sync_matches=self._sync_matches,
        )


class QueuePlace:
    """A waiter's place in its queue, for a ``with`` block (:meth:`WaiterSet.register`).

    A plain class rather than a generator-based context manager: every parked
    poll holds one, and a generator with its frame is several times the size.
    """

    __slots__ = ("_key", "_set", "_token", "_waiter")

    def __init__(self, waiters: WaiterSet, key: QueueKey, token: int, waiter: Waiter) -> None:
        self._set, self._key, self._token, self._waiter = waiters, key, token, waiter

    def __enter__(self) -> Waiter:
        return self._waiter

    def __exit__(self, *exc: object) -> None:
        self._set._leave(self._key, self._token, self._waiter)
