"""/api/worker/query-tasks/...: poll, complete, fail (worker-plane.md §10).

A query task carries one query to a worker; its answer goes back to the
control-plane call parked in ``queries.py``. Query tasks never touch history.
"""

from __future__ import annotations

from dwtrio import wire
from dwtrio.engine import queries as engine
from dwtrio.http.worker_plane import Reply, Route, WorkerCall
from dwtrio.http.worker_response import long_poll, task_report
from dwtrio.protocol.queries import CompleteQueryTask, FailQueryTask
from dwtrio.protocol.worker import PollTasks
from dwtrio.runtime import Runtime


def routes(rt: Runtime) -> list[Route]:
    async def poll(call: WorkerCall) -> Reply:
        req = wire.structure(call.json, PollTasks)
        namespace = call.namespace
        types, _ = await rt.registrations.types(namespace, req.worker_id, req.task_queue)
        params = engine.ClaimParams(
            namespace=namespace,
            task_queue=req.task_queue,
            worker_id=req.worker_id,
            poll_request_id=req.poll_request_id,
            workflow_types=tuple(types),
        )
        return await long_poll(
            rt,
            (namespace, req.task_queue, engine.POLL_KIND),
            params,
            engine.claim,
            engine.release,
            timeout_seconds=req.timeout_seconds,
            client=call.client,
            typed=bool(params.workflow_types),
        )

    return [
        Route("POST", "query-tasks/poll", poll),
        Route(
            "POST",
            "query-tasks/{task_id}/complete",
            task_report(rt, CompleteQueryTask, engine.complete),
        ),
        Route("POST", "query-tasks/{task_id}/fail", task_report(rt, FailQueryTask, engine.fail)),
    ]
