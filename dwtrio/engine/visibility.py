"""The visibility list: filters and the query language compiled to one store filter.

:func:`list_workflows` is an operation ``op(conn, ...)`` to run in a transaction
(``store.visibility.list_page`` plans with custom plans). Attribute names come
only from the whitelist (the system attributes and the namespace's registered
ones, read once per list that names a custom attribute); values only ever travel
as query parameters. Every refusal is a ``422 invalid_visibility_query`` that
points at the predicate (docs/visibility.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from dwtrio.errors import InvalidVisibilityQueryError
from dwtrio.protocol.search_attributes import SYSTEM_ATTRIBUTES
from dwtrio.protocol.visibility import (
    Predicate,
    Value,
    VisibilityQuery,
    looks_like_visibility_query,
    parse,
    refuse,
)
from dwtrio.store import search_attributes as registry
from dwtrio.store import visibility as store
from dwtrio.store.pool import Conn
from dwtrio.store.workflows import ListedRun

STATUS_BUCKETS = ("running", "completed", "failed")
EXACT_STATUSES = ("pending", "waiting", "cancelled", "terminated")
_RANGE_OPS = (">", ">=", "<", "<=", "=", "between")
#: System keyword attributes and the filter field each one sets.
_SYSTEM_COLUMNS = {
    "WorkflowType": "workflow_type",
    "WorkflowId": "workflow_id",
    "RunId": "run_id",
    "TaskQueue": "task_queue",
    "BuildId": "build_id",
}


@attrs.frozen(kw_only=True)
class ListRequest:
    """A list's parameters, already parsed (times are aware datetimes)."""

    namespace: str
    status: str | None = None
    workflow_type: str | None = None
    task_queue: str | None = None
    workflow_id_prefix: str | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None
    closed_after: datetime | None = None
    closed_before: datetime | None = None
    query: str | None = None
    #: Archived runs: hidden (False, the default), only them (True), or both (None).
    archived: bool | None = False
    after: tuple[datetime, str] | None = None
    limit: int = 51


class _Empty(Exception):
    """The filters contradict each other: no run can match."""


def parse_datetime(text: str) -> datetime | None:
    """An ISO-8601 date-time (a naive one is UTC), or None."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _set(f: store.Filter, field: str, value: Any) -> None:
    if value is None:
        return
    current = getattr(f, field)
    if current is not None and current != value:
        raise _Empty
    setattr(f, field, value)


def _prefix(f: store.Filter, prefix: str) -> None:
    """Both prefixes hold: keep the longer one, or nothing matches."""
    current = f.id_prefix or ""
    if prefix.startswith(current):
        f.id_prefix = prefix
    elif not current.startswith(prefix):
        raise _Empty


def _bound(b: store.Bounds, op: str, value: Any) -> None:
    """Tighten ``b`` with ``op value`` (``=`` is both ``>=`` and ``<=``)."""
    if op in (">", ">="):
        name = "gt" if op == ">" else "ge"
        current = getattr(b, name)
        setattr(b, name, value if current is None else max(current, value))
    elif op in ("<", "<="):
        name = "lt" if op == "<" else "le"
        current = getattr(b, name)
        setattr(b, name, value if current is None else min(current, value))
    else:
        _bound(b, ">=", value)
        _bound(b, "<=", value)


def _range(b: store.Bounds, p: Predicate, values: tuple[Any, ...]) -> None:
    if p.op == "between":
        _bound(b, ">=", values[0])
        _bound(b, "<=", values[1])
    else:
        _bound(b, p.op, values[0])


class _Compiler:
    def __init__(self, text: str, types: Mapping[str, str]) -> None:
        self.text = text
        self.types = types
        self.f = store.Filter()
        self.ranges: dict[str, store.RangeFilter] = {}

    def refuse(self, message: str, p: Predicate) -> InvalidVisibilityQueryError:
        return refuse(message, self.text, p.position)

    def times(self, p: Predicate) -> tuple[datetime, ...]:
        out = []
        for v in p.values:
            t = parse_datetime(v) if isinstance(v, str) else None
            if t is None:
                raise self.refuse(
                    f"{p.attribute} is a datetime; {v!r} is not an ISO-8601 date-time", p
                )
            out.append(t)
        return tuple(out)

    def numbers(self, p: Predicate, kind: str) -> tuple[float, ...]:
        out = []
        for v in p.values:
            ok = isinstance(v, int | float) and not isinstance(v, bool)
            if kind == "int" and isinstance(v, float):
                ok = v.is_integer()
            if not ok:
                raise self.refuse(f"{p.attribute} is {kind}; {v!r} is not a number of that type", p)
            assert isinstance(v, int | float)
            out.append(float(v))
        return tuple(out)

    def only(self, p: Predicate, ops: tuple[str, ...], kind: str) -> None:
        if p.op not in ops:
            op = p.op.upper() if p.op.isalpha() or "_" in p.op else p.op
            allowed = ", ".join(o.upper() if o.isalpha() or "_" in o else o for o in ops)
            raise self.refuse(f"{p.attribute} ({kind}) does not take {op}; it takes {allowed}", p)

    def strings(self, p: Predicate, kind: str) -> str:
        (v,) = p.values
        if not isinstance(v, str):
            raise self.refuse(f"{p.attribute} is {kind}; {v!r} is not a string", p)
        return v

    def add(self, p: Predicate) -> None:
        name = p.attribute
        if name in ("StartTime", "CloseTime"):
            self.only(p, _RANGE_OPS, "datetime")
            _range(self.f.started if name == "StartTime" else self.f.closed, p, self.times(p))
        elif name == "Status":
            self.only(p, ("=",), "keyword")
            status = self.strings(p, "keyword")
            if status in STATUS_BUCKETS:
                _set(self.f, "status_bucket", status)
            elif status in EXACT_STATUSES:
                _set(self.f, "status", status)
            else:
                raise self.refuse(
                    f"Status is one of {', '.join(STATUS_BUCKETS + EXACT_STATUSES)}; not {status!r}",
                    p,
                )
        elif name == "WorkflowId" and p.op == "starts_with":
            _prefix(self.f, self.strings(p, "keyword"))
        elif name in _SYSTEM_COLUMNS:
            self.only(p, ("=", "starts_with") if name == "WorkflowId" else ("=",), "keyword")
            _set(self.f, _SYSTEM_COLUMNS[name], self.strings(p, "keyword"))
        elif name in self.types:
            self.add_custom(p, self.types[name])
        else:
            raise self.refuse(f"Unknown search attribute {name!r}", p)

    def add_custom(self, p: Predicate, kind: str) -> None:
        name = p.attribute
        contains = self.f.contains
        if kind in ("keyword", "text"):
            self.only(p, ("=",), kind)
            value: Value = self.strings(p, kind)
            if name in contains and contains[name] != value:
                raise _Empty
            contains[name] = value
        elif kind == "bool":
            self.only(p, ("=",), kind)
            (value,) = p.values
            if not isinstance(value, bool):
                raise self.refuse(f"{name} is bool; {value!r} is not true or false", p)
            if name in contains and contains[name] != value:
                raise _Empty
            contains[name] = value
        elif kind == "keyword_list":
            self.only(p, ("=",), kind)
            member = self.strings(p, kind)
            contains.setdefault(name, [])
            if member not in contains[name]:
                contains[name].append(member)
        else:  # int, double, datetime
            self.only(p, _RANGE_OPS, kind)
            if name not in self.ranges:
                if len(self.ranges) == store.MAX_RANGE_ATTRIBUTES:
                    raise self.refuse(
                        f"A list may compare at most {store.MAX_RANGE_ATTRIBUTES} number or"
                        " datetime search attributes",
                        p,
                    )
                self.ranges[name] = store.RangeFilter(key=name)
            r = self.ranges[name]
            if kind == "datetime":
                _range(r.time, p, self.times(p))
            else:
                _range(r.double, p, self.numbers(p, kind))

    def order(self, q: VisibilityQuery) -> None:
        if q.order_by is None or q.order_position is None:
            return
        name, descending = q.order_by
        position = q.order_position[0]
        if name not in SYSTEM_ATTRIBUTES and name not in self.types:
            raise refuse(f"Unknown search attribute {name!r}", self.text, position)
        if name != "StartTime" or not descending:
            raise refuse("Only ORDER BY StartTime DESC is supported", self.text, position)


def _custom_names(q: VisibilityQuery) -> set[str]:
    names = {p.attribute for p in q.predicates}
    if q.order_by is not None:
        names.add(q.order_by[0])
    return names - set(SYSTEM_ATTRIBUTES)


async def compile_filter(conn: Conn, req: ListRequest) -> store.Filter:
    """The store filter for ``req``.

    Raises:
        InvalidVisibilityQueryError: a malformed query, an unknown attribute, a
            value of the wrong type or an operator the attribute does not take.
        _Empty: the filters contradict each other.
    """
    text = req.query
    q = VisibilityQuery()
    substring = None
    if text is not None and text.strip():
        if looks_like_visibility_query(text):
            q = parse(text)
        else:
            substring = text
    custom = _custom_names(q)
    types = await registry.types_of(conn, req.namespace, sorted(custom)) if custom else {}
    c = _Compiler(text or "", types)
    f = c.f
    f.substring = substring
    f.archived = req.archived
    if req.status is not None:
        _set(f, "status_bucket" if req.status in STATUS_BUCKETS else "status", req.status)
    _set(f, "workflow_type", req.workflow_type)
    _set(f, "task_queue", req.task_queue)
    if req.workflow_id_prefix is not None:
        _prefix(f, req.workflow_id_prefix)
    if req.started_after is not None:
        _bound(f.started, ">", req.started_after)
    if req.started_before is not None:
        _bound(f.started, "<", req.started_before)
    if req.closed_after is not None:
        _bound(f.closed, ">", req.closed_after)
    if req.closed_before is not None:
        _bound(f.closed, "<", req.closed_before)
    for p in q.predicates:
        c.add(p)
    c.order(q)
    f.ranges = list(c.ranges.values())
    return f


async def list_workflows(conn: Conn, req: ListRequest) -> list[ListedRun]:
    """One page (``req.limit`` rows at most) of the runs matching ``req``, newest first."""
    try:
        f = await compile_filter(conn, req)
    except _Empty:
        return []
    return await store.list_page(conn, req.namespace, f, after=req.after, limit=req.limit)
