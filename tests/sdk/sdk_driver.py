"""Run one scenario of the official ``durable_workflow`` SDK against a live server.

The SDK is asyncio-based and the pytest process runs Trio (and the server under
test), so tests run this script in a subprocess::

    python sdk_driver.py '<json spec>'

The spec is a JSON object with ``scenario`` (a key of ``SCENARIOS``), ``base_url``
and the scenario's own fields (tokens, names). The script prints one JSON object
on stdout: ``{"ok": true, "result": {...}}``, or ``{"ok": false, "error": {...}}``
when the scenario itself failed unexpectedly (exit code 1). Expected SDK errors
are caught inside the scenarios and reported as data (see ``describe_error``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from durable_workflow import Client, activity, workflow
from durable_workflow.errors import DurableWorkflowError
from durable_workflow.worker import Worker, _validate_server_compatibility

STEP_TIMEOUT_S = 20.0


def describe_error(exc: BaseException) -> dict[str, Any]:
    """A JSON view of an exception: type, module, message and SDK fields if present."""
    out: dict[str, Any] = {
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "message": str(exc),
        "is_sdk_error": isinstance(exc, DurableWorkflowError),
    }
    for attr in ("status", "body", "namespace"):
        value = getattr(exc, attr, None)
        if value is not None:
            out[attr] = value
    if exc.__cause__ is not None:
        out["cause"] = describe_error(exc.__cause__)
    return out


async def expect_error(awaitable: Awaitable[Any]) -> dict[str, Any]:
    """Await ``awaitable``; it must raise. Return the error's description."""
    try:
        value = await asyncio.wait_for(awaitable, STEP_TIMEOUT_S)
    except Exception as exc:
        return describe_error(exc)
    return {"type": None, "unexpected_value": repr(value)}


def as_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def compatibility(info: dict[str, Any]) -> dict[str, Any]:
    try:
        _validate_server_compatibility(info)
    except Exception as exc:
        return {"accepted": False, "error": describe_error(exc)}
    return {"accepted": True}


# --- scenarios -------------------------------------------------------------------


async def discovery(spec: dict[str, Any]) -> dict[str, Any]:
    """Shared-token client: discovery, health and the namespace lifecycle."""
    out: dict[str, Any] = {}
    name = spec["new_namespace"]
    async with Client(spec["base_url"], token=spec["token"], namespace="default", timeout=15) as c:
        info = await c.get_cluster_info()
        out["cluster_info"] = info
        out["compatibility"] = compatibility(info)
        out["health"] = await c.health()
        listed = await c.list_namespaces()
        out["list_type"] = type(listed).__name__
        out["list_item_types"] = sorted({type(n).__name__ for n in listed.namespaces})
        out["namespaces"] = [as_dict(n) for n in listed.namespaces]
        created = await c.create_namespace(name, description="made by the SDK", retention_days=7)
        out["created_type"] = type(created).__name__
        out["created"] = as_dict(created)
        described = await c.describe_namespace(name)
        out["described_type"] = type(described).__name__
        out["described"] = as_dict(described)
        updated = await c.update_namespace(
            name, description="changed by the SDK", retention_days=14
        )
        out["updated_type"] = type(updated).__name__
        out["updated"] = as_dict(updated)
        out["described_after_update"] = as_dict(await c.describe_namespace(name))
        out["listed_after"] = sorted(n.name for n in (await c.list_namespaces()).namespaces)
        out["duplicate_create_error"] = await expect_error(c.create_namespace(name))
        out["ghost_error"] = await expect_error(c.describe_namespace("ghost"))
    return out


async def bad_token(spec: dict[str, Any]) -> dict[str, Any]:
    """A wrong bearer token on discovery and on the control plane."""
    async with Client(
        spec["base_url"], token="not-the-token", namespace="default", timeout=15
    ) as c:
        return {
            "cluster_info_error": await expect_error(c.get_cluster_info()),
            "list_namespaces_error": await expect_error(c.list_namespaces()),
        }


async def role_tokens(spec: dict[str, Any]) -> dict[str, Any]:
    """Split control/worker credentials: discovery goes out with the worker token."""
    out: dict[str, Any] = {}
    seen: list[dict[str, str]] = []

    async def record(request: Any) -> None:
        if request.url.path == "/api/cluster/info":
            seen.append({k.lower(): v for k, v in request.headers.items()})

    async with Client(
        spec["base_url"],
        control_token=spec["operator_token"],
        worker_token=spec["worker_token"],
        namespace="default",
        timeout=15,
    ) as both:
        both._http.event_hooks["request"].append(record)
        info = await both.get_cluster_info()
        out["both_cluster_info"] = info
        out["both_compatibility"] = compatibility(info)
        out["both_discovery_headers"] = seen[-1] if seen else None
        listed = await both.list_namespaces()
        out["both_namespaces"] = [n.name for n in listed.namespaces]

    async with Client(
        spec["base_url"], worker_token=spec["worker_token"], namespace="default", timeout=15
    ) as worker_only:
        info = await worker_only.get_cluster_info()
        out["worker_only_cluster_info"] = info
        out["worker_only_compatibility"] = compatibility(info)
        # The SDK refuses locally to send a worker token on the control plane.
        out["worker_only_list_error"] = await expect_error(worker_only.list_namespaces())

    async with Client(
        spec["base_url"], control_token=spec["operator_token"], namespace="default", timeout=15
    ) as operator_only:
        info = await operator_only.get_cluster_info()
        out["operator_only_cluster_info"] = info
        out["operator_only_compatibility"] = compatibility(info)

    # A worker token presented as the shared token reaches the control plane: 403.
    async with Client(
        spec["base_url"], token=spec["worker_token"], namespace="default", timeout=15
    ) as misused:
        out["worker_token_on_control_plane_error"] = await expect_error(misused.list_namespaces())
    return out


@activity.defn(name="sdk-driver-greet")
def greet(name: str) -> str:
    return f"hello, {name}"


@workflow.defn(name="sdk-driver-greeter")
class GreeterWorkflow:
    def run(self, ctx: Any, name: str) -> Any:
        result = yield ctx.schedule_activity("sdk-driver-greet", [name])
        return result


async def worker_start(spec: dict[str, Any]) -> dict[str, Any]:
    """Run a real ``Worker``: discovery, compatibility gate, registration, polling, stop.

    The worker runs until both its workflow and activity pollers have sent a poll
    (bounded), then ``stop()`` is called. Every request and response is recorded
    as ``"METHOD /path"`` / ``"METHOD /path -> status"``.
    """
    kwargs: dict[str, Any] = (
        {"token": spec["token"]}
        if spec.get("token")
        else {
            "control_token": spec["operator_token"],
            "worker_token": spec["worker_token"],
        }
    )
    requests: list[str] = []
    responses: list[str] = []
    polls_seen = asyncio.Event()
    poll_paths = {"/api/worker/workflow-tasks/poll", "/api/worker/activity-tasks/poll"}

    async def on_request(request: Any) -> None:
        requests.append(f"{request.method} {request.url.path}")
        if poll_paths <= {r.split(" ", 1)[1] for r in requests}:
            polls_seen.set()

    async def on_response(response: Any) -> None:
        responses.append(
            f"{response.request.method} {response.request.url.path} -> {response.status_code}"
        )

    out: dict[str, Any] = {}
    async with Client(spec["base_url"], namespace="default", timeout=15, **kwargs) as c:
        c._http.event_hooks["request"].append(on_request)
        c._http.event_hooks["response"].append(on_response)
        worker = Worker(
            c,
            task_queue="sdk-driver-queue",
            workflows=[GreeterWorkflow],
            activities=[greet],
            worker_id="sdk-driver-worker",
            poll_timeout=5,
            shutdown_timeout=5,
        )
        runner = asyncio.create_task(worker.run())
        waiter = asyncio.create_task(polls_seen.wait())
        done, _ = await asyncio.wait(
            {runner, waiter}, timeout=STEP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        out["polling"] = polls_seen.is_set()
        out["registered"] = bool(getattr(worker, "_registered", False))
        waiter.cancel()
        started = time.monotonic()
        if runner not in done:
            await asyncio.wait_for(worker.stop(), STEP_TIMEOUT_S)
        out["run_error"] = await settle(runner)
        out["stop_s"] = time.monotonic() - started
    out["requests"] = requests
    out["responses"] = responses
    return out


async def settle(task: asyncio.Task[Any]) -> dict[str, Any] | None:
    """Wait (bounded) for ``task``; None if it ended cleanly, else its error."""
    try:
        await asyncio.wait_for(task, STEP_TIMEOUT_S)
    except asyncio.CancelledError:
        return None
    except Exception as exc:
        return describe_error(exc)
    return None


SCENARIOS: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "discovery": discovery,
    "bad_token": bad_token,
    "role_tokens": role_tokens,
    "worker_start": worker_start,
}


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    return await asyncio.wait_for(SCENARIOS[spec["scenario"]](spec), 4 * STEP_TIMEOUT_S)


if __name__ == "__main__":
    raw = sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read()
    try:
        result = asyncio.run(main(json.loads(raw)))
    except Exception as exc:
        print(
            json.dumps(
                {"ok": False, "error": describe_error(exc), "traceback": traceback.format_exc()}
            )
        )
        sys.exit(1)
    print(json.dumps({"ok": True, "result": result}, default=repr))
