"""Standalone activities as their host runs show them (``schema/queries/standalone_activities.sql``).

Starting one writes through ``store/workflows.py`` (instance, run, command) and
``store/activities.py`` (execution and task), as a workflow start and a scheduled
activity do; this module only reads.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class StandaloneActivityRow:
    """A host run with its activity execution (``execution_id`` None: none recorded)."""

    activity_id: str
    run_id: str
    workflow_type: str
    namespace: str
    task_queue: str
    business_key: str | None
    status: str
    status_bucket: str
    closed_reason: str | None
    started_at: datetime | None
    closed_at: datetime | None
    last_progress_at: datetime | None
    compatibility: str | None
    payload_codec: str | None
    execution_id: str | None
    activity_type: str | None
    activity_class: str | None
    activity_status: str | None
    attempt_count: int | None
    result: str | None
    schedule_to_start_deadline_at: datetime | None
    schedule_to_close_deadline_at: datetime | None
    last_heartbeat_at: datetime | None


@attrs.frozen
class ListedActivityRow:
    activity_id: str
    run_id: str
    activity_type: str | None
    activity_class: str | None
    task_queue: str
    status: str
    status_bucket: str
    business_key: str | None
    started_at: datetime | None
    closed_at: datetime | None


_GET_STANDALONE_ACTIVITY = query("get_standalone_activity", StandaloneActivityRow)
_LIST_STANDALONE_ACTIVITIES = query("list_standalone_activities", ListedActivityRow)


async def get_standalone_activity(
    conn: Conn, namespace: str, activity_id: str
) -> StandaloneActivityRow | None:
    return await _GET_STANDALONE_ACTIVITY.one(conn, activity_id=activity_id, namespace=namespace)


async def list_standalone_activities(
    conn: Conn, namespace: str, *, status: str | None, skip: int, limit: int
) -> list[ListedActivityRow]:
    return await _LIST_STANDALONE_ACTIVITIES.all(
        conn, namespace=namespace, status=status, skip=skip, limit=limit
    )
