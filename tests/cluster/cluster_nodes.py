"""Two dwtrio nodes on one database, the setup every cluster test starts from."""

from __future__ import annotations

from typing import Any

from conftest import RunningServer, StartServer, free_port

TOKEN = "t"


def dead_redis_url() -> str:
    """A Redis URL nothing listens on: wakes are lost, only the periodic recheck delivers."""
    return f"redis://127.0.0.1:{free_port()}/0"


async def start_two_nodes(
    start_server: StartServer, redis_url: str | None, *, poll_interval_ms: int, **settings: Any
) -> tuple[RunningServer, RunningServer]:
    """Two nodes sharing one legacy token, one Redis URL (or none) and the recheck
    cadence, and any other ``settings``."""
    common = {
        "admin_token": None,
        "auth_token": TOKEN,
        "redis_url": redis_url,
        "worker_poll_interval_ms": poll_interval_ms,
        **settings,
    }
    return await start_server(**common), await start_server(**common)
