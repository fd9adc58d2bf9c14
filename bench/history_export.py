"""history-export: streaming a long run's replay bundle, beside reading the same events paged.

Reproduce (a quiet machine; the DSN is an admin DSN, a fresh database is created
and dropped)::

    python -m bench --dsn postgresql://postgres@127.0.0.1:5432/postgres history-export \\
        --events 100000 --runs 3

The bench starts one ``dwtrio serve`` on a fresh database, starts two workflows
through the API and bulk-loads history straight into Postgres: ``--events``
events on one run and a tenth of that on the other (activity-style payloads of
about 200 bytes: a step sequence, a type, an Avro-sized base64 result and a
non-ASCII note), then VACUUM ANALYZEs. Each run then times, one request after
another on one connection, uncompressed (``Accept-Encoding: identity``):

- **export**: ``GET .../history/export`` of the long run, streamed and counted;
- **export-small**: the same for the short run (what the server's memory does
  when the history is ten times shorter);
- **paged** (the reference): the long run's events read through
  ``GET .../history?page_size=1000``, page after page, as a client would.

For each it reports events/s, MB/s of body and the server process's peak RSS
growth during the request: the kernel's high-water mark (``VmHWM``) is reset
just before the request (``/proc/<pid>/clear_refs``) and read right after, less
the RSS before. The median over ``--runs`` is reported. Bounded: every request
has a 300 s timeout, and the load is ``--events`` rows.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    CP,
    bench_database,
    dwtrio_server,
    median_of_runs,
    server_processes,
    table,
    write_result,
)

LOAD_SQL = """
WITH base AS (SELECT last_history_sequence AS s FROM workflow_runs WHERE id = $1)
INSERT INTO history_events (id, run_id, sequence, event_type, payload)
SELECT 'bulk-' || $1 || '-' || lpad(g::text, 9, '0'), $1, base.s + g,
       CASE WHEN g % 2 = 0 THEN 'ActivityCompleted' ELSE 'ActivityScheduled' END,
       jsonb_build_object(
           'sequence', g, 'activity_type', 'charge-card',
           'activity_execution_id', md5(g::text),
           'result', encode(sha256(g::text::bytea) || sha256((g + 1)::text::bytea), 'base64'),
           'note', 'réglé ' || g, 'attempt', 1)
  FROM base, generate_series($2::int, $3::int) AS g
"""


async def _load(dsn: str, runs: dict[str, int], batch: int = 50_000) -> float:
    import asyncpg

    began = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        for run_id, count in runs.items():
            for start in range(1, count + 1, batch):
                end = min(count, start + batch - 1)
                await conn.execute(LOAD_SQL, run_id, start, end)
            await conn.execute(
                "UPDATE workflow_runs SET last_history_sequence = last_history_sequence + $2 "
                "WHERE id = $1",
                run_id,
                count,
            )
        await conn.execute("VACUUM ANALYZE history_events")
    finally:
        await conn.close()
    return time.perf_counter() - began


def _rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def _measured(pid: int, request: Any) -> dict[str, float]:
    before_kb = _rss_kb(pid, "VmRSS")
    _reset_peak(pid)
    began = time.perf_counter()
    events, body_bytes = request()
    seconds = time.perf_counter() - began
    peak_kb = _rss_kb(pid, "VmHWM")
    return {
        "events": events,
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds),
        "mb_per_s": round(body_bytes / seconds / 1e6, 1),
        "body_mb": round(body_bytes / 1e6, 1),
        "rss_growth_mb": round((peak_kb - before_kb) / 1024, 1),
    }


def _export(client: httpx.Client, wf: str, run_id: str) -> tuple[int, int]:
    size = 0
    tail = b""
    with client.stream("GET", f"/api/workflows/{wf}/runs/{run_id}/history/export") as r:
        assert r.status_code == 200, r.read()
        for chunk in r.iter_raw():
            size += len(chunk)
            tail = (tail + chunk)[-4096:]
    assert tail.endswith(b"}") and b'"integrity":' in tail, tail[-200:]
    # The workflow block (the last key before integrity) states the events exported.
    found = re.search(rb'"last_history_sequence":([0-9]+)', tail)
    assert found is not None, tail[-400:]
    return int(found.group(1)), size


def _paged(client: httpx.Client, wf: str, run_id: str) -> tuple[int, int]:
    events = size = 0
    token: str | None = None
    for _ in range(10_000):  # bounded: 10M events at 1000 a page
        params: dict[str, Any] = {"page_size": 1000}
        if token:
            params["next_page_token"] = token
        r = client.get(f"/api/workflows/{wf}/runs/{run_id}/history", params=params)
        assert r.status_code == 200, r.text
        size += len(r.content)
        body = r.json()
        events += len(body["events"])
        token = body["next_page_token"]
        if not token:
            break
    return events, size


def run(args: Any) -> dict[str, Any]:
    if not args.dsn:
        raise SystemExit("history-export needs --dsn (or DWTRIO_BENCH_DSN): it bulk-loads with SQL")
    small_count = max(1, args.events // 10)
    with bench_database(args.dsn) as dsn, dwtrio_server(dsn=dsn) as url:
        assert dsn is not None
        [proc] = server_processes(url)
        headers = {**CP, "Accept-Encoding": "identity"}
        with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
            ids: dict[str, str] = {}
            for name in ("long", "short"):
                wf = f"export-{name}-{uuid.uuid4().hex[:8]}"
                r = client.post(
                    "/api/workflows",
                    json={
                        "workflow_id": wf,
                        "workflow_type": "bench",
                        "task_queue": "nobody",
                        "input": [name],
                    },
                )
                assert r.status_code == 201, r.text
                ids[name] = wf
                ids[name + "_run"] = r.json()["run_id"]
            load_s = asyncio.run(
                _load(dsn, {ids["long_run"]: args.events, ids["short_run"]: small_count})
            )
            print(f"  loaded {args.events} + {small_count} events in {load_s:.1f} s", flush=True)
            # One warm-up of each path (plans, caches), not measured.
            _paged(client, ids["short"], ids["short_run"])
            _export(client, ids["short"], ids["short_run"])
            runs = []
            for i in range(args.runs):
                print(f"  run {i + 1}/{args.runs}", flush=True)
                runs.append(
                    {
                        "export": _measured(
                            proc.pid, lambda: _export(client, ids["long"], ids["long_run"])
                        ),
                        "export-small": _measured(
                            proc.pid, lambda: _export(client, ids["short"], ids["short_run"])
                        ),
                        "paged (reference)": _measured(
                            proc.pid, lambda: _paged(client, ids["long"], ids["long_run"])
                        ),
                    }
                )
    keys = ["seconds", "events_per_s", "mb_per_s", "body_mb", "rss_growth_mb"]
    rows = []
    for name in runs[0]:
        rows.append({"request": name, **median_of_runs([r[name] for r in runs], keys)})
        rows[-1]["events"] = runs[0][name]["events"]
    print(f"history export of {args.events} events (and {small_count}), median of {args.runs}:")
    print(table(rows, ["request", "events", *keys]))
    path = write_result(
        "history-export",
        {"events": args.events, "small_events": small_count, "runs": runs, "summary": rows},
    )
    print(f"  results: {path}")
    return {"summary": rows}
