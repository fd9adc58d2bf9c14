"""The two clients HTTP tests drive a dwtrio with, and the calls several test modules share.

Each test module subclasses :class:`Clients` with the calls its feature needs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self

import attrs
import httpx

from conftest import CP, WP, RunningServer, StartServer


@attrs.define
class Clients:
    """A dwtrio with one legacy shared token, a worker-plane and a control-plane client."""

    server: RunningServer
    wc: httpx.AsyncClient
    cc: httpx.AsyncClient

    @classmethod
    @asynccontextmanager
    async def open(
        cls, start_server: StartServer, token: str, **settings: Any
    ) -> AsyncIterator[Self]:
        server = await start_server(admin_token=None, auth_token=token, **settings)
        async with cls.open_on(server, token) as clients:
            yield clients

    @classmethod
    @asynccontextmanager
    async def open_on(cls, server: RunningServer, token: str) -> AsyncIterator[Self]:
        """The two clients of a server already running (one node of several)."""
        async with server.client(token, **WP) as wc, server.client(token, **CP) as cc:
            yield cls(server, wc, cc)

    async def start_workflow(
        self, workflow_id: str, workflow_type: str, task_queue: str, input: list[Any]
    ) -> dict[str, Any]:
        """``POST /api/workflows`` for a new id; expects 201 and returns the body."""
        r = await self.cc.post(
            "/api/workflows",
            json={
                "workflow_id": workflow_id,
                "workflow_type": workflow_type,
                "task_queue": task_queue,
                "input": input,
            },
        )
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    async def complete(
        self, task: dict[str, Any], commands: list[dict[str, Any]], status: int = 200
    ) -> dict[str, Any]:
        """Complete a leased workflow task with ``commands``; expect ``status``."""
        r = await self.wc.post(
            f"/api/worker/workflow-tasks/{task['task_id']}/complete",
            json={
                "lease_owner": task["lease_owner"],
                "workflow_task_attempt": task["workflow_task_attempt"],
                "commands": commands,
            },
        )
        assert r.status_code == status, r.text
        return r.json()  # type: ignore[no-any-return]

    async def history(self, workflow_id: str, run_id: str) -> list[dict[str, Any]]:
        """A run's whole history, checked to be gapless from sequence 1."""
        r = await self.cc.get(
            f"/api/workflows/{workflow_id}/runs/{run_id}/history", params={"page_size": 1000}
        )
        assert r.status_code == 200, r.text
        events: list[dict[str, Any]] = r.json()["events"]
        assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
        return events

    async def describe(self, workflow_id: str) -> dict[str, Any]:
        r = await self.cc.get(f"/api/workflows/{workflow_id}")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]
