"""Worker-plane JSON responses: every body carries the protocol version and capabilities."""

from __future__ import annotations

from typing import Any

from quart import Response

from dwtrio.http.envelope import json_response, worker_body
from dwtrio.runtime import Runtime


def worker_json(rt: Runtime, payload: dict[str, Any], status: int = 200) -> Response:
    return json_response(
        worker_body(payload, rt.settings.worker_protocol_version, rt.worker_capabilities), status
    )
