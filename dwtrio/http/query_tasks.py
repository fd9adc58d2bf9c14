"""/api/worker/query-tasks/...: poll, complete, fail (worker-plane.md §10).

A query task carries one query to a worker; its answer goes back to the
control-plane call parked in ``queries.py``. Query tasks never touch history.
"""

from __future__ import annotations

from dwtrio.engine import queries as engine
from dwtrio.http.worker_plane import Route
from dwtrio.http.worker_response import Registered, poll_handler, task_report
from dwtrio.matching.dispatch import TaskKind
from dwtrio.protocol.queries import CompleteQueryTask, FailQueryTask
from dwtrio.protocol.worker import PollTasks
from dwtrio.runtime import Runtime

#: Query tasks, as matching dispatches them (a query's answer wakes its caller, not a poll).
QUERY_TASKS = TaskKind[engine.ClaimParams](
    kind=engine.POLL_KIND,
    claim=engine.claim,
    release=engine.release,
    types=lambda params: params.workflow_types,
)


def routes(rt: Runtime) -> list[Route]:
    def claim_params(namespace: str, req: PollTasks, types: Registered) -> engine.ClaimParams:
        return engine.ClaimParams(
            namespace=namespace,
            task_queue=req.task_queue,
            worker_id=req.worker_id,
            poll_request_id=req.poll_request_id,
            workflow_types=types[0],
        )

    return [
        Route("POST", "query-tasks/poll", poll_handler(rt, QUERY_TASKS, claim_params)),
        Route(
            "POST",
            "query-tasks/{task_id}/complete",
            task_report(rt, CompleteQueryTask, engine.complete),
        ),
        Route("POST", "query-tasks/{task_id}/fail", task_report(rt, FailQueryTask, engine.fail)),
    ]
