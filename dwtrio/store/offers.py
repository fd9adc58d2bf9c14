"""Sync match inside a store operation: what the engine sees of it.

It sits in the store layer so that the engine, which offers the tasks it writes,
and matching, which reserves the parked polls, can both use it without either
importing the other.

A start hands its first workflow task to a parked poll through its own
statement (``dispatch.create_with_handoff``). Every other task is created
deep inside a use case: activities scheduled by a workflow-task completion,
the workflow task an activity result, a signal, an update or a fired timer
creates. Such an operation runs under a :class:`Matcher`
(``dispatch.SyncMatch``, see ``dispatch.transaction_with_handoffs``), and where
the engine writes a ready task it calls :func:`offer_task`. Once the
operation's own work is done, still in its transaction, the matcher reserves
a parked poll for each such task that one would take, and the task is leased
to it: after every event the operation appended (so the history a workflow
task carries is complete), activities first (their leases append
``ActivityStarted``). A task nobody was reserved for, or whose lease is
refused, gets its queue woken after commit, as it always did.

The operation runs on the store's asyncio side; the parked polls live on the
Trio side. Reserving them is one hop to Trio for the whole operation, and
only when a poll may be parked on one of its queues (:meth:`Matcher.maybe_parked`,
a racy hint read without the hop).

The store may run an operation more than once (a deadlock, a serialization
failure, a connection lost before any effect): every run starts afresh here
(:meth:`Matcher.begin`), and only what the committed run leased is delivered.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import attrs

from dwtrio.store.pool import Conn

P = ParamSpec("P")
T = TypeVar("T")

#: (namespace, task queue, kind): a line of parked polls (``matching.waiters.QueueKey``).
QueueKey = tuple[str, str, str]


class Wakes(Protocol):
    """Where a task's queue is woken after commit (the engine's ``Outcome``)."""

    def wake(self, namespace: str, task_queue: str, kind: str) -> None: ...


class Matcher(Protocol):
    """The parked polls one operation may hand its tasks to (``dispatch.SyncMatch``)."""

    def begin(self) -> None:
        """A run of the operation starts: what an earlier run leased was rolled back."""

    def maybe_parked(self, key: QueueKey) -> bool:
        """Whether a poll of ``key`` may be parked (a hint, callable from any thread)."""

    async def reserve(self, wanted: list[tuple[QueueKey, str | None]]) -> list[Any | None]:
        """For each (queue, task type), a reserved parked poll that would take such a
        task, or None (nobody, or a capped queue)."""

    def defer(self, offered: list[Offered]) -> None:
        """The run's tasks, to hand over after its commit (an operation without a
        transaction, ``dispatch.autocommit_with_handoffs``)."""

    async def lease(self, conn: Conn, reservation: Any, task_id: str) -> bool:
        """Lease the ready task ``task_id`` to the reserved poll; False when that poll's
        claim could not take it (the task stays ready)."""


@attrs.frozen
class Offered:
    """A ready task an operation wrote, for a parked poll."""

    key: QueueKey
    #: None: not known here (the lease statement checks the poll's types itself).
    task_type: str | None
    task_id: str
    #: Where its queue's wake goes when nobody takes it.
    wakes: Wakes


#: The matcher of the operation running in this (asyncio) task, and what it was offered.
_current: contextvars.ContextVar[tuple[Matcher, list[Offered]] | None] = contextvars.ContextVar(
    "dwtrio_sync_match", default=None
)


def offer_task(
    wakes: Wakes, namespace: str, task_queue: str, kind: str, task_type: str | None, task_id: str
) -> None:
    """A ready task ``task_id`` was written: at the end of the operation it goes to a
    parked poll, or its queue is woken after commit (``wakes``)."""
    key = (namespace, task_queue, kind)
    bound = _current.get()
    if bound is not None and bound[0].maybe_parked(key):
        bound[1].append(Offered(key, task_type, task_id, wakes))
    else:
        wakes.wake(*key)


def bind(
    matcher: Matcher,
    op: Callable[Concatenate[Conn, P], Awaitable[T]],
    *,
    in_transaction: bool = True,
) -> Callable[Concatenate[Conn, P], Awaitable[T]]:
    """``op`` as a store operation whose new tasks :func:`offer_task` may hand over:
    leased at its end, or, ``in_transaction`` False (the op's statements commit one
    by one), passed to :meth:`Matcher.defer` to be leased after it."""

    async def run(conn: Conn, /, *args: P.args, **kwargs: P.kwargs) -> T:
        matcher.begin()
        offered: list[Offered] = []
        token = _current.set((matcher, offered))
        try:
            result = await op(conn, *args, **kwargs)
        finally:
            _current.reset(token)
        if not offered:
            return result
        if not in_transaction:
            matcher.defer(offered)
            return result
        # Activities first: their leases append ActivityStarted, which the history of a
        # workflow task leased after them must show.
        offered.sort(key=lambda item: item.key[2] != "activity")
        reserved = await matcher.reserve([(item.key, item.task_type) for item in offered])
        for item, reservation in zip(offered, reserved, strict=True):
            if reservation is None or not await matcher.lease(conn, reservation, item.task_id):
                item.wakes.wake(*item.key)
        return result

    return run
