"""Query tasks (``schema/queries/query_tasks.sql``): ephemeral rows a control-plane query
waits on, leased by a query-task poll and answered by a worker."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class QueryTarget:
    """The instance's current run as a query sees it (run columns None without a run)."""

    current_run_id: str | None
    workflow_type: str | None
    task_queue: str | None
    status: str | None


@attrs.frozen
class LeasedQueryTask:
    id: str
    attempt: int
    lease_owner: str
    lease_expires_at: datetime
    workflow_id: str
    run_id: str
    workflow_type: str
    query_name: str
    query_arguments: dict[str, Any] | None


@attrs.frozen
class LockedQueryTask:
    id: str
    namespace: str
    state: str
    lease_owner: str | None
    attempt: int
    lease_expired: bool | None


@attrs.frozen
class QueryAnswer:
    state: str
    result: Any
    result_envelope: dict[str, Any] | None
    failure: dict[str, Any] | None


_FIND_QUERY_TARGET = query("find_query_target", QueryTarget)
_LIVE_QUERY_WORKER_EXISTS = query("live_query_worker_exists")
_LOCK_QUERY_QUEUE = query("lock_query_queue")
_PURGE_EXPIRED_QUERY_TASKS = query("purge_expired_query_tasks")
_INSERT_QUERY_TASK = query("insert_query_task")
_CLAIM_QUERY_TASK = query("claim_query_task", LeasedQueryTask)
_FIND_POLLED_QUERY_TASK = query("find_polled_query_task", LeasedQueryTask)
_RELEASE_QUERY_TASK = query("release_query_task")
_LOCK_QUERY_TASK = query("lock_query_task", LockedQueryTask)
_ANSWER_QUERY_TASK = query("answer_query_task")
_TAKE_QUERY_ANSWER = query("take_query_answer", QueryAnswer)
_DROP_QUERY_TASK = query("drop_query_task", QueryAnswer)


async def find_query_target(conn: Conn, *, workflow_id: str, namespace: str) -> QueryTarget | None:
    return await _FIND_QUERY_TARGET.one(conn, workflow_id=workflow_id, namespace=namespace)


async def live_query_worker_exists(
    conn: Conn, *, namespace: str, task_queue: str, workflow_type: str, stale_after_s: int
) -> bool:
    """Whether a live worker that answers queries serves this queue and workflow type."""
    return bool(
        await _LIVE_QUERY_WORKER_EXISTS.fetchval(
            conn,
            namespace=namespace,
            task_queue=task_queue,
            workflow_type=workflow_type,
            stale_after_s=stale_after_s,
        )
    )


async def lock_query_queue(conn: Conn, *, namespace: str, task_queue: str) -> None:
    """Serialise this transaction's admission with others on the queue (until commit)."""
    await _LOCK_QUERY_QUEUE.execute(conn, namespace=namespace, task_queue=task_queue)


async def purge_expired_query_tasks(conn: Conn) -> None:
    await _PURGE_EXPIRED_QUERY_TASKS.execute(conn)


async def insert_query_task(
    conn: Conn,
    *,
    id: str,
    namespace: str,
    task_queue: str,
    workflow_id: str,
    run_id: str,
    workflow_type: str,
    query_name: str,
    query_arguments: dict[str, Any] | None,
    timeout_s: int,
    max_pending: int,
) -> bool:
    """Enqueue a pending query task; False when the queue already holds ``max_pending``."""
    inserted = await _INSERT_QUERY_TASK.fetchval(
        conn,
        id=id,
        namespace=namespace,
        task_queue=task_queue,
        workflow_id=workflow_id,
        run_id=run_id,
        workflow_type=workflow_type,
        query_name=query_name,
        query_arguments=query_arguments,
        timeout_s=timeout_s,
        max_pending=max_pending,
    )
    return inserted is not None


async def claim_query_task(
    conn: Conn,
    *,
    namespace: str,
    task_queue: str,
    worker_id: str,
    poll_request_id: str | None,
    workflow_types: Sequence[str],
) -> LeasedQueryTask | None:
    return await _CLAIM_QUERY_TASK.one(
        conn,
        namespace=namespace,
        task_queue=task_queue,
        worker_id=worker_id,
        poll_request_id=poll_request_id,
        workflow_types=list(workflow_types),
    )


async def find_polled_query_task(
    conn: Conn, *, worker_id: str, poll_request_id: str, namespace: str, task_queue: str
) -> LeasedQueryTask | None:
    return await _FIND_POLLED_QUERY_TASK.one(
        conn,
        worker_id=worker_id,
        poll_request_id=poll_request_id,
        namespace=namespace,
        task_queue=task_queue,
    )


async def release_query_task(
    conn: Conn, task_id: str, *, attempt: int, lease_owner: str
) -> tuple[str, str] | None:
    """Undo a lease still held by ``lease_owner`` at ``attempt``; (namespace, task queue)."""
    row = await _RELEASE_QUERY_TASK.fetchrow(
        conn, id=task_id, attempt=attempt, lease_owner=lease_owner
    )
    return None if row is None else (row[0], row[1])


async def lock_query_task(conn: Conn, task_id: str) -> LockedQueryTask | None:
    return await _LOCK_QUERY_TASK.one(conn, id=task_id)


async def answer_query_task(
    conn: Conn,
    task_id: str,
    *,
    state: str,
    result: Any,
    result_envelope: dict[str, Any] | None,
    failure: dict[str, Any] | None,
) -> None:
    await _ANSWER_QUERY_TASK.execute(
        conn,
        id=task_id,
        state=state,
        result=result,
        result_envelope=result_envelope,
        failure=failure,
    )


async def take_query_answer(conn: Conn, task_id: str) -> QueryAnswer | None:
    """Remove an answered task and return its answer; None while it is not answered."""
    return await _TAKE_QUERY_ANSWER.one(conn, id=task_id)


async def drop_query_task(conn: Conn, task_id: str) -> QueryAnswer | None:
    """Remove the task, returning its row (answered or not) if it was still there."""
    return await _DROP_QUERY_TASK.one(conn, id=task_id)
