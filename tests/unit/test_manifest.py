"""The discovery manifest against the official SDK's own validators.

Every check here calls real ``durable_workflow`` 2.12.0 code (worker
compatibility gate, auth-composition parser, client capability gates), so a
manifest change that would stop SDK workers or clients fails in this file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from durable_workflow import Client
from durable_workflow.auth_composition import (
    AuthCompositionContractError,
    parse_auth_composition_contract,
)
from durable_workflow.errors import RuntimeCapabilityUnsupported, RuntimeDiscoveryUnavailable
from durable_workflow.worker import _validate_server_compatibility

from dwtrio import manifest
from dwtrio.manifest import (
    IMPLEMENTED_WORKFLOW_TASK_COMMANDS,
    NEVER_ADVERTISED_WORKER_CAPABILITIES,
    OPERATIONS,
    PROJECTED_FIELDS,
    Features,
    build_cluster_info,
    response_contract,
    worker_server_capabilities,
)
from dwtrio.settings import Settings

SDK_PROTOCOL_ENV = "DURABLE_WORKFLOW_WORKER_PROTOCOL_VERSION"

ALL_ON = Features(
    workflow_tasks=True,
    activity_tasks=True,
    signals=True,
    queries=True,
    updates=True,
    schedules=True,
    search_attributes=True,
    history_export=True,
    continue_as_new=True,
    child_workflows=True,
    activity_timeouts=True,
    activity_retry_policy=True,
    non_retryable_failures=True,
    parent_close_policy=True,
    child_workflow_retry_policy=True,
    child_workflow_timeouts=True,
    history_retention=True,
    payload_codec_envelope=True,
    workflow_task_commands=manifest.KNOWN_WORKFLOW_TASK_COMMANDS,
    poll_request_idempotency=True,
    query_tasks=True,
    worker_deregistration_fencing=True,
)


@pytest.fixture(autouse=True)
def _sdk_default_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK reads this variable inside its gates; pin the default (1.20).
    monkeypatch.delenv(SDK_PROTOCOL_ENV, raising=False)


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"server_id": "node-1", "data_dir": "/nonexistent", **overrides}
    settings = Settings(**values)
    settings.validate()
    return settings


def make_info(settings: Settings | None = None, features: Features | None = None) -> dict[str, Any]:
    return build_cluster_info(
        settings or make_settings(),
        namespace="default",
        version="0.1.0",
        features=features or Features(),
    )


def walk_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from walk_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_keys(item)


# --- the SDK worker's compatibility gate ---------------------------------------------


@pytest.mark.parametrize("features", [Features(), ALL_ON], ids=["today", "all-on"])
def test_sdk_worker_accepts_manifest(features: Features) -> None:
    _validate_server_compatibility(make_info(features=features))


def test_sdk_worker_on_protocol_1_19_accepts_manifest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SDK_PROTOCOL_ENV, "1.19")
    _validate_server_compatibility(make_info())


def test_sdk_parses_auth_composition_block() -> None:
    contract = parse_auth_composition_contract(make_info()["auth_composition_contract"])
    assert contract.supports_token_auth
    assert contract.reserves_mtls
    assert contract.reserves_signed_headers


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, leaf = path.split(".")

    def mutate(info: dict[str, Any]) -> None:
        node = info
        for key in parents:
            node = node[key]
        node[leaf] = value

    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    *parents, leaf = path.split(".")

    def mutate(info: dict[str, Any]) -> None:
        node = info
        for key in parents:
            node = node[key]
        del node[leaf]

    return mutate


REJECTED_MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "worker protocol 1.0": _set("worker_protocol.version", "1.0"),
    "worker protocol 1.19": _set("worker_protocol.version", "1.19"),
    "worker protocol 2.20": _set("worker_protocol.version", "2.20"),
    "no worker_protocol": _drop("worker_protocol"),
    "control plane 3": _set("control_plane.version", "3"),
    "no control_plane": _drop("control_plane"),
    "request contract schema": _set(
        "control_plane.request_contract.schema", "durable-workflow.v2.control-plane-request"
    ),
    "request contract version 2": _set("control_plane.request_contract.version", 2),
    "no request contract": _drop("control_plane.request_contract"),
    "no auth contract": _drop("auth_composition_contract"),
    "auth schema": _set("auth_composition_contract.schema", "durable-workflow.v2.auth"),
    "auth version 2": _set("auth_composition_contract.version", 2),
    "auth profile env": _set("auth_composition_contract.canonical_environment.profile", "DW_P"),
    "auth token unsupported": _set(
        "auth_composition_contract.auth_material.token.status", "reserved"
    ),
    "auth mtls supported": _set("auth_composition_contract.auth_material.mtls.status", "supported"),
    "auth never_echo": _set("auth_composition_contract.redaction.never_echo", ["private_keys"]),
    "auth required fields": _set(
        "auth_composition_contract.effective_config.required_fields", ["server_url"]
    ),
}


@pytest.mark.parametrize("mutation", REJECTED_MUTATIONS.values(), ids=REJECTED_MUTATIONS.keys())
def test_sdk_worker_rejects_broken_manifest(mutation: Callable[[dict[str, Any]], None]) -> None:
    info = make_info()
    mutation(info)
    with pytest.raises(RuntimeError, match="Server compatibility error"):
        _validate_server_compatibility(info)


def test_sdk_auth_parser_rejects_broken_block() -> None:
    block = make_info()["auth_composition_contract"]
    block["auth_material"]["token"]["effective_config_value"] = "plain"
    with pytest.raises(AuthCompositionContractError):
        parse_auth_composition_contract(block)


def test_worker_protocol_version_comes_from_settings() -> None:
    info = make_info(make_settings(worker_protocol_version="1.19"))
    assert info["worker_protocol"]["version"] == "1.19"
    required = info["client_compatibility"]["required_protocols"]["worker_protocol"]
    assert required["version"] == "1.19"
    with pytest.raises(RuntimeError, match=r"incompatible worker_protocol\.version"):
        _validate_server_compatibility(info)


# --- workflow task commands ------------------------------------------------------------


def test_advertised_commands_are_exactly_what_the_engine_parses() -> None:
    from dwtrio.engine.commands import HANDLERS
    from dwtrio.protocol.commands import COMMAND_TYPES

    parsed = set(COMMAND_TYPES.values())
    assert set(COMMAND_TYPES) == set(HANDLERS)
    assert set(IMPLEMENTED_WORKFLOW_TASK_COMMANDS) == parsed
    caps = worker_server_capabilities(make_settings())
    assert set(caps["supported_workflow_task_commands"]) == parsed
    # terminal commands first
    assert caps["supported_workflow_task_commands"][:2] == ["complete_workflow", "fail_workflow"]


def test_advertised_commands_follow_implementation_terminal_first() -> None:
    implemented = ("schedule_activity", "fail_workflow", "complete_workflow", "schedule_activity")
    caps = worker_server_capabilities(make_settings(), commands=implemented)
    expected = ["complete_workflow", "fail_workflow", "schedule_activity"]
    assert caps["supported_workflow_task_commands"] == expected
    info = make_info(features=Features(workflow_task_commands=implemented))
    assert info["worker_protocol"]["server_capabilities"]["supported_workflow_task_commands"] == (
        expected
    )


def test_full_command_catalogue_order() -> None:
    caps = worker_server_capabilities(
        make_settings(), commands=reversed(manifest.KNOWN_WORKFLOW_TASK_COMMANDS)
    )
    advertised = caps["supported_workflow_task_commands"]
    assert advertised[:3] == ["complete_workflow", "fail_workflow", "continue_as_new"]
    assert advertised == list(manifest.KNOWN_WORKFLOW_TASK_COMMANDS)
    # upsert_memo is only usable by the SDK together with the memo capability object
    assert caps["workflow_memo_updates"] == {"supported": True}
    without_memo = ("complete_workflow", "fail_workflow")
    assert "workflow_memo_updates" not in worker_server_capabilities(
        make_settings(), commands=without_memo
    )


def test_unknown_command_is_refused() -> None:
    with pytest.raises(ValueError, match="cancel_selection_operation"):
        worker_server_capabilities(make_settings(), commands=["cancel_selection_operation"])
    with pytest.raises(ValueError, match="complete_wokflow"):
        Features(workflow_task_commands=("complete_wokflow",))


# --- capabilities ------------------------------------------------------------------------


def test_deregistration_fencing_is_advertised_with_the_sdk_contract() -> None:
    """SDK 2.12.0 Worker._register refuses to start unless every field is exactly this."""
    caps = make_info(features=ALL_ON)["worker_protocol"]["server_capabilities"]
    assert caps["worker_deregistration_fencing"] == {
        "supported": True,
        "schema": "durable-workflow.v2.worker-deregistration.v1",
        "endpoint": "/worker/registrations/{workerId}/deregister",
        "receipt_retention_seconds": 600,
    }
    assert "worker_deregistration_fencing" not in worker_server_capabilities(make_settings())
    assert manifest.SERVER_FEATURES.worker_deregistration_fencing is True


def test_deregistration_fencing_can_be_left_unadvertised_for_a_rolling_upgrade() -> None:
    """DW_WORKER_DEREGISTRATION_FENCING=false: discovery does not offer it, so an SDK worker
    that then registers through a node of a release without it still starts."""
    settings = make_settings(worker_deregistration_fencing=False)
    caps = make_info(settings, features=ALL_ON)["worker_protocol"]["server_capabilities"]
    assert "worker_deregistration_fencing" not in caps
    # Everything else is advertised as before.
    on = make_info(features=ALL_ON)["worker_protocol"]["server_capabilities"]
    assert {k: v for k, v in on.items() if k != "worker_deregistration_fencing"} == caps


@pytest.mark.parametrize("features", [Features(), ALL_ON], ids=["today", "all-on"])
def test_strict_capabilities_never_appear(features: Features) -> None:
    info = make_info(features=features)
    keys = set(walk_keys(info))
    assert not keys & NEVER_ADVERTISED_WORKER_CAPABILITIES
    assert {
        "activity_lease_renewal",
        "query_task_authority",
        "runtime_external_payload_transport",
        "sticky_execution",
        "update_validation_tasks",
        "observability_context",
    } <= NEVER_ADVERTISED_WORKER_CAPABILITIES
    # no PHP-specific values anywhere, no namespace / diagnostics blocks
    assert not keys & {"php", "engine_specific_values", "payload_codecs_engine_specific"}
    assert not info.keys() & {
        "namespace",
        "package_provenance",
        "bridge_adapter_outcome_contract",
        "worker_fleet",
        "task_repair",
    }
    assert "external_payload_storage" not in keys


def test_optional_flags_default_off() -> None:
    caps = worker_server_capabilities(make_settings())
    for flag in (
        "query_tasks",
        "workflow_task_poll_request_idempotency",
        "activity_retry_policy",
        "activity_timeouts",
        "child_workflow_retry_policy",
        "child_workflow_timeouts",
        "parent_close_policy",
        "non_retryable_failures",
    ):
        assert caps[flag] is False, flag
    info = make_info()
    flags = {k: v for k, v in info["capabilities"].items() if isinstance(v, bool)}
    assert flags and not any(flags.values())
    assert info["capabilities"]["payload_codecs"] == ["avro"]


def test_worker_capabilities_follow_settings() -> None:
    settings = make_settings(
        worker_poll_timeout_s=12, history_page_size_default=50, history_page_size_max=75
    )
    caps = worker_server_capabilities(settings, query_tasks=True, poll_request_idempotency=True)
    assert caps["long_poll_timeout"] == 12
    assert caps["history_page_size_default"] == 50
    assert caps["history_page_size_max"] == 75
    assert caps["query_tasks"] is True
    assert caps["workflow_task_poll_request_idempotency"] is True


@pytest.mark.parametrize(
    ("enabled", "expected"), [(True, ["gzip", "deflate"]), (False, [])], ids=["on", "off"]
)
def test_response_compression_follows_settings(enabled: bool, expected: list[str]) -> None:
    settings = make_settings(compression_enabled=enabled)
    info = make_info(settings)
    assert info["capabilities"]["response_compression"] == expected
    assert info["worker_protocol"]["server_capabilities"]["response_compression"] == expected
    assert worker_server_capabilities(settings)["response_compression"] == expected


def test_limits_and_identity_follow_settings() -> None:
    settings = make_settings(
        server_id="dw-7",
        default_namespace="orders",
        max_payload_bytes=4096,
        max_memo_bytes=1000,
        max_search_attributes=9,
        max_pending_activities=11,
        max_pending_children=13,
    )
    info = make_info(settings)
    assert info["server_id"] == "dw-7"
    assert info["version"] == "0.1.0"
    assert info["default_namespace"] == "orders"
    assert info["supported_sdk_versions"] == {"python": "*", "cli": "*"}
    assert info["limits"] == {
        "max_payload_bytes": 4096,
        "max_memo_bytes": 1000,
        "max_search_attributes": 9,
        "max_search_attribute_key_length": 128,
        "max_search_attribute_value_bytes": 2048,
        "max_operation_name_length": 256,
        "max_pending_activities": 11,
        "max_pending_children": 13,
    }
    structural = info["structural_limits"]
    assert structural["payload_size_bytes"] == 4096
    assert structural["memo_size_bytes"] == 1000
    assert structural["pending_activity_count"] == 11
    assert structural["pending_child_count"] == 13


# --- control plane contract ----------------------------------------------------------------


def test_manifest_round_trips_through_orjson() -> None:
    for features in (Features(), ALL_ON):
        info = make_info(features=features)
        assert orjson.loads(orjson.dumps(info)) == info


def test_response_contract_is_shared_with_envelopes() -> None:
    control_plane = make_info()["control_plane"]
    assert control_plane["version"] == "2"
    assert control_plane["header"] == "X-Durable-Workflow-Control-Plane-Version"
    published = control_plane["response_contract"]
    assert published["schema"] == "durable-workflow.v2.control-plane-response"
    assert published["version"] == 1
    assert published["contract"] == response_contract()
    assert published["projected_fields"] == list(PROJECTED_FIELDS)
    assert len(set(PROJECTED_FIELDS)) == len(PROJECTED_FIELDS) == 37
    assert list(published["operations"]) == list(OPERATIONS)
    for name, spec in published["operations"].items():
        per_response = response_contract(name)
        assert per_response["required_fields"] == spec["required_fields"]
        assert per_response["success_fields"] == spec["success_fields"]
        assert {k: v for k, v in per_response.items() if k in published["contract"]} == (
            published["contract"]
        )
    assert published["operations"]["update"] == {
        "operation_name_field": "update_name",
        "required_fields": ["workflow_id", "operation_name", "operation_name_field"],
        "success_fields": ["outcome"],
    }
    with pytest.raises(KeyError):
        response_contract("history_export")


def test_request_contract_exact_values() -> None:
    contract = make_info()["control_plane"]["request_contract"]
    assert contract["schema"] == "durable-workflow.v2.control-plane-request.contract"
    assert contract["version"] == 1
    update = contract["operations"]["update"]
    assert update["fields"]["wait_for"]["canonical_values"] == ["accepted", "completed"]
    assert update["removed_fields"] == {"wait_policy": "Use wait_for."}
    start = contract["operations"]["start"]
    assert start["fields"]["payload_codec"]["canonical_values"] == ["avro"]
    assert "engine_specific_values" not in start["fields"]["payload_codec"]
    assert start["fields"]["duplicate_policy"]["rejected_aliases"] == {
        "use_existing": "use-existing"
    }


def test_results_are_fresh_objects() -> None:
    first = make_info()
    first["control_plane"]["response_contract"]["contract"]["legacy_fields"]["x"] = "y"
    first["worker_protocol"]["server_capabilities"]["supported_workflow_task_commands"].append("z")
    assert make_info() != first
    assert "x" not in response_contract()["legacy_fields"]


def test_topology_and_client_compatibility() -> None:
    info = make_info()
    topology = info["topology"]
    assert topology["current_shape"] == "standalone_server"
    assert topology["current_roles"] == [
        "api_ingress",
        "control_plane",
        "matching",
        "history_projection",
    ]
    assert topology["matching_role"]["queue_wake_enabled"] is True
    assert topology["matching_role"]["shape"] == "in_worker"
    assert topology["matching_role"]["wake_owner"] == "worker_loop"
    assert topology["matching_role"]["task_dispatch_mode"] == "poll"
    assert topology["current_shape"] in topology["supported_shapes"]
    compat = info["client_compatibility"]
    assert compat["authority"] == "protocol_manifests"
    assert compat["clients"]["cli"]["supported_versions"] == "*"
    assert compat["clients"]["sdk-python"]["supported_versions"] == "*"


# --- the SDK client's discovery-driven gates ---------------------------------------------------


def run_client(
    info: dict[str, Any],
    action: Callable[[Client], Any],
    *,
    responses: dict[str, dict[str, Any]] | None = None,
) -> tuple[Any, list[httpx.Request]]:
    """Run ``action(client)`` against a mock server that serves ``info`` at discovery."""
    seen: list[httpx.Request] = []
    canned = responses or {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/cluster/info":
            return httpx.Response(
                200, content=orjson.dumps(info), headers={"Content-Type": "application/json"}
            )
        body = canned.get(request.url.path)
        if body is None:
            return httpx.Response(404, json={"reason": "not_found"})
        return httpx.Response(202, json=body)

    async def main() -> Any:
        client = Client("http://dw.test", token="t")
        await client._http.aclose()
        client._http = httpx.AsyncClient(
            base_url=client.base_url, transport=httpx.MockTransport(handler)
        )
        try:
            return await action(client)
        finally:
            await client.aclose()

    return asyncio.run(main()), seen


UPDATE_PATH = "/api/workflows/wf-1/update/approve"
UPDATE_REPLY = {"workflow_id": "wf-1", "update_id": "u-1", "update_status": "accepted"}


@pytest.mark.parametrize("stage", [None, "accepted", "completed"])
def test_sdk_client_update_passes_wait_for_gate(stage: str | None) -> None:
    async def update(client: Client) -> Any:
        return await client.update_workflow("wf-1", "approve", args=[1], wait_for=stage)

    result, seen = run_client(make_info(), update, responses={UPDATE_PATH: UPDATE_REPLY})
    assert [r.url.path for r in seen] == ["/api/cluster/info", UPDATE_PATH]
    assert result["update_id"] == "u-1"
    body = orjson.loads(seen[1].content)
    # no runtime external-payload transport is advertised, so the payload stays inline
    assert set(body["input"]) == {"codec", "blob"}
    assert body["input"]["codec"] == "avro"


def test_sdk_client_refuses_undiscovered_wait_stage() -> None:
    async def update(client: Client) -> Any:
        return await client.update_workflow("wf-1", "approve", wait_for="validated")

    with pytest.raises(RuntimeCapabilityUnsupported) as caught:
        run_client(make_info(), update)
    assert caught.value.supported_values == ("accepted", "completed")


def test_sdk_client_update_gate_fails_without_contract() -> None:
    info = make_info()
    del info["control_plane"]["request_contract"]["operations"]["update"]

    async def update(client: Client) -> Any:
        return await client.update_workflow("wf-1", "approve")

    with pytest.raises(RuntimeDiscoveryUnavailable, match="did not publish its supported update"):
        run_client(info, update)


def test_sdk_client_query_is_cleanly_unsupported_today() -> None:
    async def query(client: Client) -> Any:
        return await client.query_workflow("wf-1", "status")

    with pytest.raises(RuntimeCapabilityUnsupported):
        run_client(make_info(), query)

    _, seen = run_client(
        make_info(features=Features(queries=True, query_tasks=True)),
        query,
        responses={"/api/workflows/wf-1/query/status": {"result": None}},
    )
    assert [r.url.path for r in seen] == ["/api/cluster/info", "/api/workflows/wf-1/query/status"]


def test_sdk_client_failure_report_limit_reads_max_payload_bytes() -> None:
    async def discover(client: Client) -> int:
        await client.get_cluster_info()
        return client._failure_report_limit()

    limit, _ = run_client(make_info(make_settings(max_payload_bytes=4096)), discover)
    assert limit == 4096


def test_schedules_are_advertised_with_the_scheduler_role_where_it_runs() -> None:
    info = build_cluster_info(
        make_settings(), namespace="default", version="0", features=manifest.SERVER_FEATURES
    )
    caps = info["capabilities"]
    assert caps["schedules"] and caps["schedule_jitter"] and caps["schedule_max_runs"]
    assert "scheduler" in info["topology"]["current_roles"]
    assert info["topology"]["role_catalog"]["scheduler"]["hosted_by_current_node"] is True
    off = build_cluster_info(
        make_settings(scheduler_enabled=False),
        namespace="default",
        version="0",
        features=manifest.SERVER_FEATURES,
    )
    assert "scheduler" not in off["topology"]["current_roles"]
    assert off["topology"]["role_catalog"]["scheduler"]["hosted_by_current_node"] is False
