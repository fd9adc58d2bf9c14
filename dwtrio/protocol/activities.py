"""Request models of the standalone-activity routes (``/api/activities``; docs/standalone-activities.md).

A standalone activity is an activity started by a client rather than by a
workflow. The server records it in a host run of its own, whose workflow type
is :data:`HOST_WORKFLOW_TYPE`, so that the activity machinery (dispatch,
retries, deadlines, cancellation, history) serves it unchanged. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from dwtrio.protocol.commands import ActivitySeconds, RetryPolicy
from dwtrio.protocol.validators import between, matches, max_length, not_blank, one_of
from dwtrio.protocol.workflows import (
    LIST_PAGE_SIZE_DEFAULT,
    LIST_PAGE_SIZE_MAX,
    LIST_STATUS_BUCKETS,
    WORKFLOW_ID_MAX_LENGTH,
    WORKFLOW_ID_PATTERN,
    no_nul,
)

#: The workflow type of every host run (the reference's key; it lists and shows
#: host runs by it). No workflow code stands behind it: no workflow task is ever
#: created for such a run.
HOST_WORKFLOW_TYPE: Final = "dw.standalone_activity"


def _empty_to_none(value: Any) -> Any:
    return None if value == "" else value


@attrs.frozen(kw_only=True)
class StartActivity:
    """``POST /api/activities``. Unknown fields are ignored, as on a workflow start."""

    activity_type: str = attrs.field(validator=[not_blank, max_length(255), no_nul])
    activity_id: str | None = attrs.field(
        default=None,
        converter=_empty_to_none,
        validator=[
            max_length(WORKFLOW_ID_MAX_LENGTH),
            matches(WORKFLOW_ID_PATTERN, "may only contain letters, digits, '.', '_', ':' and '-'"),
        ],
    )
    #: A free label shown by describe and list; it does not affect dispatch.
    activity_class: str | None = attrs.field(
        default=None, converter=_empty_to_none, validator=[max_length(255), no_nul]
    )
    task_queue: str | None = attrs.field(
        default=None, converter=_empty_to_none, validator=[max_length(255), no_nul]
    )
    #: A JSON array or a payload envelope; converted by ``dwtrio.payloads.start_input``.
    input: Any = None
    business_key: str | None = attrs.field(
        default=None, converter=_empty_to_none, validator=[max_length(255), no_nul]
    )
    retry_policy: RetryPolicy | None = attrs.field(default=None, validator=no_nul)
    start_to_close_timeout_seconds: ActivitySeconds | None = None
    schedule_to_start_timeout_seconds: ActivitySeconds | None = None
    schedule_to_close_timeout_seconds: ActivitySeconds | None = None
    heartbeat_timeout_seconds: ActivitySeconds | None = None


@attrs.frozen(kw_only=True)
class ListActivities:
    """``GET /api/activities`` query parameters (page_size already an int)."""

    status: str | None = attrs.field(default=None, validator=one_of(LIST_STATUS_BUCKETS))
    page_size: int = attrs.field(
        default=LIST_PAGE_SIZE_DEFAULT, validator=between(1, LIST_PAGE_SIZE_MAX)
    )
    next_page_token: str | None = attrs.field(default=None, validator=no_nul)
