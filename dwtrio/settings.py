"""Every knob dwtrio has, read once from the environment (and CLI flags).

`Settings` is the only place that reads ``os.environ``. Each field carries its
environment variable name in its metadata; the CLI derives one ``--flag`` per
field from the same table, so every flag has an env twin and the configuration
reference in ``docs/configuration.md`` can be checked against this module.

Names follow the reference server's ``DW_*`` variables wherever one exists, so
operators moving from it keep their configuration. dwtrio's own knobs (database
and Redis URLs, bind address, process count, data dir) use new ``DW_*`` names.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from dwtrio.errors import SettingsError
from dwtrio.protocol.admission import AdmissionPolicy, parse_overrides

log = logging.getLogger(__name__)

SECONDS = 1
BYTES = 1

# Reference variables that the seeds (/work/shared/seeds) or the protocol documents
# name and dwtrio does not implement, with what they do in the reference. They are
# accepted even under DW_ENV_AUDIT_STRICT, so a configuration copied from the
# reference boots, but each one that is set gets a startup warning saying it has
# no effect here. Anything else with the DW_ prefix is reported as unknown (and
# fails a strict boot).
REFERENCE_ONLY: dict[str, str] = {
    # server identity and mode
    "DW_MODE": "server mode (service or embedded)",
    "DW_SERVER_KEY": "server-internal runtime key",
    "DW_SERVER_IMAGE": "image of the reference compose file",
    "DW_SERVER_TAG": "image tag of the reference compose file",
    "DW_ENV": "the dw CLI's profile selection (a client variable)",
    "DW_EXPOSE_PACKAGE_PROVENANCE": "package provenance in cluster info",
    "DW_PACKAGE_PROVENANCE_PATH": "package provenance file",
    "DW_SERIALIZER": "payload codec diagnostics (payloads are always Avro)",
    # auth and caller attribution
    "DW_AUTH_PROVIDER": "custom auth provider class",
    "DW_TRUST_FORWARDED_ATTRIBUTION_HEADERS": "trust forwarded caller headers",
    "DW_CALLER_TYPE_HEADER": "forwarded caller type header",
    "DW_CALLER_LABEL_HEADER": "forwarded caller label header",
    "DW_AUTH_STATUS_HEADER": "forwarded auth status header",
    "DW_AUTH_METHOD_HEADER": "forwarded auth method header",
    # dispatch, polling and matching
    "DW_TASK_DISPATCH_MODE": "workflow-task dispatch mode",
    "DW_V2_TASK_DISPATCH_MODE": "package-level workflow-task dispatch mode",
    "DW_WORKER_POLL_SIGNAL_CHECK_INTERVAL_MS": "wake-signal check interval of a poll",
    "DW_POLLING_CACHE_PATH": "poll coordination directory",
    "DW_WAKE_SIGNAL_TTL_SECONDS": "TTL of per-queue wake signals",
    "DW_MAX_TASKS_PER_POLL": "tasks returned per poll (dwtrio returns one)",
    "DW_V2_MATCHING_ROLE_QUEUE_WAKE": "queue wakes in the worker loop or a dedicated pass",
    "DW_V2_MULTI_NODE": "multi-node cache backend validation",
    "DW_V2_VALIDATE_CACHE_BACKEND": "long-poll cache backend validation at boot",
    "DW_V2_CACHE_VALIDATION_MODE": "cache backend validation failure handling",
    # task repair
    "DW_EXPIRED_WORKFLOW_TASK_RECOVERY_SCAN_LIMIT": "expired workflow tasks recovered per pass",
    "DW_EXPIRED_WORKFLOW_TASK_RECOVERY_TTL_SECONDS": "seconds between expired-task recovery passes",
    "DW_V2_TASK_REPAIR_REDISPATCH_AFTER_SECONDS": "seconds before an orphaned task is redispatched",
    "DW_V2_TASK_REPAIR_LOOP_THROTTLE_SECONDS": "seconds between task-repair passes",
    "DW_V2_TASK_REPAIR_SCAN_LIMIT": "tasks considered per task-repair pass",
    "DW_V2_TASK_REPAIR_FAILURE_BACKOFF_MAX_SECONDS": "task-repair failure backoff ceiling",
    # query and update tasks
    "DW_QUERY_TASK_LEASE_TIMEOUT": "lease timeout of query tasks",
    "DW_QUERY_TASK_TTL_SECONDS": "retention of query-task results",
    "DW_V2_UPDATE_WAIT_POLL_INTERVAL_MS": "interval of update-stage polls",
    # limits
    "DW_MAX_HISTORY_EVENTS": "history events per run before continue-as-new is enforced",
    "DW_MAX_OPERATION_NAME_LENGTH": "longest signal, query or update name",
    "DW_MAX_SEARCH_ATTRIBUTE_KEY_LENGTH": "longest search attribute key",
    "DW_MAX_SEARCH_ATTRIBUTE_VALUE_BYTES": "largest search attribute string value",
    "DW_V2_LIMIT_PENDING_ACTIVITIES": "package-level pending activities per run",
    "DW_V2_LIMIT_PENDING_CHILDREN": "package-level pending children per run",
    "DW_V2_LIMIT_PENDING_TIMERS": "package-level pending timers per run",
    "DW_V2_LIMIT_PENDING_SIGNALS": "package-level pending signals per run",
    "DW_V2_LIMIT_PENDING_UPDATES": "package-level pending updates per run",
    "DW_V2_LIMIT_COMMAND_BATCH_SIZE": "commands per workflow-task completion",
    "DW_V2_LIMIT_PAYLOAD_SIZE_BYTES": "package-level payload size",
    "DW_V2_LIMIT_MEMO_SIZE_BYTES": "package-level memo size",
    "DW_V2_LIMIT_SEARCH_ATTRIBUTE_SIZE_BYTES": "package-level search attribute size",
    "DW_V2_LIMIT_HISTORY_TRANSACTION_SIZE": "history events per transaction",
    "DW_V2_LIMIT_WARNING_THRESHOLD_PERCENT": "percent of a limit at which to warn",
    "DW_V2_GUARDRAILS_BOOT": "boot-time structural guardrail mode",
    # package (workflow engine) controls
    "DW_V2_NAMESPACE": "package-level namespace scope",
    "DW_V2_CURRENT_COMPATIBILITY": "worker-compatibility marker",
    "DW_V2_SUPPORTED_COMPATIBILITIES": "accepted worker-compatibility markers",
    "DW_V2_COMPATIBILITY_NAMESPACE": "compatibility namespace of a fleet",
    "DW_V2_COMPATIBILITY_HEARTBEAT_TTL": "validity of a compatibility heartbeat",
    "DW_V2_FLEET_VALIDATION_MODE": "worker-compatibility admission posture",
    "DW_V2_PIN_TO_RECORDED_FINGERPRINT": "resolve runs by their recorded fingerprint",
    "DW_V2_CONTINUE_AS_NEW_EVENT_THRESHOLD": "history events that suggest continue-as-new",
    "DW_V2_CONTINUE_AS_NEW_SIZE_BYTES_THRESHOLD": "history bytes that suggest continue-as-new",
}
RECOGNISED_UNUSED = frozenset(REFERENCE_ONLY)

#: The values of DW_WAKE_BUS (``Settings.wake_bus_kind`` resolves ``auto``).
WAKE_BUSES = ("auto", "redis", "postgres", "local")


def read_env(name: str) -> str | None:
    """One variable as :meth:`Settings.from_env` reads it (empty is unset), for offline
    commands that need one value and not a whole configuration (``dwtrio history verify``)."""
    return os.environ.get(name) or None


def _setting(
    env: str,
    default: Any,
    doc: str,
    *,
    secret: bool = False,
    factory: bool = False,
) -> Any:
    """Declare one setting: its env variable, its default and a one-line description."""
    meta = {"env": env, "doc": doc, "secret": secret}
    if factory:
        return attrs.field(factory=default, metadata=meta)
    return attrs.field(default=default, metadata=meta)


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "dwtrio")


@attrs.frozen(kw_only=True)
class Settings:
    """The whole configuration of one dwtrio process. Units are in the names."""

    # --- identity and serving --------------------------------------------------
    server_id: str = _setting(
        "DW_SERVER_ID",
        socket.gethostname,
        "Identifier of this node, shown in cluster info.",
        factory=True,
    )
    bind: str = _setting("DW_BIND", "127.0.0.1:8080", "host:port the HTTP server listens on.")
    workers: int = _setting(
        "DW_WORKERS", 1, "Number of server processes sharing the listening socket."
    )
    backlog: int = _setting("DW_BACKLOG", 4096, "Listen backlog of the HTTP socket.")
    graceful_timeout_s: float = _setting(
        "DW_GRACEFUL_TIMEOUT_SECONDS", 10.0, "Seconds in-flight requests get to finish on shutdown."
    )
    keep_alive_timeout_s: float = _setting(
        "DW_KEEP_ALIVE_TIMEOUT_SECONDS",
        75.0,
        "Seconds an idle connection stays open (also one that has not sent a request "
        "yet); keep it above the idle timeout of clients' pools and of load balancers.",
    )
    body_timeout_s: float = _setting(
        "DW_BODY_TIMEOUT_SECONDS",
        60.0,
        "Seconds a client has to send a whole request body once its headers have arrived; "
        "a slower body is answered 408 request_timeout and the connection closed.",
    )
    max_connections: int | None = _setting(
        "DW_MAX_CONNECTIONS",
        None,
        "Most client connections a server process holds open; more are closed as soon as "
        "they are accepted (default: the open-file limit minus a tenth, at least 64, and "
        "the database pool).",
    )
    log_level: str = _setting("DW_LOG_LEVEL", "info", "Log level: debug, info, warning or error.")
    log_format: str = _setting(
        "DW_LOG_FORMAT",
        "text",
        "Log line format: text (key=value pairs after the message) or json (one object per line).",
    )

    # --- metrics (docs/operations.md) -------------------------------------------
    metrics_bind: str | None = _setting(
        "DW_METRICS_BIND",
        None,
        "host:port of a separate, unauthenticated listener serving the Prometheus metrics "
        "(any path); with DW_WORKERS > 1 the parent process serves it, summing every "
        "server process. Unset: no separate listener.",
    )
    metrics_token: str | None = _setting(
        "DW_METRICS_TOKEN",
        None,
        "Bearer token that may read GET /metrics on the main port, besides operator and "
        "admin credentials (a scraper then needs no control-plane role).",
        secret=True,
    )

    # --- storage ---------------------------------------------------------------
    database_url: str | None = _setting(
        "DW_DATABASE_URL",
        None,
        "Postgres DSN. Unset: start an embedded Postgres in the data dir.",
        secret=True,
    )
    data_dir: str = _setting(
        "DW_DATA_DIR",
        _default_data_dir,
        "Directory of the embedded Postgres cluster and other local state.",
        factory=True,
    )
    db_pool_min_size: int = _setting(
        "DW_DB_POOL_MIN_SIZE", 2, "Connections the pool keeps open per process."
    )
    db_pool_max_size: int = _setting(
        "DW_DB_POOL_MAX_SIZE", 16, "Most connections the pool opens per process."
    )
    db_outage_wait_s: float = _setting(
        "DW_DB_OUTAGE_WAIT_SECONDS",
        10.0,
        "How long a request waits for an unreachable database to come back before it "
        "answers 503 backend_unavailable (0: answer at once).",
    )
    db_statement_timeout_s: float = _setting(
        "DW_DB_STATEMENT_TIMEOUT_SECONDS",
        30.0,
        "Longest one database statement of the pool may run, waiting for locks included "
        "(PostgreSQL's statement_timeout on every pooled connection); past it the statement "
        "is cancelled and the request answers 503 backend_unavailable.",
    )
    db_pool_wait_s: float = _setting(
        "DW_DB_POOL_WAIT_SECONDS",
        10.0,
        "How long an operation waits for a pooled connection while all DW_DB_POOL_MAX_SIZE "
        "are busy before the request answers 503 backend_unavailable.",
    )
    auto_bootstrap: bool = _setting(
        "DW_AUTO_BOOTSTRAP",
        True,
        "`dwtrio serve` applies migrations and seeds the default namespace at start.",
    )
    bootstrap_retries: int = _setting(
        "DW_BOOTSTRAP_RETRIES", 30, "Attempts `dwtrio bootstrap` makes to reach the database."
    )
    bootstrap_delay_s: float = _setting(
        "DW_BOOTSTRAP_DELAY_SECONDS", 2.0, "Seconds between bootstrap attempts."
    )

    # --- wake bus --------------------------------------------------------------
    redis_url: str | None = _setting(
        "DW_REDIS_URL",
        None,
        "Redis URL for cross-process wake signals (used by DW_WAKE_BUS=auto or redis).",
        secret=True,
    )
    wake_bus: str = _setting(
        "DW_WAKE_BUS",
        "auto",
        "What carries wakes between server processes and nodes: redis (DW_REDIS_URL), "
        "postgres (LISTEN/NOTIFY on the database, one more connection per process), local "
        "(this process only) or auto: redis when DW_REDIS_URL is set, else postgres with "
        "DW_DATABASE_URL or DW_WORKERS > 1, else local.",
    )

    # --- namespaces ------------------------------------------------------------
    default_namespace: str = _setting(
        "DW_DEFAULT_NAMESPACE", "default", "Namespace used when a request names none."
    )
    history_retention_days: int = _setting(
        "DW_HISTORY_RETENTION_DAYS", 30, "Default retention of closed runs for new namespaces."
    )

    # --- authentication --------------------------------------------------------
    auth_driver: str = _setting(
        "DW_AUTH_DRIVER", "token", "Authentication driver: none, token or signature."
    )
    auth_token: str | None = _setting(
        "DW_AUTH_TOKEN", None, "Legacy shared bearer token.", secret=True
    )
    worker_token: str | None = _setting(
        "DW_WORKER_TOKEN", None, "Bearer token of the worker role.", secret=True
    )
    operator_token: str | None = _setting(
        "DW_OPERATOR_TOKEN", None, "Bearer token of the operator role.", secret=True
    )
    admin_token: str | None = _setting(
        "DW_ADMIN_TOKEN", None, "Bearer token of the admin role.", secret=True
    )
    signature_key: str | None = _setting(
        "DW_SIGNATURE_KEY", None, "Legacy shared HMAC key (signature driver).", secret=True
    )
    worker_signature_key: str | None = _setting(
        "DW_WORKER_SIGNATURE_KEY", None, "HMAC key of the worker role.", secret=True
    )
    operator_signature_key: str | None = _setting(
        "DW_OPERATOR_SIGNATURE_KEY", None, "HMAC key of the operator role.", secret=True
    )
    admin_signature_key: str | None = _setting(
        "DW_ADMIN_SIGNATURE_KEY", None, "HMAC key of the admin role.", secret=True
    )
    auth_backward_compatible: bool = _setting(
        "DW_AUTH_BACKWARD_COMPATIBLE", True, "Honour the legacy DW_AUTH_TOKEN / DW_SIGNATURE_KEY."
    )

    # --- worker protocol -------------------------------------------------------
    worker_protocol_version: str = _setting(
        "DW_WORKER_PROTOCOL_VERSION", "1.20", "Worker protocol version advertised in discovery."
    )
    worker_poll_timeout_s: int = _setting(
        "DW_WORKER_POLL_TIMEOUT", 30, "Longest a long-poll is held open, in seconds."
    )
    worker_poll_interval_ms: int = _setting(
        "DW_WORKER_POLL_INTERVAL_MS",
        1000,
        "How often a parked poll rechecks Postgres even without a wake.",
    )
    workflow_task_timeout_s: int = _setting(
        "DW_WORKFLOW_TASK_TIMEOUT", 60, "Lease length of a workflow task, in seconds."
    )
    activity_task_timeout_s: int = _setting(
        "DW_ACTIVITY_TASK_TIMEOUT", 300, "Default lease length of an activity attempt, in seconds."
    )
    task_repair_interval_s: float = _setting(
        "DW_TASK_REPAIR_INTERVAL_SECONDS",
        3.0,
        "How often expired task leases are looked for and redispatched, in seconds.",
    )
    timeout_check_interval_s: float = _setting(
        "DW_TIMEOUT_CHECK_INTERVAL_SECONDS",
        1.0,
        "How often passed activity and workflow deadlines are looked for, in seconds.",
    )
    retention_enabled: bool = _setting(
        "DW_RETENTION_ENABLED",
        True,
        "Run the retention loop, which deletes runs closed longer ago than their "
        "namespace's retention_days.",
    )
    retention_interval_s: float = _setting(
        "DW_RETENTION_INTERVAL_SECONDS",
        60.0,
        "Seconds between retention passes (a pass that filled its batch runs again at once).",
    )
    retention_batch_size: int = _setting(
        "DW_RETENTION_BATCH_SIZE",
        100,
        "Most runs one retention transaction deletes (1..1000).",
    )
    worker_stale_after_s: int | None = _setting(
        "DW_WORKER_STALE_AFTER_SECONDS",
        None,
        "Seconds without heartbeat before a worker counts as stale and its leases are "
        "recovered (default max(2 x poll timeout, 60); at least 2).",
    )
    worker_deregistration_fencing: bool = _setting(
        "DW_WORKER_DEREGISTRATION_FENCING",
        True,
        "Advertise fenced worker deregistration in discovery (off while rolling from a "
        "release without it: docs/rolling-upgrades.md).",
    )
    history_page_size_default: int = _setting(
        "DW_HISTORY_PAGE_SIZE_DEFAULT", 500, "Default page size of worker history reads."
    )
    history_page_size_max: int = _setting(
        "DW_HISTORY_PAGE_SIZE_MAX", 1000, "Largest page size of worker history reads."
    )
    query_task_timeout_s: int | None = _setting(
        "DW_QUERY_TASK_TIMEOUT",
        None,
        "Seconds a query waits for a worker (default: the poll timeout).",
    )
    query_task_max_pending_per_queue: int = _setting(
        "DW_QUERY_TASK_MAX_PENDING_PER_QUEUE",
        1024,
        "Pending query tasks per queue before new queries are refused.",
    )
    update_wait_timeout_s: int = _setting(
        "DW_V2_UPDATE_WAIT_COMPLETION_TIMEOUT_SECONDS",
        10,
        "Default seconds an update with wait_for=completed waits for its handler.",
    )

    # --- task-queue admission (docs/task-queues.md) ----------------------------
    workflow_task_max_active_leases_per_queue: int | None = _setting(
        "DW_WORKFLOW_TASK_MAX_ACTIVE_LEASES_PER_QUEUE",
        None,
        "Most workflow tasks leased at once per queue, across all nodes (0 or unset: no cap).",
    )
    workflow_task_max_active_leases_per_namespace: int | None = _setting(
        "DW_WORKFLOW_TASK_MAX_ACTIVE_LEASES_PER_NAMESPACE",
        None,
        "Most workflow tasks leased at once per namespace (0 or unset: no cap).",
    )
    workflow_task_max_dispatches_per_minute: int | None = _setting(
        "DW_WORKFLOW_TASK_MAX_DISPATCHES_PER_MINUTE",
        None,
        "Most workflow tasks handed out per queue per UTC minute (0 or unset: no cap).",
    )
    workflow_task_max_dispatches_per_minute_per_namespace: int | None = _setting(
        "DW_WORKFLOW_TASK_MAX_DISPATCHES_PER_MINUTE_PER_NAMESPACE",
        None,
        "Most workflow tasks handed out per namespace per UTC minute (0 or unset: no cap).",
    )
    activity_task_max_active_leases_per_queue: int | None = _setting(
        "DW_ACTIVITY_TASK_MAX_ACTIVE_LEASES_PER_QUEUE",
        None,
        "Most activity tasks leased at once per queue, across all nodes (0 or unset: no cap).",
    )
    activity_task_max_active_leases_per_namespace: int | None = _setting(
        "DW_ACTIVITY_TASK_MAX_ACTIVE_LEASES_PER_NAMESPACE",
        None,
        "Most activity tasks leased at once per namespace (0 or unset: no cap).",
    )
    activity_task_max_dispatches_per_minute: int | None = _setting(
        "DW_ACTIVITY_TASK_MAX_DISPATCHES_PER_MINUTE",
        None,
        "Most activity tasks handed out per queue per UTC minute (0 or unset: no cap).",
    )
    activity_task_max_dispatches_per_minute_per_namespace: int | None = _setting(
        "DW_ACTIVITY_TASK_MAX_DISPATCHES_PER_MINUTE_PER_NAMESPACE",
        None,
        "Most activity tasks handed out per namespace per UTC minute (0 or unset: no cap).",
    )
    task_queue_admission_overrides: str | None = _setting(
        "DW_TASK_QUEUE_ADMISSION_OVERRIDES",
        None,
        "JSON object of per-queue cap overrides and budget groups (docs/task-queues.md).",
    )

    # --- timers ----------------------------------------------------------------
    timer_poll_interval_ms: int = _setting(
        "DW_TIMER_POLL_INTERVAL_MS",
        250,
        "Longest the timer loop sleeps between checks for due timers (it wakes sooner "
        "for a timer due earlier).",
    )

    # --- schedules -------------------------------------------------------------
    scheduler_enabled: bool = _setting(
        "DW_SCHEDULER_ENABLED",
        True,
        "Run the scheduler loop in this process (every node may run it at once).",
    )
    scheduler_poll_interval_ms: int = _setting(
        "DW_SCHEDULER_POLL_INTERVAL_MS",
        1000,
        "Longest the scheduler sleeps between checks for due schedules (it wakes sooner "
        "for a schedule due earlier, and at once when one changes in this process).",
    )
    scheduler_concurrency: int = _setting(
        "DW_SCHEDULER_CONCURRENCY",
        4,
        "Firing transactions this process's scheduler runs at once (each fires up to 16 "
        "due schedules).",
    )
    schedule_catchup_window_s: int = _setting(
        "DW_SCHEDULE_CATCHUP_WINDOW_SECONDS",
        60,
        "After downtime, occurrences at most this old still fire; older ones are "
        "recorded as missed (ScheduleFiresMissed).",
    )

    # --- system health (docs/operations.md) -------------------------------------
    health_loop_stall_s: float = _setting(
        "DW_HEALTH_LOOP_STALL_SECONDS",
        60.0,
        "GET /api/system/health warns when a background loop's pass has run this long, or "
        "its next pass is this late.",
    )
    health_backlog_age_s: float = _setting(
        "DW_HEALTH_BACKLOG_AGE_SECONDS",
        300.0,
        "GET /api/system/health warns when the oldest due task of the namespace has waited "
        "this long.",
    )
    health_schedule_lag_s: float = _setting(
        "DW_HEALTH_SCHEDULE_LAG_SECONDS",
        60.0,
        "GET /api/system/health warns when an active schedule is due this long without firing.",
    )

    # --- limits ----------------------------------------------------------------
    max_payload_bytes: int = _setting(
        "DW_MAX_PAYLOAD_BYTES", 2 * 1024 * 1024 * BYTES, "Largest request body accepted, in bytes."
    )
    max_memo_bytes: int = _setting(
        "DW_MAX_MEMO_BYTES", 262144 * BYTES, "Largest workflow memo, in bytes."
    )
    max_search_attributes: int = _setting(
        "DW_MAX_SEARCH_ATTRIBUTES",
        100,
        "Most search attributes per workflow, and most custom ones registered per namespace.",
    )
    max_pending_activities: int = _setting(
        "DW_MAX_PENDING_ACTIVITIES", 2000, "Most open activities per run."
    )
    max_pending_children: int = _setting(
        "DW_MAX_PENDING_CHILDREN", 2000, "Most open child workflows per run."
    )

    # --- history export --------------------------------------------------------
    history_export_signing_key: str | None = _setting(
        "DW_V2_HISTORY_EXPORT_SIGNING_KEY",
        None,
        "HMAC-SHA256 key that signs history export bundles (unset: bundles carry a checksum only).",
        secret=True,
    )
    history_export_signing_key_id: str | None = _setting(
        "DW_V2_HISTORY_EXPORT_SIGNING_KEY_ID",
        None,
        "Key id written beside the signature of a signed export (for key rotation).",
    )

    # --- responses and boot ----------------------------------------------------
    compression_enabled: bool = _setting(
        "DW_COMPRESSION_ENABLED",
        True,
        "Compress JSON responses of 1 KiB or more (gzip or raw deflate).",
    )
    env_audit_strict: bool = _setting(
        "DW_ENV_AUDIT_STRICT", False, "Fail boot when an unknown DW_* variable is set."
    )

    # ---------------------------------------------------------------------------
    @property
    def effective_worker_stale_after_s(self) -> int:
        if self.worker_stale_after_s is not None:
            return self.worker_stale_after_s
        return max(self.worker_poll_timeout_s * 2, 60)

    @property
    def worker_heartbeat_interval_s(self) -> int:
        """The worker heartbeat cadence advertised to workers: a quarter of the stale
        window (1 to 60 s), so a live worker can miss three heartbeats in a row."""
        return min(60, max(1, self.effective_worker_stale_after_s // 4))

    @property
    def effective_query_task_timeout_s(self) -> int:
        return self.query_task_timeout_s or self.worker_poll_timeout_s

    @property
    def admission_policy(self) -> AdmissionPolicy:
        """The admission caps as a policy (validated by :meth:`validate`)."""
        defaults: dict[str, dict[str, int]] = {}
        for kind in ("workflow", "activity"):
            for field in (
                "max_active_leases_per_queue",
                "max_active_leases_per_namespace",
                "max_dispatches_per_minute",
                "max_dispatches_per_minute_per_namespace",
            ):
                value = getattr(self, f"{kind}_task_{field}")
                if value is not None and value >= 1:
                    defaults.setdefault(kind, {})[field] = value
        return AdmissionPolicy(defaults, parse_overrides(self.task_queue_admission_overrides))

    @property
    def wake_bus_kind(self) -> str:
        """The wake bus this process runs: ``redis``, ``postgres`` or ``local``
        (DW_WAKE_BUS with ``auto`` resolved)."""
        if self.wake_bus != "auto":
            return self.wake_bus
        if self.redis_url:
            return "redis"
        if self.database_url or self.workers > 1:
            return "postgres"
        return "local"

    @property
    def db_connections_per_process(self) -> int:
        """Most database connections one server process opens: the pool, plus the
        Postgres wake bus's LISTEN connection when that is the bus."""
        return self.db_pool_max_size + (1 if self.wake_bus_kind == "postgres" else 0)

    @property
    def bind_host_port(self) -> tuple[str, int]:
        host, _, port = self.bind.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)

    @property
    def metrics_host_port(self) -> tuple[str, int]:
        """DW_METRICS_BIND as (host, port); the port in ASCII digits, 0 to 65535."""
        host, sep, port = (self.metrics_bind or "").rpartition(":")
        if not sep or not (port.isascii() and port.isdigit()) or int(port) > 65535:
            raise ValueError(self.metrics_bind)
        return host.strip("[]") or "0.0.0.0", int(port)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``), then ``overrides``.

        Empty strings count as unset, as in the reference server. Unknown ``DW_*``
        names are logged; with ``DW_ENV_AUDIT_STRICT`` set they raise SettingsError.
        Reference variables dwtrio does not implement (``REFERENCE_ONLY``) are logged
        as having no effect, and never fail the boot.

        Raises:
            SettingsError: a value does not parse, fails validation, or (strict)
                an unknown ``DW_*`` variable is present.
        """
        env = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for field in attrs.fields(cls):
            raw = env.get(field.metadata["env"], "")
            if raw.strip() != "":
                values[field.name] = parse_value(field, raw)
        for name, value in overrides.items():
            if value is not None:
                values[name] = value
        settings = cls(**values)
        settings.validate()
        for name in reference_only_env_names(env):
            log.warning(
                "%s is a reference server variable (%s) that has no effect in dwtrio; "
                "it is accepted and ignored",
                name,
                REFERENCE_ONLY[name],
            )
        if settings.redis_url and settings.wake_bus in ("postgres", "local"):
            log.warning(
                "DW_REDIS_URL is set but not used: DW_WAKE_BUS=%s carries wakes", settings.wake_bus
            )
        unknown = unknown_env_names(env)
        if unknown:
            if settings.env_audit_strict:
                raise SettingsError(
                    f"unknown DW_* environment variables: {', '.join(unknown)} "
                    "(DW_ENV_AUDIT_STRICT is set)"
                )
            log.warning("ignoring unknown DW_* environment variables: %s", ", ".join(unknown))
        return settings

    def validate(self) -> None:
        """Check cross-field rules; raise SettingsError naming the variable."""
        problems: list[str] = []
        if self.workers < 1:
            problems.append("DW_WORKERS must be >= 1")
        if not 0 <= self.worker_poll_timeout_s <= 60:
            problems.append("DW_WORKER_POLL_TIMEOUT must be between 0 and 60")
        if self.worker_poll_interval_ms < 10:
            problems.append("DW_WORKER_POLL_INTERVAL_MS must be >= 10")
        if not self.keep_alive_timeout_s > 0:
            problems.append("DW_KEEP_ALIVE_TIMEOUT_SECONDS must be > 0")
        if not self.body_timeout_s > 0:
            problems.append("DW_BODY_TIMEOUT_SECONDS must be > 0")
        if self.max_connections is not None and self.max_connections < 1:
            problems.append("DW_MAX_CONNECTIONS must be >= 1")
        if self.task_repair_interval_s <= 0:
            problems.append("DW_TASK_REPAIR_INTERVAL_SECONDS must be > 0")
        if self.timeout_check_interval_s <= 0:
            problems.append("DW_TIMEOUT_CHECK_INTERVAL_SECONDS must be > 0")
        for env, value in (
            ("DW_HEALTH_LOOP_STALL_SECONDS", self.health_loop_stall_s),
            ("DW_HEALTH_BACKLOG_AGE_SECONDS", self.health_backlog_age_s),
            ("DW_HEALTH_SCHEDULE_LAG_SECONDS", self.health_schedule_lag_s),
        ):
            if not 0 < value < math.inf:
                problems.append(f"{env} must be > 0")
        if not self.retention_interval_s > 0:
            problems.append("DW_RETENTION_INTERVAL_SECONDS must be > 0")
        if not 1 <= self.retention_batch_size <= 1000:
            problems.append("DW_RETENTION_BATCH_SIZE must be between 1 and 1000")
        if self.worker_stale_after_s is not None and self.worker_stale_after_s < 2:
            # A 1 s window is shorter than any heartbeat cadence plus its round trip:
            # live workers would lose their leases between two heartbeats.
            problems.append("DW_WORKER_STALE_AFTER_SECONDS must be >= 2")
        if self.timer_poll_interval_ms < 10:
            problems.append("DW_TIMER_POLL_INTERVAL_MS must be >= 10")
        if self.scheduler_poll_interval_ms < 10:
            problems.append("DW_SCHEDULER_POLL_INTERVAL_MS must be >= 10")
        if not 1 <= self.scheduler_concurrency <= 64:
            problems.append("DW_SCHEDULER_CONCURRENCY must be between 1 and 64")
        if self.schedule_catchup_window_s < 1:
            # Every fire is a little late; a zero window would count each one as missed.
            problems.append("DW_SCHEDULE_CATCHUP_WINDOW_SECONDS must be >= 1")
        if self.query_task_timeout_s is not None and self.query_task_timeout_s < 1:
            problems.append("DW_QUERY_TASK_TIMEOUT must be >= 1")
        if self.effective_query_task_timeout_s < 1:
            problems.append("DW_QUERY_TASK_TIMEOUT must be set when DW_WORKER_POLL_TIMEOUT is 0")
        if self.query_task_max_pending_per_queue < 1:
            problems.append("DW_QUERY_TASK_MAX_PENDING_PER_QUEUE must be >= 1")
        if self.update_wait_timeout_s < 1:
            problems.append("DW_V2_UPDATE_WAIT_COMPLETION_TIMEOUT_SECONDS must be >= 1")
        if self.max_payload_bytes < 1024:
            problems.append("DW_MAX_PAYLOAD_BYTES must be >= 1024")
        if self.db_pool_min_size < 0 or self.db_pool_max_size < max(1, self.db_pool_min_size):
            problems.append("DW_DB_POOL_MAX_SIZE must be >= max(1, DW_DB_POOL_MIN_SIZE)")
        if not (0 <= self.db_outage_wait_s <= 60):
            problems.append("DW_DB_OUTAGE_WAIT_SECONDS must be between 0 and 60")
        if not (0.1 <= self.db_statement_timeout_s <= 3600):
            problems.append("DW_DB_STATEMENT_TIMEOUT_SECONDS must be between 0.1 and 3600")
        if not (0.1 <= self.db_pool_wait_s <= 600):
            problems.append("DW_DB_POOL_WAIT_SECONDS must be between 0.1 and 600")
        if self.history_page_size_default > self.history_page_size_max:
            problems.append("DW_HISTORY_PAGE_SIZE_DEFAULT must be <= DW_HISTORY_PAGE_SIZE_MAX")
        if self.wake_bus not in WAKE_BUSES:
            problems.append("DW_WAKE_BUS must be auto, redis, postgres or local")
        elif self.wake_bus == "redis" and not self.redis_url:
            problems.append("DW_WAKE_BUS=redis needs DW_REDIS_URL (the Redis to publish wakes on)")
        if self.log_level.lower() not in {"debug", "info", "warning", "error"}:
            problems.append("DW_LOG_LEVEL must be debug, info, warning or error")
        if self.log_format not in {"text", "json"}:
            problems.append("DW_LOG_FORMAT must be text or json")
        major, _, minor = self.worker_protocol_version.partition(".")
        if not (major.isdigit() and minor.isdigit()):
            problems.append("DW_WORKER_PROTOCOL_VERSION must look like 1.20")
        try:
            parse_overrides(self.task_queue_admission_overrides)
        except ValueError as exc:
            problems.append(f"DW_TASK_QUEUE_ADMISSION_OVERRIDES {exc}")
        try:
            self.bind_host_port  # noqa: B018 - parsing is the check
        except ValueError:
            problems.append("DW_BIND must be host:port")
        if self.metrics_bind is not None:
            try:
                self.metrics_host_port  # noqa: B018 - parsing is the check
            except ValueError:
                problems.append("DW_METRICS_BIND must be host:port")
        if problems:
            raise SettingsError("; ".join(problems))


def parse_value(field: attrs.Attribute[Any], raw: str) -> Any:
    """Parse one raw env/CLI string into the field's type."""
    kind = str(field.type)
    env = field.metadata["env"]
    raw = raw.strip()
    try:
        if "bool" in kind:
            lowered = raw.lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if "int" in kind:
            return int(raw)
        if "float" in kind:
            value = float(raw)
            if not math.isfinite(value):  # nan/inf would stall or crash a loop's sleep
                raise ValueError(raw)
            return value
    except ValueError:
        raise SettingsError(f"{env}={raw!r} is not a valid {kind.replace(' | None', '')}") from None
    return raw


def iter_settings() -> Iterator[attrs.Attribute[Any]]:
    """Every setting field, in declaration order (CLI and docs use this)."""
    yield from attrs.fields(Settings)


def env_names() -> frozenset[str]:
    return frozenset(f.metadata["env"] for f in attrs.fields(Settings))


def unknown_env_names(environ: Mapping[str, str]) -> list[str]:
    known = env_names() | RECOGNISED_UNUSED
    return sorted(k for k in environ if k.startswith("DW_") and k not in known)


def reference_only_env_names(environ: Mapping[str, str]) -> list[str]:
    """The reference variables set in ``environ`` that dwtrio accepts but ignores
    (an empty value counts as unset)."""
    return sorted(k for k, v in environ.items() if k in REFERENCE_ONLY and v.strip())
