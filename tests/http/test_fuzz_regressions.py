"""What the OpenAPI fuzz run (test_openapi_fuzz.py) found, one test per finding."""

from __future__ import annotations

from tests.conftest import CP, RunningServer


async def test_schedule_list_refusals_carry_the_field_map(server: RunningServer) -> None:
    """A 422 (and the 400s) of GET /api/schedules name the field and carry errors and
    validation_errors, like every other field refusal; they carried only ``field``."""
    async with server.client() as c:
        cases = [
            ({"query": "Status = 'active'"}, 422, "unsupported_schedule_list_filter", "query"),
            (
                {"next_page_token": "@@junk"},
                400,
                "malformed_schedule_page_token",
                "next_page_token",
            ),
        ]
        for params, status, reason, field in cases:
            r = await c.get("/api/schedules", params=params, headers=CP)
            body = r.json()
            assert (r.status_code, body["reason"], body["field"]) == (status, reason, field)
            assert body["errors"] == body["validation_errors"] == {field: [body["message"]]}
