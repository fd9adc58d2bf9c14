"""Redriving a failed run (``schema/queries/redrive.sql``): the checks on the failed run and
its instance, and the successor's step counter."""

from __future__ import annotations

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class RedriveSource:
    """What decides whether a locked, closed run may be redriven."""

    closed_reason: str | None
    archived: bool
    last_step_sequence: int


@attrs.frozen
class RedriveInstance:
    """The locked instance of the run being redriven."""

    run_count: int
    execution_timeout_seconds: int | None
    execution_deadline_passed: bool


_RUN_IN_INSTANCE = query("run_in_instance")
_GET_REDRIVE_SOURCE = query("get_redrive_source", RedriveSource)
_LOCK_INSTANCE_FOR_REDRIVE = query("lock_instance_for_redrive", RedriveInstance)
_SET_REUSED_STEPS = query("set_reused_steps")


async def run_in_instance(conn: Conn, *, run_id: str, workflow_id: str, namespace: str) -> bool:
    found: bool = await _RUN_IN_INSTANCE.fetchval(
        conn, run_id=run_id, workflow_id=workflow_id, namespace=namespace
    )
    return found


async def get_redrive_source(conn: Conn, run_id: str) -> RedriveSource:
    source = await _GET_REDRIVE_SOURCE.one(conn, run_id=run_id)
    assert source is not None  # the caller holds the run locked
    return source


async def lock_instance_for_redrive(conn: Conn, workflow_id: str) -> RedriveInstance:
    instance = await _LOCK_INSTANCE_FOR_REDRIVE.one(conn, workflow_id=workflow_id)
    assert instance is not None  # the caller holds its current run locked
    return instance


async def set_reused_steps(conn: Conn, *, run_id: str, last_step_sequence: int) -> None:
    await _SET_REUSED_STEPS.execute(conn, run_id=run_id, last_step_sequence=last_step_sequence)
