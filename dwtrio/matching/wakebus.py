"""The wake bus: how "a task is ready on this queue" reaches parked pollers.

Postgres is the source of truth; the bus only makes wakes fast. A lost wake
delays a task until the poller's periodic recheck, never loses it.

``LocalWakeBus`` wakes pollers in this process only. A cross-process bus
(Redis pub/sub) implements the same protocol and also delivers remote wakes
into the local ``WaiterSet``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import attrs

from dwtrio.engine.outcome import QueueKey
from dwtrio.matching.waiters import WaiterSet


class WakeBus(Protocol):
    name: str

    def publish(self, keys: Iterable[QueueKey]) -> None:
        """Wake pollers of each queue (here and, for shared buses, on other nodes)."""

    def health(self) -> dict[str, str]:
        """The readiness ``cache`` check for this bus."""


@attrs.define
class LocalWakeBus:
    waiters: WaiterSet
    name: str = "in_process"

    def publish(self, keys: Iterable[QueueKey]) -> None:
        for key in keys:
            self.waiters.wake(key)

    def health(self) -> dict[str, str]:
        return {"status": "ok", "store": self.name}
