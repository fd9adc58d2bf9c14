"""Schedule specs: parsing, validation and evaluation (schedules-and-admission.md §1.2).

A spec says when a schedule fires::

    {"cron_expressions": ["15 7 * * 1-5", "@hourly"],
     "intervals": [{"every": "PT30M", "offset": "PT5M"}],
     "timezone": "Europe/Berlin"}

Cron expressions are read as wall-clock time in ``timezone`` (an IANA name,
``UTC`` when absent). Intervals ignore the timezone entirely: they tick from the
Unix epoch shifted by their offset. The next fire time is the earliest candidate
over every cron expression and every interval.

Cron evaluation is delegated to ``cronsim``, which mimics Debian cron across DST
changes:

* a job pinned to a wall-clock time (neither the minute nor the hour field
  starts with ``*``) that falls in the hour repeated when clocks go back fires
  once, at its first pass;
* such a job scheduled inside the hour skipped when clocks go forward fires at
  the moment of the change (the first valid minute after the gap);
* jobs whose minute or hour field is a wildcard follow real elapsed time, so
  they run through both passes of a repeated hour and not at all in a gap.

The day-of-month / day-of-week OR rule follows Debian cron too: the two fields
are OR-ed unless one of them starts with ``*``, in which case both must match.
``cronsim`` also accepts the ``L``, ``LW`` and ``#`` extensions.

Deliberate divergences from the reference server, which ignores a malformed
duration silently: an ``every`` or ``offset`` that does not parse, and an
``every`` of zero seconds, are refused with 422. Durations must use whole
numbers; fractional components (``PT1.5S``) are refused rather than rounded.
A week component may be combined with the other date components (``P1W2D``).

Everything here is pure computation; nothing touches the network or a database.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from cronsim import CronSim, CronSimError

from dwtrio.errors import ValidationFailedError

MAX_CRON_EXPRESSIONS = 20
MAX_INTERVALS = 20
MAX_CRON_LENGTH = 256
MAX_DURATION_LENGTH = 64
MAX_TIMEZONE_LENGTH = 64
DEFAULT_TIMEZONE = "UTC"

#: The cron macros the protocol accepts, spelled as ordinary 5-field expressions.
CRON_MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_DAY = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC) - _EPOCH
#: The last whole second a ``datetime`` can hold, as Unix seconds.
_MAX_EPOCH_SECONDS = _LAST.days * _DAY + _LAST.seconds
#: Any aware instant will do: CronSim needs one to build, validation never iterates.
_PROBE = datetime(2000, 1, 1, tzinfo=UTC)

_DURATION = re.compile(
    r"P(?!\Z)"
    r"(?:(?P<years>[0-9]+)Y)?"
    r"(?:(?P<months>[0-9]+)M)?"
    r"(?:(?P<weeks>[0-9]+)W)?"
    r"(?:(?P<days>[0-9]+)D)?"
    r"(?:T(?=[0-9])"
    r"(?:(?P<hours>[0-9]+)H)?"
    r"(?:(?P<minutes>[0-9]+)M)?"
    r"(?:(?P<seconds>[0-9]+)S)?"
    r")?"
)
_DURATION_FACTORS = {
    "years": 365 * _DAY,
    "months": 30 * _DAY,
    "weeks": 7 * _DAY,
    "days": _DAY,
    "hours": 3600,
    "minutes": 60,
    "seconds": 1,
}
#: Zone keys shaped like IANA names (``Area/Location``, ``UTC``, ``Etc/GMT+5``).
_ZONE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+)*")
#: Files that can sit beside the zones but are host artefacts, not IANA names.
_NOT_ZONES = frozenset({"localtime", "posixrules"})
_SPEC_KEYS = ("cron_expressions", "intervals")


# --- durations and instants ----------------------------------------------------------
def duration_seconds(text: str) -> int | None:
    """Convert an ISO-8601 duration (``PnYnMnWnDTnHnMnS``) to whole seconds.

    A year counts as 365 days and a month as 30 days. Only whole numbers are
    accepted. Returns None for anything that does not parse, including texts
    longer than the protocol's 64-character limit.
    """
    if not isinstance(text, str) or len(text) > MAX_DURATION_LENGTH:
        return None
    match = _DURATION.fullmatch(text)
    if match is None:
        return None
    return sum(
        int(value) * _DURATION_FACTORS[unit]
        for unit, value in match.groupdict().items()
        if value is not None
    )


def parse_instant(text: Any) -> datetime | None:
    """Read an ISO-8601 date-time into an aware UTC datetime, or None.

    A trailing ``Z`` and numeric offsets are honoured; a value without an offset
    is taken to be UTC. Whatever ``datetime.fromisoformat`` accepts is accepted
    (so a bare date means midnight UTC).
    """
    if not isinstance(text, str) or not text or len(text) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _render_seconds(seconds: int) -> str:
    return f"PT{seconds}S"


def _floor_epoch_seconds(instant: datetime) -> int:
    """Whole Unix seconds at or before ``instant`` (exact, no float rounding)."""
    delta = instant - _EPOCH
    return delta.days * _DAY + delta.seconds


def _aware(instant: datetime, name: str) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return instant


# --- the model -----------------------------------------------------------------------
@attrs.frozen
class Interval:
    """Fires every ``every_seconds``, on instants ``offset_seconds`` past a multiple of it.

    ``every_text`` / ``offset_text`` keep the durations as the client sent them,
    so the stored spec echoes the request; they are None for intervals built in
    code, which then render as ``PT<n>S``.
    """

    every_seconds: int
    offset_seconds: int = 0
    every_text: str | None = None
    offset_text: str | None = None

    def first_after_seconds(self, after_seconds: int) -> int:
        """The first tick strictly after the whole second ``after_seconds``.

        Because ticks fall on whole seconds, the same answer holds for any
        instant inside that second.
        """
        every, offset = self.every_seconds, self.offset_seconds
        return offset + ((after_seconds - offset) // every + 1) * every

    def times_after(self, after: datetime) -> Iterator[datetime]:
        """Every tick strictly after ``after``, ascending, as UTC datetimes."""
        tick = self.first_after_seconds(_floor_epoch_seconds(after))
        while tick <= _MAX_EPOCH_SECONDS:
            yield _EPOCH + timedelta(seconds=tick)
            tick += self.every_seconds

    def as_json(self) -> dict[str, str]:
        out = {"every": self.every_text or _render_seconds(self.every_seconds)}
        if self.offset_text is not None:
            out["offset"] = self.offset_text
        elif self.every_text is None and self.offset_seconds:
            out["offset"] = _render_seconds(self.offset_seconds)
        return out


def _five_fields(expression: str) -> str:
    """The expression cronsim should evaluate: macros expanded, otherwise unchanged."""
    return CRON_MACROS.get(expression.strip().lower(), expression)


def _cron_times(expression: str, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Occurrences of a (valid) cron expression strictly after ``after``, ascending, UTC.

    cronsim forgets the DST fold of the start instant when it handles a
    fixed-time job, so inside a repeated hour it can hand back the first pass
    of a time the reference instant has already left behind. Such results, and
    anything not past the previous one, are dropped, which keeps the sequence
    strictly increasing and strictly after ``after``.
    """
    last = after
    try:
        for local in CronSim(_five_fields(expression), after.astimezone(zone)):
            instant = local.astimezone(UTC)
            if instant > last:
                last = instant
                yield instant
    except OverflowError:  # ran past year 9999
        return


@attrs.frozen
class ScheduleSpec:
    """A validated spec. Build one with `parse_spec` or `spec_from_json`."""

    cron_expressions: tuple[str, ...]
    intervals: tuple[Interval, ...]
    timezone: str = DEFAULT_TIMEZONE
    #: Which of ``cron_expressions`` / ``intervals`` the client sent (for `as_json`).
    sent_keys: frozenset[str] = attrs.field(default=frozenset(_SPEC_KEYS), eq=False, repr=False)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _sources(self, after: datetime) -> list[Iterator[datetime]]:
        zone = self.zone
        sources = [_cron_times(expr, zone, after) for expr in self.cron_expressions]
        sources.extend(interval.times_after(after) for interval in self.intervals)
        return sources

    def _merged(self, after: datetime) -> Iterator[datetime]:
        """Every occurrence strictly after ``after``, ascending, without repeats."""
        previous: datetime | None = None
        for instant in heapq.merge(*self._sources(after)):
            if instant != previous:
                previous = instant
                yield instant

    def next_after(self, after: datetime) -> datetime | None:
        """The earliest occurrence strictly after the aware instant ``after`` (UTC), or None."""
        _aware(after, "after")
        return next(self._merged(after), None)

    def occurrences(self, start: datetime, end: datetime, *, limit: int) -> list[datetime]:
        """Every occurrence t with start <= t < end, ascending, at most ``limit`` of them.

        A cron expression and an interval that land on the same instant yield it
        once. Results are aware UTC datetimes.
        """
        _aware(start, "start")
        _aware(end, "end")
        found: list[datetime] = []
        if limit <= 0 or end <= start:
            return found
        # Occurrences fall on whole seconds, so "after start minus a microsecond"
        # is exactly "at or after start".
        for instant in self._merged(start - timedelta(microseconds=1)):
            if instant >= end:
                break
            found.append(instant)
            if len(found) >= limit:
                break
        return found

    def as_json(self) -> dict[str, Any]:
        """The spec to store: array keys only when sent, ``timezone`` always."""
        out: dict[str, Any] = {}
        if "cron_expressions" in self.sent_keys or self.cron_expressions:
            out["cron_expressions"] = list(self.cron_expressions)
        if "intervals" in self.sent_keys or self.intervals:
            out["intervals"] = [interval.as_json() for interval in self.intervals]
        out["timezone"] = self.timezone
        return out


# --- validation ----------------------------------------------------------------------
class _Errors:
    def __init__(self) -> None:
        self.by_field: dict[str, list[str]] = {}

    def add(self, field: str, message: str) -> None:
        self.by_field.setdefault(field, []).append(message)


def _cron_problem(expression: str) -> str | None:
    """Why a cron expression is refused, or None when it is fine."""
    stripped = expression.strip()
    if not stripped:
        return "The cron expression field must not be blank."
    if stripped.startswith("@"):
        if stripped.lower() in CRON_MACROS:
            return None
        return (
            f"The cron expression '{expression}' is not valid: unknown macro; "
            f"use one of {', '.join(CRON_MACROS)}."
        )
    fields = len(stripped.split())
    if fields != 5:
        extra = " (a seconds field is not supported)" if fields == 6 else ""
        return (
            f"The cron expression '{expression}' is not valid: it has {fields} fields{extra}; "
            "use minute hour day-of-month month day-of-week."
        )
    try:
        CronSim(stripped, _PROBE)
    except CronSimError as exc:
        reason = str(exc) or "unreadable"
        return f"The cron expression '{expression}' is not valid: {reason[0].lower()}{reason[1:]}."
    except Exception:  # cronsim refuses some inputs with other exception types
        return f"The cron expression '{expression}' is not valid."
    return None


def _check_crons(raw: Any, path: str, errors: _Errors) -> tuple[str, ...]:
    if not isinstance(raw, list):
        errors.add(path, "The cron expressions field must be an array.")
        return ()
    if len(raw) > MAX_CRON_EXPRESSIONS:
        errors.add(
            path, f"The cron expressions field may not have more than {MAX_CRON_EXPRESSIONS} items."
        )
    kept: list[str] = []
    for index, item in enumerate(raw):
        field = f"{path}.{index}"
        if not isinstance(item, str):
            errors.add(field, f"The cron expression at position {index} must be a string.")
            continue
        if len(item) > MAX_CRON_LENGTH:
            errors.add(
                field, f"The cron expression may not be greater than {MAX_CRON_LENGTH} characters."
            )
            continue
        problem = _cron_problem(item)
        if problem is not None:
            errors.add(field, problem)
            continue
        kept.append(item)
    return tuple(kept)


def _check_duration(raw: Any, field: str, label: str, errors: _Errors) -> int | None:
    if not isinstance(raw, str):
        errors.add(field, f"The {label} duration must be a string.")
        return None
    if len(raw) > MAX_DURATION_LENGTH:
        errors.add(
            field, f"The {label} duration may not be greater than {MAX_DURATION_LENGTH} characters."
        )
        return None
    seconds = duration_seconds(raw)
    if seconds is None:
        errors.add(
            field,
            f"The {label} duration '{raw}' is not a valid ISO-8601 duration; "
            "use whole numbers as in PnYnMnDTnHnMnS or PnW.",
        )
    return seconds


def _check_intervals(raw: Any, path: str, errors: _Errors) -> tuple[Interval, ...]:
    if not isinstance(raw, list):
        errors.add(path, "The intervals field must be an array.")
        return ()
    if len(raw) > MAX_INTERVALS:
        errors.add(path, f"The intervals field may not have more than {MAX_INTERVALS} items.")
    kept: list[Interval] = []
    for index, item in enumerate(raw):
        field = f"{path}.{index}"
        if not isinstance(item, dict):
            errors.add(field, f"The interval at position {index} must be an object.")
            continue
        every_text = item.get("every")
        every: int | None = None
        if every_text is None:
            errors.add(f"{field}.every", "The every field is required.")
        else:
            every = _check_duration(every_text, f"{field}.every", "every", errors)
            if every == 0:
                errors.add(
                    f"{field}.every",
                    f"The every duration '{every_text}' must be longer than zero seconds.",
                )
                every = None
        offset_text = item.get("offset")
        offset: int | None = 0
        if offset_text is not None:
            offset = _check_duration(offset_text, f"{field}.offset", "offset", errors)
        if every is not None and offset is not None:
            kept.append(Interval(every, offset, every_text, offset_text))
    return tuple(kept)


def _check_timezone(raw: Any, path: str, errors: _Errors) -> str:
    if not isinstance(raw, str):
        errors.add(path, "The timezone must be a string.")
        return DEFAULT_TIMEZONE
    if len(raw) > MAX_TIMEZONE_LENGTH:
        errors.add(path, f"The timezone may not be greater than {MAX_TIMEZONE_LENGTH} characters.")
        return DEFAULT_TIMEZONE
    if not _known_zone(raw):
        errors.add(path, f"The timezone '{raw}' is not a known IANA time zone name.")
        return DEFAULT_TIMEZONE
    return raw


def _known_zone(name: str) -> bool:
    if name in _NOT_ZONES or not _ZONE_KEY.fullmatch(name):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def parse_spec(raw: Any, *, path: str = "spec") -> ScheduleSpec:
    """Validate a spec from a request and build it.

    Every problem is collected before raising `ValidationFailedError`, whose
    map is keyed by dot paths under ``path`` (``spec.cron_expressions.0``,
    ``spec.intervals.1.every``, ``spec.timezone``, ...). An explicit null for a
    key counts as leaving it out; unknown keys are ignored and not stored.
    """
    errors = _Errors()
    if not isinstance(raw, dict):
        errors.add(path, "The spec must be an object.")
        raise ValidationFailedError(errors.by_field)

    crons: tuple[str, ...] = ()
    intervals: tuple[Interval, ...] = ()
    sent = frozenset(key for key in _SPEC_KEYS if raw.get(key) is not None)
    if "cron_expressions" in sent:
        crons = _check_crons(raw["cron_expressions"], f"{path}.cron_expressions", errors)
    if "intervals" in sent:
        intervals = _check_intervals(raw["intervals"], f"{path}.intervals", errors)
    timezone = DEFAULT_TIMEZONE
    if raw.get("timezone") is not None:
        timezone = _check_timezone(raw["timezone"], f"{path}.timezone", errors)

    def count(key: str) -> int:
        value = raw.get(key)
        return len(value) if isinstance(value, list) else 0

    if count("cron_expressions") + count("intervals") == 0:
        errors.add(path, "The spec needs at least one cron expression or interval.")
    if errors.by_field:
        raise ValidationFailedError(errors.by_field)
    return ScheduleSpec(crons, intervals, timezone, sent)


def spec_from_json(stored: dict[str, Any]) -> ScheduleSpec:
    """Rebuild a spec that `parse_spec` accepted and `ScheduleSpec.as_json` stored.

    It runs the same checks, so a stored value that is not a valid spec raises
    `ValidationFailedError`.
    """
    return parse_spec(stored)
