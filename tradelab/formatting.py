"""How tradelab writes numbers, times and durations: one leaf module for every front-end.

The CLI, the ``%tradelab`` magic, the MCP server, the notebook displays and the plots all print
prices, quantities, times, windows and durations through these functions, so the same value
reads the same everywhere. Pure string building; it imports nothing from tradelab.

Where two front-ends have always written a value differently (a quantity with up to 8 decimals
in a profile's summary, with at most 4 in the magic's table), both ways exist here as distinct,
named functions, so that no output changes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

__all__ = [
    "ago_text",
    "decimals_needed",
    "fixed_price",
    "hours_text",
    "iso_utc",
    "price_text",
    "price_text_for_step",
    "qty_text",
    "qty_text_short",
    "rate_text",
    "span_text",
    "split_symbol",
    "uptime_text",
    "utc_text",
    "wait_text",
    "window_text",
]

MAX_PRICE_DECIMALS = 8
"""Binance writes prices and quantities with at most this many decimals."""

_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USD", "EUR", "TRY", "BRL", "BTC", "ETH", "BNB")


# --- numbers ---------------------------------------------------------------------------------


def decimals_needed(x: float, limit: int = 12) -> int:
    """Number of decimals needed to write ``x`` exactly (0.25 -> 2, 10.0 -> 0), at most
    ``limit``; binary noise below 1e-9 relative is ignored (0.1 + 0.2 -> 1)."""
    for d in range(limit + 1):
        scaled = x * 10**d
        if abs(scaled - round(scaled)) <= 1e-9 * max(1.0, abs(scaled)):
            return d
    return limit


def price_text(x: float, decimals: int) -> str:
    """A price with thousands separators and at least ``decimals`` decimals, more when the
    price itself has them (up to 8): ``price_text(61790.125, 2) == "61,790.125"``."""
    return f"{x:,.{max(decimals, min(decimals_needed(x), MAX_PRICE_DECIMALS))}f}"


def fixed_price(x: float, decimals: int) -> str:
    """A price with thousands separators and exactly ``decimals`` decimals."""
    return f"{x:,.{decimals}f}"


def price_text_for_step(price: float, step: float | None = None) -> str:
    """``61790.0`` -> ``"61,790"``: thousands separators, as many decimals as ``step`` (a row
    size) and the price itself need, so a row middle such as ``61653.75`` is never rounded;
    2 decimals without a step (the MCP server's prices)."""
    d = (
        max(decimals_needed(step, MAX_PRICE_DECIMALS), decimals_needed(price, MAX_PRICE_DECIMALS))
        if step
        else 2
    )
    return f"{price:,.{d}f}"


def qty_text(x: float) -> str:
    """A base quantity: 2 decimals from 1,000, 4 from 1, else up to 8 without trailing zeros."""
    if x >= 1000:
        return f"{x:,.2f}"
    if x >= 1:
        return f"{x:,.4f}"
    return f"{x:.8f}".rstrip("0").rstrip(".") or "0"


def qty_text_short(x: Any) -> str:
    """A base quantity with at most 4 decimals, trailing zeros dropped (``1.5``, ``0.0123``)."""
    return f"{float(x):,.4f}".rstrip("0").rstrip(".")


def rate_text(per_min: float) -> str:
    """A trade rate: whole numbers from 10 a minute (``"1,234"``), one decimal below (``"4.0"``)."""
    return f"{per_min:,.0f}" if per_min >= 10 else f"{per_min:.1f}"


def split_symbol(symbol: str | None) -> tuple[str, str]:
    """``("BTC", "USDT")`` for ``"BTCUSDT"``: the base and quote assets, for axis labels and
    units; generic names when the symbol is unknown or has no known quote asset."""
    if symbol:
        for quote in _QUOTES:
            if symbol.endswith(quote) and len(symbol) > len(quote):
                return symbol[: -len(quote)], quote
    return "base asset", "quote"


# --- times -----------------------------------------------------------------------------------


def utc_text(value: Any, *, millis: bool = False) -> str:
    """A datetime, or unix milliseconds, as ``YYYY-mm-dd HH:MM:SS`` (UTC for milliseconds;
    a datetime is written as it is), with ``.fff`` when ``millis``; anything else as ``str``."""
    if isinstance(value, int | float):
        value = dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    if isinstance(value, dt.datetime):
        if millis:
            return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def iso_utc(value: Any) -> str | None:
    """A datetime (naive = UTC) or unix-ms value as ISO 8601 UTC with milliseconds; ``None``
    stays ``None``, anything else becomes ``str``."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value / 1000, dt.UTC).isoformat(timespec="milliseconds")
    return str(value)


def window_text(
    start: dt.datetime | None,
    end: dt.datetime | None,
    *,
    seconds: bool = True,
    shorten: bool = True,
    length: bool = False,
) -> str:
    """A time window: ``2024-05-01 10:00:00 → 11:00:00 UTC``.

    ``seconds=False`` stops at minutes; ``shorten`` writes only the time of an end on the
    start's date; ``length`` appends the window's length (``(1 h)``, ``(30 min)``). Without
    both ends: ``window unknown``.
    """
    if start is None or end is None:
        return "window unknown"
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    short = "%H:%M:%S" if seconds else "%H:%M"
    end_fmt = short if shorten and start.date() == end.date() else fmt
    text = f"{start.strftime(fmt)} → {end.strftime(end_fmt)} UTC"
    if length:
        text += f" ({_window_length(end - start)})"
    return text


def _window_length(span: dt.timedelta) -> str:
    hours = span.total_seconds() / 3600
    if hours >= 1 and abs(hours - round(hours)) < 1e-9:
        return f"{hours:g} h"
    return f"{span.total_seconds() / 60:.0f} min" if hours < 1 else f"{hours:.1f} h"


# --- durations -------------------------------------------------------------------------------


def hours_text(hours: float) -> str:
    """A window length in hours: ``1 h``, ``1.5 h``, ``24 h``."""
    return f"{hours:g} h"


def wait_text(minutes: float) -> str:
    """An expected wait: ``under a minute``, ``19 min`` (up to 90), else ``3.0 h``."""
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        return f"{max(1, round(minutes))} min"
    return f"{minutes / 60:.1f} h"


def uptime_text(seconds: float) -> str:
    """How long something has run: ``42 s``, ``5 min 3 s``, ``2 h 7 min``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def span_text(seconds: float) -> str:
    """A span of history: ``45 s`` (under 90 s), ``12 min`` (under 90 min), else ``3.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def ago_text(seconds: float | None) -> str:
    """How long ago: ``12 s ago``, ``5 min ago``, ``3.2 h ago``, ``2.0 days ago``, ``never``."""
    if seconds is None:
        return "never"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"
