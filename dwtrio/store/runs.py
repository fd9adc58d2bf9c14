"""Run rows as the engine sees them (``schema/queries/runs.sql``): locked for the
duration of a use case, settled, closed; their steps, memo and search attributes."""

from __future__ import annotations

from typing import Any

import attrs

from dwtrio import payloads
from dwtrio.protocol.activities import HOST_WORKFLOW_TYPE
from dwtrio.store.pool import Conn
from dwtrio.store.queries import query

OPEN_STATUSES = frozenset({"pending", "running", "waiting"})


@attrs.frozen
class LockedRun:
    id: str
    workflow_id: str
    namespace: str
    workflow_type: str
    task_queue: str
    status: str
    wake_pending: bool
    last_step_sequence: int
    payload_codec: str | None
    arguments: str | None
    compatibility: str | None
    #: The open condition wait, if any (engine/commands/conditions.py).
    open_wait_id: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def hosts_standalone_activity(self) -> bool:
        """The host run of a standalone activity (docs/standalone-activities.md): no
        workflow code runs it, so it is never woken; its activity's outcome closes it."""
        return self.workflow_type == HOST_WORKFLOW_TYPE

    @classmethod
    def inserted(
        cls,
        *,
        id: str,
        workflow_id: str,
        namespace: str,
        workflow_type: str,
        task_queue: str,
        arguments: str | None,
        compatibility: str | None = None,
    ) -> LockedRun:
        """A run this transaction just inserted: already locked and invisible to everyone
        else, so its state (pending, no steps yet) is known without reading it back."""
        return cls(
            id=id,
            workflow_id=workflow_id,
            namespace=namespace,
            workflow_type=workflow_type,
            task_queue=task_queue,
            status="pending",
            wake_pending=False,
            last_step_sequence=0,
            payload_codec=payloads.CODEC,
            arguments=arguments,
            compatibility=compatibility,
        )


def joined_run_columns() -> tuple[str, ...]:
    """The columns of a run locked with another row: ``lock_run``'s, prefixed ``run_``
    (its id as ``run_id_``, beside the other row's ``run_id``), last in the row."""
    return tuple("run_id_" if f.name == "id" else f"run_{f.name}" for f in attrs.fields(LockedRun))


@attrs.frozen
class RunForTask:
    """What a leased task shows about its run."""

    id: str
    workflow_id: str
    workflow_type: str
    task_queue: str
    payload_codec: str | None
    arguments: str | None
    status: str
    last_history_sequence: int


_LOCK_RUN = query("lock_run", LockedRun)
_READ_RUN_FOR_TASK = query("read_run_for_task", RunForTask)
_SET_WAKE_PENDING = query("set_wake_pending")
_SET_RUN_STATUS = query("set_run_status")
_CLOSE_RUN = query("close_run")
_SETTLE_AND_COMPLETE_WORKFLOW_TASK = query("settle_and_complete_workflow_task")
_COUNT_SETTLED_STEPS = query("count_settled_steps")
_GET_RUN_SEARCH_ATTRIBUTES = query("get_run_search_attributes")
_SET_RUN_SEARCH_ATTRIBUTES = query("set_run_search_attributes")
_GET_RUN_MEMO = query("get_run_memo")
_SET_RUN_MEMO = query("set_run_memo")


async def lock_run(conn: Conn, run_id: str) -> LockedRun | None:
    return await _LOCK_RUN.one(conn, id=run_id)


async def read_run_for_task(conn: Conn, run_id: str) -> RunForTask | None:
    return await _READ_RUN_FOR_TASK.one(conn, id=run_id)


async def set_status(conn: Conn, run_id: str, status: str) -> None:
    await _SET_RUN_STATUS.execute(conn, id=run_id, status=status)


async def set_wake_pending(conn: Conn, run_id: str, pending: bool) -> None:
    await _SET_WAKE_PENDING.execute(conn, id=run_id, pending=pending)


async def close_run(
    conn: Conn,
    run_id: str,
    *,
    status: str,
    reason: str,
    output: str | None,
    keep_task_id: str | None,
    last_step_sequence: int | None,
) -> None:
    """Close the run and cancel its other open tasks, activities and timers (one statement)."""
    await _CLOSE_RUN.execute(
        conn,
        id=run_id,
        status=status,
        reason=reason,
        output=output,
        keep_task_id=keep_task_id,
        last_step_sequence=last_step_sequence,
    )


async def settle_and_complete_workflow_task(
    conn: Conn,
    *,
    run_id: str,
    task_id: str,
    last_step_sequence: int,
    receipt: dict[str, Any],
) -> str | None:
    """The run waits, the task completes; returns the run's oldest queued update, if any."""
    update_id: str | None = await _SETTLE_AND_COMPLETE_WORKFLOW_TASK.fetchval(
        conn,
        run_id=run_id,
        task_id=task_id,
        last_step_sequence=last_step_sequence,
        receipt=receipt,
    )
    return update_id


async def count_settled_steps(conn: Conn, run_id: str, *, first: int, last: int) -> int:
    """How many of the run's steps ``first``..``last`` (inclusive) have settled."""
    return int(await _COUNT_SETTLED_STEPS.fetchval(conn, run_id=run_id, first=first, last=last))


async def get_search_attributes(conn: Conn, run_id: str) -> dict[str, Any]:
    value: dict[str, Any] = await _GET_RUN_SEARCH_ATTRIBUTES.fetchval(conn, id=run_id)
    return value


async def set_search_attributes(conn: Conn, run_id: str, search_attributes: dict[str, Any]) -> None:
    await _SET_RUN_SEARCH_ATTRIBUTES.execute(conn, id=run_id, search_attributes=search_attributes)


async def get_memo(conn: Conn, run_id: str) -> dict[str, Any]:
    value: dict[str, Any] = await _GET_RUN_MEMO.fetchval(conn, id=run_id)
    return value


async def set_memo(conn: Conn, run_id: str, memo: dict[str, Any]) -> None:
    await _SET_RUN_MEMO.execute(conn, id=run_id, memo=memo)
