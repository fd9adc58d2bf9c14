"""Fenced worker deregistration: only the registration a token names may be removed.

Every successful registration is a new *incarnation* of its worker id, with a random
token (``registration_token``). A worker that deregisters with its token removes its
own registration and nothing newer: a process that lost its registration to a later
one of the same worker id (a restart elsewhere, a duplicate) is refused with
``worker_registration_lost_authority`` and changes nothing.

A completed deregistration leaves a receipt; the same request repeated within the
receipt window (``manifest.WORKER_DEREGISTRATION_RECEIPT_RETENTION_S``, 600 s, after
it finished) answers that receipt
again, even once a newer registration holds the worker id, so a worker whose answer
was lost can safely ask again. Later the receipt is ``worker_registration_receipt_expired``,
and once pruned, unknown (``worker_registration_token_not_found``).

:func:`deregister_fenced` is the transactional part (``op(conn, ...)``): the check, the
registration's removal with its workflow-task leases, and the receipt commit together.
The activity leases are ended afterwards, one transaction each, as the unfenced
deregistration does (``http/workers.py``).
"""

from __future__ import annotations

import attrs

from dwtrio.errors import (
    WorkerRegistrationLostAuthorityError,
    WorkerRegistrationReceiptExpiredError,
    WorkerRegistrationTokenNotFoundError,
)
from dwtrio.manifest import WORKER_DEREGISTRATION_RECEIPT_RETENTION_S
from dwtrio.store import workers
from dwtrio.store.pool import Conn


@attrs.frozen
class FencedReceipt:
    """What a fenced deregistration answers (a replay: the receipt stored before)."""

    recovered_workflow_task_count: int
    recovered_activity_task_count: int
    #: The queues whose workflow tasks this call gave back (none on a replay).
    released_queues: list[str]
    replayed: bool


async def deregister_fenced(
    conn: Conn, namespace: str, worker_id: str, token: str
) -> FencedReceipt:
    """Remove the registration incarnation ``token`` names, or answer its receipt.

    Raises (changing nothing):
        WorkerRegistrationTokenNotFoundError: no incarnation of the worker id has it.
        WorkerRegistrationReceiptExpiredError: its receipt window has passed.
        WorkerRegistrationLostAuthorityError: it is not the current registration.
    """
    fields = {"worker_id": worker_id, "registration_token": token}
    # The registration row first, then the incarnation: registration's order too.
    current = await workers.lock_registration_fence(conn, namespace, worker_id)
    incarnation = await workers.lock_incarnation(
        conn, namespace, worker_id, token, WORKER_DEREGISTRATION_RECEIPT_RETENTION_S
    )
    if incarnation is None:
        raise WorkerRegistrationTokenNotFoundError(
            "No registration of this worker has this registration token.", **fields
        )
    if incarnation.status == "deregistered":
        if incarnation.expired:
            raise WorkerRegistrationReceiptExpiredError(
                "The deregistration receipt of this registration token has expired.", **fields
            )
        return FencedReceipt(
            recovered_workflow_task_count=incarnation.recovered_workflow_task_count or 0,
            recovered_activity_task_count=incarnation.recovered_activity_task_count or 0,
            released_queues=[],
            replayed=True,
        )
    if (
        incarnation.status != "active"
        or current is None
        or current.registration_token != token
        or current.status == "deregistered"
    ):
        raise WorkerRegistrationLostAuthorityError(
            "This registration token no longer holds the worker's registration.", **fields
        )
    queues = await workers.deregister(conn, namespace, worker_id)
    assert queues is not None  # the row is locked above
    await workers.finish_incarnation(conn, token, len(queues))
    return FencedReceipt(
        recovered_workflow_task_count=len(queues),
        recovered_activity_task_count=0,
        released_queues=queues,
        replayed=False,
    )
