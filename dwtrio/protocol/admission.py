"""Task-queue admission caps: what is configured, per queue and task kind.

Operators cap how much work the server hands out, separately for workflow and
activity tasks (schedules-and-admission.md §2): active leases per queue and per
namespace, dispatches per minute per queue, per namespace and per budget group
(a name queues share within a namespace). Global defaults come from the
``DW_*_MAX_*`` settings; ``DW_TASK_QUEUE_ADMISSION_OVERRIDES`` refines them per
queue. This module turns both into a :class:`QueueCaps` for one
``(namespace, task_queue, kind)``; enforcing them at claim time is
``engine/admission.py``.

Override lookup is per field: the keys ``"<ns>:<queue>"``, ``"<ns>:*"``,
``"<queue>"`` and ``"*"`` are tried in that order, and the first whose entry for
the task kind has the field decides. A positive integer sets the cap; ``0``, a
negative number or a non-number removes it (even when a global default is set);
JSON ``null`` keeps the global default and stops the search.

Two things differ from the reference on purpose: a global cap that is not an
integer, and overrides that are not a JSON object of objects, fail the boot
with the variable named (the reference ignores them silently, which leaves a
typo uncapped without a word).
"""

from __future__ import annotations

import json
from typing import Any

import attrs

KINDS = ("workflow", "activity")
#: The overrides' section for each task kind.
SECTION = {"workflow": "workflow_tasks", "activity": "activity_tasks"}

#: Cap fields of an override entry, with the aliases the reference accepts.
_FIELDS = {
    "max_active_leases_per_queue": ("max_active_leases", "max_active_leases_per_queue"),
    "max_active_leases_per_namespace": ("max_active_leases_per_namespace",),
    "max_dispatches_per_minute": ("max_dispatches_per_minute",),
    "max_dispatches_per_minute_per_namespace": ("max_dispatches_per_minute_per_namespace",),
    "max_dispatches_per_minute_per_budget_group": ("max_dispatches_per_minute_per_budget_group",),
}
_GROUP_FIELDS = ("dispatch_budget_group", "budget_group")
_MISSING = object()


@attrs.frozen
class Cap:
    """One cap: its limit and where it was configured (``budget_source``)."""

    limit: int
    source: str


@attrs.frozen(kw_only=True)
class QueueCaps:
    """The caps that apply to one (namespace, queue, kind); None = no cap."""

    namespace: str
    task_queue: str
    kind: str
    leases_per_queue: Cap | None = None
    leases_per_namespace: Cap | None = None
    dispatches_per_minute: Cap | None = None
    dispatches_per_minute_per_namespace: Cap | None = None
    budget_group: str | None = None
    dispatches_per_minute_per_group: Cap | None = None

    @property
    def any(self) -> bool:
        """Whether any cap is set (a claim then takes the admission path)."""
        return bool(self.sources())

    @property
    def counts_dispatches(self) -> bool:
        return (
            self.dispatches_per_minute is not None
            or self.dispatches_per_minute_per_namespace is not None
            or self.dispatches_per_minute_per_group is not None
        )

    def sources(self) -> list[str]:
        caps = (
            self.leases_per_queue,
            self.leases_per_namespace,
            self.dispatches_per_minute,
            self.dispatches_per_minute_per_namespace,
            self.dispatches_per_minute_per_group,
        )
        found: list[str] = []
        for cap in caps:
            if cap is not None and cap.source not in found:
                found.append(cap.source)
        return found

    # Scopes: the names of the advisory lock and the dispatch counters.
    @property
    def queue_scope(self) -> str:
        return f"queue:{self.namespace}:{self.kind}:{self.task_queue}"

    @property
    def namespace_scope(self) -> str:
        return f"namespace:{self.namespace}:{self.kind}"

    @property
    def group_scope(self) -> str | None:
        if self.budget_group is None:
            return None
        return f"group:{self.namespace}:{self.kind}:{self.budget_group}"

    @property
    def lock_scope(self) -> str:
        """The one lock a claim takes: the widest scope any of its caps spans, so
        every claim that could move the same count waits for the same lock."""
        if self.leases_per_namespace is not None or (
            self.dispatches_per_minute_per_namespace is not None
        ):
            return self.namespace_scope
        if self.dispatches_per_minute_per_group is not None and self.group_scope is not None:
            return self.group_scope
        return self.queue_scope


@attrs.frozen
class Throttled:
    """A claim that did not happen because a cap is reached; the poll keeps waiting
    and looks again after ``retry_after_s`` (or when woken)."""

    retry_after_s: float


@attrs.frozen
class Blocked:
    """A claim refused because the worker's build-id cohort is draining: the poll
    leaves the queue's line and answers empty at its deadline."""


BLOCKED = Blocked()


def global_source(kind: str, field: str) -> str:
    return f"server.admission.{SECTION[kind]}.{field}"


OVERRIDE_SOURCE = "server.admission.queue_overrides"


def parse_overrides(raw: str | None) -> dict[str, dict[str, dict[str, Any]]]:
    """``DW_TASK_QUEUE_ADMISSION_OVERRIDES`` as a dict; raises ValueError when it is
    not a JSON object whose values are objects of ``workflow_tasks`` /
    ``activity_tasks`` objects."""
    if raw is None or raw.strip() == "":
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object keyed by queue pattern")
    for key, entry in data.items():
        if not isinstance(entry, dict):
            raise ValueError(f"entry {key!r} must be an object")
        for section, fields in entry.items():
            if section not in ("workflow_tasks", "activity_tasks"):
                raise ValueError(
                    f"entry {key!r}: {section!r} is not workflow_tasks or activity_tasks"
                )
            if not isinstance(fields, dict):
                raise ValueError(f"entry {key!r}: {section} must be an object")
    return data


def _positive(value: Any) -> int | None:
    """A cap value: a positive integer, else no cap (0, negatives, non-numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if value >= 1 else None


@attrs.frozen
class AdmissionPolicy:
    """Global caps per kind and field, plus the overrides; :meth:`caps` resolves them."""

    #: {kind: {field: limit}} from the DW_* settings (positive values only).
    defaults: dict[str, dict[str, int]]
    overrides: dict[str, dict[str, dict[str, Any]]]
    _cache: dict[tuple[str, str, str], QueueCaps | None] = attrs.field(factory=dict, eq=False)

    def _lookup(self, namespace: str, task_queue: str, kind: str, names: tuple[str, ...]) -> Any:
        for key in (f"{namespace}:{task_queue}", f"{namespace}:*", task_queue, "*"):
            entry = self.overrides.get(key)
            if entry is None:
                continue
            fields = entry.get(SECTION[kind])
            if not isinstance(fields, dict):
                continue
            for name in names:
                if name in fields:
                    return fields[name]
        return _MISSING

    def caps(self, namespace: str, task_queue: str, kind: str) -> QueueCaps | None:
        """The caps of one queue and kind, or None when nothing caps it (the
        common case: the claim then takes no lock at all). Resolved once per queue."""
        key = (namespace, task_queue, kind)
        if key in self._cache:
            return self._cache[key]
        caps: QueueCaps | None = None
        if kind in SECTION:
            resolved = self._resolve(namespace, task_queue, kind)
            caps = resolved if resolved.any else None
        if len(self._cache) < 100_000:
            self._cache[key] = caps
        return caps

    def budget(self, namespace: str, task_queue: str, kind: str) -> QueueCaps:
        """Like :meth:`caps`, but an uncapped queue gets an all-None record."""
        return self.caps(namespace, task_queue, kind) or QueueCaps(
            namespace=namespace, task_queue=task_queue, kind=kind
        )

    def _resolve(self, namespace: str, task_queue: str, kind: str) -> QueueCaps:
        values: dict[str, Cap | None] = {}
        for field, names in _FIELDS.items():
            found = self._lookup(namespace, task_queue, kind, names)
            cap: Cap | None = None
            if found is _MISSING or found is None:
                limit = self.defaults.get(kind, {}).get(field)
                if limit is not None and field != "max_dispatches_per_minute_per_budget_group":
                    cap = Cap(limit, global_source(kind, field))
            else:
                limit = _positive(found)
                if limit is not None:
                    cap = Cap(limit, OVERRIDE_SOURCE)
            values[field] = cap
        group = self._lookup(namespace, task_queue, kind, _GROUP_FIELDS)
        group_name = group.strip() if isinstance(group, str) and group.strip() else None
        return QueueCaps(
            namespace=namespace,
            task_queue=task_queue,
            kind=kind,
            leases_per_queue=values["max_active_leases_per_queue"],
            leases_per_namespace=values["max_active_leases_per_namespace"],
            dispatches_per_minute=values["max_dispatches_per_minute"],
            dispatches_per_minute_per_namespace=values["max_dispatches_per_minute_per_namespace"],
            budget_group=group_name,
            dispatches_per_minute_per_group=(
                values["max_dispatches_per_minute_per_budget_group"] if group_name else None
            ),
        )
