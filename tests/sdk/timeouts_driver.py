"""Activity retries, timeouts and lease repair with the official SDK; prints a JSON result.

    python timeouts_driver.py <scenario> <base_url> <token> [queue]

Runs in its own process (the SDK is asyncio-based; the test process runs
Trio). The ``killed-worker`` scenario starts a second copy of this
script as a worker process (scenario ``hanging-worker``) and SIGKILLs it while
its activity runs. Every scenario is bounded by timeouts.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

from durable_workflow import Client, Worker, activity, workflow
from durable_workflow.errors import ActivityFailed, WorkflowTimedOut


# --- activities -----------------------------------------------------------------------
@activity.defn(name="flaky")
async def flaky() -> dict[str, Any]:
    """Fails on attempts 1 and 2, succeeds on 3: the attempt number comes from the SDK."""
    number = activity.context().info.attempt_number
    if number < 3:
        raise RuntimeError(f"attempt {number} failed")
    return {"attempt": number}


@activity.defn(name="sleepy")
async def sleepy(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "too late"


@activity.defn(name="beats_once")
async def beats_once(seconds: float) -> str:
    await activity.context().heartbeat({"progress": 1})
    await asyncio.sleep(seconds)
    return "too late"


@activity.defn(name="hang_first")
async def hang_first() -> dict[str, Any]:
    """Attempt 1 announces itself and hangs (its worker gets killed); later attempts finish."""
    info = activity.context().info
    if info.attempt_number == 1:
        print("ACTIVITY-STARTED", flush=True)
        await asyncio.sleep(120)
    return {"attempt": info.attempt_number, "worker_id": info.worker_id}


# --- workflows ------------------------------------------------------------------------
@workflow.defn(name="retry-until-third")
class RetryUntilThird:
    def run(self, ctx):  # type: ignore[no-untyped-def]
        policy = {"max_attempts": 3, "backoff_seconds": [0, 0]}
        result = yield ctx.schedule_activity("flaky", [], retry_policy=policy)
        return result


@workflow.defn(name="catches-timeout")
class CatchesTimeout:
    def run(self, ctx, kind, queue):  # type: ignore[no-untyped-def]
        if kind == "start_to_close":
            call = ctx.schedule_activity("sleepy", [3], start_to_close_timeout=1)
        elif kind == "heartbeat":
            call = ctx.schedule_activity(
                "beats_once", [4], heartbeat_timeout=1, start_to_close_timeout=10
            )
        elif kind == "schedule_to_start":  # nobody polls this queue
            call = ctx.schedule_activity("sleepy", [0], queue=queue, schedule_to_start_timeout=1)
        else:
            call = ctx.schedule_activity(
                "sleepy",
                [3],
                schedule_to_close_timeout=1,
                retry_policy={"max_attempts": 5, "backoff_seconds": [0]},
            )
        try:
            yield call
        except ActivityFailed as exc:
            return {
                "caught": type(exc).__name__,
                "message": str(exc),
                "exception_type": exc.exception_type,
                "failure_category": exc.failure_category,
                "activity_type": exc.activity_type,
            }
        return {"caught": None}


@workflow.defn(name="survives-worker-loss")
class SurvivesWorkerLoss:
    def run(self, ctx):  # type: ignore[no-untyped-def]
        policy = {"max_attempts": 2, "backoff_seconds": [0]}
        result = yield ctx.schedule_activity("hang_first", [], retry_policy=policy)
        return result


@workflow.defn(name="waits-forever")
class WaitsForever:
    def run(self, ctx, queue):  # type: ignore[no-untyped-def]
        result = yield ctx.schedule_activity("sleepy", [0], queue=queue)  # nobody polls it
        return result


WORKFLOWS = [RetryUntilThird, CatchesTimeout, SurvivesWorkerLoss, WaitsForever]
ACTIVITIES = [flaky, sleepy, beats_once, hang_first]


def _worker(client: Client, queue: str) -> Worker:
    return Worker(
        client, task_queue=queue, workflows=WORKFLOWS, activities=ACTIVITIES, poll_timeout=2
    )


async def _stop(worker: Worker, runner: asyncio.Task[Any]) -> None:
    await worker.stop()
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


async def scenario_retry(url: str, token: str, queue: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        worker = _worker(client, queue)
        runner = asyncio.create_task(worker.run())
        try:
            workflow_id = f"retry-{uuid.uuid4().hex}"
            handle = await client.start_workflow(
                workflow_type="retry-until-third", workflow_id=workflow_id, task_queue=queue
            )
            result = await client.get_result(handle, timeout=60.0, poll_interval=0.1)
        finally:
            await _stop(worker, runner)
        return {"workflow_id": workflow_id, "run_id": handle.run_id, "result": result}


async def scenario_timeout_kinds(url: str, token: str, queue: str) -> dict[str, Any]:
    kinds = ("start_to_close", "heartbeat", "schedule_to_start", "schedule_to_close")
    async with Client(url, token=token, namespace="default") as client:
        worker = _worker(client, queue)
        runner = asyncio.create_task(worker.run())
        try:
            handles = {
                kind: await client.start_workflow(
                    workflow_type="catches-timeout",
                    workflow_id=f"timeout-{kind}-{uuid.uuid4().hex}",
                    task_queue=queue,
                    input=[kind, f"nobody-{uuid.uuid4().hex[:8]}"],
                )
                for kind in kinds
            }
            results = await asyncio.gather(
                *(client.get_result(h, timeout=60.0, poll_interval=0.1) for h in handles.values())
            )
        finally:
            await _stop(worker, runner)
        return {
            kind: {"workflow_id": h.workflow_id, "run_id": h.run_id, "result": r}
            for (kind, h), r in zip(handles.items(), results, strict=True)
        }


async def scenario_run_timeout(url: str, token: str, queue: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        worker = _worker(client, queue)
        runner = asyncio.create_task(worker.run())
        workflow_id = f"run-timeout-{uuid.uuid4().hex}"
        try:
            handle = await client.start_workflow(
                workflow_type="waits-forever",
                workflow_id=workflow_id,
                task_queue=queue,
                input=[f"nobody-{uuid.uuid4().hex[:8]}"],
                run_timeout_seconds=1,
            )
            try:
                await client.get_result(handle, timeout=30.0, poll_interval=0.1)
            except WorkflowTimedOut as exc:
                raised = {"type": type(exc).__name__, "message": str(exc)}
            else:
                raised = {"type": None}
        finally:
            await _stop(worker, runner)
        return {"workflow_id": workflow_id, "run_id": handle.run_id, "raised": raised}


async def scenario_hanging_worker(url: str, token: str, queue: str) -> None:
    """A worker that runs until it is killed."""
    async with Client(url, token=token, namespace="default") as client:
        await _worker(client, queue).run()


async def scenario_killed_worker(url: str, token: str, queue: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        workflow_id = f"loss-{uuid.uuid4().hex}"
        handle = await client.start_workflow(
            workflow_type="survives-worker-loss", workflow_id=workflow_id, task_queue=queue
        )
        doomed = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "hanging-worker",
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
            doomed.kill()  # SIGKILL: no deregistration, no failure report, the lease is orphaned
            await doomed.wait()
        worker = _worker(client, queue)
        runner = asyncio.create_task(worker.run())
        try:
            result = await client.get_result(handle, timeout=60.0, poll_interval=0.1)
        finally:
            await _stop(worker, runner)
        return {
            "workflow_id": workflow_id,
            "run_id": handle.run_id,
            "result": result,
            "rescuer": worker.worker_id,
            "killed_returncode": doomed.returncode,
        }


async def main(scenario: str, url: str, token: str, queue: str) -> Any:
    if scenario == "retry":
        return await scenario_retry(url, token, queue)
    if scenario == "timeout-kinds":
        return await scenario_timeout_kinds(url, token, queue)
    if scenario == "run-timeout":
        return await scenario_run_timeout(url, token, queue)
    if scenario == "killed-worker":
        return await scenario_killed_worker(url, token, queue)
    if scenario == "hanging-worker":
        return await scenario_hanging_worker(url, token, queue)
    raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    name, base_url, auth_token = sys.argv[1:4]
    task_queue = sys.argv[4] if len(sys.argv) > 4 else f"q-{uuid.uuid4().hex[:8]}"
    print(
        json.dumps(
            asyncio.run(asyncio.wait_for(main(name, base_url, auth_token, task_queue), 150)),
            default=str,
        )
    )
