"""Who is waiting for what: FIFO parked pollers per (namespace, task queue, kind).

A poller registers a *fresh* ``trio.Event`` before it runs its claim query, so
a wake that lands between the query and the wait is never lost (the event is
already set when it starts waiting). A wake sets the oldest unset event of the
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

A queue whose last claim found nothing, with no wake since, is *known empty*:
a new poll on it parks without running a claim first. Any wake of the queue
(a task created here, or announced by another node) forgets that, and the
head's recheck still looks at the database every interval, so a task created
without a wake is found within one interval, as before.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

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


@attrs.define
class Waiter:
    event: trio.Event = attrs.field(factory=trio.Event)
    #: Set by the poller once it has run a claim after being woken.
    consumed: bool = False
    #: Woken because it became the head (it takes over the recheck), not by work.
    promoted: bool = False

    def rearm(self) -> None:
        """A fresh, unset event before the next claim (keeping the place in line)."""
        self.event = trio.Event()
        self.consumed = False


@attrs.define
class WaiterSet:
    _queues: dict[QueueKey, OrderedDict[int, Waiter]] = attrs.field(factory=dict)
    _next_id: int = 0
    _wakes_sent: int = 0
    _wakes_unclaimed: int = 0
    _known_empty: set[QueueKey] = attrs.field(factory=set)
    _claiming: dict[QueueKey, int] = attrs.field(factory=dict)
    _deferred: dict[QueueKey, int] = attrs.field(factory=dict)

    def known_empty(self, key: QueueKey) -> bool:
        return key in self._known_empty

    def should_defer(self, key: QueueKey) -> bool:
        """A new poll parks without claiming: the queue is known empty, or enough
        claims of it are already running (their outcome decides for it)."""
        if key in self._known_empty:
            return True
        if self._claiming.get(key, 0) >= MAX_CLAIMS_IN_FLIGHT:
            self._deferred[key] = self._deferred.get(key, 0) + 1
            return True
        return False

    @contextmanager
    def claiming(self, key: QueueKey) -> Iterator[None]:
        """Count a claim of ``key`` in flight for the duration of the block."""
        self._claiming[key] = self._claiming.get(key, 0) + 1
        try:
            yield
        finally:
            left = self._claiming[key] - 1
            if left:
                self._claiming[key] = left
            else:
                del self._claiming[key]

    def record_claim(self, key: QueueKey, *, found: bool) -> None:
        """Remember whether the latest claim on ``key`` found a task.

        A found task may not be the last one: a poll deferred behind the claim
        is woken to look for the next.
        """
        if found:
            self._known_empty.discard(key)
            deferred = self._deferred.pop(key, 0)
            if deferred:
                if deferred > 1:
                    self._deferred[key] = deferred - 1
                self.wake(key)
        else:
            self._known_empty.add(key)
            self._deferred.pop(key, None)  # nothing to look for until a wake

    @contextmanager
    def register(self, key: QueueKey) -> Iterator[Waiter]:
        """Park a waiter on ``key`` for the duration of the block (FIFO order)."""
        self._next_id += 1
        token = self._next_id
        waiter = Waiter()
        queue = self._queues.setdefault(key, OrderedDict())
        queue[token] = waiter
        try:
            yield waiter
        finally:
            was_head = next(iter(queue), None) == token
            queue.pop(token, None)
            if not queue:
                self._queues.pop(key, None)
            if waiter.event.is_set() and not waiter.consumed:
                # Woken but leaving without looking: hand the wake to the next poller.
                self.wake(key)
            elif was_head and queue:
                # The new head takes over the periodic recheck: nudge it to start it.
                self._promote(queue)

    @staticmethod
    def _promote(queue: OrderedDict[int, Waiter]) -> None:
        head = next(iter(queue.values()))
        if not head.event.is_set():
            head.promoted = True
            head.event.set()

    def wake(self, key: QueueKey, count: int = 1) -> int:
        """Wake up to ``count`` parked waiters on ``key``; returns how many were woken."""
        self._known_empty.discard(key)
        queue = self._queues.get(key)
        woken = 0
        if queue:
            for waiter in queue.values():
                if woken >= count:
                    break
                if not waiter.event.is_set():
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
        )
