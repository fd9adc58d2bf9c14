"""/api/system/operator-metrics, /api/system/metrics and /api/system/health
(control-plane.md §3.6 and §11, cluster-info-and-readiness.md §3.8; docs/operations.md).

Admin routes scoped to the request's namespace, without the ``control_plane``
envelope (``routes.classify``). The database figures and the health rules are
``engine/system_metrics.py``; this module adds what only the process knows: its
connection pool, its wake bus, its background loops and its counters.

``/api/system/metrics`` reads the registry a Prometheus scrape reads
(``metrics.scrape_registry``: this process's, or with several server processes
the sum over all of them), so its ``prometheus`` block holds the very counters
``GET /metrics`` exposes, as JSON; beside it the wake bus, matching, pool and
loop figures of the process that answers.
"""

from __future__ import annotations

import os
import time
from typing import Any

import trio
from prometheus_client import CollectorRegistry
from quart import Blueprint, Response, g

from dwtrio import metrics, wire
from dwtrio.engine import system_metrics as engine
from dwtrio.engine.task_queues import QueueView
from dwtrio.errors import DwtrioError
from dwtrio.http.envelope import json_response
from dwtrio.protocol.responses import OperatorMetricsResponse, SystemMetricsResponse, render
from dwtrio.runtime import LoopBeat, Runtime

#: How long the health route waits for the database before calling it unavailable.
PROBE_TIMEOUT_S = 2.0
STARTED_UNIX = time.time()


def metrics_view(rt: Runtime) -> engine.MetricsView:
    s = rt.settings
    return engine.MetricsView(
        queues=QueueView(
            admission=rt.admission,
            stale_after_s=s.effective_worker_stale_after_s,
            repair_interval_s=s.task_repair_interval_s,
            query_max_pending=s.query_task_max_pending_per_queue,
        ),
        loop_stall_s=s.health_loop_stall_s,
        backlog_age_s=s.health_backlog_age_s,
        schedule_lag_s=s.health_schedule_lag_s,
    )


def structural_limits(rt: Runtime) -> dict[str, Any]:
    """The configured limits a request or a run runs into."""
    s = rt.settings
    return {
        "payload_size_bytes": s.max_payload_bytes,
        "memo_size_bytes": s.max_memo_bytes,
        "search_attributes": s.max_search_attributes,
        "pending_activities": s.max_pending_activities,
        "pending_children": s.max_pending_children,
        "json_depth": wire.MAX_JSON_DEPTH,
        "history_page_size_max": s.history_page_size_max,
        "query_tasks_pending_per_queue": s.query_task_max_pending_per_queue,
        "connections": s.max_connections,
    }


def wake_bus_metrics(rt: Runtime) -> dict[str, Any]:
    """What carries wake-ups between processes, whether it works, and its counters."""
    bus = rt.wakes
    out: dict[str, Any] = {"kind": getattr(bus, "name", type(bus).__name__)}
    out["health"] = rt.wake_bus_health()
    for counter in ("published", "received", "dropped"):
        if hasattr(bus, counter):
            out[counter] = getattr(bus, counter)
    return out


def pool_metrics(rt: Runtime) -> dict[str, Any]:
    p = rt.store.pool_statistics()
    return {
        "max_size": p.max_size,
        "open": p.open,
        "in_use": p.in_use,
        "idle": p.idle,
        "waiting": p.waiting,
    }


def loop_states(rt: Runtime) -> list[engine.LoopState]:
    now = trio.current_time()
    return [_loop_state(beat, now) for beat in rt.loop_beats.loops.values()]


def _loop_state(beat: LoopBeat, now: float) -> engine.LoopState:
    running = None if beat.tick_started_at is None else now - beat.tick_started_at
    late = None if beat.next_tick_at is None else max(0.0, now - beat.next_tick_at)
    return engine.LoopState(
        name=beat.name,
        interval_s=beat.interval_s,
        ticks=beat.ticks,
        failures=beat.failures,
        consecutive_failures=beat.consecutive_failures,
        running_for_s=running,
        late_by_s=late,
        last_ok_unix=beat.last_ok_unix,
        last_error=beat.last_error,
        items=beat.items,
    )


def registry_snapshot(registry: CollectorRegistry) -> tuple[dict[str, Any], dict[str, int]]:
    """Every metric of ``registry`` as JSON, and how many label sets each has.

    Counters and gauges list each label set with its value; histograms and
    summaries give each label set's count and sum (their buckets are left out).
    """
    metrics: dict[str, Any] = {}
    label_sets: dict[str, int] = {}
    for family in registry.collect():
        entries: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        for sample in family.samples:
            if sample.name.endswith("_created") or sample.name.endswith("_bucket"):
                continue
            key = tuple(sorted(sample.labels.items()))
            entry = entries.setdefault(key, {"labels": dict(sample.labels)})
            suffix = sample.name[len(family.name) :].lstrip("_") or "value"
            if family.type in ("histogram", "summary", "gaugehistogram") and suffix == "value":
                suffix = "count"
            entry[suffix] = sample.value
        metrics[family.name] = {
            "type": family.type,
            "help": family.documentation,
            "values": list(entries.values()),
        }
        label_sets[family.name] = len(entries)
    return metrics, label_sets


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("system_metrics", __name__)
    view = metrics_view(rt)

    @bp.get("/api/system/operator-metrics")
    async def operator_metrics() -> Response:
        facts = await rt.store.read(engine.read_facts, g.namespace, view)
        process = {
            "backend": {"pool": pool_metrics(rt), "wake_bus": wake_bus_metrics(rt)},
            "structural_limits": structural_limits(rt),
        }
        body = OperatorMetricsResponse(
            namespace=g.namespace,
            operator_metrics=engine.operator_metrics(facts, view, process),
        )
        return json_response(render(body))

    @bp.get("/api/system/metrics")
    async def system_metrics() -> Response:
        prometheus, label_sets = registry_snapshot(metrics.scrape_registry())
        waiters = rt.waiters.statistics()
        own = {
            "process": {
                "pid": os.getpid(),
                "server_id": rt.settings.server_id,
                "version": rt.version,
                "uptime_seconds": round(time.time() - STARTED_UNIX, 3),
                "draining": rt.draining.is_set(),
            },
            "matching": {
                "queues_with_polls": waiters.queues,
                "parked_polls": waiters.waiters,
                "wakes_sent": waiters.wakes_sent,
                "wakes_unclaimed": waiters.wakes_unclaimed,
                "sync_matches": waiters.sync_matches,
                "idle_queues": waiters.idle_queues,
            },
            "wake_bus": wake_bus_metrics(rt),
            "store": {"pool": pool_metrics(rt)},
            "background_loops": {
                state.name: {
                    "interval_seconds": state.interval_s,
                    "passes": state.ticks,
                    "failed_passes": state.failures,
                    "consecutive_failures": state.consecutive_failures,
                    "last_successful_pass_at": engine.unix_iso(state.last_ok_unix),
                    "items": state.items,
                }
                for state in loop_states(rt)
            },
        }
        generated_at = wire.iso_z(wire.now_utc())
        assert generated_at is not None
        body = SystemMetricsResponse(
            generated_at=generated_at,
            namespace=g.namespace,
            metrics={**own, "prometheus": prometheus},
            cardinality={"metric_label_sets": label_sets},
        )
        return json_response(render(body))

    @bp.get("/api/system/health")
    async def system_health() -> Response:
        facts: engine.NamespaceFacts | None = None
        error: str | None = None
        try:
            with trio.fail_after(PROBE_TIMEOUT_S):
                facts = await rt.store.probe(engine.read_facts, g.namespace, view, migrations=True)
        except trio.TooSlowError:
            error = f"no answer within {PROBE_TIMEOUT_S} s"
        except DwtrioError as exc:
            error = str(exc) or type(exc).__name__
        except Exception as exc:  # e.g. a table a migration would create is missing
            error = f"{type(exc).__name__}: {exc}"
        body = engine.health(g.namespace, facts, error, loop_states(rt), rt.wake_bus_health(), view)
        return json_response(body, body["http_status"])

    return bp
