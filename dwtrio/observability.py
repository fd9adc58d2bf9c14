"""Logging setup and the standard log keys."""

from __future__ import annotations

import json
import logging
import sys

#: Keys used in ``extra=`` across dwtrio, so logs can be filtered consistently. Those a
#: record carries are printed after its message, in this order, as ``key=value``.
LOG_KEYS = ("namespace", "workflow_id", "run_id", "task_queue", "task_id", "action")

FORMAT = "%(asctime)s %(levelname)s %(name)s %(process)d: %(message)s"


class ContextFormatter(logging.Formatter):
    """The standard formatter, plus the record's standard keys (:data:`LOG_KEYS`) as ``key=value``.

    They go on the message's line, before any traceback. A value with spaces,
    quotes or ``=`` in it is written as a JSON string, so a line still splits
    into pairs.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        pairs = [
            f"{key}={_logfmt_value(record.__dict__[key])}"
            for key in LOG_KEYS
            if record.__dict__.get(key) is not None
        ]
        return " ".join([line, *pairs])


def _logfmt_value(value: object) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ContextFormatter(FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # asyncpg and hypercorn are chatty at INFO about things operators rarely need.
    logging.getLogger("hypercorn.error").setLevel(max(logging.WARNING, logging.getLogger().level))
