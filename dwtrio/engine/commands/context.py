"""The state one workflow-task completion shares between its command handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs

from dwtrio.engine.outcome import Outcome
from dwtrio.store.history import NewEvent
from dwtrio.store.pool import Conn
from dwtrio.store.runs import LockedRun


@attrs.frozen(kw_only=True)
class Closing:
    """How the completion closes its run (set by a terminal command)."""

    status: str
    reason: str
    output: str | None = None


@attrs.define(kw_only=True)
class Completion:
    conn: Conn
    run: LockedRun
    task_id: str
    outcome: Outcome
    #: The last step sequence allocated on the run so far.
    seq: int
    events: list[NewEvent] = attrs.field(factory=list)
    #: Ids of the tasks this completion created (activity tasks, ...), for the response.
    created: list[str] = attrs.field(factory=list)
    closing: Closing | None = None
    #: A handler asks for another workflow task right after this one (e.g. an
    #: accepted update or a command whose result the workflow must see at once).
    wake_again: bool = False
    #: Work to run after the run is closed, in order (e.g. start the continued run,
    #: tell a parent its child finished).
    after_close: list[Callable[[], Awaitable[None]]] = attrs.field(factory=list)

    def next_step(self) -> int:
        self.seq += 1
        return self.seq

    def add(self, event: NewEvent) -> None:
        self.events.append(event)
