"""/api/worker/register, /api/worker/heartbeat, DELETE /api/worker/registrations/{id}
and its fenced form, POST /api/worker/registrations/{id}/deregister.

Registration and heartbeat acks advertise the heartbeat cadence
(``Settings.worker_heartbeat_interval_s``, a quarter of the stale window), which
the SDK adopts. A registered worker that stops heartbeating for the stale window
loses its leases to task repair; deregistration gives them back at once, its
activity attempts ending as lost (``engine.repair``). Every registration answers a
new ``registration_token``; the fenced deregistration names it, so it removes that
registration only (``engine.worker_deregistration``).
"""

from __future__ import annotations

import secrets

from dwtrio import wire
from dwtrio.engine.repair import recover_deregistered_activity_lease, worker_activity_leases
from dwtrio.engine.worker_deregistration import deregister_fenced
from dwtrio.errors import StoreUnavailableError, WorkerNotFoundError, WorkerNotRegisteredError
from dwtrio.http.worker_plane import Reply, Route, WorkerCall
from dwtrio.protocol.responses import WorkerDeregistered, render
from dwtrio.protocol.worker import FencedDeregistration, RegisterWorker, WorkerHeartbeat
from dwtrio.runtime import Runtime
from dwtrio.store import workers
from dwtrio.store.workers import Registration


async def deregister(rt: Runtime, namespace: str, worker_id: str) -> WorkerDeregistered:
    """Deregister a worker and give its leases back at once: its workflow tasks are
    offered again, its activity attempts end as lost (and follow their retry policy).

    The one deregistration path: the worker's own ``DELETE /api/worker/registrations/{id}``
    and the admin's ``DELETE /api/workers/{id}`` (``workers_admin.py``).

    Raises:
        WorkerNotFoundError: the namespace has no registration with this id.
    """
    queues = await rt.store.transaction(workers.deregister, namespace, worker_id)
    rt.registrations.forget(namespace, worker_id)
    if queues is None:
        raise WorkerNotFoundError("The worker is not registered.", worker_id=worker_id)
    rt.publish_wakes({(namespace, q, "workflow") for q in queues})
    recovered = await _recover_activity_leases(rt, namespace, worker_id)
    return WorkerDeregistered(
        worker_id=worker_id,
        outcome="deregistered",
        recovered_workflow_task_count=len(queues),
        recovered_activity_task_count=recovered,
    )


async def _recover_activity_leases(rt: Runtime, namespace: str, worker_id: str) -> int:
    """End the activity attempts a deregistered worker held; how many ended.

    Each lease ends its attempt in its own transaction (it locks its run), as task
    repair does; one left behind by a failure here is repaired by task repair.
    """
    recovered = 0
    for task_id in await rt.store.read(worker_activity_leases, namespace, worker_id):
        outcome = await rt.store.transaction(
            recover_deregistered_activity_lease, namespace, worker_id, task_id
        )
        if outcome is not None:
            rt.publish_wakes(outcome.wakes)
            recovered += 1
    return recovered


async def deregister_with_token(
    rt: Runtime, namespace: str, worker_id: str, token: str
) -> WorkerDeregistered:
    """The fenced deregistration: remove the registration ``token`` names and give its
    leases back as :func:`deregister` does, or answer the receipt of an earlier one.

    A database failure answers 503 ``outcome: unknown`` naming the operation, the
    worker and the token: it may have committed, and the same request, repeated,
    finds out (the SDK retries it within its shutdown budget).

    Raises:
        WorkerRegistrationFenceError: the token does not hold the registration
            (``engine.worker_deregistration``); nothing changed.
    """
    try:
        receipt = await rt.store.transaction(deregister_fenced, namespace, worker_id, token)
    except StoreUnavailableError as exc:
        raise StoreUnavailableError(
            exc.message,
            operation="deregister_worker",
            worker_id=worker_id,
            registration_token=token,
            outcome="unknown",
        ) from exc
    recovered_activities = receipt.recovered_activity_task_count
    if not receipt.replayed:
        rt.registrations.forget(namespace, worker_id)
        rt.publish_wakes({(namespace, q, "workflow") for q in receipt.released_queues})
        recovered_activities = await _recover_activity_leases(rt, namespace, worker_id)
        if recovered_activities:
            await rt.store.transaction(
                workers.count_activity_recoveries, token, recovered_activities
            )
    return WorkerDeregistered(
        worker_id=worker_id,
        registration_token=token,
        outcome="deregistered",
        recovered_workflow_task_count=receipt.recovered_workflow_task_count,
        recovered_activity_task_count=recovered_activities,
    )


def routes(rt: Runtime) -> list[Route]:
    interval_s = rt.settings.worker_heartbeat_interval_s
    stale_after_s = rt.settings.effective_worker_stale_after_s

    async def register(call: WorkerCall) -> Reply:
        req = wire.structure(call.json, RegisterWorker)
        reg = Registration(
            namespace=call.namespace,
            worker_id=req.worker_id,
            task_queue=req.task_queue,
            runtime=req.runtime,
            sdk_version=req.sdk_version,
            build_id=(req.build_id or "").strip(),  # '' is the unversioned cohort
            supported_workflow_types=req.supported_workflow_types,
            supported_activity_types=req.supported_activity_types,
            workflow_definition_fingerprints=req.workflow_definition_fingerprints,
            workflow_command_contracts=req.workflow_command_contracts,
            capabilities=req.capabilities,
            capability_manifest=req.capability_manifest,
            task_slots=req.task_slots,
            process_metrics=req.process_metrics,
            max_concurrent_workflow_tasks=req.max_concurrent_workflow_tasks,
            max_concurrent_activity_tasks=req.max_concurrent_activity_tasks,
            max_concurrent_worker_sessions=req.max_concurrent_worker_sessions,
            heartbeat_interval_seconds=interval_s,
            registration_token=secrets.token_hex(16),
        )
        await rt.store.transaction(workers.register, reg)
        rt.registrations.forget(call.namespace, req.worker_id)
        body = {
            "worker_id": req.worker_id,
            "registered": True,
            "registration_token": reg.registration_token,
            "heartbeat_interval_seconds": interval_s,
            "stale_after_seconds": stale_after_s,
        }
        return Reply(body, 201)

    async def heartbeat(call: WorkerCall) -> Reply:
        req = wire.structure(call.json, WorkerHeartbeat)
        known = await rt.store.transaction(
            workers.heartbeat, call.namespace, req.worker_id, req.task_slots, req.process_metrics
        )
        if not known:
            raise WorkerNotRegisteredError("The worker is not registered.", worker_id=req.worker_id)
        body = {
            "worker_id": req.worker_id,
            "acknowledged": True,
            "heartbeat_interval_seconds": interval_s,
            "stale_after_seconds": stale_after_s,
        }
        return Reply(body)

    async def deregister_route(call: WorkerCall, worker_id: str) -> Reply:
        return Reply(render(await deregister(rt, call.namespace, worker_id)))

    async def fenced_deregister_route(call: WorkerCall, worker_id: str) -> Reply:
        req = wire.structure(call.json, FencedDeregistration)
        receipt = await deregister_with_token(rt, call.namespace, worker_id, req.registration_token)
        return Reply(render(receipt))

    return [
        Route("POST", "register", register),
        Route("POST", "heartbeat", heartbeat),
        Route("DELETE", "registrations/{worker_id}", deregister_route),
        Route("POST", "registrations/{worker_id}/deregister", fenced_deregister_route),
    ]
