"""The greeter for Temporal's Python SDK, shaped like the durable-workflow one.

Its own module so Temporal's workflow sandbox can re-import it without pulling
in the rest of the harness. Only imported when the ``temporal`` extra is installed.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="greet")
def greet(name: str) -> str:
    return f"hello, {name}"


@workflow.defn(name="greeter")
class Greeter:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            "greet", name, start_to_close_timeout=timedelta(seconds=60)
        )
