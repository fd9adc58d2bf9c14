"""Property-based fuzzing of every documented route against a real dwtrio.

Schemathesis turns each operation of ``GET /api/openapi.json`` into Hypothesis
strategies, in four rounds: positive cases (what the schemas allow), negative
ones (what they forbid: wrong types, missing required fields, values past their
limits, junk headers), and both again aimed at seeded resources. Every answer
must be below 500 (but a 5xx the operation documents as a state refusal), every
4xx must carry the documented error envelope (``reason`` and ``message`` strings,
on a field 422 the ``errors`` map), and every success must match the operation's
documented body.

Bounded: ``DWTRIO_FUZZ_EXAMPLES`` cases per operation and round (default 4), each
request with a 10 s client timeout; long-polls are asked for 0 s and query and
update waits last at most 1 s, so no case parks; ``DWTRIO_FUZZ_BUDGET_S`` (default
300) fails a run that hangs. docs/openapi.md has the figures.
"""

from __future__ import annotations

import collections
import json
import os
import time
from typing import Any

import attrs
import httpx
import trio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from tests.conftest import CP, RunningServer, StartServer

WORKER_HEADER = "X-Durable-Workflow-Protocol-Version"
EXAMPLES = int(os.environ.get("DWTRIO_FUZZ_EXAMPLES", "4"))
#: The whole fuzz run, in seconds: a run that takes longer fails (see the module docstring).
BUDGET_S = float(os.environ.get("DWTRIO_FUZZ_BUDGET_S", "300"))


#: 422 refusals that are not about one field, so carry no field map (control-plane.md §2.3).
HANDLER_REFUSALS_422 = frozenset(
    {
        "memo_too_large",
        "invalid_time_range",
        "invalid_after_sequence",
        "search_attribute_limit_reached",
        "invalid_query_arguments",
        "invalid_signal_arguments",
        "invalid_update_arguments",
    }
)


@attrs.define
class FuzzReport:
    requests: int = 0
    statuses: collections.Counter[int] = attrs.field(factory=collections.Counter)
    state_refusals: int = 0
    #: Seconds spent waiting for answers (the rest of the run is case generation).
    call_s: float = 0.0
    failures: list[str] = attrs.field(factory=list)
    operations: int = 0
    unsatisfiable: int = 0


def envelope_problem(status: int, content: bytes) -> str | None:
    """Why a 4xx body is not the documented error envelope (None when it is)."""
    try:
        body = json.loads(content)
    except ValueError:
        return "not JSON"
    if not isinstance(body, dict):
        return "not an object"
    if not isinstance(body.get("reason"), str) or not body["reason"]:
        return "no reason"
    if not isinstance(body.get("message"), str):
        return "no message"
    if (
        status == 422
        and body["reason"] not in HANDLER_REFUSALS_422
        and not isinstance(body.get("errors"), dict)
    ):
        return "422 without an errors map"
    return None


#: 5xx answers that report server-side state, not a fault, when the operation documents
#: them: a query nobody answered in time (no worker polls the fuzzed run's queue).
STATE_REFUSALS_5XX = frozenset({(504, "query_worker_timeout")})


def state_refusal(case: Any, status: int, content: bytes) -> bool:
    """Whether a 5xx is documented for this operation: as one of its answers (a probe or
    health report saying "not ready"), or as an error envelope reporting state."""
    documented = case.operation.definition.raw.get("responses", {}).get(str(status))
    if documented is None:
        return False
    schema = documented.get("content", {}).get("application/json", {}).get("schema", {})
    if "#/components/schemas/" not in json.dumps(schema):
        return True  # an answer, not an error
    if envelope_problem(status, content) is not None:
        return False
    return (status, json.loads(content)["reason"]) in STATE_REFUSALS_5XX


def bound_waits(case: Any) -> None:
    """Keep a case from parking: polls for 0 s, update waits for 1 s."""
    if isinstance(case.body, dict):
        if case.path.endswith("/poll"):
            case.body["timeout_seconds"] = 0
        if "wait_timeout_seconds" in case.body:
            case.body["wait_timeout_seconds"] = 1


def fuzz(
    base_url: str, raw_schema: dict[str, Any], examples: int, seeds: dict[str, str]
) -> FuzzReport:
    import requests
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.core.result import Ok

    schema = schemathesis.openapi.from_dict(raw_schema)
    report = FuzzReport()
    session = requests.Session()

    def check(case: Any) -> None:
        bound_waits(case)
        started = time.perf_counter()
        try:
            response = case.call(base_url=base_url, session=session, timeout=10)
        except requests.RequestException as exc:
            report.failures.append(f"{case.method} {case.formatted_path}: {exc!r}")
            return
        report.call_s += time.perf_counter() - started
        report.requests += 1
        status = response.status_code
        report.statuses[status] += 1
        where = f"{case.method} {case.formatted_path}"
        if status >= 500:
            if state_refusal(case, status, response.content):
                report.state_refusals += 1
            else:
                report.failures.append(f"{where} -> {status}: {response.content[:300]!r}")
        elif status >= 400 and (problem := envelope_problem(status, response.content)):
            report.failures.append(f"{where} -> {status} {problem}: {response.content[:300]!r}")
        elif status < 300:
            # A success must match the operation's documented body (its model, when it has one).
            try:
                case.operation.validate_response(response, case=case)
            except Exception as exc:  # schemathesis raises a group of failures
                report.failures.append(f"{where} -> {status} off its schema: {exc}"[:600])

    #: Third and fourth rounds: valid and invalid cases aimed at the seeded resources,
    #: with valid version and namespace headers, so they reach the handlers.
    seeded_headers = {"X-Namespace": "default", WORKER_HEADER: "1.20"}
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            report.failures.append(f"the document has an invalid operation: {result.err()!r}")
            continue
        operation = result.ok()
        report.operations += 1
        names = {p.name for p in operation.path_parameters}
        seeded = {k: v for k, v in seeds.items() if k in names}
        rounds = [
            (GenerationMode.POSITIVE, {}, {}),
            (GenerationMode.NEGATIVE, {}, {}),
            (GenerationMode.POSITIVE, seeded, seeded_headers),
            (GenerationMode.NEGATIVE, seeded, seeded_headers),
        ]
        for mode, path_parameters, headers in rounds:

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(
                case=operation.as_strategy(
                    generation_mode=mode, path_parameters=path_parameters, headers=headers
                )
            )
            def run(case: Any) -> None:
                check(case)

            try:
                run()
            except Unsatisfiable:
                # Negative mode of an operation with nothing to break (no parameters, no body).
                report.unsatisfiable += 1
    session.close()
    return report


async def test_no_input_gets_a_5xx_and_every_4xx_is_an_error_envelope(
    start_server: StartServer,
) -> None:
    server: RunningServer = await start_server(
        auth_driver="none",
        worker_poll_timeout_s=1,
        query_task_timeout_s=1,
        update_wait_timeout_s=1,
    )
    async with httpx.AsyncClient(base_url=server.url) as client:
        raw = (await client.get("/api/openapi.json")).json()
        seeds = await seed_resources(client)
    started = time.monotonic()
    report = await trio.to_thread.run_sync(fuzz, server.url, raw, EXAMPLES, seeds)
    elapsed_s = time.monotonic() - started
    print(
        f"fuzz: {report.operations} operations, {report.requests} requests in {elapsed_s:.1f} s "
        f"({report.call_s:.1f} s waiting for answers), "
        f"{report.state_refusals} documented 5xx refusals, "
        f"statuses {dict(sorted(report.statuses.items()))}"
    )
    for failure in report.failures:
        print("fuzz failure:", failure)
    assert report.failures == []
    assert report.operations == len(raw_operations(raw))
    assert elapsed_s < BUDGET_S


async def seed_resources(client: httpx.AsyncClient) -> dict[str, str]:
    """A run with a leased workflow task, a schedule, a worker and a custom search
    attribute, so the seeded round reaches handlers past their lookups."""
    wp = {WORKER_HEADER: "1.20"}
    r = await client.post(
        "/api/workflows",
        json={"workflow_type": "FuzzFlow", "workflow_id": "fuzz-wf", "task_queue": "fuzz-q"},
        headers=CP,
    )
    assert r.status_code == 201, r.text
    run_id = r.json()["run_id"]
    r = await client.post(
        "/api/schedules",
        json={
            "schedule_id": "fuzz-schedule",
            "spec": {"intervals": [{"every": "PT1H"}]},
            "action": {"workflow_type": "FuzzFlow", "task_queue": "fuzz-q"},
        },
        headers=CP,
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/api/search-attributes", json={"name": "FuzzAttr", "type": "keyword"}, headers=CP
    )
    assert r.status_code == 201, r.text
    worker = {"worker_id": "fuzz-worker", "task_queue": "fuzz-q"}
    r = await client.post(
        "/api/worker/register",
        json={**worker, "supported_workflow_types": ["FuzzFlow"]},
        headers=wp,
    )
    assert r.status_code < 300, r.text
    r = await client.post(
        "/api/worker/workflow-tasks/poll", json={**worker, "timeout_seconds": 5}, headers=wp
    )
    task = r.json()["task"]
    assert task is not None, r.text
    return {
        "workflow_id": "fuzz-wf",
        "run_id": run_id,
        "schedule_id": "fuzz-schedule",
        "task_queue": "fuzz-q",
        "worker_id": "fuzz-worker",
        "task_id": task["task_id"],
        "namespace": "default",
    }


def raw_operations(raw: dict[str, Any]) -> list[tuple[str, str]]:
    return [(method, path) for path, item in raw["paths"].items() for method in item]
