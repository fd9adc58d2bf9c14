"""The task-repair loop: every few seconds, redispatch tasks whose worker is gone.

A lease is repaired when it expired, or when its worker is lost: the worker
registered, its registration went stale (no worker heartbeat for
``effective_worker_stale_after_s``) and the lease was not touched for as long
(``engine.repair``). So a dead worker's activity is retried within the stale
window plus one repair interval, not when its (long) activity lease runs out. (A
deregistration recovers the worker's leases itself, in the request.)

Safe on several nodes at once: the repair queries claim rows with
``FOR UPDATE SKIP LOCKED``, so two nodes never repair the same task. Workflow
tasks are repaired in batches; each activity lease is handled in its own short
transaction because it records history on its run.
"""

from __future__ import annotations

import logging

import trio

from dwtrio.background.periodic import RUN_AGAIN_NOW, run_periodically
from dwtrio.engine.repair import REPAIR_BATCH, repair_pass
from dwtrio.runtime import Runtime

log = logging.getLogger(__name__)


async def repair_once(rt: Runtime) -> int:
    """One repair pass (``engine.repair.repair_pass``, which ``POST /api/system/repair/pass``
    runs too): how many leases were repaired (at most a batch of each kind)."""
    report = await repair_pass(
        rt.store, rt.publish_wakes, stale_after_s=rt.settings.effective_worker_stale_after_s
    )
    for failure in report.existing_task_failures:
        log.warning(
            "task repair: %s failed: %s",
            failure.kind,
            failure.message,
            extra={"action": "task_repair_error"},
        )
    return report.repaired_existing_tasks


async def run_task_repair_loop(
    rt: Runtime, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    beat = rt.loop_beats.beat("task_repair", rt.settings.task_repair_interval_s)

    async def tick() -> float | None:
        repaired = await repair_once(rt)
        beat.handled(repaired)
        if repaired:
            log.info(
                "task repair: %d leases of expired or lost workers redispatched",
                repaired,
                extra={"action": "task_repair"},
            )
        return RUN_AGAIN_NOW if repaired >= REPAIR_BATCH else None

    await run_periodically(
        "task repair",
        tick,
        interval_s=rt.settings.task_repair_interval_s,
        action="task_repair",
        log=log,
        beat=beat,
        task_status=task_status,
    )
