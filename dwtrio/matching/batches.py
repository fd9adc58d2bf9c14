"""Batched claims: polls of one queue that come to claim together share one statement.

Group commit, applied to claims. Per line (namespace, queue, kind and the
poll's type filter) at most one claim statement runs at a time in a process.
A poll arriving while it runs joins the line; when the statement ends, the
oldest waiting poll leads the next one, for every poll then waiting (up to
``MAX_BATCH``): ``LIMIT n FOR UPDATE SKIP LOCKED`` leases up to one task per
poll, and each poll takes its own. The protocol is unchanged: one task per
poll. The leader yields once before it takes the line, so polls woken in the
same instant (a wake for each of several new tasks, a claim that found tasks
waking deferred polls) join its statement rather than the next.

A poll's own result comes back to it: its task, None, ``Blocked``, or the
error the statement raised (each poll then handles it as its own claim's:
``StoreUnavailableError`` and what its ``poll_request_id`` may hold). The
caller claims shielded from cancellation (``poll.py``), so a poll never leaves
the line with a task leased for it; one that finds its client gone after the
claim releases the task as after any claim.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

import outcome
import trio

#: Most polls one statement claims for.
MAX_BATCH = 32

P = TypeVar("P")
R = TypeVar("R")


class _Ticket(Generic[P]):
    __slots__ = ("leads", "params", "ready", "result")

    def __init__(self, params: P) -> None:
        self.params = params
        self.ready = trio.Event()
        #: The statement before ended and this poll is the oldest waiting: it leads.
        self.leads = False
        self.result: outcome.Outcome[Any] | None = None


class _Line(Generic[P]):
    __slots__ = ("waiting",)

    def __init__(self) -> None:
        #: Polls waiting for the next statement, oldest first.
        self.waiting: list[_Ticket[P]] = []


class ClaimBatches:
    """The lines of claims of one process (``Runtime.claim_batches``)."""

    def __init__(self) -> None:
        #: A line exists while a statement of it runs.
        self._lines: dict[Hashable, _Line[Any]] = {}
        #: Statements run and polls claimed for, since start (tests, diagnostics).
        self.statements = 0
        self.claims = 0

    async def claim(
        self, line_key: Hashable, params: P, run: Callable[[list[P]], Awaitable[list[R]]]
    ) -> R:
        """``params``' result of ``run(batch)``, the batch being the polls of ``line_key``
        waiting when this poll's statement starts (it included). Call it shielded."""
        ticket: _Ticket[P] = _Ticket(params)
        line = self._lines.get(line_key)
        if line is not None:
            line.waiting.append(ticket)
            await ticket.ready.wait()
            if not ticket.leads:
                assert ticket.result is not None
                return ticket.result.unwrap()  # type: ignore[no-any-return]
        else:
            line = self._lines[line_key] = _Line()
            line.waiting.append(ticket)
        try:
            await trio.lowlevel.checkpoint()  # polls woken with this one join first
            batch, line.waiting = line.waiting[:MAX_BATCH], line.waiting[MAX_BATCH:]
            self.statements += 1
            self.claims += len(batch)
            got = await outcome.acapture(run, [t.params for t in batch])
            for i, t in enumerate(batch):
                # An outcome unwraps once: one each (the same error, raised in every poll).
                t.result = (
                    outcome.Error(got.error)
                    if isinstance(got, outcome.Error)
                    else outcome.Value(got.value[i])
                )
                if t is not ticket:
                    t.ready.set()
        finally:
            if line.waiting:
                following = line.waiting[0]
                following.leads = True
                following.ready.set()
            else:
                del self._lines[line_key]
        assert ticket.result is not None
        return ticket.result.unwrap()  # type: ignore[no-any-return]
