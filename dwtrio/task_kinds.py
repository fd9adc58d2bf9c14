"""Workflow and activity tasks as matching dispatches them (``matching/dispatch.py``).

Built here, where the engine is known, so matching never imports the engine;
the worker plane polls with them, and every operation that may create their
tasks runs through ``dispatch.transaction_with_handoffs(rt, SYNC_MATCHED, ...)``
so that a poll parked in this process can be handed a new task.
"""

from __future__ import annotations

from dwtrio.engine import activity_tasks, workflow_tasks
from dwtrio.matching.dispatch import TaskKind

WORKFLOW_TASKS = TaskKind[workflow_tasks.ClaimParams](
    kind="workflow",
    claim=workflow_tasks.claim,
    release=workflow_tasks.release,
    release_polled=workflow_tasks.release_polled,
    types=lambda params: params.workflow_types,
    transaction=False,  # the claim writes with one statement; see its docstring
    sync_match=True,
    lease_created=workflow_tasks.lease_created,
)

ACTIVITY_TASKS = TaskKind[activity_tasks.ClaimParams](
    kind="activity",
    claim=activity_tasks.claim,
    release=activity_tasks.release,
    release_polled=activity_tasks.release_polled,
    types=lambda params: params.activity_types,
    transaction=False,  # the claim writes with one statement; see its docstring
    claim_batch=activity_tasks.claim_batch,  # issue 19, batched claims (commit 8c96475)
    sync_match=True,
    lease_created=activity_tasks.lease_created,
)

#: The kinds whose new tasks a creating operation hands to parked polls.
SYNC_MATCHED = (WORKFLOW_TASKS, ACTIVITY_TASKS)
