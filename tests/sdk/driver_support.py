"""What the SDK drivers (``tests/sdk/*_driver.py``) share: running a worker for a block,
and the command-line entry that prints a scenario's result for the test to read.

Drivers run as scripts (``python tests/sdk/x_driver.py scenario url token``), so this
directory is on their ``sys.path``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from durable_workflow import Worker


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    """Run ``worker`` in the background for the block; stop it and wait for it after."""
    runner = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await worker.stop()
        await asyncio.gather(runner, return_exceptions=True)


def print_result(
    main: Callable[[str, str, str], Awaitable[Any]], *, timeout_s: float = 150
) -> None:
    """Run ``main(scenario, base_url, token)`` from ``sys.argv`` and print its result as one
    JSON line: the test reads the last line of stdout."""
    name, base_url, auth_token = sys.argv[1:4]
    result = asyncio.run(asyncio.wait_for(main(name, base_url, auth_token), timeout=timeout_s))
    print(json.dumps(result, default=str))
