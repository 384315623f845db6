"""Tool-level analytics: read a window from the store, check there is enough data, compute.

These are the functions the MCP server, the ``%tradelab`` magic and the CLI expose, and that an
analyst calls in a notebook::

    vp = tradelab.get_volume_profile("BTCUSDT", 24)     # last 24 h, ending now
    zones = tradelab.get_liquidity_vacuums("BTCUSDT", 4)
    report = tradelab.vacuum_report("BTCUSDT", 4)       # the vacuums with their profile

Each validates every argument once, in a fixed order (symbol, window, then the analysis
parameters), and only then opens the store — ``store=`` an open one, ``data=`` a directory
(:func:`tradelab.open_store`), neither the configured default; or ``source=`` a team's shared
Delta table (``tradelab export``), read lazily with the same schema and answers — so a front-end
passes the raw values it parsed and shows the :class:`~tradelab.exceptions.TradelabError` as one
line. Where the window is read from is decided in one place,
:func:`tradelab.store.registry.open_source`.

Below :data:`MIN_TRADES` trades in the window they raise
:class:`~tradelab.exceptions.InsufficientTradesError` saying how many trades there are, how many
are needed, whether a collector is filling the store (in this process or another one, read from
the store's ``collector_status``) and, from the observed trade rate, about how long to wait.

Exchange tick sizes: :data:`EXCHANGE_TICK_SIZES` holds the symbols' price increments
(``PRICE_FILTER.tickSize`` in Binance's exchangeInfo) where known; :func:`set_tick_size`
overrides or adds one, and the ``tick_size`` argument overrides both for one call. Unknown
symbols fall back to the resolution visible in the prices.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from dataclasses import dataclass, replace
from typing import Any, cast

from tradelab.analytics.api_fast import profile_from_store
from tradelab.analytics.checks import check_profile_args
from tradelab.analytics.profile import VolumeProfile, liquidity_vacuums, volume_profile
from tradelab.analytics.vacuums import Vacuum, check_vacuum_args
from tradelab.collection import where_collection_runs
from tradelab.config import (
    DEFAULT_WINDOW_HOURS,
    MAX_WINDOW_HOURS,
    retention_days_from_env,
    validate_symbol,
)
from tradelab.exceptions import InsufficientTradesError, InvalidParameterError
from tradelab.formatting import hours_text, rate_text, wait_text
from tradelab.logs import get_logger
from tradelab.store import TradeStore
from tradelab.store.registry import TableReader, open_source, table_source
from tradelab.timerange import TimeRange, resolve_window

__all__ = [
    "EXCHANGE_TICK_SIZES",
    "MIN_TRADES",
    "VacuumReport",
    "collection_state",
    "get_liquidity_vacuums",
    "get_volume_profile",
    "insufficient_message",
    "read_window",
    "set_tick_size",
    "tick_size_for",
    "vacuum_report",
    "where_the_data_is",
    "window_of",
]

log = get_logger(__name__)

MIN_TRADES = 1_000
"""Fewest trades in a window for an analysis (the ported tools' rule)."""

EXCHANGE_TICK_SIZES: dict[str, float] = {
    # Binance spot PRICE_FILTER.tickSize (docs/analytics.md); add others with set_tick_size
    "BTCUSDT": 0.01,
    "ETHUSDT": 0.01,
}


def set_tick_size(symbol: str, tick_size: float | None) -> None:
    """Set (or with ``None`` forget) the exchange tick size used for ``symbol``."""
    sym = validate_symbol(symbol)
    if tick_size is None:
        EXCHANGE_TICK_SIZES.pop(sym, None)
        return
    EXCHANGE_TICK_SIZES[sym] = cast(float, check_profile_args(tick_size=_tick(tick_size))[1])


def tick_size_for(symbol: str) -> float | None:
    """The exchange tick size of ``symbol`` if known, else ``None``."""
    return EXCHANGE_TICK_SIZES.get(validate_symbol(symbol))


def _tick(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(float(value)) and float(value) > 0)
    ):
        raise InvalidParameterError(
            f"tick_size={value!r} is not allowed: the symbol's price increment, a number > 0 "
            "(e.g. 0.01 for BTCUSDT), or None for the exchange's"
        )
    return float(value)


# --- is anything collecting? ---------------------------------------------------------------------


def collection_state(store: Any, symbol: str, *, now_ms: int | None = None) -> dict[str, Any]:
    """Whether a collector fills ``store`` with ``symbol`` and at what rate.

    The facts of :func:`tradelab.collection.where_collection_runs` (this process's collector,
    else the status document every collector writes into the store, running only when it says
    so and was updated less than 30 s ago), reduced to what :func:`insufficient_message` needs.

    Returns ``{"running": bool, "where": "this process" | "another process" | None,
    "collects_symbol": bool, "rate_per_min": float | None, "stale_s": float | None,
    "silent": str | None}`` — ``silent`` when a collector said "running", stopped publishing and
    its process is still alive (stuck, or its store unwritable): that, in words.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    doc = where_collection_runs(store=store, now_ms=now_ms).document
    stale_s: float | None = None
    claimed = (doc or {}).get("reported_running", (doc or {}).get("running"))
    if doc is not None and doc.get("stale") and claimed:  # said "running", stopped writing: died
        updated = doc.get("updated_at")
        stale_s = (now_ms - updated) / 1000 if isinstance(updated, int | float) else None
    running = bool(doc and doc.get("running") and not doc.get("stale"))
    per = ((doc or {}).get("symbols") or {}).get(symbol) or {}
    rate = per.get("rate_per_min")
    return {
        "running": running,
        "where": (doc or {}).get("source") if running else None,
        "collects_symbol": running and bool(per),
        "rate_per_min": float(rate) if isinstance(rate, int | float) and rate > 0 else None,
        "stale_s": stale_s,
        "silent": (doc or {}).get("silent") if (doc or {}).get("writer_alive") else None,
    }


# --- the error message -----------------------------------------------------------------------


def insufficient_message(
    symbol: str,
    found: int,
    needed: int,
    hours: float,
    state: dict[str, Any],
    observed_rate_per_min: float | None = None,
) -> str:
    """The :class:`InsufficientTradesError` text, e.g. ``"BTCUSDT: 212 of the 1,000 trades
    needed in the last 1 h; collection is running at ~41 trades/min, ready in ~19 min"``.

    ``state`` is :func:`collection_state`; the rate is the collector's, else the one observed
    in the window's trades. If even a full window at that rate cannot reach ``needed``, it says
    which window would.
    """
    head = f"{symbol}: {found:,} of the {needed:,} trades needed in the last {hours_text(hours)}"
    start_hint = (
        f"`%tradelab start {symbol}` in a notebook or `tradelab collect --symbols {symbol}` "
        "in a terminal"
    )
    if not state.get("running"):
        stale = state.get("stale_s")
        if state.get("silent"):
            return f"{head}; {state['silent']} — see the collector's log"
        if stale is not None:
            return (
                f"{head}; no collector is running (the last collector status is "
                f"{wait_text(stale / 60)} old: it stopped or died) — start collection "
                f"with {start_hint}"
            )
        return f"{head}; no collector is running — start collection with {start_hint}"
    where = state.get("where") or "another process"
    if not state.get("collects_symbol"):
        return (
            f"{head}; a collector is running ({where}) but does not collect {symbol} — "
            f"start collection of {symbol} with {start_hint}"
        )
    rate = state.get("rate_per_min") or observed_rate_per_min
    if not rate:
        return (
            f"{head}; collection is running ({where}) but no {symbol} trades have arrived "
            "yet, so no wait can be estimated"
        )
    running = f"collection is running at ~{rate_text(rate)} trades/min ({where})"
    if rate * hours * 60 < needed:
        longer = math.ceil(needed / (rate * 60))
        if longer <= 168:
            return (
                f"{head}; {running}: at that rate {hours_text(hours)} never holds {needed:,} "
                f"trades — ask for at least {longer} h"
            )
        return f"{head}; {running}: at that rate no window up to 168 h holds {needed:,} trades"
    wait = wait_text((needed - found) / rate)
    return f"{head}; {running}, ready in {wait if wait.startswith('under') else '~' + wait}"


# --- the tools ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VacuumReport:
    """The liquidity vacuums of a window together with the profile they were found in.

    ``profile`` is the window's :class:`~tradelab.analytics.VolumeProfile` (its ``symbol``,
    ``start`` and ``end`` name the window); ``vacuums`` its :class:`~tradelab.analytics.Vacuum`
    zones, sorted by price, found with ``threshold`` and ``min_rows``.
    """

    profile: VolumeProfile
    vacuums: list[Vacuum]
    threshold: float = 0.20
    min_rows: int = 1

    @property
    def symbol(self) -> str | None:
        """The symbol of the window."""
        return self.profile.symbol

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values: the window, the profile's key figures that
        locate the zones (trade count, row size, POC) and the zones."""
        p = self.profile
        return {
            "symbol": p.symbol,
            "start": p.start.isoformat() if p.start else None,
            "end": p.end.isoformat() if p.end else None,
            "trade_count": p.trade_count,
            "row_size": p.row_size,
            "poc": p.poc,
            "vacuums": [v.to_dict() for v in self.vacuums],
        }


def window_of(
    store: Any,
    hours: object = None,
    start: object = None,
    end: object = None,
    *,
    hours_name: str = "duration_hours",
    default_hours: float = DEFAULT_WINDOW_HOURS,
    table: TableReader | None = None,
) -> TimeRange:
    """The window asked for (:func:`tradelab.timerange.resolve_window`): the last ``hours``
    ending now (or at ``end``), or the range ``[start, end)``, at most the retention of
    ``store`` (an open store) or, before a store is open, of the configured one. A range read
    from a shared ``table`` is not capped (the table keeps what the team decides)."""
    days = store.retention_days if isinstance(store, TradeStore) else retention_days_from_env()
    return resolve_window(
        hours=hours,
        start=start,
        end=end,
        now_ms=int(time.time() * 1000) + 1,  # the window [end - hours, end) includes "now"
        max_hours=math.inf if table is not None else max(float(MAX_WINDOW_HOURS), days * 24),
        default_hours=default_hours,
        hours_name=hours_name,
    )


def where_the_data_is(store: Any, symbol: str) -> str:
    """``"BTCUSDT has trades from 2024-08-08 23:54 to 2024-08-09 00:05 UTC"``, or
    ``"the store holds no BTCUSDT trades"``, from the store's counters (no trade is read)."""
    st = store.stats(symbol)
    if not st.trade_count or st.first_time is None or st.last_time is None:
        return f"the store holds no {symbol} trades"
    first, last = (f"{t:%Y-%m-%d %H:%M}" for t in (st.first_time, st.last_time))
    return f"{symbol} has trades from {first} to {last} UTC"


PROFILE_COLUMNS = ("price", "qty", "buyer_is_maker")
"""What a volume profile reads of each trade (the window's bounds come from the request)."""


def read_window(
    sym: str,
    window: TimeRange,
    store: Any,
    data: str | os.PathLike[str] | None,
    table: TableReader | None = None,
    *,
    columns: tuple[str, ...] | None = None,
) -> tuple[Any, Any]:
    """``(trades, source)``: the trades of ``window`` (arguments already valid) from the store
    or the shared ``table`` (:func:`tradelab.store.registry.open_source`); fewer than
    :data:`MIN_TRADES` raise :class:`InsufficientTradesError` saying why (for a range, where
    the store or the table does have data). ``columns``: only these (the store decodes no
    others: a profile reads less than half of a week's bytes)."""
    st = open_source(store, data, table)
    if isinstance(st, TableReader):
        trades = st.trades(sym, window.start_ms, window.end_ms)
        trades = trades if columns is None else trades.select(columns)
    else:
        trades = st.trades(sym, window.start_ms, window.end_ms, columns=columns)
    if trades.height < MIN_TRADES:
        if "time" not in trades.columns:  # the message tells the rate seen: a small re-read
            trades = st.trades(sym, window.start_ms, window.end_ms)
        message = (
            _table_message(sym, trades.height, window, st)
            if isinstance(st, TableReader)
            else _short_message(sym, trades, window, st)
        )
        raise InsufficientTradesError(message, found=trades.height, needed=MIN_TRADES)
    return trades, st


def _table_message(sym: str, found: int, window: TimeRange, table: TableReader) -> str:
    """Too few trades in a shared table: how many, and where the table has the symbol's."""
    where = table.where(sym)
    if window.is_range:
        span = window.describe().replace(" → ", " to ")
        return f"{sym}: {found:,} of the {MIN_TRADES:,} trades needed from {span}; {where}"
    return (
        f"{sym}: {found:,} of the {MIN_TRADES:,} trades needed in the last "
        f"{hours_text(float(window.hours or 0))}; {where} (an hour reaches the table once it "
        "has closed and been exported: ask for a range with start/end)"
    )


def _short_message(sym: str, trades: Any, window: TimeRange, st: Any) -> str:
    found = trades.height
    if window.is_range:
        head = (
            f"{sym}: {found:,} of the {MIN_TRADES:,} trades needed from "
            f"{window.describe().replace(' → ', ' to ')}"
        )
        return f"{head}; {where_the_data_is(st, sym)}"
    hours = float(window.hours or 0)
    state = collection_state(st, sym, now_ms=window.end_ms)
    observed = None
    if found >= 2:
        t = trades["time"].dt.epoch("ms")
        # epoch ms of stored trades: ints, never null, and there are at least two
        span_min = (cast(int, t.max()) - cast(int, t.min())) / 60_000
        if span_min > 0:
            observed = (found - 1) / span_min
    text = insufficient_message(sym, found, MIN_TRADES, hours, state, observed)
    if found == 0 and st.stats(sym).trade_count:
        text += f" ({where_the_data_is(st, sym)}: ask for that range with start/end)"
    return text


def _profile(
    symbol: str,
    duration_hours: object,
    tick_size: float | None,
    store: Any,
    data: str | os.PathLike[str] | None,
    *,
    start: object = None,
    end: object = None,
    row_size: float | None = None,
    value_area: float = 0.70,
    method: str = "cbot",
    vacuum_args: tuple[float, int] | None = None,
    source: object = None,
) -> VolumeProfile:
    """Validate everything (symbol, source, window, tick size, profile and vacuum parameters),
    then open the store (or the table), read the window and compute its profile: with a tick
    size known and a store, from its hour histograms (:mod:`.api_fast`, the same answer)."""
    sym = validate_symbol(symbol)
    table = table_source(source, store=store, data=data)
    window = window_of(store, duration_hours, start, end, table=table)
    tick = None if tick_size is None else _tick(tick_size)
    if tick is None:
        tick = EXCHANGE_TICK_SIZES.get(sym)
    # A typo in the parameters fails fast, not after a 168-hour read.
    check_profile_args(tick_size=tick, row_size=row_size, value_area=value_area, method=method)
    if vacuum_args is not None:
        check_vacuum_args(*vacuum_args)
    vp = None
    if table is None and tick is not None:  # merge the store's hour histograms (api_fast)
        vp = profile_from_store(
            open_source(store, data, None),
            sym,
            window.start_ms,
            window.end_ms,
            tick_size=tick,
            row_size=row_size,
            value_area=value_area,
            method=method,
            min_trades=MIN_TRADES,
        )
    if vp is None:  # today's path: the trades themselves (and the insufficient-trades message)
        trades, _ = read_window(sym, window, store, data, table, columns=PROFILE_COLUMNS)
        vp = volume_profile(
            trades,
            tick_size=tick,
            row_size=row_size,
            value_area=value_area,
            method=method,
            symbol=sym,
            start=window.start_ms,
            end=window.end_ms,
        )
    return replace(vp, window_note=window.note) if window.note else vp


def get_volume_profile(
    symbol: str,
    duration_hours: float | None = None,
    tick_size: float | None = None,
    *,
    start: dt.datetime | int | str | None = None,
    end: dt.datetime | int | str | None = None,
    store: TradeStore | None = None,
    data: str | os.PathLike[str] | None = None,
    source: str | os.PathLike[str] | None = None,
    row_size: float | None = None,
    value_area: float = 0.70,
    method: str = "cbot",
) -> VolumeProfile:
    """The volume profile of ``symbol`` over the last ``duration_hours`` hours (1–168, default
    24), or over the range ``start``–``end``.

    The window is ``[now - duration_hours, now)`` (ending at ``end`` when only ``end`` is
    given), or ``[start, end)`` (``end`` default: now) — a fixed-range profile such as a day
    of imported recordings. ``start``/``end`` are timezone-aware datetimes, unix ms or ISO-8601
    strings (no zone = UTC, and the profile's ``window_note`` says so); a range is at most the
    store's retention long. It is read from ``store`` (an open store), else from the store at
    ``data``, else from the process-wide store of the configured data directory
    (:func:`tradelab.open_store`), and :func:`tradelab.volume_profile` is computed on
    ``tick_size`` (default: the exchange tick of the symbol, :data:`EXCHANGE_TICK_SIZES`, else
    inferred from the prices) with the automatic row size unless ``row_size`` is given;
    ``value_area`` and ``method`` as there. The profile's ``start``/``end`` are the window.

    ``source`` reads a team's shared Delta table instead of a store (``tradelab export``: a
    local directory or an ``s3://``, ``gs://``, ``az://`` URL, credentials from the
    environment), lazily and with the same answers; a range is then not capped at the store's
    retention. ``source`` with ``store`` or ``data`` is an error.

    Raises :class:`InsufficientTradesError` below :data:`MIN_TRADES` trades (the message says
    how many there are and, for the last hours, whether anything collects and how long to
    wait; for a range, where the store does have trades of the symbol), and the input errors
    of the symbol, window (both ``duration_hours`` and ``start``, an inverted or too long
    range), tick size and profile parameters — all checked, in that order, before the store
    is opened.
    """
    return _profile(
        symbol,
        duration_hours,
        tick_size,
        store,
        data,
        start=start,
        end=end,
        row_size=row_size,
        value_area=value_area,
        method=method,
        source=source,
    )


def vacuum_report(
    symbol: str,
    duration_hours: float | None = None,
    *,
    start: dt.datetime | int | str | None = None,
    end: dt.datetime | int | str | None = None,
    store: TradeStore | None = None,
    data: str | os.PathLike[str] | None = None,
    source: str | os.PathLike[str] | None = None,
    threshold: float = 0.20,
    min_rows: int = 1,
) -> VacuumReport:
    """The liquidity vacuums of ``symbol``'s last ``duration_hours`` hours (default 24), or of
    the range ``start``–``end``, with their profile.

    The profile of :func:`get_volume_profile` (same window, store or ``source``, row size and
    errors) run
    through :func:`tradelab.liquidity_vacuums` (rows below ``threshold`` × the median row
    volume, runs of at least ``min_rows`` rows); ``threshold`` and ``min_rows`` are checked
    with the other arguments, before the store is opened.
    """
    profile = _profile(
        symbol,
        duration_hours,
        None,
        store,
        data,
        start=start,
        end=end,
        vacuum_args=(threshold, min_rows),
        source=source,
    )
    vacuums = liquidity_vacuums(profile, threshold=threshold, min_rows=min_rows)
    return VacuumReport(profile, vacuums, float(threshold), int(min_rows))


def get_liquidity_vacuums(
    symbol: str,
    duration_hours: float | None = None,
    *,
    start: dt.datetime | int | str | None = None,
    end: dt.datetime | int | str | None = None,
    store: TradeStore | None = None,
    data: str | os.PathLike[str] | None = None,
    source: str | os.PathLike[str] | None = None,
    threshold: float = 0.20,
    min_rows: int = 1,
) -> list[Vacuum]:
    """The liquidity vacuums of ``symbol``'s last ``duration_hours`` hours (default 24), or of
    the range ``start``–``end``, sorted by price: the ``vacuums`` of :func:`vacuum_report`
    (``source`` as there: a shared Delta table instead of a store)."""
    return vacuum_report(
        symbol,
        duration_hours,
        start=start,
        end=end,
        store=store,
        data=data,
        source=source,
        threshold=threshold,
        min_rows=min_rows,
    ).vacuums
