"""Starts every background loop under the one supervisor nursery.

Each loop is ``async def run_<name>_loop(rt, *, task_status)`` and reports
readiness with ``task_status.started()``; ``start_all`` starts them in a fixed
order with ``nursery.start`` so a loop that fails while starting fails the
server's startup. The periodic ones (task repair, timers, timeouts, scheduler) run their
ticks through ``background.periodic.run_periodically``; so does retention.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from dwtrio.background.retention import run_retention_loop
from dwtrio.background.scheduler import run_scheduler_loop
from dwtrio.background.task_repair import run_task_repair_loop
from dwtrio.background.timeouts import run_timeouts_loop
from dwtrio.background.timers import run_timer_loop
from dwtrio.runtime import Runtime

Loop = Callable[..., Awaitable[Any]]


async def run_wake_bus(
    rt: Runtime, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """The wake bus's own tasks (Redis publisher and subscriber; nothing for the local bus)."""
    await rt.wakes.run(task_status=task_status)


LOOPS: tuple[Loop, ...] = (
    run_wake_bus,
    run_task_repair_loop,
    run_timer_loop,
    run_timeouts_loop,
    run_scheduler_loop,
    run_retention_loop,
)


async def start_all(nursery: trio.Nursery, rt: Runtime, loops: tuple[Loop, ...] = LOOPS) -> None:
    for loop in loops:
        await nursery.start(loop, rt)
