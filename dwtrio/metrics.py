"""The Prometheus metrics dwtrio exposes, and how a scrape collects them.

Every metric is declared here, once, as a ``prometheus_client`` object; the
code that counts (the HTTP edge, matching, the store, the background loops)
imports this module and touches prebuilt children, so a hot path pays a dict
lookup and a locked add, never a ``labels()`` call with its validation. Names
follow Prometheus conventions (``dwtrio_`` prefix, base units in the name,
``_total`` on counters); docs/operations.md lists each one.

Label values come from small fixed sets, so no label can grow with traffic:
route templates (never raw paths), a handful of methods (anything else is
``other``), status codes the server itself produces, the task kinds
(``workflow``, ``activity``, ``query``), store modes, loop names. Queue names,
namespaces and workflow or run ids are never labels: per-queue detail is
what ``GET /api/task-queues`` is for.

With several server processes (``DW_WORKERS > 1``) ``dwtrio serve`` runs
prometheus_client's multiprocess mode: each process writes its values to
files under ``PROMETHEUS_MULTIPROC_DIR``, and a scrape of any process (or of
the ``DW_METRICS_BIND`` listener the parent runs) adds them up
(:func:`scrape_registry`).
"""

from __future__ import annotations

import os
import re
from typing import Final

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector

# No ``*_created`` series beside each counter and histogram: they double the
# series a scrape carries and no dashboard here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: prometheus_client's own switch for multiprocess mode (its variable, not a dwtrio setting).
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

TASK_KINDS: Final = ("workflow", "activity", "query")
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The route label of a request no route matched (unknown paths, 404/405 answers).
UNMATCHED: Final = "unmatched"
#: The status label of a request whose client left before any answer (a parked poll).
NO_RESPONSE: Final = "none"

#: Request latency buckets: sub-millisecond answers up to a minute-long poll.
HTTP_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
WAKE_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
STORE_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
)  # fmt: skip

# --- HTTP ----------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "dwtrio_http_requests_total",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "dwtrio_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template, "
    "method and status class (long-polls included: they count their parked time).",
    ["route", "method", "status_class"],
    buckets=HTTP_BUCKETS,
)

# --- long-polls and matching ---------------------------------------------------------
POLLS_OPEN = Gauge(
    "dwtrio_polls_open",
    "Long-polls in progress, by task kind.",
    ["kind"],
    multiprocess_mode="livesum",
)
POLL_ANSWERS = Counter(
    "dwtrio_poll_answers_total",
    "Long-polls answered, by task kind and result (task: a task was leased; empty: "
    "the deadline passed or the server drained).",
    ["kind", "result"],
)
POLL_WAKE_TO_ANSWER = Histogram(
    "dwtrio_poll_wake_to_answer_seconds",
    "Time from a parked poll being woken (a wake or a handed-over task) to the poll "
    "holding its task, by task kind.",
    ["kind"],
    buckets=WAKE_BUCKETS,
)
CLAIMS = Counter(
    "dwtrio_claims_total",
    "Claims polls ran against the database, by task kind and result (found, empty, "
    "throttled by an admission cap, blocked: the worker's build may claim nothing).",
    ["kind", "result"],
)
SYNC_MATCHES = Counter(
    "dwtrio_sync_matches_total",
    "Tasks handed by the request that created them straight to a parked poll, by task kind.",
    ["kind"],
)

# --- wake bus ------------------------------------------------------------------------
WAKE_BUS_PUBLISHED = Counter(
    "dwtrio_wake_bus_published_total",
    "Wake keys sent to other server processes through the wake bus (Redis or Postgres).",
)
WAKE_BUS_RECEIVED = Counter(
    "dwtrio_wake_bus_received_total",
    "Wake keys received from other server processes through the wake bus.",
)
WAKE_BUS_DROPPED = Counter(
    "dwtrio_wake_bus_dropped_total",
    "Wake batches not sent because the publish queue was full, and keys too long for a "
    "Postgres notification (remote polls find the task on their recheck).",
)
WAKE_BUS_DEGRADED = Gauge(
    "dwtrio_wake_bus_degraded",
    "1 while the wake bus (Redis or Postgres) is not connected (wakes between processes "
    "wait for the polls' recheck), else 0; always 0 for the in-process bus.",
    multiprocess_mode="livemax",
)

# --- store ---------------------------------------------------------------------------
STORE_DURATION = Histogram(
    "dwtrio_store_call_duration_seconds",
    "Time of one store call (waiting for a connection, retries and outage waits "
    "included), by mode: transaction, autocommit, read, probe.",
    ["mode"],
    buckets=STORE_BUCKETS,
)
STORE_RETRIES = Counter(
    "dwtrio_store_retries_total",
    "Store operations run again after PostgreSQL rolled them back, by reason "
    "(deadlock, serialization).",
    ["reason"],
)
STORE_UNAVAILABLE = Counter(
    "dwtrio_store_unavailable_total",
    "Store calls that failed with the database unreachable (answered 503 "
    "backend_unavailable), by mode.",
    ["mode"],
)

# --- background loops ----------------------------------------------------------------
BACKGROUND_LAST_PASS = Gauge(
    "dwtrio_background_last_pass_timestamp_seconds",
    "Unix time a background loop last finished a pass without failing, by loop "
    "(time() minus this is the loop's lag).",
    ["loop"],
    multiprocess_mode="livemax",
)
BACKGROUND_DURATION = Histogram(
    "dwtrio_background_pass_duration_seconds",
    "Time of one background pass, failed or not, by loop.",
    ["loop"],
    buckets=STORE_BUCKETS,
)
BACKGROUND_FAILURES = Counter(
    "dwtrio_background_pass_failures_total",
    "Background passes that failed (store unavailable or an error), by loop.",
    ["loop"],
)
BACKGROUND_ITEMS = Counter(
    "dwtrio_background_items_total",
    "What this process's background passes handled, by loop: timers fired (timer), "
    "deadlines enforced (timeouts), leases redispatched (task_repair), schedule "
    "occurrences fired (scheduler), runs pruned (retention).",
    ["loop"],
)

LOOPS: Final = ("task_repair", "timer", "timeouts", "scheduler", "retention")

# Prebuilt children of the hot paths: one dict lookup per event.
CLAIM_RESULTS = {
    (kind, result): CLAIMS.labels(kind, result)
    for kind in TASK_KINDS
    for result in ("found", "empty", "throttled", "blocked")
}
ANSWERS = {
    (kind, result): POLL_ANSWERS.labels(kind, result)
    for kind in TASK_KINDS
    for result in ("task", "empty")
}
OPEN = {kind: POLLS_OPEN.labels(kind) for kind in TASK_KINDS}
WAKE_TO_ANSWER = {kind: POLL_WAKE_TO_ANSWER.labels(kind) for kind in TASK_KINDS}
SYNC = {kind: SYNC_MATCHES.labels(kind) for kind in TASK_KINDS}
STORE_MODES: Final = ("transaction", "autocommit", "read", "probe")
STORE_DURATION_BY_MODE = {mode: STORE_DURATION.labels(mode) for mode in STORE_MODES}
STORE_UNAVAILABLE_BY_MODE = {mode: STORE_UNAVAILABLE.labels(mode) for mode in STORE_MODES}
STORE_RETRIES_BY_REASON = {
    reason: STORE_RETRIES.labels(reason) for reason in ("deadlock", "serialization")
}
BACKGROUND_DURATION_BY_LOOP = {loop: BACKGROUND_DURATION.labels(loop) for loop in LOOPS}
BACKGROUND_FAILURES_BY_LOOP = {loop: BACKGROUND_FAILURES.labels(loop) for loop in LOOPS}
BACKGROUND_ITEMS_BY_LOOP = {loop: BACKGROUND_ITEMS.labels(loop) for loop in LOOPS}
WAKE_BUS_DEGRADED.set(0)


def known_kind(kind: str) -> str:
    """A task kind as a label: one of :data:`TASK_KINDS` (anything else is ``other``)."""
    return kind if kind in OPEN else "other"


def claim_result(kind: str, result: str) -> Counter:
    return CLAIM_RESULTS.get((kind, result)) or CLAIMS.labels(known_kind(kind), result)


def poll_answer(kind: str, result: str) -> Counter:
    return ANSWERS.get((kind, result)) or POLL_ANSWERS.labels(known_kind(kind), result)


def polls_open(kind: str) -> Gauge:
    return OPEN.get(kind) or POLLS_OPEN.labels(known_kind(kind))


def wake_to_answer(kind: str) -> Histogram:
    return WAKE_TO_ANSWER.get(kind) or POLL_WAKE_TO_ANSWER.labels(known_kind(kind))


def sync_match(kind: str) -> Counter:
    return SYNC.get(kind) or SYNC_MATCHES.labels(known_kind(kind))


# --- HTTP labels ---------------------------------------------------------------------
_QUART_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
#: (route, method, status) -> (counter child, histogram child); bounded by the label sets.
_http_children: dict[tuple[str | None, str, int | None], tuple[Counter, Histogram]] = {}


def route_label(route: str | None) -> str:
    """A route template as a label: Quart's ``<name>`` / ``<path:name>`` written
    ``{name}`` like the worker plane's patterns; None (no route matched) is ``unmatched``."""
    if not route:
        return UNMATCHED
    return _QUART_PARAM.sub(r"{\1}", route)


def observe_request(route: str | None, method: str, status: int | None, seconds: float) -> None:
    """Count one answered request (``route``: its template, None when none matched)."""
    key = (route, method, status)
    children = _http_children.get(key)
    if children is None:
        label = route_label(route)
        method_label = method if method in METHODS else "other"
        code = NO_RESPONSE if status is None else str(status)
        status_class = NO_RESPONSE if status is None else f"{status // 100}xx"
        children = (
            HTTP_REQUESTS.labels(label, method_label, code),
            HTTP_DURATION.labels(label, method_label, status_class),
        )
        if method in METHODS:  # other methods share one entry; never cache them by name
            _http_children[key] = children
    children[0].inc()
    children[1].observe(seconds)


# --- exposition ----------------------------------------------------------------------
_multiprocess_registries: dict[str, CollectorRegistry] = {}


def scrape_registry() -> CollectorRegistry:
    """What a scrape reads: this process's registry (with prometheus_client's process
    and Python collectors), or in multiprocess mode the sum over every process's files."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return REGISTRY
    registry = _multiprocess_registries.get(path)
    if registry is None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
        _multiprocess_registries[path] = registry
    return registry


def start_listener(host: str, port: int) -> None:
    """Serve the scrape on ``host:port`` from a thread of this process (``DW_METRICS_BIND``):
    plain HTTP, no authentication, every path answering the metrics."""
    start_http_server(port, addr=host, registry=scrape_registry())
