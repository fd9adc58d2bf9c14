"""dwtrio.metrics: label values stay in small fixed sets; DW_METRICS_BIND parsing."""

from __future__ import annotations

import pytest

from dwtrio import metrics
from dwtrio.errors import SettingsError
from dwtrio.settings import Settings


def sample(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_route_labels_are_templates() -> None:
    assert metrics.route_label("/api/workflows/<wf>/runs/<path:run_id>") == (
        "/api/workflows/{wf}/runs/{run_id}"
    )
    assert metrics.route_label("/api/worker/workflow-tasks/{task_id}/complete") == (
        "/api/worker/workflow-tasks/{task_id}/complete"
    )
    assert metrics.route_label(None) == metrics.UNMATCHED


def test_unknown_methods_share_one_label_and_no_cache_entry() -> None:
    name = "dwtrio_http_requests_total"
    before = sample(name, route="unmatched", method="other", status="405")
    for i in range(50):
        metrics.observe_request(None, f"X-{i}", 405, 0.001)
    assert sample(name, route="unmatched", method="other", status="405") - before == 50
    assert not [key for key in metrics._http_children if key[1].startswith("X-")]


def test_a_request_without_an_answer_counts_as_none() -> None:
    before = sample("dwtrio_http_requests_total", route="/x", method="POST", status="none")
    metrics.observe_request("/x", "POST", None, 0.5)
    assert sample("dwtrio_http_requests_total", route="/x", method="POST", status="none") == (
        before + 1
    )
    assert (
        sample(
            "dwtrio_http_request_duration_seconds_count",
            route="/x",
            method="POST",
            status_class="none",
        )
        >= 1
    )


def test_unknown_task_kinds_share_one_label() -> None:
    assert metrics.claim_result("workflow", "found") is metrics.CLAIM_RESULTS["workflow", "found"]
    before = sample("dwtrio_claims_total", kind="other", result="found")
    metrics.claim_result("some-test-kind", "found").inc()
    assert sample("dwtrio_claims_total", kind="other", result="found") == before + 1


@pytest.mark.parametrize(
    ("bind", "host_port"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        (":9464", ("0.0.0.0", 9464)),
        ("[::1]:1", ("::1", 1)),
    ],
)
def test_metrics_bind(bind: str, host_port: tuple[str, int]) -> None:
    assert Settings.from_env({"DW_METRICS_BIND": bind}).metrics_host_port == host_port


@pytest.mark.parametrize("bind", ["9464", "host:", "host:port", "host:9²", "host:70000", "h:-1"])
def test_metrics_bind_refused(bind: str) -> None:
    with pytest.raises(SettingsError, match="DW_METRICS_BIND"):
        Settings.from_env({"DW_METRICS_BIND": bind})
