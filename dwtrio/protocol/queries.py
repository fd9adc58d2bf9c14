"""Request models of queries: the control-plane query and the worker's query-task answers.

Contract: control-plane.md §5.8, worker-plane.md §10. Unknown keys are ignored.
"""

from __future__ import annotations

from typing import Any

import attrs

from dwtrio.protocol.validators import between, max_length, not_blank


@attrs.frozen(kw_only=True)
class QueryWorkflow:
    """``POST /api/workflows/{wf}[/runs/{run}]/query/{name}``."""

    #: A JSON array or a payload envelope; absent means no arguments.
    input: Any = None


@attrs.frozen(kw_only=True)
class QueryTaskLease:
    lease_owner: str = attrs.field(validator=[not_blank, max_length(191)])
    query_task_attempt: int = attrs.field(validator=between(1))


@attrs.frozen(kw_only=True)
class CompleteQueryTask(QueryTaskLease):
    #: The raw value as JSON; informational (``result_envelope`` is authoritative).
    result: Any = None
    result_envelope: Any = None


@attrs.frozen(kw_only=True)
class FailQueryTask(QueryTaskLease):
    failure: dict[str, Any] = attrs.field(factory=dict)
