"""Worker-plane answers: a report's outcome after its commit, and long-polls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from dwtrio import wire
from dwtrio.engine.outcome import Outcome
from dwtrio.http.envelope import HTTP_STATUS
from dwtrio.http.worker_plane import Handler, Reply, WorkerCall
from dwtrio.matching import dispatch
from dwtrio.matching.dispatch import PollParams, TaskKind
from dwtrio.protocol.responses import render
from dwtrio.protocol.worker import PollTasks
from dwtrio.runtime import Runtime
from dwtrio.store.pool import Op
from dwtrio.task_kinds import SYNC_MATCHED

P = ParamSpec("P")
K = TypeVar("K", bound=PollParams)

#: A worker's registered (workflow types, activity types); empty means any.
Registered = tuple[tuple[str, ...], tuple[str, ...]]


async def worker_outcome(
    rt: Runtime, op: Op[P, Outcome], *args: P.args, **kwargs: P.kwargs
) -> Reply:
    """Run a worker's report (complete, fail, ...) as one transaction, handing the tasks it
    creates to polls parked here (sync match); only once it has committed, wake the
    queues it touched and nudge the timer loop if it armed a timer."""
    outcome = await dispatch.transaction_with_handoffs(rt, SYNC_MATCHED, op, *args, **kwargs)
    return committed(rt, outcome)


def committed(rt: Runtime, outcome: Outcome) -> Reply:
    """The answer to a worker's report whose ``outcome`` has committed: wake the queues
    it touched, nudge the timer loop if it armed a timer."""
    rt.publish_wakes(outcome.wakes)
    if outcome.timer_armed:
        rt.timer_nudge.set()
    return Reply(render(outcome.body), HTTP_STATUS[outcome.verdict])


def task_report(rt: Runtime, model: type, op: Op[..., Outcome], *extra: Any) -> Handler:
    """The handler of ``POST .../{task_id}/<report>``: the body as ``model``, then
    ``op(conn, namespace, task_id, body, *extra)`` through :func:`worker_outcome`."""

    async def handler(call: WorkerCall, task_id: str) -> Reply:
        req: Any = wire.structure(call.json, model)
        return await worker_outcome(rt, op, call.namespace, task_id, req, *extra)

    return handler


def poll_handler(
    rt: Runtime, kind: TaskKind[K], claim_params: Callable[[str, PollTasks, Registered], K]
) -> Handler:
    """The handler of ``POST .../poll``: the body as ``PollTasks``, the worker's
    registered (workflow, activity) types, ``claim_params(namespace, body, types)``,
    then :func:`dispatch.poll`; ``{"task": null}`` when it found nothing."""

    async def handler(call: WorkerCall) -> Reply:
        req = wire.structure(call.json, PollTasks)
        namespace = call.namespace
        types = await rt.registrations.types(namespace, req.worker_id, req.task_queue)
        task = await dispatch.poll(
            rt,
            kind,
            claim_params(namespace, req, types),
            timeout_seconds=req.timeout_seconds,
            client=call.client,
        )
        if task is None:
            return Reply({"task": None, "poll_status": "empty"})
        return Reply({"task": task})

    return handler
