"""The drills' workflow mix, shared by the SDK processes (``workload.py``) and the books
(``books.py``): which workflow each start is, what it returns, how often its activities
may and should run. Plain Python: no SDK, no test imports."""

from __future__ import annotations

from typing import Any

#: Kinds of start ``i``, by ``i % 4``.
KINDS = ("greeter", "waiter", "greeter", "parent")
#: The workflow type of each kind (a parent starts one child).
TYPES = {
    "greeter": "drill-greeter",
    "waiter": "drill-waiter",
    "parent": "drill-parent",
    "child": "drill-child",
}
KIND_OF_TYPE = {t: k for k, t in TYPES.items()}
#: Attempts the retry policy of both activities allows.
MAX_ATTEMPTS = 3
#: How many times each activity runs when nothing goes wrong (flaky-greet fails its first
#: attempt by design).
EXPECTED_RUNS = {"greet": 1, "flaky-greet": 2}
#: Events each kind records exactly once (beside StartAccepted, WorkflowStarted and
#: WorkflowCompleted, which every run records once).
ONCE = {
    "greeter": ("ActivityScheduled", "ActivityCompleted"),
    "waiter": ("TimerFired", "SignalReceived", "ActivityScheduled", "ActivityCompleted"),
    "parent": ("ChildWorkflowScheduled", "ChildRunCompleted"),
    "child": ("ActivityScheduled", "ActivityCompleted"),
}


def signal_item(name: str) -> str:
    return f"s-{name}"


def expected_output(kind: str, name: str) -> Any:
    """What a drill workflow of ``kind`` started with ``[name]`` returns."""
    if kind == "greeter":
        return f"hello, {name}"
    if kind == "waiter":
        return {"greeting": f"hello, {name}", "items": [signal_item(name)], "ok": True}
    if kind == "child":
        return f"hello again, {name}"
    if kind == "parent":
        return {"child": f"hello again, {name}"}
    raise ValueError(f"not a drill workflow kind: {kind}")
