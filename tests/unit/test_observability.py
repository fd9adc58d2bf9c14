"""The log format: the standard keys of ``extra=`` show after the message (observability.py)."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys

from dwtrio.observability import (
    FORMAT,
    ContextFormatter,
    JsonFormatter,
    RequestContext,
    RequestIdFilter,
    current_request,
)


def record(msg: str = "timers: store unavailable (%s)", **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(
        "dwtrio.background.timers", logging.WARNING, __file__, 1, msg, ("db down",), None
    )
    rec.__dict__.update(extra)
    return rec


def test_standard_keys_follow_the_message_in_their_order() -> None:
    line = ContextFormatter("%(message)s").format(
        record(action="timer_backoff", namespace="default", workflow_id="wf-1", other="hidden")
    )
    assert (
        line
        == "timers: store unavailable (db down) namespace=default workflow_id=wf-1 action=timer_backoff"
    )


def test_a_record_without_context_is_unchanged() -> None:
    rec = record()
    assert ContextFormatter(FORMAT).format(rec) == logging.Formatter(FORMAT).format(rec)


def test_values_that_would_break_the_pairs_are_quoted() -> None:
    line = ContextFormatter("%(message)s").format(record(task_queue='a b="c"', run_id=""))
    assert line.endswith(' run_id="" task_queue="a b=\\"c\\""')


def test_the_context_stays_on_the_message_line_before_the_traceback() -> None:
    try:
        raise KeyError("bad row")
    except KeyError:
        rec = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "timers: tick failed", (), sys.exc_info()
        )
    rec.__dict__["action"] = "timer_error"
    first, *rest = ContextFormatter("%(message)s").format(rec).splitlines()
    assert first == "timers: tick failed action=timer_error"
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "KeyError: 'bad row'"


def test_configure_logging_prints_the_context() -> None:
    script = (
        "import logging\n"
        "from dwtrio.observability import configure_logging\n"
        "configure_logging('info')\n"
        "logging.getLogger('dwtrio.background.timers').warning("
        "'timers: store unavailable (%s)', 'db down', extra={'action': 'timer_backoff'})\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert re.fullmatch(
        r"\S+ \S+ WARNING dwtrio\.background\.timers \d+: "
        r"timers: store unavailable \(db down\) action=timer_backoff\n",
        proc.stderr,
    ), proc.stderr


def test_json_lines_carry_the_standard_keys_and_the_traceback() -> None:
    try:
        raise KeyError("bad row")
    except KeyError:
        rec = logging.LogRecord(
            "dwtrio.request", logging.ERROR, __file__, 1, "request %s", ("x",), sys.exc_info()
        )
    rec.__dict__.update(request_id="r-1", status=500, duration_ms=1.5, route=None, other="hidden")
    line = json.loads(JsonFormatter().format(rec))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line.pop("ts"))
    exc = line.pop("exc")
    assert exc.startswith("Traceback") and exc.endswith("KeyError: 'bad row'")
    assert line == {
        "level": "error",
        "logger": "dwtrio.request",
        "pid": rec.process,
        "message": "request x",
        "request_id": "r-1",
        "status": 500,
        "duration_ms": 1.5,
    }


def test_the_filter_stamps_the_current_request_id() -> None:
    stamp = RequestIdFilter()
    rec = record()
    assert stamp.filter(rec) and "request_id" not in rec.__dict__
    token = current_request.set(RequestContext("r-2", "GET"))
    try:
        rec = record()
        stamp.filter(rec)
        assert ContextFormatter("%(message)s").format(rec).endswith(" request_id=r-2")
        explicit = record(request_id="kept")
        stamp.filter(explicit)
        assert explicit.request_id == "kept"
    finally:
        current_request.reset(token)


def test_configure_logging_in_json() -> None:
    script = (
        "import logging\n"
        "from dwtrio.observability import configure_logging\n"
        "configure_logging('info', 'json')\n"
        "logging.getLogger('dwtrio.x').info('hello %s', 'there', extra={'action': 'a b'})\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    line = json.loads(proc.stderr)
    assert (line["message"], line["action"], line["level"]) == ("hello there", "a b", "info")
