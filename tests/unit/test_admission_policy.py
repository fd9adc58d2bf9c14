"""Resolving the admission caps of one queue from the settings (protocol/admission.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dwtrio.errors import SettingsError
from dwtrio.protocol.admission import OVERRIDE_SOURCE, AdmissionPolicy, parse_overrides
from dwtrio.settings import Settings


def policy(env: dict[str, str] | None = None, overrides: Any = None) -> AdmissionPolicy:
    values = dict(env or {})
    if overrides is not None:
        values["DW_TASK_QUEUE_ADMISSION_OVERRIDES"] = json.dumps(overrides)
    return Settings.from_env(values).admission_policy


def test_nothing_configured_caps_nothing() -> None:
    p = policy()
    assert p.caps("default", "q", "workflow") is None
    assert p.caps("default", "q", "activity") is None
    budget = p.budget("default", "q", "activity")
    assert not budget.any and budget.sources() == []


def test_global_defaults_apply_per_kind_with_their_source() -> None:
    p = policy(
        {
            "DW_WORKFLOW_TASK_MAX_ACTIVE_LEASES_PER_QUEUE": "3",
            "DW_ACTIVITY_TASK_MAX_DISPATCHES_PER_MINUTE_PER_NAMESPACE": "120",
        }
    )
    wf = p.caps("ns", "q", "workflow")
    assert wf is not None and wf.leases_per_queue is not None
    assert wf.leases_per_queue.limit == 3
    assert wf.sources() == ["server.admission.workflow_tasks.max_active_leases_per_queue"]
    assert wf.lock_scope == wf.queue_scope == "queue:ns:workflow:q"
    act = p.caps("ns", "q", "activity")
    assert act is not None and act.leases_per_queue is None
    assert act.dispatches_per_minute_per_namespace is not None
    assert act.dispatches_per_minute_per_namespace.limit == 120
    # a namespace-wide cap locks the namespace scope: every queue's claims take turns
    assert act.lock_scope == "namespace:ns:activity"
    assert act.counts_dispatches


@pytest.mark.parametrize("value", ["0", "-4"])
def test_zero_or_negative_global_values_mean_no_cap(value: str) -> None:
    assert (
        policy({"DW_WORKFLOW_TASK_MAX_ACTIVE_LEASES_PER_QUEUE": value}).caps(
            "default", "q", "workflow"
        )
        is None
    )


def test_override_keys_are_tried_most_specific_first_per_field() -> None:
    p = policy(
        {"DW_ACTIVITY_TASK_MAX_ACTIVE_LEASES_PER_QUEUE": "50"},
        {
            "billing:invoices": {"activity_tasks": {"max_active_leases": 4}},
            "billing:*": {"activity_tasks": {"max_dispatches_per_minute": 10}},
            "invoices": {
                "activity_tasks": {"max_active_leases": 7, "max_dispatches_per_minute": 1}
            },
            "*": {"activity_tasks": {"max_active_leases_per_namespace": 99}},
        },
    )
    caps = p.caps("billing", "invoices", "activity")
    assert caps is not None
    assert caps.leases_per_queue is not None and caps.leases_per_queue.limit == 4
    assert caps.leases_per_queue.source == OVERRIDE_SOURCE
    # the field is missing from the most specific key: the next key that has it decides
    assert caps.dispatches_per_minute is not None and caps.dispatches_per_minute.limit == 10
    assert caps.leases_per_namespace is not None and caps.leases_per_namespace.limit == 99
    # another namespace's queue of the same name: the bare queue key decides
    other = p.caps("other", "invoices", "activity")
    assert other is not None and other.leases_per_queue is not None
    assert other.leases_per_queue.limit == 7
    # no key names the field for a queue elsewhere: the global default applies
    elsewhere = p.caps("other", "q", "activity")
    assert elsewhere is not None and elsewhere.leases_per_queue is not None
    assert elsewhere.leases_per_queue.limit == 50
    assert elsewhere.leases_per_queue.source.startswith("server.admission.activity_tasks.")


def test_zero_in_an_override_removes_a_global_cap_and_null_keeps_it() -> None:
    env = {"DW_WORKFLOW_TASK_MAX_ACTIVE_LEASES_PER_QUEUE": "5"}
    p = policy(
        env,
        {
            "free": {"workflow_tasks": {"max_active_leases": 0}},
            "kept": {"workflow_tasks": {"max_active_leases": None}},
            "*": {"workflow_tasks": {"max_active_leases": 1}},
        },
    )
    assert p.caps("default", "free", "workflow") is None
    kept = p.caps("default", "kept", "workflow")
    # null stops the search: the global default, not the "*" entry
    assert kept is not None and kept.leases_per_queue is not None
    assert kept.leases_per_queue.limit == 5
    anything = p.caps("default", "x", "workflow")
    assert anything is not None and anything.leases_per_queue is not None
    assert anything.leases_per_queue.limit == 1


def test_budget_groups_come_only_from_overrides() -> None:
    p = policy(
        overrides={
            "openai-calls": {
                "activity_tasks": {
                    "budget_group": " downstream-openai ",
                    "max_dispatches_per_minute_per_budget_group": 300,
                }
            },
            "no-group": {"activity_tasks": {"max_dispatches_per_minute_per_budget_group": 3}},
        }
    )
    caps = p.caps("default", "openai-calls", "activity")
    assert caps is not None and caps.budget_group == "downstream-openai"
    assert caps.dispatches_per_minute_per_group is not None
    assert caps.lock_scope == caps.group_scope == "group:default:activity:downstream-openai"
    # a group cap without a group caps nothing
    assert p.caps("default", "no-group", "activity") is None
    # workflow tasks of the same queue are not in the activity group
    assert p.caps("default", "openai-calls", "workflow") is None


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        "[1, 2]",
        '{"q": 3}',
        '{"q": {"query_tasks": {}}}',
        '{"q": {"workflow_tasks": 5}}',
    ],
)
def test_malformed_overrides_stop_the_boot_naming_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="DW_TASK_QUEUE_ADMISSION_OVERRIDES"):
        Settings.from_env({"DW_TASK_QUEUE_ADMISSION_OVERRIDES": raw})


def test_a_non_numeric_global_cap_stops_the_boot() -> None:
    with pytest.raises(SettingsError, match="DW_WORKFLOW_TASK_MAX_DISPATCHES_PER_MINUTE"):
        Settings.from_env({"DW_WORKFLOW_TASK_MAX_DISPATCHES_PER_MINUTE": "lots"})


def test_empty_overrides_are_no_overrides() -> None:
    assert parse_overrides("  ") == {} and parse_overrides(None) == {}


def test_admission_variables_are_implemented_not_reference_only() -> None:
    from dwtrio.settings import REFERENCE_ONLY

    assert not [name for name in REFERENCE_ONLY if "MAX_ACTIVE_LEASES" in name]
    assert "DW_TASK_QUEUE_ADMISSION_OVERRIDES" not in REFERENCE_ONLY
