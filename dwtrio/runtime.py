"""Long-lived handles built once in main and passed to handlers and loops."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import trio

from dwtrio import __version__
from dwtrio.engine.outcome import QueueKey
from dwtrio.manifest import SERVER_FEATURES, Features, worker_capabilities
from dwtrio.matching.waiters import WaiterSet
from dwtrio.matching.wakebus import WakeBus, make_wake_bus
from dwtrio.settings import Settings
from dwtrio.store import namespaces
from dwtrio.store.pool import Store

NAMESPACE_CACHE_TTL_S = 10.0


@attrs.define
class NamespaceCache:
    """Remembers namespaces known to exist, so the request gate rarely queries.

    Only positive answers are cached (for ``ttl_s``); an unknown namespace is
    always rechecked, so a namespace created on another node works at once.
    """

    store: Store
    ttl_s: float = NAMESPACE_CACHE_TTL_S
    _seen: dict[str, float] = attrs.field(factory=dict)

    async def exists(self, name: str) -> bool:
        now = trio.current_time()
        if self._seen.get(name, -1.0) > now:
            return True
        found = await self.store.read(namespaces.namespace_exists, name)
        if found:
            self._seen[name] = now + self.ttl_s
        return found

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)


@attrs.define
class Runtime:
    settings: Settings
    store: Store
    namespaces: NamespaceCache
    features: Features = SERVER_FEATURES
    draining: trio.Event = attrs.field(factory=trio.Event)
    waiters: WaiterSet = attrs.field(factory=WaiterSet)
    wakes: WakeBus = attrs.field(init=False)
    version: str = __version__
    #: ``server_capabilities``, computed once: it goes on every worker response.
    worker_capabilities: dict[str, Any] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.worker_capabilities = worker_capabilities(self.settings, self.features)
        self.wakes = make_wake_bus(self.waiters, self.settings.redis_url)

    def publish_wakes(self, keys: Iterable[QueueKey]) -> None:
        """After a commit: wake pollers of every queue that got new ready work."""
        if keys:
            self.wakes.publish(keys)

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
