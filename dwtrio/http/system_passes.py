"""/api/system/{repair,activity-timeouts,retention}: the maintenance passes on demand.

Admin routes (``routes.classify``: ``system`` is admin-only, namespace-scoped, no
``control_plane`` envelope; control-plane.md §11). Each ``GET`` reports what the
pass would act on; each ``POST .../pass`` runs **the same engine function the
background loop runs** (``engine.repair_pass.repair_pass``,
``engine.timeouts.activity_timeout_pass``, ``engine.retention.prune_pass``), once,
and answers its report: ``200``, or ``207`` when any item failed (the report says
which). Activity timeouts and retention work in the request's namespace; task
repair works across namespaces, as its loop does (docs/retention.md).

``limit`` (query string for the GETs, body for the passes) is a positive integer;
values above a route's cap are capped, not refused. Id lists hold at most 100 ids
of 1 to 128 characters.
"""

from __future__ import annotations

from quart import Blueprint, Response, g, request

from dwtrio import wire
from dwtrio.engine import repair, retention, timeouts
from dwtrio.engine.outcome import Outcome, Verdict
from dwtrio.errors import ValidationFailedError
from dwtrio.http.envelope import json_response, outcome_response
from dwtrio.http.pipeline import json_body
from dwtrio.protocol.responses import ResponseBody, render
from dwtrio.protocol.system import (
    ActivityTimeoutPassRequest,
    RepairPassRequest,
    RetentionPassRequest,
    require_lists,
)
from dwtrio.runtime import Runtime
from dwtrio.store import workflows

#: Activity-timeout scans and passes handle at most this many executions (§11).
ACTIVITY_TIMEOUT_LIMIT_CAP = 100
#: Retention scans and passes handle at most this many runs per request.
RETENTION_LIMIT_CAP = 1000
#: What a retention scan or pass takes when no limit is given (the reference's history:prune).
RETENTION_DEFAULT_LIMIT = 100


def query_limit(default: int, cap: int) -> int:
    """The ``limit`` query parameter: ASCII digits, at least 1, capped at ``cap``."""
    raw = request.args.get("limit", "")
    if raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or int(raw) < 1:
        raise ValidationFailedError({"limit": ["The limit must be an integer of at least 1."]})
    return min(int(raw), cap)


def pass_response(report: ResponseBody, failed: int) -> Response:
    """200 with the report, or 207 when any item of the pass failed."""
    verdict = Verdict.PARTIAL if failed else Verdict.DONE
    return outcome_response(Outcome(body=report, verdict=verdict))


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("system_passes", __name__)
    stale_after_s = rt.settings.effective_worker_stale_after_s

    @bp.get("/api/system/repair")
    async def repair_status() -> Response:
        body = await rt.store.read(
            repair.repair_status,
            interval_s=rt.settings.task_repair_interval_s,
            stale_after_s=stale_after_s,
        )
        return json_response(render(body))

    @bp.post("/api/system/repair/pass")
    async def repair_pass() -> Response:
        body = json_body()
        require_lists(body, "run_ids")
        req = wire.structure(body, RepairPassRequest)
        run_ids: list[str] | None = None
        if req.run_ids or req.instance_id is not None:
            run_ids = list(req.run_ids or [])
            if req.instance_id is not None:
                current = await rt.store.read(workflows.get_current_run_id, req.instance_id)
                if current is not None:
                    run_ids.append(current)
        report = await repair.repair_pass(
            rt.store,
            rt.publish_wakes,
            stale_after_s=stale_after_s,
            namespace=g.namespace,
            run_ids=run_ids,
        )
        failed = len(report.existing_task_failures) + len(report.missing_run_failures)
        return pass_response(report, failed)

    @bp.get("/api/system/activity-timeouts")
    async def activity_timeout_status() -> Response:
        limit = query_limit(ACTIVITY_TIMEOUT_LIMIT_CAP, ACTIVITY_TIMEOUT_LIMIT_CAP)
        body = await rt.store.read(timeouts.activity_timeout_status, g.namespace, limit)
        return json_response(render(body))

    @bp.post("/api/system/activity-timeouts/pass")
    async def activity_timeout_pass() -> Response:
        body = json_body()
        require_lists(body, "execution_ids")
        req = wire.structure(body, ActivityTimeoutPassRequest)
        limit = min(req.limit or ACTIVITY_TIMEOUT_LIMIT_CAP, ACTIVITY_TIMEOUT_LIMIT_CAP)
        report = await timeouts.activity_timeout_pass(
            rt.store,
            rt.publish_wakes,
            namespace=g.namespace,
            limit=limit,
            execution_ids=req.execution_ids or None,
        )
        return pass_response(report, report.failed)

    @bp.get("/api/system/retention")
    async def retention_status() -> Response:
        limit = query_limit(RETENTION_DEFAULT_LIMIT, RETENTION_LIMIT_CAP)
        body = await rt.store.read(retention.retention_status, g.namespace, limit)
        assert body is not None  # the namespace gate admitted the namespace
        return json_response(render(body))

    @bp.post("/api/system/retention/pass")
    async def retention_pass() -> Response:
        body = json_body()
        require_lists(body, "run_ids")
        req = wire.structure(body, RetentionPassRequest)
        limit = min(req.limit or RETENTION_DEFAULT_LIMIT, RETENTION_LIMIT_CAP)
        report = await retention.prune_pass(
            rt.store,
            namespace=g.namespace,
            limit=limit,
            batch_size=rt.settings.retention_batch_size,
            run_ids=req.run_ids or None,
        )
        return pass_response(report, report.failed)

    return bp
