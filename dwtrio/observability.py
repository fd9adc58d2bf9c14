"""Logging setup and the standard log keys."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextvars import ContextVar

import attrs
import orjson

#: Keys used in ``extra=`` across dwtrio, so logs can be filtered consistently. Those a
#: record carries are printed after its message, in this order, as ``key=value``.
LOG_KEYS = (
    "request_id",
    "method",
    "route",
    "status",
    "duration_ms",
    "namespace",
    "worker_id",
    "workflow_id",
    "run_id",
    "task_queue",
    "task_id",
    "action",
)

#: ``DW_LOG_FORMAT`` values.
LOG_FORMATS = ("text", "json")


@attrs.define(slots=True)
class RequestContext:
    """What is known about the request being served, filled in as it is learned.

    One object per request, held in :data:`current_request`. Trio tasks started
    while handling the request copy the context variable, so they see (and fill
    in) the same object.
    """

    request_id: str
    method: str
    route: str | None = None
    namespace: str | None = None
    worker_id: str | None = None
    workflow_id: str | None = None
    run_id: str | None = None
    status: int | None = None


#: The request being served by the current task, if any.
current_request: ContextVar[RequestContext | None] = ContextVar("dwtrio_request", default=None)


class RequestIdFilter(logging.Filter):
    """Stamps every record emitted while a request is served with its ``request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = current_request.get()
        if ctx is not None and "request_id" not in record.__dict__:
            record.request_id = ctx.request_id
        return True


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


#: What makes a value need quoting: whitespace (Unicode's, as str.isspace), '"' or '='.
_NEEDS_QUOTES = re.compile(r'[\s"=]')


def _logfmt_value(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if not text or _NEEDS_QUOTES.search(text):
        return json.dumps(text, ensure_ascii=False)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``pid``,
    ``message``, then the standard keys (:data:`LOG_KEYS`) the record carries, and
    ``exc`` (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, object] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for key in LOG_KEYS:
            value = fields.get(key)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


def configure_logging(level: str = "info", log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else ContextFormatter(FORMAT))
    handler.addFilter(RequestIdFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # asyncpg and hypercorn are chatty at INFO about things operators rarely need.
    logging.getLogger("hypercorn.error").setLevel(max(logging.WARNING, logging.getLogger().level))
