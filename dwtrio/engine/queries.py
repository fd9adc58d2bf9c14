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
from dwtrio.engine.outcome import Outcome, QueueKey
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
from dwtrio.store.history import list_events
from dwtrio.store.pool import Conn
from dwtrio.store.queries import sql
from dwtrio.store.runs import OPEN_STATUSES

#: Kind of the wake-bus key a query's caller waits on (the "queue" is the task id).
ANSWER_KIND = "query_answer"
#: Kind of the task queue key query-task pollers wait on.
POLL_KIND = "query"
DEFAULT_FAILURE_REASON = "query_rejected"


def answer_key(namespace: str, task_id: str) -> QueueKey:
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

    def poll_key(self, namespace: str) -> QueueKey:
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
    target = await conn.fetchrow(sql("find_query_target"), req.workflow_id, req.namespace)
    if target is None or target["current_run_id"] is None:
        raise InstanceNotFoundError(
            f"Workflow {req.workflow_id!r} was not found.", workflow_id=req.workflow_id
        )
    run_id = target["current_run_id"]
    if req.run_id is not None and req.run_id != run_id:
        raise HistoricalRunCommandRejectedError(
            f"Run {req.run_id!r} is not the current run of workflow {req.workflow_id!r}.",
            workflow_id=req.workflow_id,
            run_id=req.run_id,
            target_scope="run",
        )
    status = target["status"]
    if status not in OPEN_STATUSES and status != "completed":
        raise QueryRunNotActiveError(
            f"The workflow run is {status}; only open or completed runs answer queries.",
            workflow_id=req.workflow_id,
            run_id=run_id,
            run_status=status,
            is_terminal=True,
            query_name=req.query_name,
        )
    workflow_type, task_queue = target["workflow_type"], target["task_queue"]
    if not await conn.fetchval(
        sql("live_query_worker_exists"),
        req.namespace,
        task_queue,
        workflow_type,
        req.worker_stale_after_s,
    ):
        raise QueryWorkerUnavailableError(
            f"No live worker polls task queue {task_queue!r} for workflow type {workflow_type!r}.",
            workflow_id=req.workflow_id,
            run_id=run_id,
            task_queue=task_queue,
            query_name=req.query_name,
        )
    await conn.execute(sql("lock_query_queue"), req.namespace, task_queue)
    await conn.execute(sql("purge_expired_query_tasks"))
    inserted = await conn.fetchval(
        sql("insert_query_task"),
        req.task_id,
        req.namespace,
        task_queue,
        req.workflow_id,
        run_id,
        workflow_type,
        req.query_name,
        payloads.envelope(req.arguments_blob),
        req.timeout_s,
        req.max_pending,
    )
    if inserted is None:
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
class ClaimParams:
    namespace: str
    task_queue: str
    worker_id: str
    poll_request_id: str | None
    workflow_types: tuple[str, ...]


async def claim(conn: Conn, params: ClaimParams, *, replay_poll: bool) -> dict[str, Any] | None:
    """Lease the next pending query task of the queue and build its wire body, or None.

    With ``replay_poll``, a task already leased to this ``poll_request_id`` is
    returned again (the SDK retries a poll whose response it lost).
    """
    row = None
    if replay_poll and params.poll_request_id:
        row = await conn.fetchrow(
            sql("find_polled_query_task"),
            params.worker_id,
            params.poll_request_id,
            params.namespace,
            params.task_queue,
        )
    if row is None:
        row = await conn.fetchrow(
            sql("claim_query_task"),
            params.namespace,
            params.task_queue,
            params.worker_id,
            params.poll_request_id,
            list(params.workflow_types),
        )
    if row is None:
        return None
    # The worker replays the whole history to rebuild the state it queries.
    run = await conn.fetchrow(sql("read_run_for_task"), row["run_id"])
    total = 0 if run is None else run["last_history_sequence"]
    events = await list_events(conn, row["run_id"], 0, total)
    return {
        "query_task_id": row["id"],
        "query_task_attempt": row["attempt"],
        "namespace": params.namespace,
        "workflow_id": row["workflow_id"],
        "run_id": row["run_id"],
        "workflow_type": row["workflow_type"],
        "query_name": row["query_name"],
        "payload_codec": "avro",
        "workflow_arguments": None
        if run is None
        else envelope(run["arguments"], run["payload_codec"]),
        "query_arguments": row["query_arguments"],
        "history_events": [event_body(e, params.namespace) for e in events],
        "task_queue": params.task_queue,
        "lease_owner": row["lease_owner"],
        "lease_expires_at": wire.iso_z(row["lease_expires_at"]),
    }


async def release(conn: Conn, task: dict[str, Any]) -> QueueKey | None:
    """Undo a lease whose response could not be delivered; returns the queue to wake."""
    row = await conn.fetchrow(
        sql("release_query_task"),
        task["query_task_id"],
        task["query_task_attempt"],
        task["lease_owner"],
    )
    return None if row is None else (row["namespace"], row["task_queue"], POLL_KIND)


# --- worker plane: answers --------------------------------------------------------------
def _answer_body(task_id: str, attempt: int, outcome: str) -> dict[str, Any]:
    return {
        "query_task_id": task_id,
        "query_task_attempt": attempt,
        "outcome": outcome,
        "reason": None,
    }


async def _fence(
    conn: Conn, namespace: str, task_id: str, lease: QueryTaskLease, answered_as: str
) -> bool:
    """Check the caller still owns the query task's lease (worker-plane.md §10.4).

    Returns True when this very answer was already recorded (a transport
    retry), so the caller answers it again without writing.
    """
    row = await conn.fetchrow(sql("lock_query_task"), task_id)
    fields = {"query_task_id": task_id, "query_task_attempt": lease.query_task_attempt}
    if row is None or row["namespace"] != namespace:
        raise QueryTaskNotFoundError("Query task not found.", **fields)
    same_claim = (
        row["lease_owner"] == lease.lease_owner and row["attempt"] == lease.query_task_attempt
    )
    if row["state"] != "leased":
        if row["state"] == answered_as and same_claim:
            return True
        raise QueryTaskNotLeasedError("Query task is not leased.", **fields)
    if row["lease_expired"]:
        raise LeaseExpiredError("Query task lease has expired.", **fields)
    if row["lease_owner"] != lease.lease_owner:
        raise LeaseOwnerMismatchError(
            "Query task lease is owned by another worker.",
            lease_owner=row["lease_owner"],
            **fields,
        )
    if row["attempt"] != lease.query_task_attempt:
        raise QueryTaskAttemptMismatchError(
            "Query task attempt is not current.", current_attempt=row["attempt"], **fields
        )
    return False


async def complete(conn: Conn, namespace: str, task_id: str, req: CompleteQueryTask) -> Outcome:
    """Record a query result; the waiting caller is woken after commit."""
    if not await _fence(conn, namespace, task_id, req, "completed"):
        blob = payloads.validate_envelope(req.result_envelope, field="result_envelope")
        await conn.execute(
            sql("answer_query_task"),
            task_id,
            "completed",
            payloads.plain_value(blob),
            payloads.envelope(blob),
            None,
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
        await conn.execute(sql("answer_query_task"), task_id, "failed", None, None, failure)
    outcome = Outcome(body=_answer_body(task_id, req.query_task_attempt, "failed"))
    outcome.wakes.add(answer_key(namespace, task_id))
    return outcome


# --- the waiting caller -----------------------------------------------------------------
def _answer(row: Any) -> Answer | None:
    if row is None or row["state"] not in ("completed", "failed"):
        return None
    return Answer(
        state=row["state"],
        result=row["result"],
        result_envelope=row["result_envelope"],
        failure=row["failure"],
    )


async def take_answer(conn: Conn, task_id: str) -> Answer | None:
    """The answer, removing the task; None while nobody has answered."""
    return _answer(await conn.fetchrow(sql("take_query_answer"), task_id))


async def drop(conn: Conn, task_id: str) -> Answer | None:
    """The caller stops waiting: remove the task; an answer that just arrived still counts."""
    return _answer(await conn.fetchrow(sql("drop_query_task"), task_id))
