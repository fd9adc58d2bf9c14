"""/api/worker/activity-tasks/...: poll, complete, fail, heartbeat."""

from __future__ import annotations

from dwtrio import wire
from dwtrio.engine import activity_tasks as engine
from dwtrio.http.worker_plane import Reply, Route, WorkerCall
from dwtrio.http.worker_response import Registered, committed, poll_handler, task_report
from dwtrio.matching.dispatch import autocommit_with_handoffs, transaction_with_handoffs
from dwtrio.protocol.worker import (
    CompleteActivityTask,
    FailActivityTask,
    HeartbeatActivityTask,
    PollTasks,
)
from dwtrio.runtime import Runtime
from dwtrio.task_kinds import ACTIVITY_TASKS, SYNC_MATCHED


def routes(rt: Runtime) -> list[Route]:
    settings = rt.settings

    def claim_params(namespace: str, req: PollTasks, types: Registered) -> engine.ClaimParams:
        return engine.ClaimParams(
            namespace=namespace,
            task_queue=req.task_queue,
            worker_id=req.worker_id,
            poll_request_id=req.poll_request_id,
            caps=rt.admission.caps(namespace, req.task_queue, "activity"),
            activity_types=types[1],
            default_lease_s=settings.activity_task_timeout_s,
        )

    async def heartbeat(call: WorkerCall, task_id: str) -> Reply:
        req = wire.structure(call.json, HeartbeatActivityTask)
        body = await rt.store.transaction(
            engine.heartbeat, call.namespace, task_id, req, settings.activity_task_timeout_s
        )
        return Reply(body)

    async def complete(call: WorkerCall, task_id: str) -> Reply:
        # One statement in autocommit mode; a step of a parallel group takes the transaction.
        req = wire.structure(call.json, CompleteActivityTask)
        args = (call.namespace, task_id, req)
        # The workflow task it creates goes to a poll parked here, if one takes it.
        outcome = await autocommit_with_handoffs(rt, SYNC_MATCHED, engine.complete_at_once, *args)
        if outcome is None:
            outcome = await transaction_with_handoffs(rt, SYNC_MATCHED, engine.complete, *args)
        return committed(rt, outcome)

    return [
        Route("POST", "activity-tasks/poll", poll_handler(rt, ACTIVITY_TASKS, claim_params)),
        Route("POST", "activity-tasks/{task_id}/complete", complete),
        Route(
            "POST", "activity-tasks/{task_id}/fail", task_report(rt, FailActivityTask, engine.fail)
        ),
        Route("POST", "activity-tasks/{task_id}/heartbeat", heartbeat),
    ]
