"""The state one workflow-task completion shares between its command handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs

from dwtrio.engine.outcome import Outcome
from dwtrio.settings import Settings
from dwtrio.store.history import NewEvent
from dwtrio.store.pool import Conn
from dwtrio.store.runs import LockedRun


@attrs.frozen(kw_only=True)
class Closing:
    """How the completion closes its run (set by a terminal command)."""

    status: str
    reason: str
    output: str | None = None


@attrs.frozen(kw_only=True)
class CommandLimits:
    """The configured limits command handlers enforce (from :class:`Settings`)."""

    max_search_attributes: int
    max_memo_bytes: int
    max_pending_children: int

    @classmethod
    def from_settings(cls, settings: Settings) -> CommandLimits:
        return cls(
            max_search_attributes=settings.max_search_attributes,
            max_memo_bytes=settings.max_memo_bytes,
            max_pending_children=settings.max_pending_children,
        )


@attrs.define(kw_only=True)
class Completion:
    conn: Conn
    run: LockedRun
    task_id: str
    outcome: Outcome
    limits: CommandLimits
    #: The last step sequence allocated on the run so far.
    seq: int
    #: Set on an update task: the update it runs (``complete_update``/``fail_update``
    #: may answer only this one, and the open condition wait stays open).
    update_id: str | None = None
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
    #: Registered search-attribute types looked up so far (None: not registered),
    #: so several upserts in one completion read each name once.
    search_attribute_types: dict[str, str | None] = attrs.field(factory=dict)

    def next_step(self) -> int:
        self.seq += 1
        return self.seq

    def add(self, event: NewEvent) -> None:
        self.events.append(event)
