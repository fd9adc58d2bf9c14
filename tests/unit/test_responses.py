"""Response models render in declared order, leaving out exactly the fields set to OMIT."""

from __future__ import annotations

import orjson

from dwtrio import wire
from dwtrio.protocol.responses import OMIT, ActivityReport, StartResponse, render


def start(**overrides: object) -> StartResponse:
    fields: dict[str, object] = {
        "workflow_id": "wf",
        "run_id": "r",
        "workflow_type": "greeter",
        "namespace": "default",
        "status": "pending",
        "business_key": None,
        "payload_codec": "avro",
        "outcome": "started_new",
        "reason": None,
        "rejection_reason": None,
        "command_status": "accepted",
        "command_source": "control_plane",
        **overrides,
    }
    return StartResponse(**fields)  # type: ignore[arg-type]


def test_nulls_are_rendered_and_omitted_fields_left_out() -> None:
    body = render(start())
    assert body["business_key"] is None and body["reason"] is None
    assert "message" not in body
    assert list(body)[:3] == ["workflow_id", "run_id", "workflow_type"]
    assert list(render(start(message="already started")))[-1] == "message"


def test_the_bytes_follow_the_declared_order() -> None:
    report = ActivityReport(
        task_id="t",
        activity_attempt_id="a",
        outcome="retry_scheduled",
        recorded=True,
        reason=None,
        retry_available_at="2026-01-01T00:00:00.000000Z",
        next_task_id=None,
    )
    assert wire.dumps(render(report)) == orjson.dumps(
        {
            "task_id": "t",
            "activity_attempt_id": "a",
            "outcome": "retry_scheduled",
            "recorded": True,
            "reason": None,
            "retry_available_at": "2026-01-01T00:00:00.000000Z",
            "next_task_id": None,
        }
    )
    without = ActivityReport(
        task_id="t",
        activity_attempt_id="a",
        outcome="completed",
        recorded=True,
        reason=None,
        next_task_id="n",
    )
    assert "retry_available_at" not in render(without)
    assert OMIT is not None and not OMIT


def test_a_dict_body_renders_as_it_is() -> None:
    body = {"b": 1, "a": 2}
    assert render(body) is body
