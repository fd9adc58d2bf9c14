"""The wake bus: how "a task is ready on this queue" reaches parked pollers.

Postgres is the source of truth; the bus only makes wakes fast. A lost wake
delays a task until the poller's periodic recheck (``DW_WORKER_POLL_INTERVAL_MS``),
never loses it.

* ``LocalWakeBus`` wakes pollers in this process only.
* ``RedisWakeBus`` also carries wakes to every other process and node through
  Redis pub/sub (channel ``dwtrio:v1:wake``). Local pollers are woken directly,
  without a Redis round trip; messages a node published itself are ignored when
  they come back. If Redis is down, publishing and subscribing back off and
  retry; wakes from other nodes then arrive through the periodic recheck.

This module and ``store/pool.py`` are the only ones that touch asyncio: the
Redis client runs on the asyncio side of the trio-asyncio bridge, and the
subscriber hands each message to Trio with a plain synchronous call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable
from typing import Any, Protocol

import attrs
import redis.asyncio as aioredis
import trio
import trio_asyncio

from dwtrio import metrics
from dwtrio.matching.waiters import QueueKey, WaiterSet

log = logging.getLogger(__name__)

CHANNEL = "dwtrio:v1:wake"
SEP = "\x1f"
PUBLISH_QUEUE = 10_000
#: Reconnection attempts start this soon after a failure and double up to BACKOFF_MAX_S;
#: a successful connection starts the next outage from the beginning again.
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
#: Longest a connection may take to close: a shutdown never waits on a half-dead socket.
CLOSE_TIMEOUT_S = 2.0


class WakeBus(Protocol):
    name: str

    def publish(self, keys: Iterable[QueueKey]) -> None:
        """Wake pollers of each queue (here and, for shared buses, on other nodes)."""

    def health(self) -> dict[str, Any]:
        """The readiness ``cache`` check for this bus."""

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Background work of the bus (under the supervisor nursery)."""


@attrs.define
class LocalWakeBus:
    waiters: WaiterSet
    name: str = "in_process"

    def publish(self, keys: Iterable[QueueKey]) -> None:
        for key in keys:
            self.waiters.wake(key)

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "store": self.name}

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()


def encode_message(origin: str, key: QueueKey) -> str:
    return SEP.join((origin, *key))


def decode_message(data: bytes | str) -> tuple[str, QueueKey] | None:
    text = data.decode() if isinstance(data, bytes) else data
    parts = text.split(SEP)
    if len(parts) != 4:
        return None
    return parts[0], (parts[1], parts[2], parts[3])


@attrs.define
class RedisWakeBus:
    waiters: WaiterSet
    url: str
    name: str = "redis"
    origin: str = attrs.field(factory=lambda: uuid.uuid4().hex)
    connected: bool = False
    last_error: str | None = None
    published: int = 0
    received: int = 0
    dropped: int = 0
    backoff_max_s: float = BACKOFF_MAX_S
    _subscribe_backoff_s: float = attrs.field(default=BACKOFF_MIN_S, init=False)
    _send: trio.MemorySendChannel[list[QueueKey]] = attrs.field(init=False)
    _recv: trio.MemoryReceiveChannel[list[QueueKey]] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._send, self._recv = trio.open_memory_channel(PUBLISH_QUEUE)
        metrics.WAKE_BUS_DEGRADED.set(0 if self.connected else 1)  # connecting

    def publish(self, keys: Iterable[QueueKey]) -> None:
        batch = list(keys)
        for key in batch:
            self.waiters.wake(key)  # local pollers need no round trip
        try:
            self._send.send_nowait(batch)
        except trio.WouldBlock:
            self.dropped += 1  # remote pollers will find the task on their recheck
            metrics.WAKE_BUS_DROPPED.inc()

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": "ok", "store": self.name}
        if not self.connected:
            # Redis only speeds wakes up: without it the server is still correct,
            # so readiness stays ok and says it is degraded.
            body.update(degraded=True, message=self.last_error or "connecting")
        return body

    def _failed(self, what: str, exc: BaseException) -> None:
        if self.connected or self.last_error is None:
            log.warning("wake bus: %s failed (%s); falling back to rechecks", what, exc)
        self.connected = False
        self.last_error = f"{what}: {exc}"
        metrics.WAKE_BUS_DEGRADED.set(1)

    def _subscribed(self) -> None:
        """The subscription is live: say so once after an outage, and let the next
        outage retry quickly again."""
        if self.last_error is not None:
            log.warning("wake bus: reconnected to Redis; wakes travel between nodes again")
        self.connected, self.last_error = True, None
        metrics.WAKE_BUS_DEGRADED.set(0)
        self._subscribe_backoff_s = BACKOFF_MIN_S

    # --- asyncio side --------------------------------------------------------------
    async def _publish_batch(self, client: Any, messages: list[str]) -> None:
        async with client.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.publish(CHANNEL, message)
            await pipe.execute()

    async def _subscribe_forever(self) -> None:
        client = aioredis.from_url(self.url, socket_connect_timeout=2)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CHANNEL)
            self._subscribed()
            while True:
                message = await pubsub.get_message(timeout=5.0)
                if message is None:
                    await client.ping()  # notice a dead connection even when idle
                    continue
                decoded = decode_message(message["data"])
                if decoded is None or decoded[0] == self.origin:
                    continue
                self.received += 1
                metrics.WAKE_BUS_RECEIVED.inc()
                self.waiters.wake(decoded[1])  # synchronous hand-off to Trio
        finally:
            # Also runs when the task is cancelled mid-read (shutdown), with the
            # connection in any state: bounded, so the cancellation always completes.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 7
                    await client.aclose()

    # --- trio side -----------------------------------------------------------------
    async def _publisher(self) -> None:
        client = await trio_asyncio.aio_as_trio(self._client)()
        try:
            backoff = BACKOFF_MIN_S
            while True:
                batch = await self._recv.receive()
                while True:  # coalesce whatever else is queued into one pipeline
                    try:
                        batch.extend(self._recv.receive_nowait())
                    except trio.WouldBlock:
                        break
                messages = [encode_message(self.origin, k) for k in dict.fromkeys(batch)]
                try:
                    await trio_asyncio.aio_as_trio(self._publish_batch)(client, messages)
                    self.published += len(messages)
                    metrics.WAKE_BUS_PUBLISHED.inc(len(messages))
                    backoff = BACKOFF_MIN_S
                except (OSError, aioredis.RedisError) as exc:
                    self._failed("publish", exc)
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, self.backoff_max_s)
        finally:
            # Close the pool on the way out, shielded from the shutdown's cancellation
            # but bounded: a shielded wait without a deadline could hang the shutdown.
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
                await trio_asyncio.aio_as_trio(client.aclose)()

    async def _client(self) -> Any:
        return aioredis.from_url(self.url, socket_connect_timeout=2, socket_timeout=2)

    async def _subscriber(self) -> None:
        while True:
            try:
                await trio_asyncio.aio_as_trio(self._subscribe_forever)()
            except (OSError, aioredis.RedisError) as exc:
                self._failed("subscribe", exc)
            await trio.sleep(self._subscribe_backoff_s)
            self._subscribe_backoff_s = min(self._subscribe_backoff_s * 2, self.backoff_max_s)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._publisher)
            nursery.start_soon(self._subscriber)
            task_status.started()


def make_wake_bus(waiters: WaiterSet, redis_url: str | None) -> WakeBus:
    return RedisWakeBus(waiters, redis_url) if redis_url else LocalWakeBus(waiters)
