"""History export: a run's replay bundle, written as a stream of canonical JSON.

:func:`stream_bundle` reads the run one page at a time (events in sequence order,
every other section in id order) and yields the bundle's bytes as they are made, so
an export holds one page in memory whatever the run's size. The text is the
canonical form itself (``protocol/history_export.py``): top-level keys in sorted
order, each section's entries as they come, the digest fed as bytes leave, and
``integrity`` appended last.

Consistency: the events are those up to the run's ``last_history_sequence`` when
the export began, so an open run's export is a prefix of its history, never a
torn page; the other sections are read after the events and may show later
changes of an open run. If the run disappears while the export runs (retention,
namespace deletion) the stream stops with :class:`ExportInterruptedError` and
the client sees a truncated body, never a short bundle that verifies.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Final

from dwtrio import payloads, wire
from dwtrio.errors import ExportInterruptedError
from dwtrio.protocol import history_export as bundle
from dwtrio.store import history_export as store
from dwtrio.store.history import EventRow
from dwtrio.store.history_export import RunHead
from dwtrio.store.pool import Store
from dwtrio.store.runs import OPEN_STATUSES

#: Rows read per page (events and every other section).
PAGE_SIZE: Final = 1000

_AVRO_FINGERPRINT: Final = "crc64-avro:" + payloads.SCHEMA_FINGERPRINT.hex()
_AVRO_WRITER_SCHEMA: Final = json.dumps(payloads.VALUE_SCHEMA, separators=(",", ":"))

#: (section, field) pairs whose values are payload blobs, in payload_manifest order.
_MANIFEST_FIELDS: Final = (
    ("commands", ("payload",)),
    ("signals", ("arguments",)),
    ("updates", ("arguments", "result")),
    ("activities", ("arguments", "result")),
)


async def find_run(store_: Store, namespace: str, workflow_id: str, run_id: str) -> RunHead | None:
    return await store_.read(store.get_run_head, namespace, workflow_id, run_id)


def event_entry(event: EventRow) -> dict[str, Any]:
    return {
        "id": event.id,
        "sequence": event.sequence,
        "type": event.event_type,
        "workflow_task_id": event.workflow_task_id,
        "workflow_command_id": event.workflow_command_id,
        "recorded_at": wire.iso_z(event.recorded_at),
        "payload": event.payload or {},
    }


def lineage_link(previous_closed_reason: str | None) -> str:
    """The link between two runs of an instance, from how the earlier one closed: a
    failed run was redriven (docs/workflow-maintenance.md), any other continued as new."""
    return "redrive" if previous_closed_reason == "failed" else "continue_as_new"


def workflow_block(run: RunHead) -> dict[str, Any]:
    return {
        "instance_id": run.workflow_id,
        "run_id": run.id,
        "namespace": run.namespace,
        "run_number": run.run_number,
        "run_count": run.run_count,
        "is_current_run": run.current_run_id == run.id,
        "current_run_id": run.current_run_id,
        "workflow_type": run.workflow_type,
        "business_key": run.business_key,
        "visibility_labels": run.visibility_labels or {},
        "memo": run.memo or {},
        "search_attributes": run.search_attributes or {},
        "status": run.status,
        "status_bucket": run.status_bucket,
        "closed_reason": run.closed_reason,
        "archived_at": wire.iso_z(run.archived_at),
        "archive_command_id": run.archive_command_id,
        "archive_reason": run.archive_reason,
        "compatibility": run.compatibility,
        "queue": run.task_queue,
        "run_timeout_seconds": run.run_timeout_seconds,
        "execution_deadline_at": wire.iso_z(run.execution_deadline_at),
        "run_deadline_at": wire.iso_z(run.run_deadline_at),
        "continued_from_run_id": run.continued_from_run_id,
        "continued_to_run_id": run.continued_to_run_id,
        "last_history_sequence": run.last_history_sequence,
        "started_at": wire.iso_z(run.started_at),
        "closed_at": wire.iso_z(run.closed_at),
        "last_progress_at": wire.iso_z(run.last_progress_at),
    }


def summary_block(run: RunHead) -> dict[str, Any]:
    return {
        "status": run.status,
        "status_bucket": run.status_bucket,
        "is_terminal": run.status not in OPEN_STATUSES,
        "closed_reason": run.closed_reason,
        "wait_kind": run.wait_kind,
        "wait_reason": run.wait_reason,
        "history_event_count": run.last_history_sequence,
        "history_size_bytes": run.history_size_bytes,
        "started_at": wire.iso_z(run.started_at),
        "closed_at": wire.iso_z(run.closed_at),
    }


def waits_block(run: RunHead) -> list[dict[str, Any]]:
    """The run's open wait as recorded on the run (dwtrio keeps no wait history)."""
    if run.wait_kind is None or run.status not in OPEN_STATUSES:
        return []
    return [
        {
            "kind": run.wait_kind,
            "reason": run.wait_reason,
            "status": "open",
            "started_at": wire.iso_z(run.wait_started_at),
            "deadline_at": wire.iso_z(run.wait_deadline_at),
        }
    ]


def payloads_block(run: RunHead) -> dict[str, Any]:
    return {
        "codec": run.payload_codec or payloads.CODEC,
        "arguments": {"available": run.arguments is not None, "data": run.arguments},
        "output": {"available": run.output is not None, "data": run.output},
    }


def codec_schemas(codec: str) -> dict[str, Any]:
    if codec != payloads.CODEC:
        return {}
    return {
        "avro": {
            "encoding": "base64-avro-binary",
            "framing": "single_object",
            "prefix_hex": "c301",
            "writer_schema": _AVRO_WRITER_SCHEMA,
            "writer_schema_fingerprint": _AVRO_FINGERPRINT,
        }
    }


def manifest_entry(path: str, codec: str | None, data: Any) -> dict[str, Any]:
    """What a reader needs to know to decode the blob at ``path`` offline."""
    codec = codec or payloads.CODEC
    available = isinstance(data, str) and data != ""
    entry: dict[str, Any] = {
        "path": path,
        "codec": codec,
        "available": available,
        "redacted": False,
        "encoding": "base64-avro-binary" if codec == payloads.CODEC else "opaque-string",
        "avro_framing": None,
        "avro_prefix_hex": None,
        "writer_schema_fingerprint": None,
        "diagnostic": None if available else "payload_unavailable",
    }
    if available and codec == payloads.CODEC:
        try:
            head = base64.b64decode(data[:16] + "=" * (-len(data[:16]) % 4))
        except (binascii.Error, ValueError):
            head = b""
        if head[:2] == b"\xc3\x01" and len(head) >= 10:
            entry["avro_framing"] = "single_object"
            entry["avro_prefix_hex"] = "c301"
            entry["writer_schema_fingerprint"] = "crc64-avro:" + head[2:10].hex()
        else:
            entry["avro_framing"] = "unrecognized"
            entry["diagnostic"] = "avro_framing_unrecognized"
    return entry


async def _section(store_: Store, section: str, run_id: str) -> AsyncIterator[list[dict[str, Any]]]:
    """The entries of one paged section, a page at a time."""
    after = ""
    while True:
        rows = await store_.read(store.section_page, section, run_id, after, PAGE_SIZE)
        if rows:
            yield [r.item for r in rows]
            after = rows[-1].key
        if len(rows) < PAGE_SIZE:
            return


async def stream_bundle(
    store_: Store,
    run: RunHead,
    *,
    exported_at: datetime,
    signing_key: str | None = None,
    key_id: str | None = None,
) -> AsyncIterator[bytes]:
    """The bundle of ``run`` as byte chunks (one or a few per page read)."""
    out = bundle.BundleWriter(signing_key, key_id)
    codec = run.payload_codec or payloads.CODEC

    async def section(name: str) -> AsyncIterator[bytes]:
        yield out.raw("[")
        first = True
        async for entries in _section(store_, name, run.id):
            yield out.items(entries, first=first)
            first = False
        yield out.raw("]")

    yield out.key("activities")
    async for chunk in section("activities"):
        yield chunk
    yield out.key("codec_schemas") + out.value(codec_schemas(codec))
    yield out.key("commands")
    async for chunk in section("commands"):
        yield chunk
    yield out.key("dedupe_key") + out.value(f"{run.id}:{run.last_history_sequence}")
    yield out.key("exported_at") + out.value(wire.iso_z(exported_at))
    yield out.key("failures")
    async for chunk in section("failures"):
        yield chunk
    yield out.key("history_complete") + out.value(run.status not in OPEN_STATUSES)

    yield out.key("history_events") + out.raw("[")
    after, upto = 0, run.last_history_sequence
    while after < upto:
        events = await store_.read(store.events_page, run.id, after, upto, PAGE_SIZE)
        if not events or events[0].sequence != after + 1:
            raise ExportInterruptedError(
                f"History of run {run.id!r} changed during its export (at sequence {after + 1}).",
                workflow_id=run.workflow_id,
                run_id=run.id,
            )
        yield out.items((event_entry(e) for e in events), first=after == 0)
        after = events[-1].sequence
    yield out.raw("]")

    parents = await store_.read(store.parent_calls, run.workflow_id)
    parent_links = [p.item for p in parents]
    if run.continued_from_run_id is not None:
        parent_links.append(
            {
                "link_type": lineage_link(run.continued_from_closed_reason),
                "workflow_instance_id": run.workflow_id,
                "workflow_run_id": run.continued_from_run_id,
            }
        )
    yield out.key("links") + out.raw('{"children":[')
    first = True
    async for entries in _section(store_, "children", run.id):
        yield out.items(entries, first=first)
        first = False
    if run.continued_to_run_id is not None:
        yield out.items(
            [
                {
                    "link_type": lineage_link(run.closed_reason),
                    "workflow_instance_id": run.workflow_id,
                    "workflow_run_id": run.continued_to_run_id,
                }
            ],
            first=first,
        )
    yield out.raw('],"parents":') + out.value(parent_links) + out.raw("}")

    # Sorted keys inside payload_manifest: "entries" then "version".
    yield out.key("payload_manifest") + out.raw('{"entries":[')
    yield out.items(
        [
            manifest_entry("payloads.arguments.data", codec, run.arguments),
            manifest_entry("payloads.output.data", codec, run.output),
        ],
        first=True,
    )
    for name, fields in _MANIFEST_FIELDS:
        index = 0
        async for entries in _section(store_, name, run.id):
            page = []
            for item in entries:
                for field in fields:
                    page.append(
                        manifest_entry(
                            f"{name}.{index}.{field}",
                            item.get("payload_codec") or codec,
                            item.get(field),
                        )
                    )
                index += 1
            yield out.items(page, first=False)
    yield out.raw('],"version":1}')

    yield out.key("payloads") + out.value(payloads_block(run))
    yield out.key("redaction") + out.value({"applied": False, "policy": None, "paths": []})
    yield out.key("schema") + out.value(bundle.SCHEMA)
    yield out.key("schema_version") + out.value(bundle.SCHEMA_VERSION)
    yield out.key("signals")
    async for chunk in section("signals"):
        yield chunk
    yield out.key("summary") + out.value(summary_block(run))
    yield out.key("tasks")
    async for chunk in section("tasks"):
        yield chunk
    # dwtrio keeps no timeline projection; the history events are the timeline.
    yield out.key("timeline") + out.value([])
    yield out.key("timers")
    async for chunk in section("timers"):
        yield chunk
    yield out.key("updates")
    async for chunk in section("updates"):
        yield chunk
    yield out.key("waits") + out.value(waits_block(run))
    yield out.key("workflow") + out.value(workflow_block(run))
    yield out.finish()
