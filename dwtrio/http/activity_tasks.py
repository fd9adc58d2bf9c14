"""/api/worker/activity-tasks/...: poll, complete, fail, heartbeat."""

from __future__ import annotations

from dwtrio import wire
from dwtrio.engine import activity_tasks as engine
from dwtrio.http.worker_plane import Reply, Route, WorkerCall
from dwtrio.http.worker_response import Registered, committed, poll_handler, task_report
from dwtrio.matching.dispatch import TaskKind
from dwtrio.protocol.worker import (
    CompleteActivityTask,
    FailActivityTask,
    HeartbeatActivityTask,
    PollTasks,
)
from dwtrio.runtime import Runtime

#: Activity tasks, as matching dispatches them.
ACTIVITY_TASKS = TaskKind[engine.ClaimParams](
    kind="activity",
    claim=engine.claim,
    release=engine.release,
    release_polled=engine.release_polled,
    types=lambda params: params.activity_types,
    transaction=False,  # engine.claim writes with one statement; see its docstring
    claim_batch=engine.claim_batch,
)


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
        outcome = await rt.store.autocommit(engine.complete_at_once, *args)
        if outcome is None:
            outcome = await rt.store.transaction(engine.complete, *args)
        return committed(rt, outcome)

    return [
        Route("POST", "activity-tasks/poll", poll_handler(rt, ACTIVITY_TASKS, claim_params)),
        Route("POST", "activity-tasks/{task_id}/complete", complete),
        Route(
            "POST", "activity-tasks/{task_id}/fail", task_report(rt, FailActivityTask, engine.fail)
        ),
        Route("POST", "activity-tasks/{task_id}/heartbeat", heartbeat),
    ]
