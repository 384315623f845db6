"""The MCP server's presentation layer: output models, and the pure functions filling them.

:mod:`.server` declares the tools; what they return is built here, without MCP: the
pydantic output models (:class:`VolumeProfileResult`, :class:`LiquidityVacuums`,
:class:`CollectionStatus` and their parts), the functions that turn a volume profile, its
liquidity vacuums or the collector's status into those models (:func:`volume_profile_result`,
:func:`liquidity_vacuums_result`, :func:`collection_status`), and the sentences written for a
language model (:func:`vacuum_reading`, the ``summary`` fields). Profiles are bounded to
:data:`MAX_ROWS` rows by :func:`merge_rows`; prices, times and durations are written by
:mod:`tradelab.formatting` (:func:`format_price` is its ``price_text_for_step``).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from tradelab.formatting import (
    ago_text,
    decimals_needed,
    hours_text,
    iso_utc,
    price_text_for_step,
    span_text,
)

__all__ = [
    "MAX_ROWS",
    "STALE_AFTER_S",
    "CollectionStatus",
    "CollectorInfo",
    "LiquidityVacuums",
    "ProfileRow",
    "SymbolStatus",
    "VacuumZone",
    "VolumeProfileResult",
    "Window",
    "collection_status",
    "format_price",
    "liquidity_vacuums_result",
    "merge_rows",
    "profile_chart_png",
    "vacuum_reading",
    "volume_profile_result",
    "window_phrase",
]

MAX_ROWS = 200
"""At most this many profile rows go back to the model; finer profiles are merged."""

STALE_AFTER_S = 30.0

# --- output models ----------------------------------------------------------------------------


class ProfileRow(BaseModel):
    """One price row ``[price_low, price_high)`` of the profile."""

    price_low: float
    price_high: float
    volume: float = Field(description="traded base-asset volume in the row")
    buy_volume: float = Field(description="volume whose aggressor bought (taker buy)")
    sell_volume: float = Field(description="volume whose aggressor sold (taker sell)")
    delta: float = Field(description="buy_volume - sell_volume")
    trades: int = Field(description="number of aggregate trades in the row")


class Window(BaseModel):
    start: str = Field(description="start of the window, ISO 8601 UTC (inclusive)")
    end: str = Field(description="end of the window, ISO 8601 UTC (exclusive)")
    hours: float = Field(description="length of the window in hours")


class _Levels(BaseModel):
    """What every window answer starts with: the symbol, the window and the profile's levels."""

    symbol: str
    window: Window
    trade_count: int
    row_size: float = Field(description="price height of one row at full resolution")
    poc: float = Field(description="point of control: middle price of the highest-volume row")
    vah: float = Field(description="value area high: top edge of the value area")
    val: float = Field(description="value area low: bottom edge of the value area")


class VolumeProfileResult(_Levels):
    """A volume profile of one symbol over the last ``duration_hours`` or a range."""

    value_area_pct: float = Field(
        description="percentage of total volume actually inside [val, vah] (target 70%)"
    )
    total_volume: float
    buy_volume: float
    sell_volume: float
    full_resolution_rows: int = Field(description="rows at row_size across the traded range")
    rows_row_size: float = Field(description="price height of each row in `rows`")
    rows_merged: int = Field(description="full-resolution rows merged into each row of `rows`")
    rows: list[ProfileRow] = Field(description=f"the profile, low to high, at most {MAX_ROWS}")
    note: str = Field(description="how to read the rows (resolution, merging)")
    summary: str = Field(description="one-paragraph reading of the profile")


class VacuumZone(BaseModel):
    """A run of consecutive rows traded far below the median row."""

    price_low: float
    price_high: float
    volume: float = Field(description="volume traded inside the zone")
    median_row_volume: float = Field(description="median volume of one row of the profile")
    deficit_pct: float = Field(description="how far below the median a row of the zone is, %")
    impact: Literal["fast", "moderate", "negligible"]
    reading: str = Field(description="one line for the reader")


class LiquidityVacuums(_Levels):
    """The liquidity vacuums (low-volume zones) of one symbol's profile."""

    vacuums: list[VacuumZone]
    rule: str = Field(description="how a vacuum is defined")
    summary: str


class CollectorInfo(BaseModel):
    """The collector process writing the store, as it last reported itself."""

    running: bool = Field(description="running and reported within the last 30 s")
    stale: bool = Field(description="not running: stopped, or its last report is > 30 s old")
    reported_running: bool = Field(
        description="its last report said running (true while stale: it died without saying)"
    )
    pid: int | None = None
    host: str | None = None
    started_at: str | None = None
    updated_at: str | None = None
    seconds_since_update: float | None = None
    ws_url: str | None = None
    rest_url: str | None = None
    in_this_server: bool = Field(description="the collector runs inside this MCP server")


class SymbolStatus(BaseModel):
    symbol: str
    trades_stored: int
    first_trade_time: str | None
    last_trade_time: str | None
    seconds_since_last_trade: float | None
    history_hours: float | None = Field(description="hours between first and last stored trade")
    collecting: bool = Field(description="the running collector handles this symbol")
    connected: bool | None = None
    rate_per_min: float | None = Field(None, description="recent trades per minute collected")
    gaps_detected: int | None = None
    gaps_backfilled: int | None = None
    gaps_unrepairable: int | None = None
    uptime_ratio: float | None = None
    last_error: str | None = None


class CollectionStatus(BaseModel):
    """What is collected into the store, since when, and whether collection is running."""

    source: Literal["store", "delta-table"] = Field(
        default="store",
        description="where the tools read: a local store, or a team's shared Delta table "
        "(read-only; store_path is then its URI)",
    )
    store_path: str
    store_exists: bool
    checked_at: str
    bytes_on_disk: int | None
    collector: CollectorInfo | None
    symbols: list[SymbolStatus]
    summary: str = Field(description="plain-language explanation, including why data may lack")


# --- presentation: pure functions -------------------------------------------------------------


format_price = price_text_for_step
"""``61790.0`` -> ``"61,790"``: :func:`tradelab.formatting.price_text_for_step`."""


def _epoch_s(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    if isinstance(value, int | float):
        return value / 1000
    return None


def _rows_as_dicts(rows: Any) -> list[dict[str, Any]]:
    """The profile's rows (a Polars frame or a list of dicts) as plain dicts."""
    if hasattr(rows, "to_dicts"):
        return rows.to_dicts()
    return [dict(r) for r in rows]


def merge_rows(
    rows: Sequence[dict[str, Any]], row_size: float, max_rows: int = MAX_ROWS
) -> tuple[list[dict[str, Any]], int]:
    """Merge full-resolution rows into at most ``max_rows`` rows; returns (rows, factor).

    Merged rows stay aligned to multiples of ``row_size * factor`` (the same prices always land
    in the same merged row), volumes and counts are summed, so totals are unchanged.
    """
    if max_rows < 1:
        raise ValueError("max_rows must be at least 1")
    if len(rows) <= max_rows:
        return [dict(r) for r in rows], 1
    index = [math.floor(r["price_low"] / row_size + 0.5) for r in rows]
    factor = max(2, math.ceil(len(rows) / max_rows))
    while (index[-1] // factor) - (index[0] // factor) + 1 > max_rows:
        factor += 1
    merged: list[dict[str, Any]] = []
    current_group: int | None = None
    for i, r in zip(index, rows, strict=True):
        group = i // factor
        if group != current_group:
            current_group = group
            merged.append(
                {
                    "price_low": group * factor * row_size,
                    "price_high": (group + 1) * factor * row_size,
                    "volume": 0.0,
                    "buy_volume": 0.0,
                    "sell_volume": 0.0,
                    "delta": 0.0,
                    "trades": 0,
                }
            )
        m = merged[-1]
        for key in ("volume", "buy_volume", "sell_volume", "delta", "trades"):
            m[key] += r[key]
    # Clip the outer edges to the traded range actually covered by the full-resolution rows.
    merged[0]["price_low"] = rows[0]["price_low"]
    merged[-1]["price_high"] = rows[-1]["price_high"]
    d = decimals_needed(row_size, 8) + 2
    for m in merged:
        m["price_low"] = round(m["price_low"], d)
        m["price_high"] = round(m["price_high"], d)
    return merged, factor


def _window(vp: Any, hours: float | None) -> Window:
    if hours is None and vp.start is not None and vp.end is not None:
        hours = (vp.end - vp.start).total_seconds() / 3600
    return Window(
        start=iso_utc(vp.start) or "", end=iso_utc(vp.end) or "", hours=float(hours or 0.0)
    )


def _levels(vp: Any, symbol: str, hours: float | None) -> dict[str, Any]:
    """The :class:`_Levels` fields of ``vp``'s answer (``hours`` None for a range)."""
    return {
        "symbol": symbol,
        "window": _window(vp, hours),
        "trade_count": int(vp.trade_count),
        "row_size": float(vp.row_size),
        "poc": float(vp.poc),
        "vah": float(vp.vah),
        "val": float(vp.val),
    }


def window_phrase(vp: Any, hours: float | None) -> str:
    """``"over the last 1 h"``, or for a range ``"from 2024-08-08 23:54 to 2024-08-09 00:06
    UTC"`` (with the window's note, such as "read as UTC", in brackets)."""
    if hours is not None or vp.start is None or vp.end is None:
        return f"over the last {hours_text(hours or 24)}"
    note = f" ({vp.window_note})" if getattr(vp, "window_note", None) else ""
    return f"from {vp.start:%Y-%m-%d %H:%M} to {vp.end:%Y-%m-%d %H:%M} UTC{note}"


def volume_profile_result(
    vp: Any, symbol: str, hours: float | None, *, max_rows: int = MAX_ROWS
) -> VolumeProfileResult:
    """The tool's answer for a :class:`~tradelab.analytics.VolumeProfile` (bounded, JSON-ready);
    ``hours`` is None for a range."""
    rows = _rows_as_dicts(vp.rows)
    row_size = float(vp.row_size)
    merged, factor = merge_rows(rows, row_size, max_rows) if rows else ([], 1)
    buy = float(vp.buy_volume)
    sell = float(vp.sell_volume)
    step = row_size
    if factor == 1:
        note = f"All {len(rows)} rows at full resolution ({format_price(row_size, step)} each)."
    else:
        note = (
            f"The profile has {len(rows)} rows of {format_price(row_size, step)}; to stay within "
            f"{max_rows} rows each row here merges {factor} of them "
            f"({format_price(row_size * factor, step)} each). POC, VAH and VAL are computed at "
            "full resolution; ask again with a larger tick_size or shorter window for finer rows."
        )
    total = float(vp.total_volume)
    pct = float(vp.value_area_volume_pct)
    summary = (
        f"{symbol} {window_phrase(vp, hours)}: {int(vp.trade_count):,} trades, volume "
        f"{total:,.4f} (buy {buy:,.4f} / sell {sell:,.4f}). Point of control "
        f"{format_price(vp.poc, step)}; value area {format_price(vp.val, step)}–"
        f"{format_price(vp.vah, step)} holds {pct:.1f}% of the volume."
    )
    return VolumeProfileResult(
        **_levels(vp, symbol, hours),
        value_area_pct=pct,
        total_volume=total,
        buy_volume=buy,
        sell_volume=sell,
        full_resolution_rows=len(rows),
        rows_row_size=row_size * factor,
        rows_merged=factor,
        rows=[ProfileRow(**r) for r in merged],
        note=note,
        summary=summary,
    )


_IMPACT_TEXT = {
    "fast": "price likely to move fast through it",
    "moderate": "price may move quickly through it",
    "negligible": "only slightly thin, little effect expected",
}


def vacuum_reading(vacuum: Any, *, poc: float | None = None, step: float | None = None) -> str:
    """One line for the model, e.g. ``thin zone 61,790–61,805: price likely to move fast ...``."""
    low = format_price(vacuum.price_low, step)
    high = format_price(vacuum.price_high, step)
    where = ""
    if poc is not None:
        if vacuum.price_low > poc:
            where = " above the POC"
        elif vacuum.price_high <= poc:
            where = " below the POC"
    text = _IMPACT_TEXT.get(vacuum.impact, str(vacuum.impact))
    return (
        f"thin zone {low}–{high}{where} ({float(vacuum.deficit_pct):.0f}% below the median row "
        f"volume): {text}"
    )


def liquidity_vacuums_result(
    vacuums: Iterable[Any], vp: Any, symbol: str, hours: float | None
) -> LiquidityVacuums:
    """The tool's answer for the vacuums of ``vp`` (as computed by the Python API)."""
    step = float(vp.row_size)
    zones = [
        VacuumZone(
            price_low=float(v.price_low),
            price_high=float(v.price_high),
            volume=float(v.volume),
            median_row_volume=float(v.median_row_volume),
            deficit_pct=float(v.deficit_pct),
            impact=v.impact,
            reading=vacuum_reading(v, poc=float(vp.poc), step=step),
        )
        for v in vacuums
    ]
    fast = sum(1 for z in zones if z.impact == "fast")
    head = (
        f"{symbol}, last {hours_text(hours)}"
        if hours is not None
        else f"{symbol} {window_phrase(vp, None)}"
    )
    if zones:
        summary = (
            f"{head}: {len(zones)} thin zone(s), {fast} where price "
            "is likely to move fast. " + "; ".join(z.reading for z in zones[:10])
        )
        if len(zones) > 10:
            summary += f"; and {len(zones) - 10} more (see vacuums)."
    else:
        summary = (
            f"{head}: no liquidity vacuums — every row traded at "
            "least 20% of the median row volume."
        )
    return LiquidityVacuums(
        **_levels(vp, symbol, hours),
        vacuums=zones,
        rule=(
            "A vacuum is a run of consecutive profile rows each traded below 20% of the median "
            "row volume; deficit = 1 - zone volume per row / median. Impact: deficit > 80% fast, "
            "> 50% moderate, else negligible."
        ),
        summary=summary,
    )


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def collection_status(
    store: Any,
    status: dict[str, Any] | None,
    *,
    store_path: str | os.PathLike[str],
    now: float | None = None,
    in_this_server: bool = False,
) -> CollectionStatus:
    """Assemble the collection status from the store's statistics and the collector's report.

    ``store`` may be ``None`` (no store at ``store_path`` yet); ``status`` is what
    :func:`tradelab.collector.status_doc.read_collector_status` returned (``None``: no collector
    ever wrote).
    """
    now = time.time() if now is None else now
    checked_at = iso_utc(now * 1000) or ""
    path = str(store_path)
    if store is None:
        return CollectionStatus(
            store_path=path,
            store_exists=False,
            checked_at=checked_at,
            bytes_on_disk=None,
            collector=None,
            symbols=[],
            summary=(
                f"No trade store exists at {path} yet: nothing has been collected there. Start "
                "collection with `tradelab collect --symbols BTCUSDT,ETHUSDT --data "
                f"{path}` (or run this server with --collect); an analysis needs at least 1,000 "
                "trades in its window."
            ),
        )
    collector: CollectorInfo | None = None
    per_symbol: dict[str, dict[str, Any]] = {}
    if status:
        updated = status.get("updated_at")
        age = None if updated is None else max(0.0, now - updated / 1000)
        stale = bool(status.get("stale", age is None or age > STALE_AFTER_S))
        collector = CollectorInfo(
            running=bool(status.get("running")) and not stale,
            stale=stale,
            reported_running=bool(status.get("reported_running", status.get("running"))),
            pid=status.get("pid"),
            host=status.get("host"),
            started_at=iso_utc(status.get("started_at")),
            updated_at=iso_utc(updated),
            seconds_since_update=None if age is None else round(age, 1),
            ws_url=status.get("ws_url"),
            rest_url=status.get("rest_url"),
            in_this_server=in_this_server,
        )
        per_symbol = dict(status.get("symbols") or {})
    running = collector is not None and collector.running
    names = list(dict.fromkeys([*store.symbols(), *per_symbol]))
    symbols: list[SymbolStatus] = []
    bytes_on_disk: int | None = None
    lines: list[str] = []
    for name in names:
        st = store.stats(name)
        bytes_on_disk = _field(st, "bytes_on_disk") if bytes_on_disk is None else bytes_on_disk
        first, last = _field(st, "first_time"), _field(st, "last_time")
        first_s, last_s = _epoch_s(first), _epoch_s(last)
        sym = per_symbol.get(name) or {}
        collecting = running and name in per_symbol
        since_last = None if last_s is None else round(max(0.0, now - last_s), 1)
        entry = SymbolStatus(
            symbol=name,
            trades_stored=int(_field(st, "trade_count") or 0),
            first_trade_time=iso_utc(first),
            last_trade_time=iso_utc(last),
            seconds_since_last_trade=since_last,
            history_hours=None
            if first_s is None or last_s is None
            else round((last_s - first_s) / 3600, 3),
            collecting=collecting,
            connected=sym.get("connected"),
            rate_per_min=sym.get("rate_per_min"),
            gaps_detected=sym.get("gaps_detected"),
            gaps_backfilled=sym.get("gaps_backfilled"),
            gaps_unrepairable=sym.get("gaps_unrepairable"),
            uptime_ratio=sym.get("uptime_ratio"),
            last_error=sym.get("last_error"),
        )
        symbols.append(entry)
        lines.append(_symbol_sentence(entry))
    summary = _status_summary(collector, symbols, path) + (" " + " ".join(lines) if lines else "")
    return CollectionStatus(
        store_path=path,
        store_exists=True,
        checked_at=checked_at,
        bytes_on_disk=bytes_on_disk,
        collector=collector,
        symbols=symbols,
        summary=summary,
    )


def _symbol_sentence(s: SymbolStatus) -> str:
    if s.trades_stored == 0:
        head = f"{s.symbol}: no trades stored yet"
    else:
        covering = span_text((s.history_hours or 0.0) * 3600)
        head = (
            f"{s.symbol}: {s.trades_stored:,} trades covering {covering}, last trade "
            f"{ago_text(s.seconds_since_last_trade)}"
        )
    parts = [head]
    if s.collecting:
        if s.connected is False:
            parts.append("stream disconnected")
        rate = s.rate_per_min
        if rate:
            parts.append(f"collecting ~{rate:,.0f} trades/min")
            parts.append(f"1,000 trades take ~{math.ceil(1000 / rate)} min")
        else:
            parts.append("collecting (no trade rate measured yet)")
        if s.gaps_unrepairable:
            parts.append(f"{s.gaps_unrepairable} gap(s) could not be backfilled")
    else:
        parts.append("not being collected")
    if s.last_error:
        parts.append(f"last error: {s.last_error}")
    return "; ".join(parts) + "."


def _status_summary(collector: CollectorInfo | None, symbols: list[SymbolStatus], path: str) -> str:
    if collector is None:
        head = (
            f"No collector has reported to the store at {path}; the data there is all there is "
            "and nothing new arrives until one runs (`tradelab collect --symbols SYMBOLS`)."
        )
    elif collector.running:
        where = (
            "inside this MCP server"
            if collector.in_this_server
            else (f"pid {collector.pid} on {collector.host}")
        )
        head = f"A collector is running ({where}) since {collector.started_at}."
    else:
        if collector.reported_running:
            why = (
                f"it stopped reporting {ago_text(collector.seconds_since_update)} while saying it "
                "was running (killed or hung)"
            )
        else:
            why = f"it stopped cleanly {ago_text(collector.seconds_since_update)}"
        head = (
            f"The collector (pid {collector.pid} on {collector.host}) is not running: {why}. "
            "Trades after the last stored trade are missing until collection restarts "
            "(`tradelab collect --symbols SYMBOLS`), which backfills the gap from the "
            "exchange's REST API where the exchange still has it."
        )
    if not symbols:
        head += " The store holds no trades yet."
    return head


def profile_chart_png(vp: Any) -> bytes:
    """The profile drawn by :func:`tradelab.plotting.plot_profile` as PNG bytes (no pyplot)."""
    from tradelab.plotting import figure_png, plot_profile  # matplotlib only when a chart is asked

    return figure_png(plot_profile(vp))
