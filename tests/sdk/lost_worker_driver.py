"""A worker process that dies mid-activity, and one that lives through a long one, with the
official SDK; prints a JSON result.

    python lost_worker_driver.py <scenario> <base_url> <token> [queue]

Runs in its own process (the SDK is asyncio-based; the test process runs
Trio). The ``killed-worker`` scenario starts a second copy of this
script as a worker process (scenario ``doomed-worker``) and SIGKILLs it while
its activity runs: no deregistration, no failure report, no more heartbeats.
Every scenario is bounded by timeouts.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any

from durable_workflow import Client, Worker, activity, workflow

from driver_support import running

#: How long the killed worker's activity would run: far longer than any test waits.
HANG_S = 600
#: Longer than the test server's stale window, several times over.
LONG_S = 7
RETRY = {"max_attempts": 2, "backoff_seconds": [0]}


@activity.defn(name="hang_first")
async def hang_first() -> dict[str, Any]:
    """Attempt 1 announces itself and hangs (its worker gets killed); later attempts finish."""
    info = activity.context().info
    if info.attempt_number == 1:
        print("ACTIVITY-STARTED", flush=True)
        await asyncio.sleep(HANG_S)
    return {"attempt": info.attempt_number, "worker_id": info.worker_id}


@activity.defn(name="long_sync")
def long_sync(seconds: float) -> dict[str, Any]:
    """A plain function (the SDK runs it in a thread) that never heartbeats."""
    info = activity.context().info
    time.sleep(seconds)
    return {"attempt": info.attempt_number, "worker_id": info.worker_id}


@workflow.defn(name="survives-worker-death")
class SurvivesWorkerDeath:
    def run(self, ctx):  # type: ignore[no-untyped-def]
        result = yield ctx.schedule_activity("hang_first", [], retry_policy=RETRY)
        return result


@workflow.defn(name="runs-long")
class RunsLong:
    def run(self, ctx, seconds):  # type: ignore[no-untyped-def]
        result = yield ctx.schedule_activity("long_sync", [seconds], retry_policy=RETRY)
        return result


def _worker(client: Client, queue: str) -> Worker:
    return Worker(
        client,
        task_queue=queue,
        workflows=[SurvivesWorkerDeath, RunsLong],
        activities=[hang_first, long_sync],
        poll_timeout=2,
    )


async def scenario_doomed_worker(url: str, token: str, queue: str) -> None:
    """A worker that runs until it is killed."""
    async with Client(url, token=token, namespace="default") as client:
        await _worker(client, queue).run()


async def scenario_killed_worker(url: str, token: str, queue: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        workflow_id = f"death-{uuid.uuid4().hex}"
        handle = await client.start_workflow(
            workflow_type="survives-worker-death", workflow_id=workflow_id, task_queue=queue
        )
        doomed = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "doomed-worker",
            url,
            token,
            queue,
            stdout=asyncio.subprocess.PIPE,
        )
        assert doomed.stdout is not None
        try:
            while (line := await asyncio.wait_for(doomed.stdout.readline(), 30)) != b"":
                if line.strip() == b"ACTIVITY-STARTED":
                    break
            else:
                raise RuntimeError("the doomed worker exited before its activity started")
        finally:
            doomed.kill()  # SIGKILL: the attempt's lease (300 s) is orphaned
            await doomed.wait()
        killed_at = time.monotonic()
        async with running(_worker(client, queue)) as rescuer:
            # Without lost-worker recovery the retry would wait for the 300 s lease.
            result = await client.get_result(handle, timeout=40.0, poll_interval=0.1)
        return {
            "workflow_id": workflow_id,
            "run_id": handle.run_id,
            "result": result,
            "rescuer": rescuer.worker_id,
            "killed_returncode": doomed.returncode,
            "recovered_after_s": time.monotonic() - killed_at,
        }


async def scenario_long_activity(url: str, token: str, queue: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        workflow_id = f"long-{uuid.uuid4().hex}"
        async with running(_worker(client, queue)) as worker:
            handle = await client.start_workflow(
                workflow_type="runs-long",
                workflow_id=workflow_id,
                task_queue=queue,
                input=[LONG_S],
            )
            result = await client.get_result(handle, timeout=60.0, poll_interval=0.1)
            cadence_s = worker._heartbeat_interval  # what the SDK adopted from the server
        return {
            "workflow_id": workflow_id,
            "run_id": handle.run_id,
            "result": result,
            "worker_id": worker.worker_id,
            "heartbeat_interval_s": cadence_s,
        }


async def main(scenario: str, url: str, token: str, queue: str) -> Any:
    if scenario == "killed-worker":
        return await scenario_killed_worker(url, token, queue)
    if scenario == "doomed-worker":
        return await scenario_doomed_worker(url, token, queue)
    if scenario == "long-activity":
        return await scenario_long_activity(url, token, queue)
    raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    name, base_url, auth_token = sys.argv[1:4]
    task_queue = sys.argv[4] if len(sys.argv) > 4 else f"q-{uuid.uuid4().hex[:8]}"
    print(
        json.dumps(
            asyncio.run(asyncio.wait_for(main(name, base_url, auth_token, task_queue), 120)),
            default=str,
        )
    )
