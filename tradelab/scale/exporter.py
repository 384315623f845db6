"""Export the store's closed hours into the shared Delta table, exactly once.

::

    report = export(store, "s3://team-bucket/trades")          # every symbol, every closed hour
    export(store, "/mnt/team/trades", symbols=["BTCUSDT"], since="2026-11-20")
    export_hour(store, uri, "BTCUSDT", hour_ms)                 # what a collector calls hourly

Each hour of each symbol is one Delta commit carrying the application transaction id
``tradelab:SYMBOL`` at version "hour number" (rules in :mod:`tradelab.scale.hours`, the table in
:mod:`tradelab.scale.table`): re-running is a no-op, a crashed run leaves only an invisible
orphan file, and exporters of different symbols — on different machines — share one table.
``store`` is anything with the :class:`TradeSource` methods (a :class:`tradelab.TradeStore`,
writer or reader: exporting works while a collector writes).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from tradelab import __version__
from tradelab.config import validate_symbol
from tradelab.exceptions import InvalidParameterError
from tradelab.logs import get_logger
from tradelab.scale.extra import normalize_uri
from tradelab.scale.hours import HOUR_MS, hole_spans, hour_floor, hour_state, hour_text
from tradelab.scale.table import DeltaTarget
from tradelab.timerange import parse_time

__all__ = ["ExportReport", "SymbolExport", "TradeSource", "export", "export_hour"]

log = get_logger("tradelab.scale")


class TradeSource(Protocol):
    """What the exporter reads: :class:`tradelab.TradeStore`'s methods of these names."""

    def symbols(self) -> list[str]: ...  # pragma: no cover

    def trades(self, symbol: str, start: int, end: int) -> pl.DataFrame: ...  # pragma: no cover

    def holes(self, symbol: str) -> pl.DataFrame: ...  # pragma: no cover

    def stats(self, symbol: str) -> object: ...  # pragma: no cover


@dataclass
class SymbolExport:
    """One symbol's part of an export: hours and trades committed, bytes of Parquet written,
    the hours of them recorded incomplete (ids the exchange lacks), the last hour now in the
    table (``through_ms``), and why the next hour waits (``waiting``), if it does."""

    symbol: str
    hours: int = 0
    trades: int = 0
    bytes: int = 0
    incomplete_hours: int = 0
    lost_races: int = 0
    through_ms: int | None = None
    waiting: str | None = None
    note: str | None = None

    def line(self) -> str:
        """One line for the terminal."""
        if self.hours:
            per = f"{self.bytes / self.trades:.1f} B/trade" if self.trades else "-"
            head = (
                f"{self.symbol}: {self.hours:,} hour{'s' * (self.hours != 1)} exported, "
                f"{self.trades:,} trades, {self.bytes / 1e6:,.1f} MB ({per})"
            )
        else:
            head = f"{self.symbol}: nothing new"
        parts = [head]
        if self.through_ms is not None:
            parts.append(f"table has it through {hour_text(self.through_ms)} UTC")
        if self.incomplete_hours:
            parts.append(f"{self.incomplete_hours} hour(s) recorded incomplete (unrepairable ids)")
        if self.lost_races:
            parts.append(f"{self.lost_races} hour(s) committed by another exporter first")
        if self.note:
            parts.append(self.note)
        if self.waiting:
            parts.append(f"next: {self.waiting}")
        return "; ".join(parts)


@dataclass
class ExportReport:
    """What :func:`export` did, per symbol, with the table version after it and the time taken."""

    uri: str
    symbols: list[SymbolExport] = field(default_factory=list)
    version: int = -1
    seconds: float = 0.0

    @property
    def trades(self) -> int:
        """Trades committed by this export."""
        return sum(s.trades for s in self.symbols)

    @property
    def hours(self) -> int:
        """Hour commits made by this export."""
        return sum(s.hours for s in self.symbols)

    @property
    def bytes(self) -> int:
        """Bytes of Parquet committed by this export."""
        return sum(s.bytes for s in self.symbols)

    def __str__(self) -> str:
        rate = ""
        if self.seconds and self.trades:
            rate = f", {self.trades / self.seconds:,.0f} trades/s"
        head = (
            f"Exported to {self.uri} (table version {self.version}) in {self.seconds:.1f} s{rate}"
        )
        return "\n".join([head, *(f"  {s.line()}" for s in self.symbols)])


def _ms(value: object, name: str) -> int | None:
    if value is None:
        return None
    return parse_time(value, name)[0]


def _symbols(store: TradeSource, symbols: Iterable[str] | str | None) -> list[str]:
    if symbols is None:
        return list(store.symbols())
    if isinstance(symbols, str):
        symbols = [s for s in symbols.split(",") if s.strip()]
    out = [validate_symbol(s) for s in symbols]
    if not out:
        raise InvalidParameterError("symbols is empty: name at least one, or None for all")
    return list(dict.fromkeys(out))


def _time_ms(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    return int(value)  # type: ignore[call-overload]


def export(
    store: TradeSource,
    uri: object,
    *,
    symbols: Iterable[str] | str | None = None,
    since: object = None,
    now_ms: int | None = None,
    storage_options: dict[str, str] | None = None,
) -> ExportReport:
    """Commit every closed, complete hour of ``symbols`` (default: all in the store) that the
    table at ``uri`` does not have yet, oldest first, one Delta transaction per symbol-hour.

    ``uri`` is a local directory or an object-store URL (``s3://``, ``gs://``, ``az://``;
    credentials from the environment as deltalake reads them, or ``storage_options``); the table
    is created on first use, partitioned by ``symbol`` and ``date``, zstd Parquet. ``since``
    (any time :mod:`tradelab.timerange` reads) skips the hours before it when the table has
    nothing newer of the symbol. An hour is exported once a later trade is stored and no
    repairable hole may hold trades of it; a symbol's later hours wait behind a held one (the
    report says why). Returns an :class:`ExportReport`.
    """
    t0 = time.perf_counter()
    target_uri = normalize_uri(uri)
    since_ms = _ms(since, "since")
    now = int(time.time() * 1000) if now_ms is None else int(now_ms)
    names = _symbols(store, symbols)
    target = DeltaTarget(target_uri, storage_options, f"tradelab {__version__}")
    report = ExportReport(target_uri)
    for sym in names:
        report.symbols.append(_export_symbol(store, target, sym, since_ms, None, now))
    report.version = target.version
    report.seconds = time.perf_counter() - t0
    log.log(
        logging.INFO if report.hours else logging.DEBUG,
        "Exported %d hours (%d trades) to %s",
        report.hours,
        report.trades,
        target_uri,
        extra={"trades": report.trades},
    )
    return report


def export_hour(
    store: TradeSource,
    uri: object,
    symbol: str,
    hour_ms: int,
    *,
    now_ms: int | None = None,
    storage_options: dict[str, str] | None = None,
) -> SymbolExport:
    """Export ``symbol``'s hour starting at ``hour_ms`` (unix ms, floored to the hour) — and,
    first, any earlier hour of it the table lacks, since hours go in order. What a collector
    calls when an hour closes; a no-op when the table has the hour already."""
    sym = validate_symbol(symbol)
    if isinstance(hour_ms, bool) or not isinstance(hour_ms, int):
        raise InvalidParameterError(f"hour_ms must be unix milliseconds (an int), got {hour_ms!r}")
    now = int(time.time() * 1000) if now_ms is None else int(now_ms)
    target = DeltaTarget(normalize_uri(uri), storage_options, f"tradelab {__version__}")
    return _export_symbol(store, target, sym, None, hour_floor(hour_ms) + HOUR_MS, now)


def _export_symbol(
    store: TradeSource,
    target: DeltaTarget,
    sym: str,
    since_ms: int | None,
    until_ms: int | None,
    now_ms: int,
) -> SymbolExport:
    out = SymbolExport(sym)
    stats = store.stats(sym)
    first_ms = _time_ms(getattr(stats, "first_time", None))
    last_ms = _time_ms(getattr(stats, "last_time", None))
    done = target.watermark(sym)
    out.through_ms = None if done is None else done * HOUR_MS
    if first_ms is None or last_ms is None:
        out.note = "no trades stored"
        return out
    start = hour_floor(first_ms)
    if done is not None:
        resume = (done + 1) * HOUR_MS
        if resume < start:
            out.note = (
                f"hours {hour_text(resume)}–{hour_text(start - HOUR_MS)} left the store "
                "(retention) before they were exported"
            )
        start = max(start, resume)
    if since_ms is not None and done is None:
        start = max(start, hour_floor(since_ms))
    holes = hole_spans(store.holes(sym))
    hour = start
    while hour <= last_ms and (until_ms is None or hour < until_ms):
        state = hour_state(hour, holes, last_ms, now_ms)
        if not state.ready:
            out.waiting = state.reason
            break
        trades = store.trades(sym, hour, hour + HOUR_MS)
        if trades.height:
            wrote = target.commit_hour(sym, state, trades)
            if wrote.committed:
                out.hours += 1
                out.trades += trades.height
                out.bytes += wrote.bytes
                out.incomplete_hours += not state.complete
                log.debug(
                    "Exported %s %s: %d trades (table version %d)",
                    sym,
                    hour_text(hour),
                    trades.height,
                    wrote.version,
                )
            else:
                out.lost_races += 1
            out.through_ms = hour
        hour += HOUR_MS
    return out
