"""Request model of the update route (control-plane.md §5.9). Unknown fields are ignored."""

from __future__ import annotations

from typing import Any, Final

import attrs

from dwtrio.protocol.validators import between, max_length, one_of
from dwtrio.protocol.workflows import no_nul

WAIT_STAGES: Final = ("accepted", "completed")
REQUEST_ID_MAX_LENGTH: Final = 255


def _empty_to_none(value: Any) -> Any:
    return None if value == "" else value


@attrs.frozen(kw_only=True)
class UpdateWorkflow:
    """``POST /api/workflows/{wf}[/runs/{run}]/update/{name}``."""

    #: A JSON array or a payload envelope; absent means no arguments.
    input: Any = None
    request_id: str | None = attrs.field(
        default=None,
        converter=_empty_to_none,
        validator=[max_length(REQUEST_ID_MAX_LENGTH), no_nul],
    )
    #: The HTTP default is ``accepted``.
    wait_for: str = attrs.field(default="accepted", validator=one_of(WAIT_STAGES))
    wait_timeout_seconds: int | None = attrs.field(default=None, validator=between(1))


def rejected_field_errors(body: Any) -> dict[str, list[str]]:
    """Fields an update body must not carry (``wait_policy`` was renamed ``wait_for``)."""
    if isinstance(body, dict) and "wait_policy" in body:
        return {"wait_policy": ["The wait_policy field is not supported; use wait_for."]}
    return {}
