"""The discovery manifest (``GET /api/cluster/info``) and the control-plane contract.

Everything here is a pure function of :class:`~dwtrio.settings.Settings` and a
:class:`Features` value that states what the server implements today. Nothing
reads the database, the clock or the environment, so the manifest can be built
per request and checked in unit tests against the official SDK's validators.

Rules this module keeps:

* Only advertise what works. Every optional capability is switched on by an
  explicit argument that defaults to off; flags the SDK treats as strict
  contracts (fenced deregistration, lease renewal, sticky execution, runtime
  external payloads, update-validation tasks, observability context) are never
  emitted at all.
* Protocol values (schema names, versions, field names, value lists) are
  exact; free-text descriptions are dwtrio's own.
* Every call returns freshly built dicts and lists, so callers may mutate the
  result (for example to add diagnostics blocks) without touching shared state.

The per-response ``control_plane`` envelope reuses :data:`PROJECTED_FIELDS`,
:data:`OPERATIONS` and :func:`response_contract`; the worker plane puts
:func:`worker_server_capabilities` on every worker response.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs

from dwtrio.protocol import commands
from dwtrio.settings import Settings

__all__ = [
    "AUTH_COMPOSITION_SCHEMA",
    "AUTH_COMPOSITION_VERSION",
    "CLIENT_COMPATIBILITY_SCHEMA",
    "CLIENT_COMPATIBILITY_VERSION",
    "CONTROL_PLANE_HEADER",
    "CONTROL_PLANE_VERSION",
    "IMPLEMENTED_WORKFLOW_TASK_COMMANDS",
    "KNOWN_WORKFLOW_TASK_COMMANDS",
    "LEGACY_FIELDS",
    "LEGACY_FIELD_POLICY",
    "NEVER_ADVERTISED_WORKER_CAPABILITIES",
    "NON_TERMINAL_WORKFLOW_TASK_COMMANDS",
    "OPERATIONS",
    "PAYLOAD_CODECS",
    "PROJECTED_FIELDS",
    "REQUEST_CONTRACT_SCHEMA",
    "REQUEST_CONTRACT_VERSION",
    "RESPONSE_COMPRESSION_ENCODINGS",
    "RESPONSE_CONTRACT_SCHEMA",
    "RESPONSE_CONTRACT_VERSION",
    "RESPONSE_SCHEMA",
    "RESPONSE_VERSION",
    "TERMINAL_WORKFLOW_TASK_COMMANDS",
    "TOPOLOGY_SCHEMA",
    "TOPOLOGY_VERSION",
    "UPDATE_WAIT_STAGES",
    "WORKER_DEREGISTRATION_RECEIPT_RETENTION_S",
    "WORKER_PROTOCOL_HEADER",
    "Features",
    "OperationContract",
    "auth_composition_contract",
    "build_cluster_info",
    "capabilities",
    "client_compatibility",
    "control_plane_manifest",
    "limits",
    "request_contract",
    "response_compression",
    "response_contract",
    "response_contract_manifest",
    "structural_limits",
    "supported_workflow_task_commands",
    "topology",
    "worker_deregistration_fencing",
    "worker_server_capabilities",
]

# --- headers and versions ------------------------------------------------------

CONTROL_PLANE_VERSION: Final = "2"
CONTROL_PLANE_HEADER: Final = "X-Durable-Workflow-Control-Plane-Version"
WORKER_PROTOCOL_HEADER: Final = "X-Durable-Workflow-Protocol-Version"

# --- control-plane response contract ---------------------------------------------

RESPONSE_SCHEMA: Final = "durable-workflow.v2.control-plane-response"
RESPONSE_VERSION: Final = 1
RESPONSE_CONTRACT_SCHEMA: Final = "durable-workflow.v2.control-plane-response.contract"
RESPONSE_CONTRACT_VERSION: Final = 1
LEGACY_FIELD_POLICY: Final = "reject_non_canonical"
LEGACY_FIELDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "query": "query_name",
        "signal": "signal_name",
        "update": "update_name",
        "wait_policy": "wait_for",
    }
)

PROJECTED_FIELDS: Final[tuple[str, ...]] = (
    "run_id",
    "workflow_type",
    "namespace",
    "business_key",
    "status",
    "status_bucket",
    "is_terminal",
    "task_queue",
    "run_number",
    "run_count",
    "workflow_count",
    "is_current_run",
    "compatibility",
    "started_at",
    "closed_at",
    "last_progress_at",
    "wait_kind",
    "wait_reason",
    "next_page_token",
    "command_id",
    "command_status",
    "command_source",
    "target_scope",
    "outcome",
    "reason",
    "rejection_reason",
    "validation_errors",
    "result",
    "result_envelope",
    "update_id",
    "update_status",
    "wait_for",
    "wait_timed_out",
    "wait_timeout_seconds",
    "blocked_reason",
    "message",
    "diagnostic_status",
)


@attrs.frozen
class OperationContract:
    """What one workflow operation promises in its ``control_plane`` envelope.

    ``operation_name_field`` names the body field that carries the signal,
    query or update name (``None`` for operations without one).
    ``required_fields`` must be non-empty strings inside the envelope on every
    response; ``success_fields`` must be present as keys on 2xx responses.
    """

    operation_name_field: str | None
    required_fields: tuple[str, ...]
    success_fields: tuple[str, ...]

    def to_manifest(self) -> dict[str, Any]:
        """The JSON shape published under ``response_contract.operations``."""
        return {
            "operation_name_field": self.operation_name_field,
            "required_fields": list(self.required_fields),
            "success_fields": list(self.success_fields),
        }


_NAMED: Final = ("workflow_id", "operation_name", "operation_name_field")
_WF: Final = ("workflow_id",)
_OUTCOME: Final = ("outcome",)

OPERATIONS: Final[Mapping[str, OperationContract]] = MappingProxyType(
    {
        "list": OperationContract(None, (), ()),
        "start": OperationContract(None, (), ("workflow_id", "outcome")),
        "describe": OperationContract(None, _WF, ()),
        "list_runs": OperationContract(None, _WF, ()),
        "describe_run": OperationContract(None, _WF, ("run_id",)),
        "debug_workflow": OperationContract(None, _WF, ("run_id", "diagnostic_status")),
        "history": OperationContract(None, ("workflow_id", "run_id"), ("next_page_token",)),
        "signal": OperationContract("signal_name", _NAMED, _OUTCOME),
        "query": OperationContract("query_name", _NAMED, ("result",)),
        "update": OperationContract("update_name", _NAMED, _OUTCOME),
        "cancel": OperationContract(None, _WF, _OUTCOME),
        "terminate": OperationContract(None, _WF, _OUTCOME),
        "repair": OperationContract(None, _WF, _OUTCOME),
        "archive": OperationContract(None, _WF, _OUTCOME),
        "redrive": OperationContract(None, _WF, _OUTCOME),
    }
)


def response_contract(operation: str | None = None) -> dict[str, Any]:
    """The ``contract`` object of the control-plane response contract.

    Without ``operation`` this is the operation-independent part, exactly as
    published at ``control_plane.response_contract.contract`` in discovery.
    With an operation name it also carries that operation's
    ``required_fields`` and ``success_fields``: the object a per-response
    ``control_plane.contract`` envelope carries.

    Raises:
        KeyError: ``operation`` is not one of :data:`OPERATIONS`.
    """
    contract: dict[str, Any] = {
        "schema": RESPONSE_CONTRACT_SCHEMA,
        "version": RESPONSE_CONTRACT_VERSION,
        "legacy_field_policy": LEGACY_FIELD_POLICY,
        "legacy_fields": dict(LEGACY_FIELDS),
    }
    if operation is not None:
        spec = OPERATIONS[operation]
        contract["required_fields"] = list(spec.required_fields)
        contract["success_fields"] = list(spec.success_fields)
    return contract


def response_contract_manifest() -> dict[str, Any]:
    """``control_plane.response_contract`` as published in discovery."""
    return {
        "schema": RESPONSE_SCHEMA,
        "version": RESPONSE_VERSION,
        "contract": response_contract(),
        "projected_fields": list(PROJECTED_FIELDS),
        "operations": {name: spec.to_manifest() for name, spec in OPERATIONS.items()},
    }


# --- control-plane request contract ----------------------------------------------

REQUEST_CONTRACT_SCHEMA: Final = "durable-workflow.v2.control-plane-request.contract"
REQUEST_CONTRACT_VERSION: Final = 1
UPDATE_WAIT_STAGES: Final[tuple[str, ...]] = ("accepted", "completed")
PAYLOAD_CODECS: Final[tuple[str, ...]] = ("avro",)


def request_contract() -> dict[str, Any]:
    """``control_plane.request_contract``: canonical request values per operation.

    The SDK worker checks ``schema`` and ``version``; ``Client.update_workflow``
    checks that the requested wait stage is listed under
    ``operations.update.fields.wait_for.canonical_values``; the CLI refuses the
    ``rejected_aliases`` and anything outside non-empty ``canonical_values``.
    """
    return {
        "schema": REQUEST_CONTRACT_SCHEMA,
        "version": REQUEST_CONTRACT_VERSION,
        "operations": {
            "list": {
                "fields": {
                    "status": {
                        "canonical_values": ["running", "completed", "failed"],
                        "rejected_aliases": {
                            "cancelled": "failed",
                            "terminated": "failed",
                            "pending": "running",
                            "waiting": "running",
                        },
                    },
                },
            },
            "start": {
                "fields": {
                    "duplicate_policy": {
                        "canonical_values": ["fail", "use-existing"],
                        "rejected_aliases": {"use_existing": "use-existing"},
                    },
                    "execution_timeout_seconds": {"type": "integer", "min": 1},
                    "run_timeout_seconds": {"type": "integer", "min": 1},
                    "payload_codec": {
                        "type": "string",
                        "canonical_values": list(PAYLOAD_CODECS),
                        "description": (
                            "Codec that encoded the start input envelope. dwtrio accepts "
                            "only language-neutral codecs."
                        ),
                    },
                },
                "unsupported_fields": [
                    "workflow_execution_timeout",
                    "workflow_run_timeout",
                    "workflow_task_timeout",
                    "retry_policy",
                    "idempotency_key",
                    "request_id",
                ],
            },
            "update": {
                "fields": {"wait_for": {"canonical_values": list(UPDATE_WAIT_STAGES)}},
                "removed_fields": {"wait_policy": "Use wait_for."},
            },
        },
    }


def control_plane_manifest() -> dict[str, Any]:
    """The ``control_plane`` block of discovery (the protocol manifest, not an envelope)."""
    return {
        "version": CONTROL_PLANE_VERSION,
        "header": CONTROL_PLANE_HEADER,
        "response_contract": response_contract_manifest(),
        "request_contract": request_contract(),
    }


# --- worker protocol -------------------------------------------------------------

TERMINAL_WORKFLOW_TASK_COMMANDS: Final[tuple[str, ...]] = (
    "complete_workflow",
    "fail_workflow",
    "continue_as_new",
)
NON_TERMINAL_WORKFLOW_TASK_COMMANDS: Final[tuple[str, ...]] = (
    "schedule_activity",
    "start_timer",
    "start_child_workflow",
    "complete_update",
    "fail_update",
    "record_side_effect",
    "record_version_marker",
    "upsert_search_attributes",
    "open_condition_wait",
    "upsert_memo",
    "record_local_activity",
    "start_service_operation",
    "open_signal_wait",
)
#: Every command name dwtrio may ever advertise, in advertisement order
#: (terminal commands first, then the rest as the command catalogue lists them).
KNOWN_WORKFLOW_TASK_COMMANDS: Final[tuple[str, ...]] = (
    TERMINAL_WORKFLOW_TASK_COMMANDS + NON_TERMINAL_WORKFLOW_TASK_COMMANDS
)

#: Workflow-task commands the engine applies today: exactly the command types the
#: grammar in ``dwtrio.protocol.commands`` parses, so the two cannot drift.
IMPLEMENTED_WORKFLOW_TASK_COMMANDS: Final[tuple[str, ...]] = commands.IMPLEMENTED

#: ``server_capabilities`` keys that change SDK behaviour strictly (a wrong
#: shape aborts worker start or breaks every payload call). dwtrio implements
#: none of these, so they are never emitted (``worker_deregistration_fencing``,
#: which it implements, is emitted by :func:`worker_server_capabilities`).
NEVER_ADVERTISED_WORKER_CAPABILITIES: Final[frozenset[str]] = frozenset(
    {
        "activity_lease_renewal",
        "query_task_authority",
        "runtime_external_payload_transport",
        "sticky_execution",
        "update_validation_tasks",
        "synchronous_update_validation",
        "observability_context",
    }
)

RESPONSE_COMPRESSION_ENCODINGS: Final[tuple[str, ...]] = ("gzip", "deflate")

#: How long a fenced worker deregistration's receipt is answered again
#: (``worker_deregistration_fencing.receipt_retention_seconds``).
WORKER_DEREGISTRATION_RECEIPT_RETENTION_S: Final = 600


def worker_deregistration_fencing() -> dict[str, Any]:
    """``server_capabilities.worker_deregistration_fencing``: registrations answer a
    ``registration_token`` and the SDK worker deregisters with it at the endpoint named
    (the SDK checks every field; a wrong one aborts worker start)."""
    return {
        "supported": True,
        "schema": "durable-workflow.v2.worker-deregistration.v1",
        "endpoint": "/worker/registrations/{workerId}/deregister",
        "receipt_retention_seconds": WORKER_DEREGISTRATION_RECEIPT_RETENTION_S,
    }


def response_compression(settings: Settings) -> list[str]:
    """Encodings dwtrio may apply to JSON responses (empty when compression is off)."""
    return list(RESPONSE_COMPRESSION_ENCODINGS) if settings.compression_enabled else []


def supported_workflow_task_commands(commands: Iterable[str]) -> list[str]:
    """Order ``commands`` for advertisement: terminal ones first, then the rest.

    Duplicates collapse. Raises ValueError for a name that is not a known
    workflow-task command, so a typo cannot silently advertise nothing.
    """
    wanted = set(commands)
    unknown = wanted.difference(KNOWN_WORKFLOW_TASK_COMMANDS)
    if unknown:
        raise ValueError(f"unknown workflow task commands: {', '.join(sorted(unknown))}")
    return [name for name in KNOWN_WORKFLOW_TASK_COMMANDS if name in wanted]


def worker_server_capabilities(
    settings: Settings,
    *,
    commands: Iterable[str] = IMPLEMENTED_WORKFLOW_TASK_COMMANDS,
    query_tasks: bool = False,
    poll_request_idempotency: bool = False,
    activity_retry_policy: bool = False,
    activity_timeouts: bool = False,
    child_workflow_retry_policy: bool = False,
    child_workflow_timeouts: bool = False,
    parent_close_policy: bool = False,
    non_retryable_failures: bool = False,
    deregistration_fencing: bool = False,
) -> dict[str, Any]:
    """``worker_protocol.server_capabilities``, also sent on every worker response.

    Feature flags are always present as explicit booleans: an explicit
    ``query_tasks: false`` makes ``Client.query_workflow`` fail as
    "unsupported" rather than as "discovery unavailable".
    ``workflow_memo_updates`` is derived: it appears only when ``upsert_memo``
    is among ``commands``, because the SDK needs both.
    """
    advertised = supported_workflow_task_commands(commands)
    capabilities: dict[str, Any] = {
        "long_poll_timeout": settings.worker_poll_timeout_s,
        "supported_workflow_task_commands": advertised,
        "workflow_task_poll_request_idempotency": poll_request_idempotency,
        "history_page_size_default": settings.history_page_size_default,
        "history_page_size_max": settings.history_page_size_max,
        "query_tasks": query_tasks,
        "activity_retry_policy": activity_retry_policy,
        "activity_timeouts": activity_timeouts,
        "child_workflow_retry_policy": child_workflow_retry_policy,
        "child_workflow_timeouts": child_workflow_timeouts,
        "parent_close_policy": parent_close_policy,
        "non_retryable_failures": non_retryable_failures,
        "response_compression": response_compression(settings),
    }
    if "upsert_memo" in advertised:
        capabilities["workflow_memo_updates"] = {"supported": True}
    if deregistration_fencing:
        capabilities["worker_deregistration_fencing"] = worker_deregistration_fencing()
    return capabilities


# --- auth composition --------------------------------------------------------------

AUTH_COMPOSITION_SCHEMA: Final = "durable-workflow.v2.auth-composition.contract"
AUTH_COMPOSITION_VERSION: Final = 1


def auth_composition_contract() -> dict[str, Any]:
    """``auth_composition_contract``: how clients resolve connection and auth settings.

    The SDK worker validates this block strictly (schema, version, canonical
    environment names, token/mTLS/signed-header statuses, required effective
    config fields and the never-echo list); the descriptive parts are text.
    """
    any_source = "one of effective_config.source_values"
    return {
        "schema": AUTH_COMPOSITION_SCHEMA,
        "version": AUTH_COMPOSITION_VERSION,
        "scope": "external_execution_carriers",
        "unknown_field_policy": "ignore_additive_reject_unknown_required",
        "precedence": {
            "connection_values": ["flag", "environment", "selected_profile", "default"],
            "profile_selection": ["flag_env", "DW_ENV", "current_profile", "default_profile"],
            "notes": [
                "A command-line flag applies to that one invocation only.",
                "Environment variables configure a carrier without being written to disk.",
                "Profiles are stored configuration; keep secrets in them as references.",
                "Fallback defaults are reported in effective-config output like any source.",
            ],
        },
        "canonical_environment": {
            "server_url": "DURABLE_WORKFLOW_SERVER_URL",
            "namespace": "DURABLE_WORKFLOW_NAMESPACE",
            "auth_token": "DURABLE_WORKFLOW_AUTH_TOKEN",
            "tls_verify": "DURABLE_WORKFLOW_TLS_VERIFY",
            "profile": "DW_ENV",
        },
        "auth_material": {
            "token": {
                "status": "supported",
                "transport": "bearer_authorization_header",
                "persisted_as": "secret_reference_or_profile_env_reference",
                "effective_config_value": "redacted",
            },
            "mtls": {
                "status": "reserved",
                "persisted_as": "certificate_and_key_references",
                "effective_config_value": "references_only",
            },
            "signed_headers": {
                "status": "reserved",
                "persisted_as": "key_reference_and_header_allowlist",
                "effective_config_value": "references_only",
            },
            "extensions": {
                "status": "reserved",
                "rule": (
                    "Any further kind of auth material has to specify its redaction, "
                    "storage and precedence rules before a client may use it."
                ),
            },
        },
        "effective_config": {
            "required_fields": ["server_url", "namespace", "profile", "auth", "tls", "identity"],
            "source_values": [
                "flag",
                "environment",
                "selected_profile",
                "profile_env",
                "default",
                "server",
            ],
            "field_contracts": {
                "server_url": {"value": "absolute URL, normalised", "source": any_source},
                "namespace": {"value": "non-empty namespace name", "source": any_source},
                "profile": {"name": "string or null", "source": "profile_selection order"},
                "auth": {
                    "type": "token, mtls, signed_headers or none",
                    "source": any_source,
                    "value": "redacted, or a reference name only",
                },
                "tls": {"verify": "boolean", "source": any_source},
                "identity": {
                    "subject": "string or null",
                    "roles": "list of strings",
                    "source": "reported by the server or the carrier",
                },
            },
        },
        "redaction": {
            "never_echo": [
                "bearer_tokens",
                "private_keys",
                "shared_signature_keys",
                "client_certificate_private_key_material",
                "raw_authorization_headers",
            ],
            "allowed_diagnostics": [
                "redacted",
                "secret_reference_name",
                "environment_variable_name",
                "profile_name",
                "certificate_reference_name",
                "key_reference_name",
            ],
        },
        "resolution": {
            "server_url": "Use the winning URL as given; the client adds its own route prefix.",
            "namespace": "Send the winning namespace on every request in the X-Namespace header.",
            "identity": "Identity reported by the server is authoritative when present.",
            "tls": "Refuse invalid certificates unless the winning tls_verify is false.",
        },
    }


# --- client compatibility ----------------------------------------------------------

CLIENT_COMPATIBILITY_SCHEMA: Final = "durable-workflow.v2.client-compatibility"
CLIENT_COMPATIBILITY_VERSION: Final = 1


def client_compatibility(settings: Settings) -> dict[str, Any]:
    """``client_compatibility``: clients negotiate through the protocol manifests.

    Client version constraints are ``"*"`` so no CLI or SDK release is locked
    out by version string alone.
    """
    return {
        "schema": CLIENT_COMPATIBILITY_SCHEMA,
        "version": CLIENT_COMPATIBILITY_VERSION,
        "authority": "protocol_manifests",
        "top_level_version_role": "informational",
        "fail_closed": True,
        "required_protocols": {
            "auth_composition": {
                "schema": AUTH_COMPOSITION_SCHEMA,
                "version": AUTH_COMPOSITION_VERSION,
            },
            "control_plane": {
                "version": CONTROL_PLANE_VERSION,
                "header": CONTROL_PLANE_HEADER,
                "request_contract": {
                    "schema": REQUEST_CONTRACT_SCHEMA,
                    "version": REQUEST_CONTRACT_VERSION,
                },
            },
            "worker_protocol": {
                "version": settings.worker_protocol_version,
                "header": WORKER_PROTOCOL_HEADER,
            },
        },
        "clients": {
            "cli": {
                "supported_versions": "*",
                "requires": [
                    "auth_composition.version",
                    "control_plane.version",
                    "control_plane.request_contract",
                ],
            },
            "sdk-python": {
                "supported_versions": "*",
                "requires": [
                    "auth_composition.version",
                    "control_plane.version",
                    "control_plane.request_contract",
                    "worker_protocol.version",
                ],
            },
        },
    }


# --- limits ------------------------------------------------------------------------

MAX_SEARCH_ATTRIBUTE_KEY_LENGTH: Final = 128
MAX_SEARCH_ATTRIBUTE_VALUE_BYTES: Final = 2048
MAX_OPERATION_NAME_LENGTH: Final = 256

PENDING_TIMER_COUNT: Final = 2000
PENDING_SIGNAL_COUNT: Final = 5000
PENDING_UPDATE_COUNT: Final = 500
COMMAND_BATCH_SIZE: Final = 1000
SEARCH_ATTRIBUTE_SIZE_BYTES: Final = 40960
HISTORY_TRANSACTION_SIZE: Final = 5000
WARNING_THRESHOLD_PERCENT: Final = 80


def limits(settings: Settings) -> dict[str, int]:
    """``limits``: per-request and per-workflow caps. The SDK reads ``max_payload_bytes``."""
    return {
        "max_payload_bytes": settings.max_payload_bytes,
        "max_memo_bytes": settings.max_memo_bytes,
        "max_search_attributes": settings.max_search_attributes,
        "max_search_attribute_key_length": MAX_SEARCH_ATTRIBUTE_KEY_LENGTH,
        "max_search_attribute_value_bytes": MAX_SEARCH_ATTRIBUTE_VALUE_BYTES,
        "max_operation_name_length": MAX_OPERATION_NAME_LENGTH,
        "max_pending_activities": settings.max_pending_activities,
        "max_pending_children": settings.max_pending_children,
    }


def structural_limits(settings: Settings) -> dict[str, int]:
    """``structural_limits``: per-run structural caps, consistent with :func:`limits`."""
    return {
        "pending_activity_count": settings.max_pending_activities,
        "pending_child_count": settings.max_pending_children,
        "pending_timer_count": PENDING_TIMER_COUNT,
        "pending_signal_count": PENDING_SIGNAL_COUNT,
        "pending_update_count": PENDING_UPDATE_COUNT,
        "command_batch_size": COMMAND_BATCH_SIZE,
        "payload_size_bytes": settings.max_payload_bytes,
        "memo_size_bytes": settings.max_memo_bytes,
        "search_attribute_size_bytes": SEARCH_ATTRIBUTE_SIZE_BYTES,
        "history_transaction_size": HISTORY_TRANSACTION_SIZE,
        "warning_threshold_percent": WARNING_THRESHOLD_PERCENT,
    }


# --- topology ----------------------------------------------------------------------

TOPOLOGY_SCHEMA: Final = "durable-workflow.v2.role-topology"
TOPOLOGY_VERSION: Final = 4
_SERVER_ROLES: Final = ("api_ingress", "control_plane", "matching", "history_projection")
_ROLE_CATALOG: Final[Mapping[str, tuple[str, bool, bool, bool, str]]] = MappingProxyType(
    {
        # role: (plane, hosted here, runs user code, external http, steady-state interface)
        "api_ingress": ("control", True, False, True, "external_http"),
        "control_plane": ("control", True, False, True, "control_plane_contract"),
        "matching": ("control", True, False, True, "worker_poll_and_repair"),
        "history_projection": ("control", True, False, False, "projection_writer"),
        "scheduler": ("control", False, False, False, "schedule_runner"),
        "execution_plane": ("execution", False, True, False, "worker_protocol"),
    }
)


def topology(*, scheduler: bool = False) -> dict[str, Any]:
    """``topology``: dwtrio is a ``standalone_server`` HTTP node with remote workers;
    with ``scheduler`` this process also runs the schedule loop."""
    current = [*_SERVER_ROLES, "scheduler"] if scheduler else list(_SERVER_ROLES)
    return {
        "schema": TOPOLOGY_SCHEMA,
        "version": TOPOLOGY_VERSION,
        "supported_shapes": ["embedded", "standalone_server", "split_control_execution"],
        "role_vocabulary": list(_ROLE_CATALOG),
        "current_shape": "standalone_server",
        "current_process_class": "server_http_node",
        "current_roles": current,
        "execution_mode": "remote_worker_protocol",
        "matching_role": {
            "queue_wake_enabled": True,
            "shape": "in_worker",
            "wake_owner": "worker_loop",
            "task_dispatch_mode": "poll",
            "partition_primitives": ["connection", "queue", "compatibility", "namespace"],
            "backpressure_model": "lease_ownership",
        },
        "role_catalog": {
            role: {
                "plane": plane,
                "hosted_by_current_node": hosted or role in current,
                "runs_user_code": user_code,
                "accepts_external_http": external_http,
                "steady_state_interface": interface,
            }
            for role, (plane, hosted, user_code, external_http, interface) in _ROLE_CATALOG.items()
        },
        "shape_assignments": {
            "standalone_server": {
                "process_classes": [
                    {"name": "server_http_node", "roles": list(_SERVER_ROLES)},
                    {"name": "scheduler_node", "roles": ["scheduler"]},
                    {"name": "worker_node", "roles": ["execution_plane"]},
                ]
            },
            "embedded": {
                "process_classes": [
                    {
                        "name": "application_process",
                        "roles": [
                            "control_plane",
                            "matching",
                            "history_projection",
                            "scheduler",
                            "execution_plane",
                        ],
                    }
                ]
            },
            "split_control_execution": {
                "process_classes": [
                    {"name": "ingress_node", "roles": ["api_ingress"]},
                    {
                        "name": "control_plane_node",
                        "roles": ["api_ingress", "control_plane", "history_projection"],
                    },
                    {"name": "scheduler_node", "roles": ["scheduler"]},
                    {"name": "matching_node", "roles": ["matching"]},
                    {"name": "execution_node", "roles": ["execution_plane"]},
                ]
            },
        },
        "authority_boundaries": {},
        "authority_surfaces": {},
        "failure_domains": {},
        "scaling_boundaries": {},
        "supported_topologies": {},
        "migration_path": [],
        "kernel_invariants": [],
    }


# --- the whole manifest ------------------------------------------------------------


def _command_tuple(commands: Iterable[str]) -> tuple[str, ...]:
    return tuple(commands)


@attrs.frozen(kw_only=True)
class Features:
    """What the running server implements. Everything defaults to "not yet".

    The manifest advertises exactly these; flip a field only in the same
    change that makes the feature work end to end.
    """

    workflow_tasks: bool = False
    activity_tasks: bool = False
    signals: bool = False
    queries: bool = False
    updates: bool = False
    schedules: bool = False
    schedule_jitter: bool = False
    schedule_max_runs: bool = False
    search_attributes: bool = False
    history_export: bool = False
    continue_as_new: bool = False
    child_workflows: bool = False
    activity_timeouts: bool = False
    activity_retry_policy: bool = False
    non_retryable_failures: bool = False
    parent_close_policy: bool = False
    child_workflow_retry_policy: bool = False
    child_workflow_timeouts: bool = False
    history_retention: bool = False
    payload_codec_envelope: bool = False
    payload_codec_envelope_responses: bool = False
    #: Durable workflow streams: GET/POST .../runs/{run}/streams (docs/workflow-streams.md).
    workflow_streams: bool = False
    #: Workflow-task commands the engine applies; see IMPLEMENTED_WORKFLOW_TASK_COMMANDS.
    workflow_task_commands: tuple[str, ...] = attrs.field(
        default=IMPLEMENTED_WORKFLOW_TASK_COMMANDS, converter=_command_tuple
    )
    #: Workflow-task polls replay the leased task for a repeated poll_request_id.
    poll_request_idempotency: bool = False
    #: Queries are routed to workers as query tasks (``Client.query_workflow`` needs it).
    query_tasks: bool = False
    #: Registrations answer a registration_token; POST .../deregister removes only that one.
    worker_deregistration_fencing: bool = False

    @workflow_task_commands.validator
    def _check_commands(self, _attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
        supported_workflow_task_commands(value)  # raises ValueError on unknown names


def capabilities(settings: Settings, features: Features) -> dict[str, Any]:
    """Top-level ``capabilities``: informational flags, true only where implemented."""
    return {
        "workflow_tasks": features.workflow_tasks,
        "activity_tasks": features.activity_tasks,
        "signals": features.signals,
        "queries": features.queries,
        "updates": features.updates,
        "schedules": features.schedules,
        "schedule_jitter": features.schedule_jitter,
        "schedule_max_runs": features.schedule_max_runs,
        "search_attributes": features.search_attributes,
        "history_export": features.history_export,
        "continue_as_new": features.continue_as_new,
        "child_workflows": features.child_workflows,
        "activity_timeouts": features.activity_timeouts,
        "activity_retry_policy": features.activity_retry_policy,
        "child_workflow_retry_policy": features.child_workflow_retry_policy,
        "child_workflow_timeouts": features.child_workflow_timeouts,
        "parent_close_policy": features.parent_close_policy,
        "non_retryable_failures": features.non_retryable_failures,
        "history_retention": features.history_retention,
        "payload_codec_envelope": features.payload_codec_envelope,
        "payload_codec_envelope_responses": features.payload_codec_envelope_responses,
        "bridge_adapter_outcome_contract": False,
        "external_executor_config_contract": False,
        "invocable_carrier_contract": False,
        "payload_codecs": list(PAYLOAD_CODECS),
        "response_compression": response_compression(settings),
        "workflow_streams": features.workflow_streams,
    }


def worker_capabilities(settings: Settings, features: Features) -> dict[str, Any]:
    """``server_capabilities`` for the features the server implements."""
    return worker_server_capabilities(
        settings,
        commands=features.workflow_task_commands,
        query_tasks=features.query_tasks,
        poll_request_idempotency=features.poll_request_idempotency,
        activity_retry_policy=features.activity_retry_policy,
        activity_timeouts=features.activity_timeouts,
        child_workflow_retry_policy=features.child_workflow_retry_policy,
        child_workflow_timeouts=features.child_workflow_timeouts,
        parent_close_policy=features.parent_close_policy,
        non_retryable_failures=features.non_retryable_failures,
        deregistration_fencing=features.worker_deregistration_fencing
        and settings.worker_deregistration_fencing,
    )


def build_cluster_info(
    settings: Settings,
    *,
    namespace: str,
    version: str,
    features: Features,
) -> dict[str, Any]:
    """The compatibility manifest served at ``GET /api/cluster/info``.

    ``namespace`` is the namespace resolved for the request. No block in the
    lean manifest depends on it yet: the ``namespace`` block is deliberately
    left out (publishing external-payload storage there switches the SDK onto
    a strict transport contract dwtrio does not implement). ``version`` is the
    build version, informational only.

    Diagnostics-only blocks (``worker_fleet``, ``task_repair``) need I/O and
    are added by the caller; ``package_provenance`` and
    ``bridge_adapter_outcome_contract`` are never published.
    """
    del namespace  # reserved for namespace-scoped blocks; see the docstring
    return {
        "server_id": settings.server_id,
        "version": version,
        "default_namespace": settings.default_namespace,
        "supported_sdk_versions": {"python": "*", "cli": "*"},
        "capabilities": capabilities(settings, features),
        "limits": limits(settings),
        "structural_limits": structural_limits(settings),
        "client_compatibility": client_compatibility(settings),
        "auth_composition_contract": auth_composition_contract(),
        "control_plane": control_plane_manifest(),
        "worker_protocol": {
            "version": settings.worker_protocol_version,
            "server_capabilities": worker_capabilities(settings, features),
        },
        "topology": topology(scheduler=features.schedules and settings.scheduler_enabled),
    }


#: What this build of dwtrio implements end to end. Flip a flag only in the
#: change that makes the feature work (and test it through the real SDK).
SERVER_FEATURES = Features(
    workflow_tasks=True,
    history_export=True,
    history_retention=True,
    workflow_streams=True,
    search_attributes=True,
    continue_as_new=True,
    child_workflows=True,
    parent_close_policy=True,
    child_workflow_timeouts=True,
    activity_tasks=True,
    activity_retry_policy=True,
    activity_timeouts=True,
    non_retryable_failures=True,
    signals=True,
    payload_codec_envelope=True,
    payload_codec_envelope_responses=True,
    poll_request_idempotency=True,
    queries=True,
    query_tasks=True,
    updates=True,
    schedules=True,
    schedule_jitter=True,
    schedule_max_runs=True,
    worker_deregistration_fencing=True,
)
