"""What every claim of a task reads: who polls which queue, under which poll id."""

from __future__ import annotations

from typing import Any

import attrs

from dwtrio.protocol.admission import QueueCaps


@attrs.frozen(kw_only=True)
class ClaimParams:
    """A poll's claim parameters; each task kind adds its own (types, lease, page size)."""

    namespace: str
    task_queue: str
    worker_id: str
    #: The worker's id for this poll: a retried poll with the same id is handed the
    #: task its lost answer carried.
    poll_request_id: str | None
    #: The admission caps of the queue for this kind (None: uncapped, the claim takes
    #: no lock; see ``engine/admission.py``).
    caps: QueueCaps | None = None

    def held_by_poll(self) -> dict[str, Any]:
        """The keyword arguments of the store's ``find_polled_*`` queries: the task
        this very poll already holds."""
        return {
            "worker_id": self.worker_id,
            "poll_request_id": self.poll_request_id,
            "namespace": self.namespace,
            "task_queue": self.task_queue,
        }
