"""Worker-routed queries (control-plane.md §5.8, worker-plane.md §10).

A control-plane query becomes an ephemeral row in ``query_tasks``: admitted
here (live worker, pending cap), leased by a query-task poll, answered by the
worker, then taken (deleted) by the waiting caller. Nothing here writes
history. The caller waits on the answer key :func:`answer_key`, which a
worker's answer wakes after commit through the wake bus (so the answer may
arrive at any node), and rechecks the row periodically in case a wake is lost.

Every function is a store operation run by the HTTP layer with
``rt.store.transaction``.
"""

from __future__ import annotations

from typing import Any

import attrs

from dwtrio import payloads, wire
from dwtrio.engine import claims
from dwtrio.engine.outcome import Outcome
from dwtrio.engine.workflow_tasks import envelope, event_body
from dwtrio.errors import (
    HistoricalRunCommandRejectedError,
    InstanceNotFoundError,
    LeaseExpiredError,
    LeaseOwnerMismatchError,
    QueryRunNotActiveError,
    QueryTaskAttemptMismatchError,
    QueryTaskNotFoundError,
    QueryTaskNotLeasedError,
    QueryTaskQueueFullError,
    QueryWorkerUnavailableError,
)
from dwtrio.protocol.queries import CompleteQueryTask, FailQueryTask, QueryTaskLease
from dwtrio.protocol.responses import QueryTaskReport
from dwtrio.store import query_tasks, runs
from dwtrio.store.history import list_events
from dwtrio.store.pool import Conn
from dwtrio.store.query_tasks import QueryAnswer
from dwtrio.store.runs import OPEN_STATUSES

#: Kind of the wake-bus key a query's caller waits on (the "queue" is the task id).
ANSWER_KIND = "query_answer"
#: Kind of the task queue key query-task pollers wait on.
POLL_KIND = "query"
DEFAULT_FAILURE_REASON = "query_rejected"


def answer_key(namespace: str, task_id: str) -> tuple[str, str, str]:
    """The wake key of one query's answer."""
    return (namespace, task_id, ANSWER_KIND)


@attrs.frozen(kw_only=True)
class QueryRequest:
    namespace: str
    workflow_id: str
    #: The run named in the path (run-targeted route), else None.
    run_id: str | None
    query_name: str
    arguments_blob: str
    task_id: str
    timeout_s: int
    max_pending: int
    worker_stale_after_s: int


@attrs.frozen(kw_only=True)
class Admitted:
    run_id: str
    task_queue: str

    def poll_key(self, namespace: str) -> tuple[str, str, str]:
        return (namespace, self.task_queue, POLL_KIND)


@attrs.frozen(kw_only=True)
class Answer:
    state: str
    result: Any
    result_envelope: dict[str, Any] | None
    failure: dict[str, Any] | None

    @property
    def completed(self) -> bool:
        return self.state == "completed"


async def admit(conn: Conn, req: QueryRequest) -> Admitted:
    """Enqueue the query as a pending query task.

    Raises:
        InstanceNotFoundError: no such instance in the namespace.
        HistoricalRunCommandRejectedError: the path's run is not the current run.
        QueryRunNotActiveError: the run closed without completing.
        QueryWorkerUnavailableError: no live worker for the run's queue and type.
        QueryTaskQueueFullError: the queue already holds the pending maximum.
    """
    target = await query_tasks.find_query_target(
        conn, workflow_id=req.workflow_id, namespace=req.namespace
    )
    if target is None or target.current_run_id is None:
        raise InstanceNotFoundError(
            f"Workflow {req.workflow_id!r} was not found.", workflow_id=req.workflow_id
        )
    run_id = target.current_run_id
    if req.run_id is not None and req.run_id != run_id:
        raise HistoricalRunCommandRejectedError(
            f"Run {req.run_id!r} is not the current run of workflow {req.workflow_id!r}.",
            workflow_id=req.workflow_id,
            run_id=req.run_id,
            target_scope="run",
        )
    status = target.status
    if status not in OPEN_STATUSES and status != "completed":
        raise QueryRunNotActiveError(
            f"The workflow run is {status}; only open or completed runs answer queries.",
            workflow_id=req.workflow_id,
            run_id=run_id,
            run_status=status,
            is_terminal=True,
            query_name=req.query_name,
        )
    workflow_type, task_queue = target.workflow_type, target.task_queue
    assert workflow_type is not None and task_queue is not None  # the run exists
    if not await query_tasks.live_query_worker_exists(
        conn,
        namespace=req.namespace,
        task_queue=task_queue,
        workflow_type=workflow_type,
        stale_after_s=req.worker_stale_after_s,
    ):
        raise QueryWorkerUnavailableError(
            f"No live worker polls task queue {task_queue!r} for workflow type {workflow_type!r}.",
            workflow_id=req.workflow_id,
            run_id=run_id,
            task_queue=task_queue,
            query_name=req.query_name,
        )
    await query_tasks.lock_query_queue(conn, namespace=req.namespace, task_queue=task_queue)
    await query_tasks.purge_expired_query_tasks(conn)
    inserted = await query_tasks.insert_query_task(
        conn,
        id=req.task_id,
        namespace=req.namespace,
        task_queue=task_queue,
        workflow_id=req.workflow_id,
        run_id=run_id,
        workflow_type=workflow_type,
        query_name=req.query_name,
        query_arguments=payloads.envelope(req.arguments_blob),
        timeout_s=req.timeout_s,
        max_pending=req.max_pending,
    )
    if not inserted:
        raise QueryTaskQueueFullError(
            f"Task queue {task_queue!r} already has {req.max_pending} pending queries.",
            workflow_id=req.workflow_id,
            run_id=run_id,
            task_queue=task_queue,
            query_name=req.query_name,
        )
    return Admitted(run_id=run_id, task_queue=task_queue)


# --- worker plane: poll ---------------------------------------------------------------
@attrs.frozen(kw_only=True)
class ClaimParams(claims.ClaimParams):
    workflow_types: tuple[str, ...]


async def claim(conn: Conn, params: ClaimParams, *, replay_poll: bool) -> dict[str, Any] | None:
    """Lease the next pending query task of the queue and build its wire body, or None.

    With ``replay_poll``, a task already leased to this ``poll_request_id`` is
    returned again (the SDK retries a poll whose response it lost).
    """
    task = None
    if replay_poll and params.poll_request_id:
        task = await query_tasks.find_polled_query_task(conn, **params.held_by_poll())
    if task is None:
        task = await query_tasks.claim_query_task(
            conn,
            namespace=params.namespace,
            task_queue=params.task_queue,
            worker_id=params.worker_id,
            poll_request_id=params.poll_request_id,
            workflow_types=params.workflow_types,
        )
    if task is None:
        return None
    # The worker replays the whole history to rebuild the state it queries.
    run = await runs.read_run_for_task(conn, task.run_id)
    total = 0 if run is None else run.last_history_sequence
    events = await list_events(conn, task.run_id, 0, total)
    return {
        "query_task_id": task.id,
        "query_task_attempt": task.attempt,
        "namespace": params.namespace,
        "workflow_id": task.workflow_id,
        "run_id": task.run_id,
        "workflow_type": task.workflow_type,
        "query_name": task.query_name,
        "payload_codec": "avro",
        "workflow_arguments": None if run is None else envelope(run.arguments, run.payload_codec),
        "query_arguments": task.query_arguments,
        "history_events": [event_body(e, params.namespace) for e in events],
        "task_queue": params.task_queue,
        "lease_owner": task.lease_owner,
        "lease_expires_at": wire.iso_z(task.lease_expires_at),
    }


async def release(conn: Conn, task: dict[str, Any]) -> tuple[str, str, str] | None:
    """Undo a lease whose response could not be delivered; returns the queue to wake."""
    released = await query_tasks.release_query_task(
        conn,
        task["query_task_id"],
        attempt=task["query_task_attempt"],
        lease_owner=task["lease_owner"],
    )
    return None if released is None else (*released, POLL_KIND)


# --- worker plane: answers --------------------------------------------------------------
def _answer_body(task_id: str, attempt: int, outcome: str) -> QueryTaskReport:
    return QueryTaskReport(
        query_task_id=task_id, query_task_attempt=attempt, outcome=outcome, reason=None
    )


async def _fence(
    conn: Conn, namespace: str, task_id: str, lease: QueryTaskLease, answered_as: str
) -> bool:
    """Check the caller still owns the query task's lease (worker-plane.md §10.4).

    Returns True when this very answer was already recorded (a transport
    retry), so the caller answers it again without writing.
    """
    row = await query_tasks.lock_query_task(conn, task_id)
    fields = {"query_task_id": task_id, "query_task_attempt": lease.query_task_attempt}
    if row is None or row.namespace != namespace:
        raise QueryTaskNotFoundError("Query task not found.", **fields)
    same_claim = row.lease_owner == lease.lease_owner and row.attempt == lease.query_task_attempt
    if row.state != "leased":
        if row.state == answered_as and same_claim:
            return True
        raise QueryTaskNotLeasedError("Query task is not leased.", **fields)
    if row.lease_expired:
        raise LeaseExpiredError("Query task lease has expired.", **fields)
    if row.lease_owner != lease.lease_owner:
        raise LeaseOwnerMismatchError(
            "Query task lease is owned by another worker.",
            lease_owner=row.lease_owner,
            **fields,
        )
    if row.attempt != lease.query_task_attempt:
        raise QueryTaskAttemptMismatchError(
            "Query task attempt is not current.", current_attempt=row.attempt, **fields
        )
    return False


async def complete(conn: Conn, namespace: str, task_id: str, req: CompleteQueryTask) -> Outcome:
    """Record a query result; the waiting caller is woken after commit."""
    if not await _fence(conn, namespace, task_id, req, "completed"):
        blob = payloads.validate_envelope(req.result_envelope, field="result_envelope")
        await query_tasks.answer_query_task(
            conn,
            task_id,
            state="completed",
            result=payloads.plain_value(blob),
            result_envelope=payloads.envelope(blob),
            failure=None,
        )
    outcome = Outcome(body=_answer_body(task_id, req.query_task_attempt, "completed"))
    outcome.wakes.add(answer_key(namespace, task_id))
    return outcome


async def fail(conn: Conn, namespace: str, task_id: str, req: FailQueryTask) -> Outcome:
    """Record a query failure (unknown query, handler error, ...) for the waiting caller."""
    if not await _fence(conn, namespace, task_id, req, "failed"):
        reason = req.failure.get("reason")
        message = req.failure.get("message")
        failure = {
            "reason": reason if isinstance(reason, str) and reason else DEFAULT_FAILURE_REASON,
            "message": message if isinstance(message, str) and message else "The query failed.",
            "type": req.failure.get("type"),
        }
        await query_tasks.answer_query_task(
            conn, task_id, state="failed", result=None, result_envelope=None, failure=failure
        )
    outcome = Outcome(body=_answer_body(task_id, req.query_task_attempt, "failed"))
    outcome.wakes.add(answer_key(namespace, task_id))
    return outcome


# --- the waiting caller -----------------------------------------------------------------
def _answer(row: QueryAnswer | None) -> Answer | None:
    if row is None or row.state not in ("completed", "failed"):
        return None
    return Answer(
        state=row.state,
        result=row.result,
        result_envelope=row.result_envelope,
        failure=row.failure,
    )


async def take_answer(conn: Conn, task_id: str) -> Answer | None:
    """The answer, removing the task; None while nobody has answered."""
    return _answer(await query_tasks.take_query_answer(conn, task_id))


async def drop(conn: Conn, task_id: str) -> Answer | None:
    """The caller stops waiting: remove the task; an answer that just arrived still counts."""
    return _answer(await query_tasks.drop_query_task(conn, task_id))
