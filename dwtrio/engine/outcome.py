"""What a use case tells its caller to do after the transaction commits."""

from __future__ import annotations

import enum
from typing import Any

import attrs

from dwtrio.protocol.responses import ResponseBody


class Verdict(enum.Enum):
    """What became of the request, in the engine's terms; ``http/envelope.py`` maps
    each to an HTTP status (the engine never picks one)."""

    #: Done (or an existing result returned, as for an idempotent replay).
    DONE = "done"
    #: A new workflow (run) was created.
    CREATED = "created"
    #: Recorded, to be acted on later by the workflow (a signal).
    ACCEPTED = "accepted"
    #: Refused by the workflow's state (not running, already started, ...); the body
    #: says why, in the operation's own shape rather than the error envelope.
    REJECTED = "rejected"
    #: Some of the work was done and some failed; the body lists which (a system pass).
    PARTIAL = "partial"


@attrs.define
class Outcome:
    """The response body plus the task queues whose waiters must be woken after commit."""

    #: A response model, or a dict for answers not yet modelled (and stored receipts).
    body: dict[str, Any] | ResponseBody = attrs.field(factory=dict)
    verdict: Verdict = Verdict.DONE
    #: (namespace, task_queue, kind): what matching calls a ``QueueKey``.
    wakes: set[tuple[str, str, str]] = attrs.field(factory=set)
    #: A timer was armed: nudge this process's timer loop after commit, in case
    #: the new timer is due before the loop's next tick.
    timer_armed: bool = False
    #: A task written leased to a reserved poller (sync match): its wire body.
    handoff: dict[str, Any] | None = None

    def wake(self, namespace: str, task_queue: str, kind: str) -> None:
        self.wakes.add((namespace, task_queue, kind))
