"""Long-lived handles built once in main and passed to handlers and loops."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any, Generic, TypeVar

import attrs
import trio

from dwtrio import __version__, metrics
from dwtrio.manifest import SERVER_FEATURES, Features, worker_capabilities
from dwtrio.matching.batches import ClaimBatches
from dwtrio.matching.waiters import QueueKey, WaiterSet, history_key
from dwtrio.matching.wakebus import WakeBus, make_wake_bus
from dwtrio.protocol.admission import AdmissionPolicy
from dwtrio.settings import Settings
from dwtrio.store import namespaces, workers
from dwtrio.store.pool import Store

NAMESPACE_CACHE_TTL_S = 10.0

V = TypeVar("V")


@attrs.define
class _Call(Generic[V]):
    done: trio.Event = attrs.field(factory=trio.Event)
    ok: bool = False
    value: V | None = None


@attrs.define
class SingleFlight(Generic[V]):
    """Concurrent lookups of one key share one call.

    After a restart every worker reconnects at once: without this, a thousand
    polls arriving together each query the namespace and their registration
    before any answer is cached (measured: a burst of 1,000 polls waited up to
    10 s for the pool). A follower whose leader failed or was cancelled makes
    its own call.
    """

    _calls: dict[Hashable, _Call[V]] = attrs.field(factory=dict)

    async def do(self, key: Hashable, fn: Callable[[], Awaitable[V]]) -> V:
        call = self._calls.get(key)
        if call is not None:
            await call.done.wait()
            if call.ok:
                return call.value  # type: ignore[return-value]
            return await fn()
        call = _Call()
        self._calls[key] = call
        try:
            call.value = await fn()
            call.ok = True
            return call.value
        finally:
            del self._calls[key]
            call.done.set()


@attrs.define
class NamespaceCache:
    """Remembers namespaces known to exist, so the request gate rarely queries.

    Only positive answers are cached (for ``ttl_s``); an unknown namespace is
    always rechecked, so a namespace created on another node works at once.
    """

    store: Store
    ttl_s: float = NAMESPACE_CACHE_TTL_S
    _seen: dict[str, float] = attrs.field(factory=dict)
    _lookups: SingleFlight[bool] = attrs.field(factory=SingleFlight)

    async def exists(self, name: str) -> bool:
        if self._seen.get(name, -1.0) > trio.current_time():
            return True
        return await self._lookups.do(name, lambda: self._lookup(name))

    async def _lookup(self, name: str) -> bool:
        found = await self.store.read(namespaces.namespace_exists, name)
        if found:
            self._seen[name] = trio.current_time() + self.ttl_s
        return found

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)


REGISTRATION_REFRESH_S = 30.0


@attrs.define
class RegistrationCache:
    """The workflow and activity types of workers that poll through this process.

    A poll needs its worker's registration (implicitly creating it for an
    unknown worker, and keeping ``last_heartbeat_at`` fresh). Reading it on every
    poll would cost a transaction per poll, so it is refreshed every
    ``refresh_s`` instead; a registration through this process replaces it at once.
    """

    store: Store
    refresh_s: float = REGISTRATION_REFRESH_S
    _entries: dict[tuple[str, str, str], tuple[float, tuple[str, ...], tuple[str, ...]]] = (
        attrs.field(factory=dict)
    )
    _refreshes: SingleFlight[tuple[float, tuple[str, ...], tuple[str, ...]]] = attrs.field(
        factory=SingleFlight
    )

    async def types(
        self, namespace: str, worker_id: str, task_queue: str
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(workflow types, activity types) the worker declared; empty means any."""
        key = (namespace, worker_id, task_queue)
        entry = self._entries.get(key)
        if entry is None or entry[0] <= trio.current_time():
            entry = await self._refreshes.do(key, lambda: self._refresh(key))
        return entry[1], entry[2]

    async def _refresh(
        self, key: tuple[str, str, str]
    ) -> tuple[float, tuple[str, ...], tuple[str, ...]]:
        wf, act = await self.store.transaction(workers.ensure_registered, *key)
        now = trio.current_time()
        entry = (now + self.refresh_s, tuple(wf), tuple(act))
        if len(self._entries) > 100_000:  # a bound, not a policy: drop everything stale
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        self._entries[key] = entry
        return entry

    def forget(self, namespace: str, worker_id: str) -> None:
        for key in [k for k in self._entries if k[0] == namespace and k[1] == worker_id]:
            del self._entries[key]


@attrs.define
class Nudge:
    """Wakes a sleeping background loop early, in this process only.

    A nudge that arrives while the loop is busy is kept, so the loop's next
    sleep returns at once: no nudge is lost.
    """

    _event: trio.Event = attrs.field(factory=trio.Event)

    def set(self) -> None:
        self._event.set()

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if nudged; consumes the nudge."""
        with trio.move_on_after(seconds):
            await self._event.wait()
        if self._event.is_set():
            self._event = trio.Event()


@attrs.define
class LoopBeat:
    """What one background loop of this process last did (``GET /api/system/health``).

    Times are on the Trio clock (seconds, monotonic) except ``last_ok_unix``; the
    periodic loop helper (``background/periodic.py``) moves them around each tick.
    """

    name: str
    interval_s: float
    ticks: int = 0
    failures: int = 0
    #: Failed ticks since the last good one.
    consecutive_failures: int = 0
    #: When the tick in progress began; None while the loop sleeps.
    tick_started_at: float | None = None
    #: When the loop means to tick next (the end of its sleep); None during a tick.
    next_tick_at: float | None = None
    last_tick_at: float | None = None
    #: Wall-clock time (Unix seconds) of the last tick that did not fail.
    last_ok_unix: float | None = None
    last_error: str | None = None
    #: What the loop's passes handled so far (timers fired, runs pruned, ...).
    items: int = 0

    def handled(self, count: int) -> None:
        """Count ``count`` items a pass handled (here and in ``dwtrio_background_items_total``)."""
        if count:
            self.items += count
            metrics.BACKGROUND_ITEMS_BY_LOOP[self.name].inc(count)

    def started(self) -> None:
        self.tick_started_at = trio.current_time()
        self.next_tick_at = None

    def finished(self, error: str | None, delay_s: float) -> None:
        now = trio.current_time()
        self.ticks += 1
        self.tick_started_at = None
        self.last_tick_at = now
        self.next_tick_at = now + max(delay_s, 0.0)
        if error is None:
            self.consecutive_failures = 0
            self.last_ok_unix = time.time()
        else:
            self.failures += 1
            self.consecutive_failures += 1
            self.last_error = error


@attrs.define
class LoopBeats:
    """The background loops of this process, by name, as they report themselves."""

    loops: dict[str, LoopBeat] = attrs.field(factory=dict)

    def beat(self, name: str, interval_s: float) -> LoopBeat:
        """The record of loop ``name`` (made on first use)."""
        beat = self.loops.get(name)
        if beat is None:
            beat = self.loops[name] = LoopBeat(name=name, interval_s=interval_s)
        return beat


@attrs.define
class Runtime:
    settings: Settings
    store: Store
    namespaces: NamespaceCache
    features: Features = SERVER_FEATURES
    draining: trio.Event = attrs.field(factory=trio.Event)
    #: Set when this process arms a timer, so the timer loop recomputes its next due time.
    timer_nudge: Nudge = attrs.field(factory=Nudge)
    #: Set when a schedule changes in this process, so the scheduler recomputes its next due time.
    schedule_nudge: Nudge = attrs.field(factory=Nudge)
    registrations: RegistrationCache = attrs.field(init=False)
    #: The task-queue admission caps (DW_*_MAX_* and DW_TASK_QUEUE_ADMISSION_OVERRIDES).
    admission: AdmissionPolicy = attrs.field(init=False)
    waiters: WaiterSet = attrs.field(factory=WaiterSet)
    #: Claims of one queue made together (``matching/batches.py``).
    claim_batches: ClaimBatches = attrs.field(factory=ClaimBatches)
    wakes: WakeBus = attrs.field(init=False)
    version: str = __version__
    #: ``server_capabilities``, computed once: it goes on every worker response.
    worker_capabilities: dict[str, Any] = attrs.field(init=False)
    #: The background loops' last ticks (system health).
    loop_beats: LoopBeats = attrs.field(factory=LoopBeats)

    def __attrs_post_init__(self) -> None:
        self.worker_capabilities = worker_capabilities(self.settings, self.features)
        self.wakes = make_wake_bus(
            self.waiters,
            self.settings.wake_bus_kind,
            redis_url=self.settings.redis_url,
            dsn=getattr(self.store, "dsn", None),
        )
        self.registrations = RegistrationCache(self.store)
        self.admission = self.settings.admission_policy
        # History long-polls (here and on other nodes) wake when a run gets events.
        if self.store is not None:  # (None: a runtime only for routing, tests and probes)
            self.store.after_commit = self._history_appended

    def publish_wakes(self, keys: Iterable[QueueKey]) -> None:
        """After a commit: wake pollers of every queue that got new ready work."""
        if keys:
            self.wakes.publish(keys)

    def _history_appended(self, run_ids: set[str]) -> None:
        self.wakes.publish([history_key(run_id) for run_id in run_ids])

    def drain(self) -> None:
        """Stop parking polls: every open long-poll answers (empty) at once."""
        self.draining.set()
        self.waiters.wake_all()

    def wake_bus_health(self) -> dict[str, Any]:
        """The readiness `cache` check: what carries wake signals, and whether it works."""
        return self.wakes.health()

    @classmethod
    def build(cls, settings: Settings, store: Store) -> Runtime:
        return cls(settings=settings, store=store, namespaces=NamespaceCache(store))
