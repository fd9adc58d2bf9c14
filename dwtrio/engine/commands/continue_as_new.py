"""``continue_as_new`` (terminal): close this run as continued and start the next run.

The next run belongs to the same instance (new run id, run number + 1, fresh
history and step counter) and becomes the instance's current run, so describe
and instance-targeted commands follow it. It is created after the run is
closed (an ``after_close`` hook), so the closing run's task cleanup never
touches it; a parent link follows it (``children.follow_continued_run``).
"""

from __future__ import annotations

from dwtrio import payloads, wire
from dwtrio.engine import children
from dwtrio.engine.commands.context import Closing, Completion
from dwtrio.engine.outcome import Outcome
from dwtrio.engine.wakes import create_workflow_task
from dwtrio.protocol.commands import ContinueAsNew
from dwtrio.protocol.ids import new_id
from dwtrio.store import workflows as store
from dwtrio.store.history import NewEvent, append_events
from dwtrio.store.pool import Conn
from dwtrio.store.runs import LockedRun


async def apply_continue_as_new(ctx: Completion, command: ContinueAsNew, index: int) -> None:
    arguments = payloads.arguments_blob(command.arguments, field=f"commands.{index}.arguments")
    # Lock order: run (held), then instance, as the start use case expects.
    instance = await store.lock_instance_for_continue(ctx.conn, ctx.run.workflow_id)
    new_run_id = new_id()
    run_number = instance.run_count + 1
    workflow_type = command.workflow_type or ctx.run.workflow_type
    queue = command.queue or ctx.run.task_queue
    ctx.add(
        NewEvent(
            event_type="WorkflowContinuedAsNew",
            payload={
                "continued_to_run_id": new_run_id,
                "continued_to_run_number": run_number,
                "workflow_type": workflow_type,
                "task_queue": queue,
                "closed_reason": "continued",
            },
        )
    )
    ctx.closing = Closing(status="completed", reason="continued")
    previous, outcome = ctx.run, ctx.outcome

    async def start_next_run() -> None:
        await _start_next_run(
            ctx.conn,
            previous,
            outcome,
            new_run_id=new_run_id,
            run_number=run_number,
            workflow_type=command.workflow_type,
            queue=queue,
            arguments=arguments,
            execution_timeout_seconds=instance.execution_timeout_seconds,
        )

    ctx.after_close.append(start_next_run)


async def _start_next_run(
    conn: Conn,
    previous: LockedRun,
    outcome: Outcome,
    *,
    new_run_id: str,
    run_number: int,
    workflow_type: str | None,
    queue: str,
    arguments: str,
    execution_timeout_seconds: int | None,
) -> None:
    row = await store.insert_continued_run(
        conn,
        run_id=new_run_id,
        previous_run_id=previous.id,
        run_number=run_number,
        workflow_type=workflow_type,
        task_queue=queue,
        arguments=arguments,
    )
    parent_fields = await children.follow_continued_run(conn, previous, new_run_id, outcome)
    await append_events(
        conn,
        new_run_id,
        [
            NewEvent(
                event_type="WorkflowStarted",
                payload={
                    "workflow_instance_id": previous.workflow_id,
                    "workflow_run_id": new_run_id,
                    "workflow_type": row.workflow_type,
                    "business_key": row.business_key,
                    "memo": row.memo,
                    "search_attributes": row.search_attributes,
                    "task_queue": queue,
                    "execution_timeout_seconds": execution_timeout_seconds,
                    "run_timeout_seconds": row.run_timeout_seconds,
                    "execution_deadline_at": wire.iso_z(row.execution_deadline_at),
                    "run_deadline_at": wire.iso_z(row.run_deadline_at),
                    "continued_from_run_id": previous.id,
                    "run_number": run_number,
                    **parent_fields,
                },
            )
        ],
    )
    run = LockedRun.inserted(
        id=new_run_id,
        workflow_id=previous.workflow_id,
        namespace=previous.namespace,
        workflow_type=row.workflow_type,
        task_queue=queue,
        arguments=arguments,
        compatibility=row.compatibility,
    )
    await create_workflow_task(conn, run, outcome)
