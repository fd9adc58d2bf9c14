"""History export through the official SDK, against a dwtrio URL.

    python history_export_driver.py <scenario> <base_url> <token>

Scenario ``export``: a greeter workflow (one activity, one signal) runs to the end
under an SDK worker; then ``Client.export_history`` and the handle's
``export_history`` fetch its bundle, the SDK's offline verifier
(``history_bundle_verify.verify_bundle``) checks it, with and without the signing
key, and the SDK's ``Replayer`` replays the bundle's events against the workflow
code. An open run's bundle is fetched and verified as well. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from durable_workflow import Client, Worker, activity, workflow
from durable_workflow.history_bundle_verify import verify_bundle
from durable_workflow.workflow import CompleteWorkflow, Replayer

from driver_support import print_result, running

KEY = os.environ.get("EXPORT_SIGNING_KEY") or None


@activity.defn(name="export-greet")
def greet(name: str) -> str:
    return f"hello, {name}"


@workflow.defn(name="export-greeter")
class ExportGreeter:
    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        result = yield ctx.schedule_activity("export-greet", [name])
        return result


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": report["status"],
        "rules": report["summary"]["findings_by_rule"],
        "checksum_matches": report["integrity"]["checksum_matches"],
        "signature_verified": report["integrity"]["signature_verified"],
        "events": report["bundle"]["history_event_count"],
    }


async def export(client: Client) -> dict[str, Any]:
    queue = f"export-{uuid.uuid4().hex[:8]}"
    workflow_id = f"export-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        client, task_queue=queue, workflows=[ExportGreeter], activities=[greet], poll_timeout=5
    )
    out: dict[str, Any] = {}
    async with running(worker):
        handle = await client.start_workflow(
            workflow_type="export-greeter", workflow_id=workflow_id, task_queue=queue, input=["sdk"]
        )
        out["result"] = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
    bundle = await client.export_history(workflow_id, handle.run_id)
    again = await handle.export_history()
    out["same_events"] = again["history_events"] == bundle["history_events"]
    out["schema"] = bundle["schema"]
    out["workflow"] = {k: bundle["workflow"][k] for k in ("instance_id", "run_id", "status")}
    out["run_id"] = handle.run_id
    out["event_types"] = [e["type"] for e in bundle["history_events"]]
    out["activities"] = [a["activity_type"] for a in bundle["activities"]]
    out["signed"] = bundle["integrity"]["signature"] is not None
    out["verify"] = verdict(verify_bundle(bundle))
    out["verify_with_key"] = verdict(verify_bundle(bundle, KEY)) if KEY else None
    out["verify_wrong_key"] = verdict(verify_bundle(bundle, "wrong")) if KEY else None
    outcome = Replayer(workflows=[ExportGreeter]).replay(bundle, ["sdk"])
    out["replay"] = [
        {"type": type(c).__name__, "result": getattr(c, "result", None)} for c in outcome.commands
    ]
    out["replay_completes"] = any(isinstance(c, CompleteWorkflow) for c in outcome.commands)

    open_id = f"export-open-{uuid.uuid4().hex[:8]}"
    open_handle = await client.start_workflow(
        workflow_type="export-greeter", workflow_id=open_id, task_queue=f"{queue}-idle", input=["x"]
    )
    open_bundle = await client.export_history(open_id, open_handle.run_id)
    out["open"] = {
        "history_complete": open_bundle["history_complete"],
        "status": open_bundle["workflow"]["status"],
        "verify": verdict(verify_bundle(open_bundle, KEY)),
    }
    await client.terminate_workflow(open_id, reason="done")
    return out


async def main(scenario: str, url: str, token: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        return await asyncio.wait_for(export(client), timeout=90)


if __name__ == "__main__":
    print_result(main, timeout_s=120)
