"""Logging setup and the standard log keys."""

from __future__ import annotations

import logging
import sys

#: Keys used in ``extra=`` across dwtrio, so logs can be filtered consistently.
LOG_KEYS = ("namespace", "workflow_id", "run_id", "task_queue", "task_id", "action")


def configure_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(process)d: %(message)s",
    )
    # asyncpg and hypercorn are chatty at INFO about things operators rarely need.
    logging.getLogger("hypercorn.error").setLevel(max(logging.WARNING, logging.getLogger().level))
