"""Child workflows: start a child, tell its parent when it closes, apply parent-close policies.

A child is an ordinary instance and run plus a ``child_workflow_calls`` row
linking it to the parent's step. The parent hears about the child only from
:func:`tell_parent`, which ``close_run`` calls for every closing run, so a
child's result reaches its parent whatever closed it (its own completion, a
terminate, a timeout, a parent-close policy). ``close_run`` also settles each
open child of a closing run with :func:`apply_parent_close_policy` and closes
the children that policy closes: the recursion lives in ``engine/closing.py``,
which imports this module (never the other way round).

Lock order: a closing child holds its run, then its call row, then the parent
run; a closing parent holds its run, then its call rows, then each child run.
Two runs closing into each other at once can deadlock; Postgres aborts one
transaction and the store retries it.
"""

from __future__ import annotations

from typing import Any

import attrs

from dwtrio import payloads, wire
from dwtrio.engine.outcome import Outcome
from dwtrio.engine.wakes import create_workflow_task, request_wake
from dwtrio.protocol.commands import StartChildWorkflow
from dwtrio.protocol.ids import new_id
from dwtrio.store import children, history, runs
from dwtrio.store import workflows as store
from dwtrio.store.children import ChildCall, ParentCall
from dwtrio.store.history import NewEvent, append_events
from dwtrio.store.pool import Conn
from dwtrio.store.runs import LockedRun

#: The parent event for each closed child status.
CHILD_EVENTS = {
    "completed": "ChildRunCompleted",
    "failed": "ChildRunFailed",
    "cancelled": "ChildRunCancelled",
    "terminated": "ChildRunTerminated",
}
#: Parent-close policies that close the child, with the status the child gets.
CLOSING_POLICIES = {
    "terminate": "terminated",
    "request_cancel": "cancelled",
    "request_cancellation": "cancelled",
}


def _child_ids(call: ParentCall) -> dict[str, Any]:
    return {
        "sequence": call.sequence,
        "child_call_id": call.id,
        "child_workflow_instance_id": call.child_workflow_id,
        "child_workflow_run_id": call.child_run_id,
        "child_workflow_type": call.child_workflow_type,
    }


async def start_child(
    conn: Conn,
    parent: LockedRun,
    command: StartChildWorkflow,
    seq: int,
    arguments: str,
    outcome: Outcome,
) -> tuple[list[NewEvent], str]:
    """Create the child instance, its first run and task; return the parent's events and the task id.

    The child id is ``<parent run id>:child:<seq>`` (unique because run ids
    are), or a fresh ULID if a caller already took that id.
    """
    queue = command.queue or parent.task_queue
    run_id = new_id()
    workflow_id = f"{parent.id}:child:{seq}"
    new_run = store.NewRun(
        id=run_id,
        workflow_id=workflow_id,
        namespace=parent.namespace,
        workflow_type=command.workflow_type,
        business_key=None,
        task_queue=queue,
        arguments=arguments,
        memo={},
        search_attributes={},
        run_timeout_seconds=command.run_timeout_seconds,
    )
    timeout = command.execution_timeout_seconds
    times = await store.insert_instance_with_first_run(conn, new_run, timeout)
    while times is None:  # a caller took the readable id: a fresh ULID never collides
        workflow_id = new_id()
        new_run = attrs.evolve(new_run, workflow_id=workflow_id)
        times = await store.insert_instance_with_first_run(conn, new_run, timeout)
    child = LockedRun.inserted(
        id=run_id,
        workflow_id=workflow_id,
        namespace=parent.namespace,
        workflow_type=command.workflow_type,
        task_queue=queue,
        arguments=arguments,
        compatibility=times.compatibility,  # the queue's promoted build, like any start
    )
    await append_events(
        conn,
        run_id,
        [
            NewEvent(
                event_type="WorkflowStarted",
                payload={
                    "workflow_instance_id": workflow_id,
                    "workflow_run_id": run_id,
                    "workflow_type": command.workflow_type,
                    "business_key": None,
                    "memo": {},
                    "search_attributes": {},
                    "task_queue": queue,
                    "execution_timeout_seconds": command.execution_timeout_seconds,
                    "run_timeout_seconds": command.run_timeout_seconds,
                    "execution_deadline_at": wire.iso_z(times.execution_deadline_at),
                    "run_deadline_at": wire.iso_z(times.run_deadline_at),
                    "parent_workflow_instance_id": parent.workflow_id,
                    "parent_workflow_run_id": parent.id,
                    "parent_sequence": seq,
                    "continued_from_run_id": None,
                },
            )
        ],
    )
    task_id = await create_workflow_task(conn, child, outcome)
    call_id = new_id()
    timeouts = {
        k: v
        for k, v in (
            ("execution_timeout_seconds", command.execution_timeout_seconds),
            ("run_timeout_seconds", command.run_timeout_seconds),
        )
        if v is not None
    }
    await children.insert_child_call(
        conn,
        id=call_id,
        parent_run_id=parent.id,
        parent_workflow_id=parent.workflow_id,
        sequence=seq,
        child_workflow_id=workflow_id,
        child_run_id=run_id,
        child_workflow_type=command.workflow_type,
        task_queue=queue,
        parent_close_policy=command.parent_close_policy,
        cancellation_policy=command.cancellation_policy,
        timeout_policy=timeouts or None,
        parallel=command.parallel or None,
        arguments=arguments,
    )
    ids = {
        "sequence": seq,
        "child_call_id": call_id,
        "child_workflow_instance_id": workflow_id,
        "child_workflow_run_id": run_id,
        "child_workflow_type": command.workflow_type,
        "child_run_number": 1,
        **command.parallel,
    }
    # Policies only as sent: the SDK compares them on replay and reads a missing one as abandon.
    policies = {
        k: v
        for k, v in (
            ("parent_close_policy", command.parent_close_policy),
            ("cancellation_policy", command.cancellation_policy),
        )
        if v is not None
    }
    events = [
        NewEvent(
            event_type="ChildWorkflowScheduled",
            payload={**ids, **policies, "timeout_policy": timeouts or None},
        ),
        NewEvent(event_type="ChildRunStarted", payload={**ids, "child_status": "pending"}),
    ]
    return events, task_id


async def tell_parent(
    conn: Conn, run: LockedRun, outcome: Outcome, status: str, output: str | None
) -> None:
    """A run closed (not continued as new): settle its parent link and tell the parent."""
    call = await children.lock_open_parent_call(
        conn, child_workflow_id=run.workflow_id, child_run_id=run.id
    )
    if call is None:
        return
    await children.close_child_call(conn, call.id, status=status, reason=status)
    parent = await runs.lock_run(conn, call.parent_run_id)
    if parent is None or not parent.is_open:
        return
    payload: dict[str, Any] = {**_child_ids(call), **(call.parallel or {})}
    payload["child_status"] = status
    if status == "completed":
        payload.update(output=output, payload_codec=payloads.CODEC)
    else:
        payload.update(await _failure_details(conn, run.id, status))
    await append_events(
        conn, parent.id, [NewEvent(event_type=CHILD_EVENTS[status], payload=payload)]
    )
    await _wake_parent(conn, parent, call.parallel or {}, outcome)


async def _failure_details(conn: Conn, run_id: str, status: str) -> dict[str, Any]:
    """Why the child closed, from its closing event (written before the close, or a default)."""
    closing_payload = dict(await history.last_closing_payload(conn, run_id) or {})
    exception = closing_payload.get("exception")
    message = (
        closing_payload.get("message")
        or closing_payload.get("reason")
        or (exception.get("message") if isinstance(exception, dict) else None)
        or f"child workflow {status}"
    )
    details: dict[str, Any] = {
        "message": message,
        "failure_id": new_id(),
        "failure_category": "child_workflow",
    }
    for key in ("exception_type", "exception_class", "exception", "non_retryable", "timeout_kind"):
        if closing_payload.get(key) is not None:
            details[key] = closing_payload[key]
    return details


async def _wake_parent(
    conn: Conn, parent: LockedRun, parallel: dict[str, Any], outcome: Outcome
) -> None:
    """Wake the parent unless the child is in a parallel group that is still running."""
    path = parallel.get("parallel_group_path") or []
    outer = path[0] if path else (parallel if "parallel_group_base_sequence" in parallel else None)
    if outer is not None:
        base, size = outer["parallel_group_base_sequence"], outer["parallel_group_size"]
        settled = await runs.count_settled_steps(conn, parent.id, first=base, last=base + size - 1)
        if settled < size:
            return
    await request_wake(conn, parent, outcome)


async def lock_open_child_calls(conn: Conn, parent: LockedRun) -> list[ChildCall]:
    """The open child calls of a closing ``parent``, locked, in order."""
    return await children.lock_open_child_calls(conn, parent.id)


async def apply_parent_close_policy(
    conn: Conn, parent: LockedRun, call: ChildCall
) -> tuple[LockedRun, str] | None:
    """Settle one open child link of a closing ``parent`` by its parent-close policy.

    Returns the child run the policy closes, locked and with its closing event
    appended, and the status to close it with; the caller closes it
    (``close_run``). None when the policy abandons the child or it is already closed.
    """
    policy = call.parent_close_policy or "abandon"
    status = CLOSING_POLICIES.get(policy)
    # Settle the link first, so the closing child does not report back to this parent.
    await children.close_child_call(conn, call.id, status=status or "abandoned", reason=policy)
    if status is None:
        return None
    child = await runs.lock_run(conn, call.child_run_id)
    if child is None or not child.is_open:
        return None
    message = f"Parent workflow {parent.workflow_id} closed (parent_close_policy: {policy})."
    event_type = "WorkflowTerminated" if status == "terminated" else "WorkflowCancelled"
    await append_events(
        conn,
        child.id,
        [
            NewEvent(
                event_type=event_type,
                payload={"reason": message, "message": message, "closed_reason": status},
            )
        ],
    )
    return child, status


async def follow_continued_run(
    conn: Conn, previous: LockedRun, new_run_id: str, outcome: Outcome
) -> dict[str, Any]:
    """A child continued as new: its parent link follows the new run (another ``ChildRunStarted``).

    Returns the parent fields for the new run's ``WorkflowStarted`` (empty when
    the run is nobody's child).
    """
    call = await children.lock_open_parent_call(
        conn, child_workflow_id=previous.workflow_id, child_run_id=previous.id
    )
    if call is None:
        return {}
    await children.follow_child_run(conn, call.id, child_run_id=new_run_id)
    parent = await runs.lock_run(conn, call.parent_run_id)
    if parent is not None and parent.is_open:
        payload = {
            **_child_ids(call),
            "child_workflow_run_id": new_run_id,
            "child_status": "pending",
            **(call.parallel or {}),
        }
        await append_events(
            conn, parent.id, [NewEvent(event_type="ChildRunStarted", payload=payload)]
        )
    return {
        "parent_workflow_instance_id": call.parent_workflow_id,
        "parent_workflow_run_id": call.parent_run_id,
        "parent_sequence": call.sequence,
    }
