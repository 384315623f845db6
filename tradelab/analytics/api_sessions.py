"""Store-backed session and developing profiles: read a window, hand it to the pure code.

::

    sp = tradelab.session_profiles("BTCUSDT", days=7)                  # one profile per UTC day
    sp = tradelab.session_profiles("BTCUSDT", start="2024-08-08", end="2024-08-10",
                                   session="london")
    sp.summary; sp.plot(); sp.naked_pocs()
    dev = tradelab.developing_profile("BTCUSDT", every="5m", start="2024-08-09")  # or a frame

Both validate every argument (symbol, window, session/step, profile parameters) before the store
is opened, read the window like :func:`tradelab.get_volume_profile` (same
:class:`~tradelab.exceptions.InsufficientTradesError` below 1,000 trades, saying for a range
where the store does have data) and compute with :mod:`.sessions` / :mod:`.developing`. With
``source=`` they read a team's shared Delta table instead of a store, as
:func:`tradelab.get_volume_profile` does.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

import polars as pl

from tradelab.analytics.api import EXCHANGE_TICK_SIZES, read_window, window_of
from tradelab.analytics.checks import check_profile_args
from tradelab.analytics.developing import developing_levels
from tradelab.analytics.sessions import (
    DAY_MS,
    SessionProfiles,
    SessionSpec,
    parse_session,
    session_profiles_from_trades,
)
from tradelab.config import retention_days_from_env, validate_symbol
from tradelab.exceptions import InvalidParameterError, InvalidWindowError
from tradelab.store import TradeStore
from tradelab.store.registry import TableReader, table_source
from tradelab.timerange import parse_duration

__all__ = ["developing_profile", "session_profiles"]

Moment = dt.datetime | dt.date | int | str | None

TABLE_MAX_DAYS = 3653
"""Most ``days`` read from a shared table at once (10 years: it has no store retention)."""


def _days_start(days: object, store: Any, table: TableReader | None = None) -> int:
    """Midnight UTC ``days - 1`` days before today: ``days=1`` is today so far. At most the
    store's retention; a shared table keeps what the team decides (at most 10 years here)."""
    limit = store.retention_days if isinstance(store, TradeStore) else retention_days_from_env()
    limit = TABLE_MAX_DAYS if table is not None else max(int(limit), 7)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= limit:
        what = "10 years" if table is not None else "the store's retention"
        raise InvalidWindowError(
            f"days={days!r} is not allowed: a whole number of UTC days from 1 (today so far) "
            f"to {limit} ({what})"
        )
    today = int(time.time() * 1000) // DAY_MS * DAY_MS
    return today - (days - 1) * DAY_MS


def _tick(sym: str, tick_size: float | None) -> float | None:
    return EXCHANGE_TICK_SIZES.get(sym) if tick_size is None else tick_size


def session_profiles(
    symbol: str,
    *,
    days: int | None = None,
    start: Moment = None,
    end: Moment = None,
    session: str | SessionSpec = "utc-day",
    store: TradeStore | None = None,
    data: str | os.PathLike[str] | None = None,
    source: str | os.PathLike[str] | None = None,
    row_size: float | None = None,
    tick_size: float | None = None,
    value_area: float = 0.70,
    method: str = "cbot",
) -> SessionProfiles:
    """One volume profile per session of ``symbol``, and their summary.

    The range is the last ``days`` UTC days (``days=1``: today so far; default 1 when no
    ``start`` is given) or ``[start, end)`` (``end`` default: now; datetimes, unix ms or ISO
    strings, no zone = UTC). ``session`` is ``"utc-day"``, a preset (``"asia"``, ``"london"``,
    ``"new-york"``) or UTC hours ``"HH:MM-HH:MM"``
    (:func:`tradelab.analytics.sessions.parse_session`). Every session shares one row size
    (``row_size``, else automatic) so the profiles line up on one price axis; ``tick_size``
    (default: the exchange's), ``value_area`` and ``method`` as in
    :func:`tradelab.volume_profile`. ``store``/``data``/``source`` (a shared Delta table) as in
    :func:`tradelab.get_volume_profile`.

    Raises the input errors (symbol, both ``days`` and ``start``, a bad range or session,
    profile parameters) before the store is opened, and
    :class:`~tradelab.exceptions.InsufficientTradesError` below 1,000 trades in the range.
    """
    sym = validate_symbol(symbol)
    table = table_source(source, store=store, data=data)
    if days is not None and start is not None:
        raise InvalidWindowError("give either days (the last N UTC days) or start/end, not both")
    if start is None:
        start = _days_start(1 if days is None else days, store, table)
    window = window_of(store, None, start, end, table=table)
    spec = parse_session(session)
    tick = _tick(sym, tick_size)
    check_profile_args(row_size=row_size, tick_size=tick, value_area=value_area, method=method)
    trades, _ = read_window(sym, window, store, data, table)
    return session_profiles_from_trades(
        trades,
        session=spec,
        start=window.start_ms,
        end=window.end_ms,
        symbol=sym,
        row_size=row_size,
        tick_size=tick,
        value_area=value_area,
        method=method,
        window_note=window.note,
    )


def developing_profile(
    frame_or_symbol: pl.DataFrame | str,
    every: str | dt.timedelta | float = "5m",
    *,
    hours: float | None = None,
    start: Moment = None,
    end: Moment = None,
    store: TradeStore | None = None,
    data: str | os.PathLike[str] | None = None,
    source: str | os.PathLike[str] | None = None,
    row_size: float | None = None,
    tick_size: float | None = None,
    value_area: float = 0.70,
    method: str = "cbot",
) -> pl.DataFrame:
    """POC, VAH and VAL after every step of ``every`` as the window unfolds (a Polars frame:
    ``time``, ``poc``, ``vah``, ``val``, ``value_area_pct``, ``volume``, ``trades``).

    ``frame_or_symbol`` is a trade frame (computed directly:
    :func:`tradelab.analytics.developing.developing_levels`, ``start``/``end`` bounding it) or
    a symbol, whose window — the last ``hours`` (default 24) or ``[start, end)`` — is read
    from the store (or the shared table of ``source``) as :func:`tradelab.get_volume_profile`
    does. The last row is the whole
    window's profile (same row size); draw it with ``profile.plot(trades=…, developing=…)``.
    """
    step = parse_duration(every, "every")
    if isinstance(frame_or_symbol, pl.DataFrame):
        if hours is not None or store is not None or data is not None or source is not None:
            raise InvalidParameterError(
                "hours, store and data read a symbol's window from the store (source from a "
                "shared table); with a trade frame give start/end (or nothing) instead"
            )
        return developing_levels(
            frame_or_symbol,
            step * dt.timedelta(milliseconds=1),
            start=start,
            end=end,
            row_size=row_size,
            tick_size=tick_size,
            value_area=value_area,
            method=method,
        )
    if not isinstance(frame_or_symbol, str):
        raise InvalidParameterError(
            "frame_or_symbol must be a trade frame (Polars) or a symbol such as 'BTCUSDT', got "
            f"{type(frame_or_symbol).__name__}"
        )
    sym = validate_symbol(frame_or_symbol)
    table = table_source(source, store=store, data=data)
    window = window_of(store, hours, start, end, hours_name="hours", table=table)
    tick = _tick(sym, tick_size)
    check_profile_args(row_size=row_size, tick_size=tick, value_area=value_area, method=method)
    trades, _ = read_window(sym, window, store, data, table)
    return developing_levels(
        trades,
        step * dt.timedelta(milliseconds=1),
        start=window.start_ms if window.is_range else None,
        end=window.end_ms,
        row_size=row_size,
        tick_size=tick,
        value_area=value_area,
        method=method,
    )
