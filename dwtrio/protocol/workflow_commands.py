"""Request models of the workflow command routes: signal, cancel, terminate (control-plane.md §5.6-§5.10).

Pure: no I/O and no payload codec; ``input`` is converted by
``dwtrio.payloads.start_input`` in the HTTP layer.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from dwtrio.protocol.validators import max_length
from dwtrio.protocol.workflows import no_nul

REQUEST_ID_MAX_LENGTH: Final = 255
REASON_MAX_LENGTH: Final = 1000
#: DW_MAX_OPERATION_NAME_LENGTH of the reference, in bytes.
OPERATION_NAME_MAX_BYTES: Final = 256


def _empty_to_none(value: Any) -> Any:
    return None if value == "" else value


@attrs.frozen(kw_only=True)
class SignalWorkflow:
    """``POST /api/workflows/{wf}[/runs/{run}]/signal/{name}``; unknown fields are ignored."""

    #: A JSON array or a payload envelope; absent means no arguments.
    input: Any = None
    request_id: str | None = attrs.field(
        default=None,
        converter=_empty_to_none,
        validator=[max_length(REQUEST_ID_MAX_LENGTH), no_nul],
    )


@attrs.frozen(kw_only=True)
class CloseWorkflow:
    """``POST /api/workflows/{wf}[/runs/{run}]/cancel`` and ``.../terminate``.

    An explicit ``"reason": null`` means the same as no reason.
    """

    reason: str | None = attrs.field(
        default=None, validator=[max_length(REASON_MAX_LENGTH), no_nul]
    )
    request_id: str | None = attrs.field(
        default=None,
        converter=_empty_to_none,
        validator=[max_length(REQUEST_ID_MAX_LENGTH), no_nul],
    )


@attrs.frozen(kw_only=True)
class RepairWorkflow:
    """``POST /api/workflows/{wf}[/runs/{run}]/repair``; unknown fields are ignored.

    (Archive's body, ``reason`` and ``request_id``, is :class:`CloseWorkflow`'s.)
    """

    request_id: str | None = attrs.field(
        default=None,
        converter=_empty_to_none,
        validator=[max_length(REQUEST_ID_MAX_LENGTH), no_nul],
    )


@attrs.frozen(kw_only=True)
class RedriveWorkflow:
    """``POST /api/workflows/{wf}/runs/{run}/redrive``; unknown fields are ignored."""

    request_id: str | None = attrs.field(
        default=None,
        converter=_empty_to_none,
        validator=[max_length(REQUEST_ID_MAX_LENGTH), no_nul],
    )


def operation_name_errors(name: str, field: str) -> dict[str, list[str]]:
    """The §5.6 checks on a signal/query/update name taken from the path."""
    label = field.replace("_", " ")
    if not name:
        return {field: [f"The {label} field is required."]}
    if len(name.encode()) > OPERATION_NAME_MAX_BYTES:
        return {field: [f"The {label} may not be greater than {OPERATION_NAME_MAX_BYTES} bytes."]}
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return {field: [f"The {label} may not contain control characters."]}
    return {}
