"""Child workflow calls (``schema/queries/children.sql``): the link between a parent's
step and its child instance and run."""

from __future__ import annotations

from typing import Any

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class ParentCall:
    """The open link of a child run to its parent's step, locked."""

    id: str
    parent_run_id: str
    parent_workflow_id: str
    sequence: int
    child_workflow_id: str
    child_run_id: str
    child_workflow_type: str
    parallel: dict[str, Any] | None


@attrs.frozen
class ChildCall:
    """An open child of a closing parent run, locked."""

    id: str
    child_run_id: str
    parent_close_policy: str | None


_COUNT_OPEN_CHILD_CALLS = query("count_open_child_calls")
_INSERT_CHILD_CALL = query("insert_child_call")
_LOCK_OPEN_PARENT_CALL = query("lock_open_parent_call", ParentCall)
_LOCK_OPEN_CHILD_CALLS = query("lock_open_child_calls", ChildCall)
_CLOSE_CHILD_CALL = query("close_child_call")
_FOLLOW_CHILD_RUN = query("follow_child_run")


async def count_open_child_calls(conn: Conn, parent_run_id: str) -> int:
    return int(await _COUNT_OPEN_CHILD_CALLS.fetchval(conn, parent_run_id=parent_run_id))


async def insert_child_call(
    conn: Conn,
    *,
    id: str,
    parent_run_id: str,
    parent_workflow_id: str,
    sequence: int,
    child_workflow_id: str,
    child_run_id: str,
    child_workflow_type: str,
    task_queue: str,
    parent_close_policy: str | None,
    cancellation_policy: str | None,
    timeout_policy: dict[str, Any] | None,
    parallel: dict[str, Any] | None,
    arguments: str,
) -> None:
    """Link the parent's step ``sequence`` to its started child."""
    await _INSERT_CHILD_CALL.execute(
        conn,
        id=id,
        parent_run_id=parent_run_id,
        parent_workflow_id=parent_workflow_id,
        sequence=sequence,
        child_workflow_id=child_workflow_id,
        child_run_id=child_run_id,
        child_workflow_type=child_workflow_type,
        task_queue=task_queue,
        parent_close_policy=parent_close_policy,
        cancellation_policy=cancellation_policy,
        timeout_policy=timeout_policy,
        parallel=parallel,
        arguments=arguments,
    )


async def lock_open_parent_call(
    conn: Conn, *, child_workflow_id: str, child_run_id: str
) -> ParentCall | None:
    return await _LOCK_OPEN_PARENT_CALL.one(
        conn, child_workflow_id=child_workflow_id, child_run_id=child_run_id
    )


async def lock_open_child_calls(conn: Conn, parent_run_id: str) -> list[ChildCall]:
    return await _LOCK_OPEN_CHILD_CALLS.all(conn, parent_run_id=parent_run_id)


async def close_child_call(conn: Conn, call_id: str, *, status: str, reason: str) -> None:
    await _CLOSE_CHILD_CALL.execute(conn, id=call_id, status=status, reason=reason)


async def follow_child_run(conn: Conn, call_id: str, *, child_run_id: str) -> None:
    await _FOLLOW_CHILD_RUN.execute(conn, id=call_id, child_run_id=child_run_id)
