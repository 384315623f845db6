"""Tool-level analytics: read a window from the store, check there is enough data, compute.

These are the functions the MCP server, the ``%tradelab`` magic and the CLI expose, and that an
analyst calls in a notebook::

    vp = tradelab.get_volume_profile("BTCUSDT", 24)     # last 24 h, ending now
    zones = tradelab.get_liquidity_vacuums("BTCUSDT", 4)

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

import math
import sys
import time
from typing import TYPE_CHECKING, Any, cast

from tradelab.analytics.profile import (
    Vacuum,
    VolumeProfile,
    check_profile_args,
    check_vacuum_args,
    liquidity_vacuums,
    volume_profile,
)
from tradelab.collector.status_doc import read_collector_status
from tradelab.config import validate_hours, validate_symbol
from tradelab.exceptions import InsufficientTradesError, InvalidParameterError, TradelabError
from tradelab.logs import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from tradelab.store.tradestore import TradeStore

__all__ = [
    "EXCHANGE_TICK_SIZES",
    "MIN_TRADES",
    "collection_state",
    "get_liquidity_vacuums",
    "get_volume_profile",
    "insufficient_message",
    "set_tick_size",
    "tick_size_for",
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
    EXCHANGE_TICK_SIZES[sym] = _tick(tick_size)


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


def _resolve_store(store: Any) -> TradeStore:
    from tradelab.store.tradestore import TradeStore

    if store is None:
        from tradelab.store.registry import open_store

        return open_store()
    if not isinstance(store, TradeStore):
        raise InvalidParameterError(
            f"store must be a tradelab.TradeStore (or None for the default store), got "
            f"{type(store).__name__}"
        )
    return store


# --- is anything collecting? ---------------------------------------------------------------------


def _same_path(a: Any, b: Any) -> bool:
    from pathlib import Path

    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, TypeError):
        return False


def collection_state(store: Any, symbol: str, *, now_ms: int | None = None) -> dict[str, Any]:
    """Whether a collector fills ``store`` with ``symbol`` and at what rate.

    Looks first for a collector in this process (a running :mod:`tradelab.jupyter.session`), then at
    the status document every collector writes into the store (``collector_status``): running
    when it says so and was updated less than 30 s ago
    (:func:`tradelab.collector.status_doc.read_collector_status`).

    Returns ``{"running": bool, "where": "this process" | "another process" | None,
    "collects_symbol": bool, "rate_per_min": float | None, "stale_s": float | None}``.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    doc: dict[str, Any] | None = None
    where: str | None = None
    stale_s: float | None = None
    session = sys.modules.get("tradelab.jupyter.session")  # imported only if someone started one
    if session is not None:
        try:
            info = session.current()
            if info is not None and _same_path(info.data_dir, store.path):
                doc = dict(session.status(info.data_dir))
                where = "this process"
        except TradelabError as exc:  # pragma: no cover - status never raises by contract
            log.debug("No in-process collector status: %s", exc)
    if doc is None:
        try:
            doc = read_collector_status(store, now_ms=now_ms)
        except TradelabError as exc:
            log.debug("No collector status in the store: %s", exc)
            doc = None
        if doc is not None:
            import os

            where = "this process" if doc.get("pid") == os.getpid() else "another process"
            claimed = doc.get("reported_running", doc.get("running"))
            if doc.get("stale") and claimed:  # said "running" but stopped writing: it died
                updated = doc.get("updated_at")
                stale_s = (now_ms - updated) / 1000 if isinstance(updated, int | float) else None
    running = bool(doc and doc.get("running") and not doc.get("stale"))
    per = ((doc or {}).get("symbols") or {}).get(symbol) or {}
    rate = per.get("rate_per_min")
    return {
        "running": running,
        "where": where if running else None,
        "collects_symbol": running and bool(per),
        "rate_per_min": float(rate) if isinstance(rate, int | float) and rate > 0 else None,
        "stale_s": stale_s,
    }


# --- the error message -----------------------------------------------------------------------


def _hours_text(hours: float) -> str:
    return f"{hours:g} h"


def _duration_text(minutes: float) -> str:
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        return f"{max(1, round(minutes))} min"
    return f"{minutes / 60:.1f} h"


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
    head = f"{symbol}: {found:,} of the {needed:,} trades needed in the last {_hours_text(hours)}"
    start_hint = (
        f"`%tradelab start {symbol}` in a notebook or `tradelab collect --symbols {symbol}` "
        "in a terminal"
    )
    if not state.get("running"):
        stale = state.get("stale_s")
        if stale is not None:
            return (
                f"{head}; no collector is running (the last collector status is "
                f"{_duration_text(stale / 60)} old: it stopped or died) — start collection "
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
    rate_text = f"{rate:,.0f}" if rate >= 10 else f"{rate:.1f}"
    running = f"collection is running at ~{rate_text} trades/min ({where})"
    if rate * hours * 60 < needed:
        longer = math.ceil(needed / (rate * 60))
        if longer <= 168:
            return (
                f"{head}; {running}: at that rate {_hours_text(hours)} never holds {needed:,} "
                f"trades — ask for at least {longer} h"
            )
        return f"{head}; {running}: at that rate no window up to 168 h holds {needed:,} trades"
    wait = _duration_text((needed - found) / rate)
    return f"{head}; {running}, ready in {wait if wait.startswith('under') else '~' + wait}"


# --- the tools ---------------------------------------------------------------------------------


def _window_trades(symbol: str, duration_hours: float, store: Any) -> tuple[Any, str, int, int]:
    sym = validate_symbol(symbol)
    hours = validate_hours(duration_hours, name="duration_hours")
    st = _resolve_store(store)
    end_ms = int(time.time() * 1000) + 1  # the window [end - hours, end) includes "now"
    start_ms = end_ms - round(hours * 3_600_000)
    trades = st.trades(sym, start_ms, end_ms)
    if trades.height < MIN_TRADES:
        state = collection_state(st, sym, now_ms=end_ms)
        observed = None
        if trades.height >= 2:
            t = trades["time"].dt.epoch("ms")
            # epoch ms of stored trades: ints, never null, and there are at least two
            span_min = (cast(int, t.max()) - cast(int, t.min())) / 60_000
            if span_min > 0:
                observed = (trades.height - 1) / span_min
        raise InsufficientTradesError(
            insufficient_message(sym, trades.height, MIN_TRADES, hours, state, observed),
            found=trades.height,
            needed=MIN_TRADES,
        )
    return trades, sym, start_ms, end_ms


def get_volume_profile(
    symbol: str,
    duration_hours: float = 24,
    tick_size: float | None = None,
    *,
    store: TradeStore | None = None,
    row_size: float | None = None,
    value_area: float = 0.70,
    method: str = "cbot",
) -> VolumeProfile:
    """The volume profile of ``symbol`` over the last ``duration_hours`` hours (1–168).

    Reads ``[now - duration_hours, now)`` from ``store`` (default: the process-wide store of the
    configured data directory, :func:`tradelab.open_store`) and computes
    :func:`tradelab.volume_profile` on ``tick_size`` (default: the exchange tick of the symbol,
    :data:`EXCHANGE_TICK_SIZES`, else inferred from the prices) with the automatic row size
    unless ``row_size`` is given; ``value_area`` and ``method`` as there. The profile's
    ``start``/``end`` are the window.

    Raises :class:`InsufficientTradesError` below :data:`MIN_TRADES` trades (the message says
    how many there are, whether anything collects and how long to wait), and the input errors
    of the symbol, window, tick size and profile parameters — all checked before the store is
    read.
    """
    tick = None if tick_size is None else _tick(tick_size)
    sym = validate_symbol(symbol)
    validate_hours(duration_hours, name="duration_hours")
    if tick is None:
        tick = EXCHANGE_TICK_SIZES.get(sym)
    # A typo in the parameters fails fast, not after a 168-hour read.
    check_profile_args(tick_size=tick, row_size=row_size, value_area=value_area, method=method)
    trades, sym, start_ms, end_ms = _window_trades(sym, duration_hours, store)
    return volume_profile(
        trades,
        tick_size=tick,
        row_size=row_size,
        value_area=value_area,
        method=method,
        symbol=sym,
        start=start_ms,
        end=end_ms,
    )


def get_liquidity_vacuums(
    symbol: str,
    duration_hours: float = 24,
    *,
    store: TradeStore | None = None,
    threshold: float = 0.20,
    min_rows: int = 1,
) -> list[Vacuum]:
    """The liquidity vacuums of ``symbol``'s last ``duration_hours`` hours, sorted by price.

    The profile of :func:`get_volume_profile` (same window, row size and errors) run through
    :func:`tradelab.liquidity_vacuums` (rows below ``threshold`` × the median row volume, runs
    of at least ``min_rows`` rows).
    """
    check_vacuum_args(threshold, min_rows)  # before the read
    profile = get_volume_profile(symbol, duration_hours, store=store)
    return liquidity_vacuums(profile, threshold=threshold, min_rows=min_rows)
