"""What a use case tells its caller to do after the transaction commits."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.define
class Outcome:
    """The response body plus the task queues whose waiters must be woken after commit."""

    body: dict[str, Any] = attrs.field(factory=dict)
    status: int = 200
    #: (namespace, task_queue, kind): what matching calls a ``QueueKey``.
    wakes: set[tuple[str, str, str]] = attrs.field(factory=set)
    #: A timer was armed: nudge this process's timer loop after commit, in case
    #: the new timer is due before the loop's next tick.
    timer_armed: bool = False
    #: A task written leased to a reserved poller (sync match): its wire body.
    handoff: dict[str, Any] | None = None

    def wake(self, namespace: str, task_queue: str, kind: str) -> None:
        self.wakes.add((namespace, task_queue, kind))
