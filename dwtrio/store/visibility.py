"""The visibility list (``schema/queries/visibility.sql``, docs/visibility.md).

One static query per number of range attributes (0, 1 or 2); every filter is a
parameter that is off when None. :func:`list_page` first makes the transaction
plan with custom plans, so the planner sees the values (the NULL tests fold away
and each remaining predicate can use its index). Run it inside a transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query
from dwtrio.store.workflows import ListedRun

#: How many number/date-time attributes one list may range over.
MAX_RANGE_ATTRIBUTES = 2


@attrs.define
class Bounds:
    """Comparison bounds on one value (None: no such bound)."""

    gt: Any = None
    ge: Any = None
    lt: Any = None
    le: Any = None


@attrs.define
class RangeFilter:
    """Bounds on a custom attribute's typed rows: ``double`` or ``time`` bounds."""

    key: str
    double: Bounds = attrs.field(factory=Bounds)
    time: Bounds = attrs.field(factory=Bounds)


@attrs.define
class Filter:
    """Every filter of the list; None is off. ``contains`` is a jsonb containment object."""

    status_bucket: str | None = None
    status: str | None = None
    workflow_type: str | None = None
    task_queue: str | None = None
    workflow_id: str | None = None
    run_id: str | None = None
    build_id: str | None = None
    #: False: runs not archived (the default list); True: archived runs only; None: both.
    archived: bool | None = False
    id_prefix: str | None = None
    started: Bounds = attrs.field(factory=Bounds)
    closed: Bounds = attrs.field(factory=Bounds)
    contains: dict[str, Any] = attrs.field(factory=dict)
    substring: str | None = None
    ranges: list[RangeFilter] = attrs.field(factory=list)


_SET_CUSTOM_PLANS = query("set_custom_plans")
_PAGE_0 = query("list_visibility_page_0", ListedRun)
_PAGE_1 = query("list_visibility_page_1", ListedRun)
_PAGE_2 = query("list_visibility_page_2", ListedRun)

#: WorkflowId prefixes end below this (byte order): ``[prefix, prefix + MAX)``.
_MAX_CHAR = "\U0010ffff"


async def set_custom_plans(conn: Conn) -> None:
    await _SET_CUSTOM_PLANS.execute(conn)


async def list_page(
    conn: Conn,
    namespace: str,
    f: Filter,
    *,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[ListedRun]:
    """Runs matching ``f``, newest first, after the keyset ``after`` (started_at, run_id)."""
    await set_custom_plans(conn)
    after_started_at, after_run_id = after if after is not None else (None, None)
    prefix_end = None if f.id_prefix is None else f.id_prefix + _MAX_CHAR
    contains = f.contains or None
    s, c = f.started, f.closed
    if not f.ranges:
        return await _PAGE_0.all(
            conn,
            namespace=namespace,
            status_bucket=f.status_bucket,
            status=f.status,
            workflow_type=f.workflow_type,
            task_queue=f.task_queue,
            workflow_id=f.workflow_id,
            run_id=f.run_id,
            build_id=f.build_id,
            archived=f.archived,
            id_prefix=f.id_prefix,
            id_prefix_end=prefix_end,
            started_gt=s.gt,
            started_ge=s.ge,
            started_lt=s.lt,
            started_le=s.le,
            closed_gt=c.gt,
            closed_ge=c.ge,
            closed_lt=c.lt,
            closed_le=c.le,
            contains=contains,
            substring=f.substring,
            after_started_at=after_started_at,
            after_run_id=after_run_id,
            limit=limit,
        )
    r1 = f.ranges[0]
    if len(f.ranges) == 1:
        return await _PAGE_1.all(
            conn,
            namespace=namespace,
            status_bucket=f.status_bucket,
            status=f.status,
            workflow_type=f.workflow_type,
            task_queue=f.task_queue,
            workflow_id=f.workflow_id,
            run_id=f.run_id,
            build_id=f.build_id,
            archived=f.archived,
            id_prefix=f.id_prefix,
            id_prefix_end=prefix_end,
            started_gt=s.gt,
            started_ge=s.ge,
            started_lt=s.lt,
            started_le=s.le,
            closed_gt=c.gt,
            closed_ge=c.ge,
            closed_lt=c.lt,
            closed_le=c.le,
            contains=contains,
            substring=f.substring,
            r1_key=r1.key,
            r1_double_gt=r1.double.gt,
            r1_double_ge=r1.double.ge,
            r1_double_lt=r1.double.lt,
            r1_double_le=r1.double.le,
            r1_time_gt=r1.time.gt,
            r1_time_ge=r1.time.ge,
            r1_time_lt=r1.time.lt,
            r1_time_le=r1.time.le,
            after_started_at=after_started_at,
            after_run_id=after_run_id,
            limit=limit,
        )
    r2 = f.ranges[1]
    return await _PAGE_2.all(
        conn,
        namespace=namespace,
        status_bucket=f.status_bucket,
        status=f.status,
        workflow_type=f.workflow_type,
        task_queue=f.task_queue,
        workflow_id=f.workflow_id,
        run_id=f.run_id,
        build_id=f.build_id,
        archived=f.archived,
        id_prefix=f.id_prefix,
        id_prefix_end=prefix_end,
        started_gt=s.gt,
        started_ge=s.ge,
        started_lt=s.lt,
        started_le=s.le,
        closed_gt=c.gt,
        closed_ge=c.ge,
        closed_lt=c.lt,
        closed_le=c.le,
        contains=contains,
        substring=f.substring,
        r1_key=r1.key,
        r1_double_gt=r1.double.gt,
        r1_double_ge=r1.double.ge,
        r1_double_lt=r1.double.lt,
        r1_double_le=r1.double.le,
        r1_time_gt=r1.time.gt,
        r1_time_ge=r1.time.ge,
        r1_time_lt=r1.time.lt,
        r1_time_le=r1.time.le,
        r2_key=r2.key,
        r2_double_gt=r2.double.gt,
        r2_double_ge=r2.double.ge,
        r2_double_lt=r2.double.lt,
        r2_double_le=r2.double.le,
        r2_time_gt=r2.time.gt,
        r2_time_ge=r2.time.ge,
        r2_time_lt=r2.time.lt,
        r2_time_le=r2.time.le,
        after_started_at=after_started_at,
        after_run_id=after_run_id,
        limit=limit,
    )
