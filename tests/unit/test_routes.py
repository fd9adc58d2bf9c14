"""The route policy table (``dwtrio.http.routes.classify``) as a pure function.

The policy decides which gates a request passes: authentication, the allowed
roles (in the documented order), which version header is checked and whether
the namespace must exist (auth-and-headers.md §4.2, control-plane.md §1, §3).
"""

from __future__ import annotations

import pytest

from dwtrio.http.routes import OPERATOR, RoutePolicy, classify

OPERATOR_ADMIN = ("operator", "admin")
ADMIN = ("admin",)
WORKER = ("worker",)
ANY = ("worker", "operator", "admin")


@pytest.mark.parametrize(
    ("method", "path", "plane", "roles", "check_namespace"),
    [
        # public probes: no auth, no roles, no namespace
        ("GET", "/api/health", "public", (), False),
        ("GET", "/api/ready", "public", (), False),
        ("POST", "/api/health", "public", (), False),
        # discovery: any role, namespace not checked
        ("GET", "/api/cluster/info", "discovery", ANY, False),
        # namespace admin routes: operator reads, admin writes, namespace never checked
        ("GET", "/api/namespaces", "control", OPERATOR_ADMIN, False),
        ("GET", "/api/namespaces/billing", "control", OPERATOR_ADMIN, False),
        ("POST", "/api/namespaces", "control", ADMIN, False),
        ("PUT", "/api/namespaces/billing", "control", ADMIN, False),
        ("PUT", "/api/namespaces/billing/external-storage", "control", ADMIN, False),
        ("DELETE", "/api/namespaces/billing", "control", ADMIN, False),
        # operator routes
        ("GET", "/api/workflows", "control", OPERATOR_ADMIN, True),
        ("POST", "/api/workflows", "control", OPERATOR_ADMIN, True),
        ("POST", "/api/workflows/wf-1/signal/go", "control", OPERATOR_ADMIN, True),
        ("GET", "/api/workflows/wf-1/runs/r1/history/export", "control", OPERATOR_ADMIN, True),
        ("GET", "/api/schedules", "control", OPERATOR_ADMIN, True),
        ("DELETE", "/api/schedules/s1", "control", OPERATOR_ADMIN, True),
        ("POST", "/api/search-attributes", "control", OPERATOR_ADMIN, True),
        ("GET", "/api/task-queues", "control", OPERATOR_ADMIN, True),
        ("GET", "/api/task-queues/q", "control", OPERATOR_ADMIN, True),
        ("GET", "/api/task-queues/q/build-ids", "control", OPERATOR_ADMIN, True),
        ("POST", "/api/bridge-adapters/webhook/github", "control", OPERATOR_ADMIN, True),
        ("GET", "/api/workers", "control", OPERATOR_ADMIN, True),
        ("GET", "/api/workers/w-1", "control", OPERATOR_ADMIN, True),
        # admin-only control-plane routes
        ("DELETE", "/api/workers/w-1", "control", ADMIN, True),
        ("GET", "/api/system/metrics", "control", ADMIN, True),
        ("POST", "/api/system/repair/pass", "control", ADMIN, True),
        ("POST", "/api/storage/test", "control", ADMIN, True),
        # worker plane
        ("POST", "/api/worker/register", "worker", WORKER, True),
        ("POST", "/api/worker/workflow-tasks/poll", "worker", WORKER, True),
        # unknown /api routes still get the control-plane gates (and a reasoned 404)
        ("GET", "/api/nope", "control", OPERATOR_ADMIN, True),
        ("GET", "/api", "control", OPERATOR_ADMIN, True),
    ],
)
def test_classify(
    method: str, path: str, plane: str, roles: tuple[str, ...], check_namespace: bool
) -> None:
    policy = classify(method, path)
    assert policy == RoutePolicy(plane, roles, check_namespace=check_namespace)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "authenticated"),
    [
        ("/api/health", False),
        ("/api/ready", False),
        ("/", False),
        ("/favicon.ico", False),
        ("/apiary", False),
        ("/api/cluster/info", True),
        ("/api/namespaces", True),
        ("/api/worker/register", True),
        ("/api/workflows", True),
    ],
)
def test_authenticated(path: str, authenticated: bool) -> None:
    assert classify("GET", path).authenticated is authenticated


def test_outside_api_is_other_plane() -> None:
    assert classify("GET", "/").plane == "other"
    assert classify("GET", "/apiary").plane == "other"
    assert classify("GET", "/metrics/").roles == ()


def test_metrics_take_operator_credentials_and_no_version_header() -> None:
    policy = classify("GET", "/metrics")
    assert (policy.plane, policy.roles, policy.check_namespace) == ("metrics", OPERATOR, False)
    assert policy.authenticated


@pytest.mark.parametrize(
    "path",
    ["/api/health/extra", "/api/ready/now", "/api/cluster", "/api/cluster/info/x"],
)
def test_probe_lookalikes_are_control_plane(path: str) -> None:
    """Only the exact probe and discovery paths are exempt from the control-plane gates."""
    policy = classify("GET", path)
    assert policy.plane == "control"
    assert policy.roles == OPERATOR_ADMIN
    assert policy.check_namespace is True


def test_trailing_slash_and_empty_segments() -> None:
    assert classify("GET", "/api/health/").plane == "public"
    assert classify("GET", "/api/cluster/info/").plane == "discovery"
    assert classify("GET", "/api/namespaces/").roles == OPERATOR_ADMIN
    assert classify("POST", "/api/worker//register").plane == "worker"


def test_percent_encoded_segments_are_not_decoded() -> None:
    """A ``%2F`` inside a workflow id must not create a new path segment."""
    policy = classify("POST", "/api/workflows/a%2Fworker/signal/go")
    assert policy.plane == "control"
    assert policy.roles == OPERATOR_ADMIN
