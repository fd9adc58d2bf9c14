"""The wake bus: how "a task is ready on this queue" reaches parked pollers.

Postgres is the source of truth; the bus only makes wakes fast. A lost wake
delays a task until the poller's periodic recheck (``DW_WORKER_POLL_INTERVAL_MS``),
never loses it.

* ``LocalWakeBus`` wakes pollers in this process only.
* ``RedisWakeBus`` also carries wakes to every other process and node through
  Redis pub/sub (channel ``dwtrio:v1:wake``).
* ``PostgresWakeBus`` does the same without Redis, through LISTEN/NOTIFY on the
  database every node already shares (channel ``dwtrio_v1_wake``), on one
  connection of its own per process (``store/notify.py``).

``DW_WAKE_BUS`` picks one (``Settings.wake_bus_kind``). With either shared bus,
local pollers are woken directly, without a round trip, and messages a process
published itself are ignored when they come back. If Redis or the database
connection is down, the bus marks itself degraded, backs off and retries; wakes
from other nodes then arrive through the periodic recheck.

This module, ``store/pool.py`` and ``store/notify.py`` are the only ones that
touch asyncio: the Redis client runs on the asyncio loop of ``store/bridge.py``
(a thread of its own), and the subscriber hands each message to the Trio
thread with ``bridge.to_trio`` (the LISTEN connection's notifications arrive
the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Protocol

import attrs
import orjson
import redis.asyncio as aioredis
import trio

from dwtrio import metrics
from dwtrio.errors import StoreUnavailableError
from dwtrio.matching.waiters import QueueKey, WaiterSet
from dwtrio.store import bridge
from dwtrio.store.notify import MAX_PAYLOAD_BYTES, Listener

log = logging.getLogger(__name__)

CHANNEL = "dwtrio:v1:wake"
#: The Postgres bus's channel. NOTIFY channels belong to one database, so deployments on
#: separate databases of one server never hear each other.
PG_CHANNEL = "dwtrio_v1_wake"
SEP = "\x1f"
PUBLISH_QUEUE = 10_000
#: Reconnection attempts start this soon after a failure and double up to BACKOFF_MAX_S;
#: a successful connection starts the next outage from the beginning again.
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
#: Longest a connection may take to close: a shutdown never waits on a half-dead socket.
CLOSE_TIMEOUT_S = 2.0
#: An idle Postgres bus sends a round trip this often, to notice a connection that died
#: without a word (a network partition, a host gone).
KEEPALIVE_S = 5.0


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


@attrs.define
class SharedWakeBus:
    """What the buses between processes share: pollers of this process are woken at
    once, the rest of each batch waits in a queue for the bus's connection, and while
    that connection is down the bus says it is degraded (readiness, metrics, one log
    line per outage)."""

    waiters: WaiterSet
    connected: bool = attrs.field(default=False, kw_only=True)
    last_error: str | None = attrs.field(default=None, kw_only=True)
    published: int = attrs.field(default=0, kw_only=True)
    received: int = attrs.field(default=0, kw_only=True)
    dropped: int = attrs.field(default=0, kw_only=True)
    backoff_max_s: float = attrs.field(default=BACKOFF_MAX_S, kw_only=True)
    _send: trio.MemorySendChannel[list[QueueKey]] = attrs.field(init=False)
    _recv: trio.MemoryReceiveChannel[list[QueueKey]] = attrs.field(init=False)
    #: What the bus talks to, in its log lines.
    peer: ClassVar[str] = "the wake bus"

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
        body: dict[str, Any] = {"status": "ok", "store": self.name}  # type: ignore[attr-defined]
        if not self.connected:
            # The bus only speeds wakes up: without it the server is still correct,
            # so readiness stays ok and says it is degraded.
            body.update(degraded=True, message=self.last_error or "connecting")
        return body

    def _failed(self, what: str, error: object) -> None:
        if self.connected or self.last_error is None:
            log.warning("wake bus: %s failed (%s); falling back to rechecks", what, error)
        self.connected = False
        self.last_error = f"{what}: {error}"
        metrics.WAKE_BUS_DEGRADED.set(1)

    def _linked(self) -> None:
        """The bus's connection is up: say so once after an outage."""
        if self.last_error is not None:
            log.warning("wake bus: reconnected to %s; wakes travel between nodes again", self.peer)
        self.connected, self.last_error = True, None
        metrics.WAKE_BUS_DEGRADED.set(0)

    async def _next_batch(self) -> list[QueueKey]:
        """The queued wakes, each key once: the first batch waited for, the rest as queued."""
        batch = await self._recv.receive()
        while True:
            try:
                batch.extend(self._recv.receive_nowait())
            except trio.WouldBlock:
                return list(dict.fromkeys(batch))


def encode_message(origin: str, key: QueueKey) -> str:
    return SEP.join((origin, *key))


def decode_message(data: bytes | str) -> tuple[str, QueueKey] | None:
    text = data.decode() if isinstance(data, bytes) else data
    parts = text.split(SEP)
    if len(parts) != 4:
        return None
    return parts[0], (parts[1], parts[2], parts[3])


@attrs.define
class RedisWakeBus(SharedWakeBus):
    url: str
    name: str = "redis"
    origin: str = attrs.field(factory=lambda: uuid.uuid4().hex)
    _subscribe_backoff_s: float = attrs.field(default=BACKOFF_MIN_S, init=False)
    peer: ClassVar[str] = "Redis"

    def _subscribed(self) -> None:
        """The subscription is live: let the next outage retry quickly again."""
        self._linked()
        self._subscribe_backoff_s = BACKOFF_MIN_S

    # --- asyncio side --------------------------------------------------------------
    async def _publish_batch(self, client: Any, messages: list[str]) -> None:
        async with client.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.publish(CHANNEL, message)
            await pipe.execute()

    async def _subscribe_forever(
        self, subscribed: Callable[[], None], deliver: Callable[[QueueKey], None]
    ) -> None:
        """Subscribe and pass each other process's wake to ``deliver`` (both callbacks
        are ``bridge.to_trio`` wrappers: they run on the Trio thread)."""
        client = aioredis.from_url(self.url, socket_connect_timeout=2)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CHANNEL)
            subscribed()
            while True:
                message = await pubsub.get_message(timeout=5.0)
                if message is None:
                    await client.ping()  # notice a dead connection even when idle
                    continue
                decoded = decode_message(message["data"])
                if decoded is None or decoded[0] == self.origin:
                    continue
                deliver(decoded[1])
        finally:
            # Also runs when the task is cancelled mid-read (shutdown), with the
            # connection in any state: bounded, so the cancellation always completes.
            # Not PubSub.aclose(): since redis 8 it waits for its teardown (which takes
            # the PubSub's lock) in a future no cancellation or timeout can interrupt,
            # and a shutdown hung there for good. Closing the pool's connections
            # (the subscription's among them) needs no lock.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await client.connection_pool.disconnect(inuse_connections=True)

    # --- trio side -----------------------------------------------------------------
    def _received(self, key: QueueKey) -> None:
        self.received += 1
        metrics.WAKE_BUS_RECEIVED.inc()
        self.waiters.wake(key)

    async def _publisher(self) -> None:
        client = await bridge.run(self._client)
        try:
            backoff = BACKOFF_MIN_S
            while True:
                batch = await self._next_batch()  # coalesced into one pipeline
                messages = [encode_message(self.origin, k) for k in batch]
                try:
                    await bridge.run(self._publish_batch, client, messages)
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
                await bridge.run(client.aclose)

    async def _client(self) -> Any:
        return aioredis.from_url(self.url, socket_connect_timeout=2, socket_timeout=2)

    async def _subscriber(self) -> None:
        subscribed = bridge.to_trio(self._subscribed)
        deliver = bridge.to_trio(self._received)
        while True:
            try:
                await bridge.run(self._subscribe_forever, subscribed, deliver)
            except (OSError, aioredis.RedisError) as exc:
                self._failed("subscribe", exc)
            await trio.sleep(self._subscribe_backoff_s)
            self._subscribe_backoff_s = min(self._subscribe_backoff_s * 2, self.backoff_max_s)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._publisher)
            nursery.start_soon(self._subscriber)
            task_status.started()


def encode_payloads(keys: Iterable[QueueKey]) -> tuple[list[str], list[QueueKey]]:
    """NOTIFY payloads carrying ``keys``: JSON arrays of keys, each payload under
    PostgreSQL's limit (``MAX_PAYLOAD_BYTES``); and the keys too long for any payload
    (none in practice: a queue name is at most 255 characters)."""
    payloads: list[bytes] = []
    too_long: list[QueueKey] = []
    chunk: list[bytes] = []
    size = 2  # the brackets
    for key in keys:
        item = orjson.dumps(key)
        if len(item) + 2 > MAX_PAYLOAD_BYTES:
            too_long.append(key)
            continue
        if chunk and size + 1 + len(item) > MAX_PAYLOAD_BYTES:
            payloads.append(b"[" + b",".join(chunk) + b"]")
            chunk, size = [], 2
        size += len(item) + (1 if chunk else 0)
        chunk.append(item)
    if chunk:
        payloads.append(b"[" + b",".join(chunk) + b"]")
    return [p.decode() for p in payloads], too_long


def decode_payload(payload: str) -> list[QueueKey]:
    """The keys of one NOTIFY payload (none from a payload that is not one of ours)."""
    try:
        items = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(items, list):
        return []
    return [
        (item[0], item[1], item[2])
        for item in items
        if isinstance(item, list) and len(item) == 3 and all(isinstance(p, str) for p in item)
    ]


@attrs.define
class PostgresWakeBus(SharedWakeBus):
    """Wakes between processes and nodes through LISTEN/NOTIFY on the shared database.

    One connection per process, outside the pool (``store/notify.py``), LISTENs on
    ``PG_CHANNEL`` and also sends this process's wakes: each queued batch, deduplicated,
    is one statement (``pg_notify`` per payload). PostgreSQL delivers a notification
    to every listening session of the database, this one included; the store drops
    those this session sent. When the connection ends (a restart, a terminated
    backend, no answer to the idle round trip every ``keepalive_s``), the bus is
    degraded and connects again after 0.1 s, doubling up to ``backoff_max_s``.
    Notifications sent while no connection listens are lost: the recheck finds
    their tasks.
    """

    dsn: str
    name: str = "postgres"
    keepalive_s: float = KEEPALIVE_S
    peer: ClassVar[str] = "the database"

    def _notified(self, payload: str) -> None:
        """A notification from another process (on the Trio thread, see ``Listener.open``)."""
        keys = decode_payload(payload)
        self.received += len(keys)
        metrics.WAKE_BUS_RECEIVED.inc(len(keys))
        for key in keys:
            self.waiters.wake(key)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, then send queued wakes until the connection fails; connect again
        after a backoff. The boot waits for the first attempt only, so a node that
        serves already hears the others' wakes, and a node that cannot connect starts
        degraded and keeps trying."""
        starting = True
        backoff = BACKOFF_MIN_S
        while True:
            with trio.CancelScope() as lost:
                listener = await self._connect(on_lost=lost.cancel)
                if starting:
                    task_status.started()
                    starting = False
                if listener is not None:
                    backoff = BACKOFF_MIN_S
                    await self._serve(listener)
            if lost.cancelled_caught:
                self._failed("listen", "the connection to the database ended")
            if starting:  # (lost while connecting)
                task_status.started()
                starting = False
            await trio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max_s)

    async def _connect(self, *, on_lost: Callable[[], None]) -> Listener | None:
        try:
            listener = await Listener.open(self.dsn, PG_CHANNEL, self._notified, on_lost)
        except StoreUnavailableError as exc:
            self._failed("connect", exc)
            return None
        self._linked()
        return listener

    async def _serve(self, listener: Listener) -> None:
        try:
            await self._publish(listener)
        except StoreUnavailableError as exc:
            self._failed("publish", exc)
        finally:
            # Shielded from a shutdown's cancellation, and bounded.
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
                await listener.close()

    async def _publish(self, listener: Listener) -> None:
        """Send queued wakes until the connection fails; a round trip when idle."""
        while True:
            batch: list[QueueKey] | None = None
            with trio.move_on_after(self.keepalive_s):
                batch = await self._next_batch()
            if batch is None:
                await listener.ping()
                continue
            payloads, too_long = encode_payloads(batch)
            if too_long:
                self.dropped += len(too_long)
                metrics.WAKE_BUS_DROPPED.inc(len(too_long))
                log.warning("wake bus: %d keys too long for a notification", len(too_long))
            if payloads:
                await listener.notify(payloads)
                sent = len(batch) - len(too_long)
                self.published += sent
                metrics.WAKE_BUS_PUBLISHED.inc(sent)


def make_wake_bus(
    waiters: WaiterSet, kind: str, *, redis_url: str | None, dsn: str | None
) -> WakeBus:
    """The bus ``kind`` (``Settings.wake_bus_kind``): redis, postgres or local."""
    if kind == "redis":
        assert redis_url, "DW_WAKE_BUS=redis without DW_REDIS_URL (Settings.validate)"
        return RedisWakeBus(waiters, redis_url)
    if kind == "postgres":
        assert dsn, "the Postgres wake bus needs the database's DSN"
        return PostgresWakeBus(waiters, dsn)
    return LocalWakeBus(waiters)
