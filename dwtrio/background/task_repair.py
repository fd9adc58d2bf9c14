"""The task-repair loop: every few seconds, redispatch tasks whose lease expired.

Safe on several nodes at once: the repair query claims rows with
``FOR UPDATE SKIP LOCKED``, so two nodes never repair the same task.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from dwtrio.engine.repair import REPAIR_BATCH, expire_leases
from dwtrio.errors import RetryableStoreError, StoreUnavailableError
from dwtrio.runtime import Runtime

log = logging.getLogger(__name__)

REPAIR_INTERVAL_S = 3.0


async def run_task_repair_loop(
    rt: Runtime,
    *,
    interval_s: float = REPAIR_INTERVAL_S,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    task_status.started()
    while True:
        try:
            outcome, repaired = await rt.store.transaction(expire_leases)
            rt.publish_wakes(outcome.wakes)
            if repaired:
                log.info(
                    "task repair: %d expired leases redispatched",
                    repaired,
                    extra={"action": "task_repair"},
                )
            if repaired >= REPAIR_BATCH:
                continue  # more to do right away
        except (StoreUnavailableError, RetryableStoreError) as exc:
            log.warning(
                "task repair: store unavailable (%s)", exc, extra={"action": "task_repair_backoff"}
            )
        await trio.sleep(interval_s)
