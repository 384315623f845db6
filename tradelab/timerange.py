"""Time arguments, read in one place: a moment (``start``/``end``), a step (``every``), a window.

Every front-end (Python API, CLI, ``%tradelab``, MCP) passes the raw ``start``/``end`` it was
given to :func:`resolve_window` or :func:`parse_time`, so "2024-08-09", ``1723161600000`` and
``datetime(2024, 8, 9, tzinfo=UTC)`` mean the same moment everywhere:

- a timezone-aware :class:`datetime.datetime` — that instant;
- a :class:`datetime.date` — its midnight, UTC;
- unix milliseconds (an int or float, numpy integers included, or a string of digits);
- an ISO-8601 string: ``2024-08-08``, ``2024-08-08 23:54``, ``2024-08-08T23:54:15.5Z``,
  ``2024-08-09T02:00+02:00``.

A naive datetime or a string without a zone is read as **UTC** and the window says so
(:attr:`TimeRange.note`), so the answer never silently shifts by the reader's offset.

Windows are half-open, ``[start, end)``: either "the last ``hours`` hours" (ending now, or at
``end``) or a range ``start``–``end`` (``end`` defaults to now). Giving ``hours`` and ``start``,
an inverted range, or one longer than the longest allowed, is one clear
:class:`~tradelab.exceptions.InvalidWindowError`. Pure code: the caller passes "now".
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from tradelab.config import validate_hours
from tradelab.exceptions import InvalidParameterError, InvalidWindowError

__all__ = [
    "TIME_FORMATS",
    "TimeRange",
    "moment_text",
    "parse_duration",
    "parse_time",
    "resolve_window",
]

TIME_FORMATS = (
    "a timezone-aware datetime, unix milliseconds, or an ISO-8601 string such as "
    "'2024-08-08', '2024-08-08 23:54' or '2024-08-08T23:54:00Z' (no zone = UTC)"
)
"""What a ``start``/``end`` may be, as error messages say it."""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_MS = 253_402_300_799_999  # 9999-12-31 23:59:59.999
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|hr|d)?\s*$", re.IGNORECASE)
_UNIT_MS = {"ms": 1, "s": 1000, "sec": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000}
_UNIT_MS |= {"hr": 3_600_000, "d": 86_400_000}


def _utc(ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ms)


def moment_text(ms: int, *, seconds: bool = False) -> str:
    """``2024-08-08 23:54`` (UTC) from unix ms; with ``seconds``, ``2024-08-08 23:54:15``."""
    return _utc(ms).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def parse_time(value: object, name: str = "time") -> tuple[int, bool]:
    """``(unix ms, read_as_utc)`` of a moment given as a datetime, a date, unix ms or an
    ISO-8601 string; ``read_as_utc`` is true when the value carried no zone (read as UTC)."""
    if isinstance(value, bool) or value is None:
        raise InvalidWindowError(f"{name} must be {TIME_FORMATS}; got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?\d+", text):
            return _checked(int(text), name, value), False
        try:
            parsed = dt.datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise InvalidWindowError(
                f"{name}={value!r} is not a time: give {TIME_FORMATS}"
            ) from None
        return parse_time(parsed, name)
    if isinstance(value, dt.datetime):
        naive = value.tzinfo is None or value.tzinfo.utcoffset(value) is None
        if naive:
            value = value.replace(tzinfo=dt.UTC)
        return _checked((value - _EPOCH) // dt.timedelta(milliseconds=1), name, value), naive
    if isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
        return (moment - _EPOCH) // dt.timedelta(milliseconds=1), True
    if hasattr(value, "dtype") and hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise InvalidWindowError(f"{name} must be a finite number of unix ms, got {value!r}")
        return _checked(int(value), name, value), False
    raise InvalidWindowError(f"{name} must be {TIME_FORMATS}; got {type(value).__name__}")


def _checked(ms: int, name: str, shown: object) -> int:
    if not 0 <= ms <= _MAX_MS:
        raise InvalidWindowError(
            f"{name}={shown!r} is outside 1970-01-01..9999-12-31 (unix ms 0..{_MAX_MS})"
        )
    return ms


def parse_duration(value: object, name: str = "every") -> int:
    """A step in milliseconds from ``"5m"``, ``"30s"``, ``"1h"``, ``"1d"``, ``"500ms"``, a
    :class:`datetime.timedelta`, or a number of seconds; must be > 0."""
    ms: float
    if isinstance(value, dt.timedelta):
        ms = value / dt.timedelta(milliseconds=1)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        ms = float(value) * 1000 if math.isfinite(value) else -1.0
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        ms = float(m.group(1)) * _UNIT_MS[(m.group(2) or "s").lower()]
    else:
        ms = -1.0
    if not ms >= 1:
        raise InvalidParameterError(
            f"{name}={value!r} is not a step: give a duration such as '5m', '30s', '1h' or '1d' "
            "(or a number of seconds), at least 1 ms"
        )
    return round(ms)


@dataclass(frozen=True)
class TimeRange:
    """A window ``[start_ms, end_ms)`` and how it was asked for.

    ``hours`` is set for "the last N hours" windows, ``None`` for ranges; ``read_as_utc``
    names the arguments that had no zone and were read as UTC.
    """

    start_ms: int
    end_ms: int
    hours: float | None = None
    read_as_utc: tuple[str, ...] = ()

    @property
    def start(self) -> dt.datetime:
        """The first instant of the window (UTC)."""
        return _utc(self.start_ms)

    @property
    def end(self) -> dt.datetime:
        """The instant just after the window (UTC, exclusive)."""
        return _utc(self.end_ms)

    @property
    def length_hours(self) -> float:
        """Length of the window in hours."""
        return (self.end_ms - self.start_ms) / 3_600_000

    @property
    def is_range(self) -> bool:
        """True for a ``start``–``end`` range, false for "the last N hours"."""
        return self.hours is None

    @property
    def note(self) -> str | None:
        """``"start and end had no time zone: read as UTC"``, or None."""
        if not self.read_as_utc:
            return None
        names = " and ".join(self.read_as_utc)
        return f"{names} had no time zone: read as UTC"

    def describe(self) -> str:
        """``last 24 h`` or ``2024-08-08 23:54 → 2024-08-09 00:05 UTC``."""
        if self.hours is not None:
            return f"last {self.hours:g} h"
        return f"{moment_text(self.start_ms)} → {moment_text(self.end_ms)} UTC"


def resolve_window(
    *,
    hours: object = None,
    start: object = None,
    end: object = None,
    now_ms: int,
    max_hours: float = 168.0,
    default_hours: float = 24,
    hours_name: str = "hours",
) -> TimeRange:
    """The window asked for: the last ``hours`` (1–168, default ``default_hours``) ending at
    ``end`` or now, or the range ``[start, end)`` (``end`` default: now), at most
    ``max_hours`` long. ``now_ms`` is "now" (an exclusive end: pass the clock + 1 ms)."""
    utc: list[str] = []
    end_ms = now_ms
    if end is not None:
        end_ms, naive = parse_time(end, "end")
        if naive:
            utc.append("end")
    if start is None:
        h = validate_hours(default_hours if hours is None else hours, name=hours_name)
        return TimeRange(end_ms - round(h * 3_600_000), end_ms, float(h), tuple(utc))
    if hours is not None:
        raise InvalidWindowError(
            f"give either {hours_name} (a number of hours, ending now) or start/end (a range), "
            "not both"
        )
    start_ms, naive = parse_time(start, "start")
    if naive:
        utc.insert(0, "start")
    if end_ms <= start_ms:
        raise InvalidWindowError(
            f"end ({moment_text(end_ms, seconds=True)} UTC) must be after start "
            f"({moment_text(start_ms, seconds=True)} UTC): the range is [start, end)"
        )
    length = (end_ms - start_ms) / 3_600_000
    if length > max_hours:
        raise InvalidWindowError(
            f"the range {moment_text(start_ms)} → {moment_text(end_ms)} UTC is {length:,.1f} h "
            f"long; at most {max_hours:g} h ({max_hours / 24:g} days, the store's retention) "
            "can be analysed at once"
        )
    return TimeRange(start_ms, end_ms, None, tuple(utc))
