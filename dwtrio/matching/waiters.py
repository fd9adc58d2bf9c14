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

Everything the set knows about one queue is one :class:`QueueState` (its
waiters in line, the empty mark, the claims in flight, the wake count and
the deferred polls), like Temporal's per-queue matcher data: created by the
first poll or claim of the queue and dropped as soon as it holds nothing to
remember. An empty mark outlives the queue's last poll only until it expires
(one recheck interval), so a hundred thousand queues polled once each leave
nothing behind.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import trio

from dwtrio.protocol.workflow_streams import STREAM, stream_key

#: (namespace, task_queue, kind): kind is "workflow", "activity" or "query" for
#: task queues, "answer" for a control-plane call waiting for a worker's reply.
QueueKey = tuple[str, str, str]

#: Concurrent claims of one queue per process; more polls arriving meanwhile park.
MAX_CLAIMS_IN_FLIGHT = 4

#: The kind of the wake keys that say a run got new history events: ("", run id, HISTORY).
#: Such a wake sets every watcher of the run (:meth:`WaiterSet.watch_history`), not one.
HISTORY = "history"


def history_key(run_id: str) -> QueueKey:
    return ("", run_id, HISTORY)


#: Kinds whose wake sets every watcher of the key instead of waking one poller: history
#: wakes, and a run's stream getting items or closing (``protocol.workflow_streams.stream_key``).
BROADCAST_KINDS = frozenset({HISTORY, STREAM})


@attrs.frozen
class WaiterStatistics:
    #: Queues with at least one waiter.
    queues: int
    waiters: int
    wakes_sent: int
    wakes_unclaimed: int
    #: Tasks handed to a parked poller by the request that created them.
    sync_matches: int = 0
    #: Queues nobody waits on whose state is kept: a fresh empty mark, or a claim in flight.
    idle_queues: int = 0


class ClientGone(Exception):
    """The client of a parked poll went away (see :meth:`Wakeup.wait`)."""


class Wakeup:
    """A one-shot wake-up, like ``trio.Event``, whose wait can also watch the client.

    A parked long-poll must notice both a wake and its client disconnecting.
    Waiting for both in one task (the wait *is* the watch for the disconnect,
    and a wake cancels it) saves a watcher task per parked poll: with
    thousands of idle polls, that is memory and scheduling that matter.

    A wake is *consumed* once its poller has acted on it (or knows nobody is
    left to pass it to); a poller leaving with a wake it has not consumed
    passes it on.
    """

    __slots__ = ("_scope", "_set", "consumed")

    def __init__(self) -> None:
        self._set = False
        self._scope: trio.CancelScope | None = None
        #: The wake (if one came) has been used: leaving will not pass it on.
        self.consumed = False

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


class WaiterState(enum.Enum):
    """Where a registered poll is; wakes and handoffs act on it accordingly."""

    #: Claiming, or answering: not waiting (a wake sets its fresh event, for the next look).
    LOOKING = "looking"
    #: Waiting for a wake; the only state a creator can reserve.
    PARKED = "parked"
    #: A creator is writing a task leased to this poll: wakes and nudges pass it by.
    RESERVED = "reserved"
    #: Its creator delivered a task (:attr:`Waiter.handoff`) the poller has not taken yet.
    HANDED = "handed"
    #: Left its queue: a delivery is refused.
    GONE = "gone"


# The states as plain names: looking a member up on its Enum class costs about
# 0.1 us on Python 3.11, and a wake tests every waiter it passes.
LOOKING = WaiterState.LOOKING
PARKED = WaiterState.PARKED
RESERVED = WaiterState.RESERVED
HANDED = WaiterState.HANDED
GONE = WaiterState.GONE


@attrs.define(eq=False)
class Waiter:
    """A poll's place in its queue, for a ``with`` block (:meth:`WaiterSet.register`).

    The waiter is its own context manager: every parked poll holds one, so
    there is nothing else to allocate per poll but its :class:`Wakeup`.
    """

    queue: QueueState = attrs.field(repr=False)
    #: What this poll would lease, for a sync match (None: it takes no handoffs).
    offer: Any = None
    event: Wakeup = attrs.field(factory=Wakeup)
    state: WaiterState = LOOKING
    #: The task body delivered by its creator, until the poller takes it.
    handoff: Any = None

    def __enter__(self) -> Waiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.queue.owner._leave(self)

    @property
    def consumed(self) -> bool:
        """Whether the poller has used the wake on its current event (see :class:`Wakeup`)."""
        return self.event.consumed

    @consumed.setter
    def consumed(self, value: bool) -> None:
        self.event.consumed = value

    def rearm(self) -> None:
        """A fresh, unset event before the next claim (keeping the place in line)."""
        self.event = Wakeup()

    def take(self) -> Any:
        """The delivered task, if any (once)."""
        task, self.handoff = self.handoff, None
        if task is not None:
            if self.state is HANDED:
                self.state = LOOKING
            self.event.consumed = True  # the wake that came with it is used up
        return task

    @property
    def wakeable(self) -> bool:
        return not self.event.is_set() and self.state is not RESERVED


class QueueState:
    """All the set knows about one queue; dropped once it holds nothing to remember.

    ``with state:`` counts a claim of the queue in flight and gives the wake
    count to pass to :meth:`WaiterSet.record_claim` (no object per claim).
    """

    __slots__ = ("claims", "deferred", "empty_since", "key", "owner", "waiters", "wake_seq")

    def __init__(self, owner: WaiterSet, key: QueueKey) -> None:
        self.owner, self.key = owner, key
        #: Registered polls, oldest (the head) first.
        self.waiters: OrderedDict[Waiter, None] = OrderedDict()
        #: When a claim last found the queue empty (trio clock), if no wake came since.
        self.empty_since: float | None = None
        #: Claims of the queue running now.
        self.claims = 0
        #: Wakes so far, so a claim can tell whether one arrived while it ran.
        self.wake_seq = 0
        #: Polls that parked without claiming because enough claims were running.
        self.deferred = 0

    def __enter__(self) -> int:
        self.claims += 1
        return self.wake_seq

    def __exit__(self, *exc: object) -> None:
        self.claims -= 1


@attrs.define
class WaiterSet:
    _queues: dict[QueueKey, QueueState] = attrs.field(factory=dict)
    #: Queues kept only for their empty mark, oldest first (see :meth:`_settle`).
    _idle: OrderedDict[QueueKey, None] = attrs.field(factory=OrderedDict)
    #: How long an empty mark matters: the longest recheck interval claims reported.
    _mark_s: float = 0.0
    _wakes_sent: int = 0
    _wakes_unclaimed: int = 0
    _sync_matches: int = 0
    #: History and stream long-polls by wake key (:meth:`watch_history`, :meth:`watch_stream`).
    _watchers: dict[QueueKey, set[Wakeup]] = attrs.field(factory=dict)

    def _state(self, key: QueueKey) -> QueueState:
        queue = self._queues.get(key)
        if queue is None:
            if self._idle:
                self._sweep(trio.current_time())
            queue = self._queues[key] = QueueState(self, key)
        return queue

    def _settle(self, queue: QueueState) -> None:
        """Drop a queue nobody waits on or claims unless it has a fresh empty mark;
        one with a mark is dropped once the mark has expired."""
        if queue.waiters or queue.claims or self._queues.get(queue.key) is not queue:
            return
        queue.deferred = 0  # nobody left to wake
        key = queue.key
        if queue.empty_since is None:
            del self._queues[key]
            self._idle.pop(key, None)
            return
        self._idle[key] = None
        self._idle.move_to_end(key)
        self._sweep(trio.current_time())

    def _sweep(self, now: float) -> None:
        """Drop idle queues whose empty mark has expired, oldest first."""
        idle = self._idle
        while idle:
            key = next(iter(idle))
            queue = self._queues.get(key)
            if queue is not None and not queue.waiters and not queue.claims:
                since = queue.empty_since
                if since is not None and now - since < self._mark_s:
                    return  # the oldest mark is fresh: so are (about) all the others
                del self._queues[key]
            # (a queue in use again is listed anew when it is idle again)
            del idle[key]

    def known_empty(self, key: QueueKey, within_s: float) -> bool:
        queue = self._queues.get(key)
        if queue is None:
            return False
        since = queue.empty_since
        return since is not None and trio.current_time() - since < within_s

    def should_defer(
        self, key: QueueKey, within_s: float, claims_at_once: int = MAX_CLAIMS_IN_FLIGHT
    ) -> bool:
        """A new poll parks without claiming: the queue is known empty, or
        ``claims_at_once`` claims of it are already running (their outcome decides for
        it). Claims that share one statement (``batches.py``) allow more at once."""
        if self.known_empty(key, within_s):
            return True
        queue = self._queues.get(key)
        if queue is not None and queue.claims >= claims_at_once:
            queue.deferred += 1
            return True
        return False

    def claiming(self, key: QueueKey) -> QueueState:
        """``with claiming(key) as seq:`` counts a claim of ``key`` in flight; ``seq``
        goes to :meth:`record_claim`. Claims are made by a registered poller."""
        return self._state(key)

    def record_claim(
        self, key: QueueKey, *, found: bool, typed: bool, seq: int, recheck_s: float
    ) -> None:
        """Remember what a claim found (``seq`` from :meth:`claiming`).

        A found task may not be the last one: a poll deferred behind the claim
        is woken to look for the next. An empty result marks the queue empty
        only if the claim was not filtered by type and no wake arrived while it
        ran; the mark is kept for ``recheck_s`` (what polls ask :meth:`known_empty`).
        """
        queue = self._queues.get(key)
        if queue is None:  # nobody registered on it: nothing to remember
            return
        if found:
            queue.empty_since = None
            deferred = min(queue.deferred, len(queue.waiters))
            queue.deferred = max(deferred - 1, 0)
            if deferred:
                self.wake(key)
        elif not typed and queue.wake_seq == seq:
            queue.empty_since = trio.current_time()
            queue.deferred = 0  # nothing to look for until a wake
            self._mark_s = max(self._mark_s, recheck_s)
        if not queue.waiters:
            self._settle(queue)

    def register(self, key: QueueKey, offer: Any = None) -> Waiter:
        """Park a waiter on ``key`` for the duration of a ``with`` block (FIFO order).

        ``offer`` describes what the poll would lease, for a sync match."""
        queue = self._state(key)
        waiter = Waiter(queue, offer)
        queue.waiters[waiter] = None
        return waiter

    def _leave(self, waiter: Waiter) -> None:
        waiter.state = GONE
        queue = waiter.queue
        line = queue.waiters
        was_head = next(iter(line)) is waiter  # registered: in line until it leaves
        del line[waiter]
        if not line:
            queue.deferred = 0
        if waiter.event.is_set() and not waiter.event.consumed:
            # Woken but leaving without looking: hand the wake to the next poller.
            self.wake(queue.key)
        elif was_head and line:
            # The new head takes over the periodic recheck: nudge it to look now.
            # A nudge is not a wake: the queue stays known empty.
            for other in line:
                if other.wakeable:
                    other.event.set()
                    break
        if not line:
            self._settle(queue)

    def reserve(self, key: QueueKey, accepts: Callable[[Any], bool]) -> Waiter | None:
        """Reserve the oldest parked waiter of ``key`` whose offer ``accepts``, for a
        sync match; the caller must then :meth:`deliver` or :meth:`unreserve` it."""
        queue = self._queues.get(key)
        if queue is None:
            return None
        for waiter in queue.waiters:
            offer = waiter.offer
            if (
                waiter.state is PARKED
                and not waiter.event.is_set()
                and offer is not None
                and accepts(offer)
            ):
                waiter.state = RESERVED
                return waiter
        return None

    def deliver(self, waiter: Waiter, task: Any) -> bool:
        """Hand a committed task, leased to ``waiter``'s offer, to its poller.
        False: the poll has ended, and the caller must release the lease."""
        if waiter.state is GONE:
            return False
        waiter.state = HANDED
        waiter.handoff = task
        waiter.event.set()
        self._sync_matches += 1
        return True

    def unreserve(self, waiter: Waiter) -> None:
        """The reservation created nothing: the poller looks for itself."""
        if waiter.state is not GONE:
            # Wakes and nudges skipped it while it was reserved: it looks again (and
            # parks again without a claim if the queue is still known to be empty).
            waiter.state = LOOKING
            waiter.event.set()

    @contextmanager
    def watch_history(self, run_id: str) -> Iterator[Wakeup]:
        """For a ``with`` block: a wake-up set when the run gets new history events
        (a wake of :func:`history_key`, from this process or through the wake bus) or
        the server drains. Enter it before reading the history, so that events
        committed between the read and the wait are not missed."""
        with self._watch(history_key(run_id)) as wakeup:
            yield wakeup

    @contextmanager
    def watch_stream(self, run_id: str, stream_name: str) -> Iterator[Wakeup]:
        """Like :meth:`watch_history`, for a run's stream: set when it gets items or is
        closed (a wake of :func:`stream_key`), or the server drains."""
        with self._watch(stream_key(run_id, stream_name)) as wakeup:
            yield wakeup

    @contextmanager
    def _watch(self, key: QueueKey) -> Iterator[Wakeup]:
        wakeup = Wakeup()
        watchers = self._watchers.setdefault(key, set())
        watchers.add(wakeup)
        try:
            yield wakeup
        finally:
            watchers.discard(wakeup)
            if not watchers:
                self._watchers.pop(key, None)

    def wake(self, key: QueueKey, count: int = 1) -> int:
        """Wake up to ``count`` parked waiters on ``key``; returns how many were woken.
        A history or stream key wakes every watcher of its key."""
        if key[2] in BROADCAST_KINDS:
            watchers = self._watchers.get(key, ())
            for wakeup in watchers:
                wakeup.set()
            return len(watchers)
        queue = self._queues.get(key)
        woken = 0
        if queue is not None:
            queue.empty_since = None
            queue.wake_seq += 1
            for waiter in queue.waiters:
                if woken >= count:
                    break
                if waiter.wakeable:
                    waiter.event.set()
                    woken += 1
            if not queue.waiters:
                self._settle(queue)  # its empty mark was all it held
        self._wakes_sent += woken
        if woken < count:
            self._wakes_unclaimed += count - woken
        return woken

    def wake_all(self) -> None:
        """Wake every parked waiter and history watcher (the server is draining)."""
        for queue in self._queues.values():
            for waiter in queue.waiters:
                waiter.event.set()
                waiter.event.consumed = True  # nobody to pass it on to
        for watchers in self._watchers.values():
            for wakeup in watchers:
                wakeup.set()

    def is_head(self, key: QueueKey, waiter: Waiter) -> bool:
        """Whether ``waiter`` is the oldest parked poller of its queue (it owns the recheck)."""
        queue = self._queues.get(key)
        if queue is None or not queue.waiters:
            return False
        return next(iter(queue.waiters)) is waiter

    def waiting(self, key: QueueKey) -> int:
        queue = self._queues.get(key)
        return 0 if queue is None else len(queue.waiters)

    def statistics(self) -> WaiterStatistics:
        busy = [len(q.waiters) for q in self._queues.values() if q.waiters]
        return WaiterStatistics(
            queues=len(busy),
            waiters=sum(busy),
            wakes_sent=self._wakes_sent,
            wakes_unclaimed=self._wakes_unclaimed,
            sync_matches=self._sync_matches,
            idle_queues=len(self._queues) - len(busy),
        )
