"""Bulk-load ready activity tasks straight into Postgres (benchmark fixtures only).

Each task belongs to its own open run with one scheduled activity, so completing
tasks never queues on one run's lock. Rows are generated inside Postgres
(``generate_series``), in batches, with a progress bar.
"""

from __future__ import annotations

import asyncio
from typing import Any

LOAD_SQL = """
WITH ids AS (
    SELECT $1 || '-' || g AS k FROM generate_series($2::int, $3::int) AS g
), inst AS (
    INSERT INTO workflow_instances (workflow_id, namespace, workflow_type, current_run_id, run_count)
    SELECT 'wf-' || k, 'default', 'bench', 'run-' || k, 1 FROM ids
), runs AS (
    INSERT INTO workflow_runs (id, workflow_id, namespace, run_number, workflow_type, task_queue,
                               status, payload_codec, arguments, last_history_sequence,
                               last_step_sequence)
    SELECT 'run-' || k, 'wf-' || k, 'default', 1, 'bench', $4, 'waiting', 'avro',
           'wwHioz3/VYAiNwwA', 0, 1
      FROM ids
), execs AS (
    INSERT INTO activity_executions (id, run_id, workflow_id, namespace, sequence, activity_type,
                                     task_queue, payload_codec, arguments)
    SELECT 'ae-' || k, 'run-' || k, 'wf-' || k, 'default', 1, 'bench', $4, 'avro',
           'wwHioz3/VYAiNwwA'
      FROM ids
)
INSERT INTO workflow_tasks (id, namespace, task_queue, kind, run_id, workflow_id, workflow_type,
                            activity_type, activity_execution_id, available_at)
SELECT 'at-' || k, 'default', $4, 'activity', 'run-' || k, 'wf-' || k, 'bench', 'bench',
       'ae-' || k, now() - interval '1 minute'
  FROM ids
"""


async def _load(dsn: str, queue: str, count: int, batch: int, progress: Any) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        # Deferred FK (instance -> current run) is checked at commit: one transaction per batch.
        for start in range(1, count + 1, batch):
            end = min(count, start + batch - 1)
            async with conn.transaction():
                await conn.execute(LOAD_SQL, queue, start, end, queue)
            if progress is not None:
                progress.update(end - start + 1)
        await conn.execute("ANALYZE workflow_tasks")
    finally:
        await conn.close()


def load_activity_backlog(dsn: str, queue: str, count: int, *, batch: int = 20_000) -> None:
    try:
        from tqdm import tqdm

        progress: Any = tqdm(total=count, desc=f"loading {count} tasks", unit="task")
    except ImportError:
        progress = None
    asyncio.run(_load(dsn, queue, count, batch, progress))
    if progress is not None:
        progress.close()
