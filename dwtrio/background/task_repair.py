"""The task-repair loop: every few seconds, redispatch tasks whose lease expired.

Safe on several nodes at once: the repair queries claim rows with
``FOR UPDATE SKIP LOCKED``, so two nodes never repair the same task. Workflow
tasks are repaired in batches; each expired activity lease is handled in its own
short transaction because it records history on its run.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from dwtrio.engine.repair import (
    REPAIR_BATCH,
    expire_next_activity_lease,
    expire_workflow_task_leases,
)
from dwtrio.errors import RetryableStoreError, StoreUnavailableError
from dwtrio.runtime import Runtime

log = logging.getLogger(__name__)


async def repair_once(rt: Runtime) -> int:
    """One repair pass: how many leases were repaired (at most a batch of each kind)."""
    outcome, repaired = await rt.store.transaction(expire_workflow_task_leases)
    rt.publish_wakes(outcome.wakes)
    for _ in range(REPAIR_BATCH):
        activity = await rt.store.transaction(expire_next_activity_lease)
        if activity is None:
            break
        rt.publish_wakes(activity.wakes)
        repaired += 1
    return repaired


async def run_task_repair_loop(rt: Runtime, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    while True:
        try:
            repaired = await repair_once(rt)
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
        except Exception:
            # A bug or one malformed row must not stop the server (this loop runs in
            # the supervisor nursery): log it and try again next tick.
            log.exception("task repair: tick failed", extra={"action": "task_repair_error"})
        await trio.sleep(rt.settings.task_repair_interval_s)
