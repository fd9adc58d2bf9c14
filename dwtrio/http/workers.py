"""/api/worker/register, /api/worker/heartbeat, DELETE /api/worker/registrations/{id}."""

from __future__ import annotations

from dwtrio import wire
from dwtrio.errors import WorkerNotFoundError, WorkerNotRegisteredError
from dwtrio.http.worker_plane import Reply, Route, WorkerCall
from dwtrio.protocol.worker import RegisterWorker, WorkerHeartbeat
from dwtrio.runtime import Runtime
from dwtrio.store import workers
from dwtrio.store.workers import Registration

HEARTBEAT_INTERVAL_S = 60


def routes(rt: Runtime) -> list[Route]:
    async def register(call: WorkerCall) -> Reply:
        req = wire.structure(call.json, RegisterWorker)
        reg = Registration(
            namespace=call.namespace,
            worker_id=req.worker_id,
            task_queue=req.task_queue,
            runtime=req.runtime,
            sdk_version=req.sdk_version,
            build_id=req.build_id or "",
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
            heartbeat_interval_seconds=HEARTBEAT_INTERVAL_S,
        )
        await rt.store.transaction(workers.register, reg)
        rt.registrations.forget(call.namespace, req.worker_id)
        body = {
            "worker_id": req.worker_id,
            "registered": True,
            "heartbeat_interval_seconds": HEARTBEAT_INTERVAL_S,
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
            "heartbeat_interval_seconds": HEARTBEAT_INTERVAL_S,
        }
        return Reply(body)

    async def deregister(call: WorkerCall, worker_id: str) -> Reply:
        queues = await rt.store.transaction(workers.deregister, call.namespace, worker_id)
        rt.registrations.forget(call.namespace, worker_id)
        if queues is None:
            raise WorkerNotFoundError("The worker is not registered.", worker_id=worker_id)
        rt.publish_wakes({(call.namespace, q, "workflow") for q in queues})
        body = {
            "worker_id": worker_id,
            "outcome": "deregistered",
            "recovered_workflow_task_count": len(queues),
        }
        return Reply(body)

    return [
        Route("POST", "register", register),
        Route("POST", "heartbeat", heartbeat),
        Route("DELETE", "registrations/{worker_id}", deregister),
    ]
