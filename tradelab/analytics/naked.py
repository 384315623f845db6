"""Naked POCs: earlier sessions' points of control that price has not revisited (pure, no I/O).

A session's POC is **revisited** ("traded through") once the price path after it reaches the
POC: the path starts at the session's close and runs through every later trade — the later
sessions' trades and, when given, ``after`` (trades after the last session). Since a path moves
from price to price, it reaches the POC exactly when its lowest price is at or below the POC and
its highest at or above it. A POC is **naked** when at least one later trade exists and the
path has not reached it; the last session's POC, with nothing after it, is still developing and
is not reported.

Each naked POC comes with its age (from the end of its session to ``now``) and its distance
from the last price (``poc - last_price``, and in percent of the last price), the levels
traders watch as magnets and support/resistance.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from tradelab.exceptions import InvalidParameterError, InvalidTradesError
from tradelab.timerange import parse_time

__all__ = ["naked_pocs"]

_NEEDED = ("session", "start", "end", "poc", "high", "low", "close")
_SCHEMA: dict[str, Any] = {
    "session": pl.Date,
    "session_start": pl.Datetime("ms", "UTC"),
    "session_end": pl.Datetime("ms", "UTC"),
    "poc": pl.Float64,
    "age": pl.Duration("ms"),
    "age_hours": pl.Float64,
    "distance": pl.Float64,
    "distance_pct": pl.Float64,
    "side": pl.Utf8,
}


def _summary(sessions: object) -> pl.DataFrame:
    summary = getattr(sessions, "summary", sessions)
    if not isinstance(summary, pl.DataFrame):
        raise InvalidParameterError(
            "sessions must be a SessionProfiles (tradelab.session_profiles) or its summary "
            f"frame, got {type(sessions).__name__}"
        )
    missing = [c for c in _NEEDED if c not in summary.columns]
    if missing:
        raise InvalidParameterError(
            f"the sessions' summary lacks column(s) {', '.join(missing)}; it needs "
            + ", ".join(_NEEDED)
        )
    return summary.sort("start")


def _ms(value: Any) -> int:
    if isinstance(value, dt.datetime):
        return parse_time(value, "time")[0]
    return int(value)


def naked_pocs(
    sessions: object,
    *,
    after: pl.DataFrame | None = None,
    last_price: float | None = None,
    now: object = None,
) -> pl.DataFrame:
    """The naked POCs of ``sessions`` (a :class:`~tradelab.analytics.SessionProfiles` or its
    ``summary``), oldest first.

    Args:
        sessions: the sessions, in any order (sorted by start here).
        after: trades after the last session (``price``, ``time``), if any.
        last_price: the price distances are measured from; default: the last trade of
            ``after``, else the last session's close.
        now: the moment ages are measured to (datetime, unix ms or ISO string); default: the
            last trade of ``after``, else the end of the last session.

    Returns a frame with ``session`` (date), ``session_start``, ``session_end``, ``poc``,
    ``age`` (a duration), ``age_hours``, ``distance`` (``poc - last_price``),
    ``distance_pct`` and ``side`` (``"above"`` or ``"below"`` the last price).
    """
    summary = _summary(sessions)
    n = summary.height
    lows = summary["low"].to_list()
    highs = summary["high"].to_list()
    closes = summary["close"].to_list()
    pocs = summary["poc"].to_list()
    ends = [_ms(v) for v in summary["end"].to_list()]
    after_low = after_high = None
    last_ms = ends[-1] if n else 0
    last = closes[-1] if n else None
    if after is not None:
        if not isinstance(after, pl.DataFrame) or "price" not in after.columns:
            raise InvalidTradesError("after must be a trade frame with a price column")
        if after.height:
            prices = after["price"].cast(pl.Float64)
            after_low, after_high = float(prices.min()), float(prices.max())  # type: ignore[arg-type]
            if "time" in after.columns:
                t = after["time"]
                t = t.dt.epoch("ms") if isinstance(t.dtype, pl.Datetime) else t
                i = int(t.arg_max() or 0)
                last_ms, last = int(t[i]), float(prices[i])
            else:
                last = float(prices[-1])
    if last_price is not None:
        if isinstance(last_price, bool) or not isinstance(last_price, int | float):
            raise InvalidParameterError(f"last_price must be a price > 0, got {last_price!r}")
        last = float(last_price)
    if now is not None:
        last_ms = parse_time(now, "now")[0]
    rows = []
    later_low, later_high = after_low, after_high  # over sessions i+1.. and after
    for i in range(n - 1, -1, -1):
        if later_low is not None and later_high is not None and last is not None:
            lo, hi = min(closes[i], later_low), max(closes[i], later_high)
            if not lo <= pocs[i] <= hi:
                age_ms = last_ms - ends[i]
                dist = pocs[i] - last
                rows.append(
                    {
                        "session": summary["session"][i],
                        "session_start": _ms(summary["start"][i]),
                        "session_end": ends[i],
                        "poc": pocs[i],
                        "age": age_ms,
                        "age_hours": age_ms / 3_600_000,
                        "distance": dist,
                        "distance_pct": dist / last * 100,
                        "side": "above" if dist > 0 else "below",
                    }
                )
        later_low = lows[i] if later_low is None else min(later_low, lows[i])
        later_high = highs[i] if later_high is None else max(later_high, highs[i])
    rows.reverse()
    raw = {**_SCHEMA, "session_start": pl.Int64, "session_end": pl.Int64, "age": pl.Int64}
    return pl.DataFrame(rows, schema=raw, orient="row").with_columns(
        pl.col("session_start").cast(pl.Datetime("ms", "UTC")),
        pl.col("session_end").cast(pl.Datetime("ms", "UTC")),
        pl.col("age").cast(pl.Duration("ms")),
    )
