"""Read the shared table back the way the store answers: ``scan_trades`` and the profile on it.

``scan_trades(uri, "BTCUSDT", start, end)`` is ``TradeStore.trades`` over the Delta table: the
same columns and types (the trade schema), the same order (by ``agg_id``), the same half-open
window ``start <= time < end``. It reads lazily with ``pl.scan_delta``: the filters on the
partition columns (``symbol``, the UTC ``date``\\s of the window) and on ``time`` are pushed into
the scan, so only the window's files are opened — the hour files of other days and symbols are
pruned from the log's partition values, those of other hours of the same day from the files'
``time`` statistics.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from tradelab.analytics.profile import VolumeProfile, volume_profile
from tradelab.config import validate_symbol
from tradelab.exceptions import InsufficientTradesError, InvalidWindowError
from tradelab.scale.extra import (
    TableError,
    check_storage_options,
    normalize_uri,
    one_line,
    require,
)
from tradelab.scale.hours import date_of
from tradelab.scale.table import open_table
from tradelab.schema import TRADE_COLUMNS
from tradelab.timerange import moment_text, parse_time

__all__ = [
    "Window",
    "collect",
    "lazy_window",
    "resolve",
    "scan_trades",
    "table_contents",
    "volume_profile_from",
    "where_in_table",
    "window_files",
]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class Window:
    """A checked request: table URI, symbol and ``[start_ms, end_ms)``."""

    __slots__ = ("end_ms", "options", "start_ms", "symbol", "uri")

    def __init__(
        self, uri: str, symbol: str, start_ms: int, end_ms: int, options: dict[str, str] | None
    ) -> None:
        self.uri, self.symbol, self.start_ms, self.end_ms = uri, symbol, start_ms, end_ms
        self.options = options

    def text(self) -> str:
        """``2024-08-08 23:54 → 2024-08-09 00:06 UTC``."""
        return f"{moment_text(self.start_ms)} → {moment_text(self.end_ms)} UTC"


def resolve(
    uri: object, symbol: object, start: object, end: object, storage_options: object = None
) -> Window:
    """Check the arguments every reader takes, in the API's order (symbol, window, then the
    table): ``start``/``end`` are datetimes, unix ms or ISO-8601 strings (no zone = UTC)."""
    sym = validate_symbol(symbol)
    lo, _ = parse_time(start, "start")
    hi, _ = parse_time(end, "end")
    if hi <= lo:
        raise InvalidWindowError(
            f"end ({moment_text(hi)}) must be after start ({moment_text(lo)}): the window is "
            "[start, end)"
        )
    return Window(normalize_uri(uri), sym, lo, hi, check_storage_options(storage_options))


def _utc(ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ms)


def lazy_window(win: Window) -> pl.LazyFrame:
    """The window's trades as a lazy scan of the table (partition and time filters pushed
    down), in the trade schema, sorted by ``agg_id``."""
    table = open_table(win.uri, win.options)
    require("deltalake")
    lo, hi = _utc(win.start_ms), _utc(win.end_ms)
    return (
        pl.scan_delta(table)
        .filter(
            pl.col("symbol") == win.symbol,
            pl.col("date").is_between(date_of(win.start_ms), date_of(win.end_ms - 1)),
            pl.col("time") >= lo,
            pl.col("time") < hi,
        )
        .select(TRADE_COLUMNS)
        .with_columns(pl.col("time").dt.cast_time_unit("ms"))
        .sort("agg_id")
    )


def scan_trades(
    uri: object,
    symbol: str,
    start: object,
    end: object,
    *,
    storage_options: dict[str, str] | None = None,
) -> pl.DataFrame:
    """Trades of ``symbol`` with ``start <= time < end`` from the Delta table at ``uri``,
    sorted by ``agg_id``, in the trade schema — what :meth:`tradelab.TradeStore.trades` returns
    for the same trades. Empty when the table holds none there."""
    win = resolve(uri, symbol, start, end, storage_options)
    return collect(lazy_window(win), win)


def collect(frame: pl.LazyFrame, win: Window) -> pl.DataFrame:
    """Run a scan of the table, storage failures as :class:`TableError`."""
    try:
        return frame.collect()
    except Exception as exc:
        raise TableError(f"cannot read {win.symbol} from {win.uri}: {one_line(exc)}") from None


def window_files(win: Window, table: Any = None) -> pl.DataFrame:
    """The data files of the window, from the log alone (no file is opened): ``path`` (full
    URI), ``rows``, ``min_ms``/``max_ms`` (trade times), ``min_agg_id``; sorted by agg id."""
    table = open_table(win.uri, win.options) if table is None else table
    try:
        adds = pl.DataFrame(table.get_add_actions(flatten=True))
    except Exception as exc:
        raise TableError(f"cannot list the files of {win.uri}: {one_line(exc)}") from None
    empty = pl.DataFrame(
        schema={
            "path": pl.String,
            "rows": pl.Int64,
            "min_ms": pl.Int64,
            "max_ms": pl.Int64,
            "min_agg_id": pl.Int64,
        }
    )
    if adds.height == 0:
        return empty
    root = str(table.table_uri).removeprefix("file://").rstrip("/")
    files = adds.filter(
        pl.col("partition.symbol") == win.symbol,
        pl.col("partition.date").is_between(date_of(win.start_ms), date_of(win.end_ms - 1)),
    ).select(
        (pl.lit(root + "/") + pl.col("path")).alias("path"),
        pl.col("num_records").cast(pl.Int64).alias("rows"),
        pl.col("min.time").dt.epoch("ms").alias("min_ms"),
        pl.col("max.time").dt.epoch("ms").alias("max_ms"),
        pl.col("min.agg_id").cast(pl.Int64).alias("min_agg_id"),
    )
    return files.filter((pl.col("max_ms") >= win.start_ms) & (pl.col("min_ms") < win.end_ms)).sort(
        "min_agg_id"
    )


def table_contents(uri: object, *, storage_options: Any = None) -> pl.DataFrame:
    """What the table holds, per symbol, from the log alone (no data file is opened):
    ``symbol``, ``trades``, ``files``, ``bytes``, ``first_ms``/``last_ms`` (trade times),
    sorted by symbol. Raises :class:`~tradelab.exceptions.NoDataError` when there is no table."""
    target = normalize_uri(uri)
    table = open_table(target, check_storage_options(storage_options))
    try:
        adds = pl.DataFrame(table.get_add_actions(flatten=True))
    except Exception as exc:
        raise TableError(f"cannot list the files of {target}: {one_line(exc)}") from None
    if adds.height == 0:
        return pl.DataFrame(
            schema={
                "symbol": pl.String,
                "trades": pl.Int64,
                "files": pl.Int64,
                "bytes": pl.Int64,
                "first_ms": pl.Int64,
                "last_ms": pl.Int64,
            }
        )
    return (
        adds.group_by(pl.col("partition.symbol").alias("symbol"))
        .agg(
            pl.col("num_records").cast(pl.Int64).sum().alias("trades"),
            pl.len().cast(pl.Int64).alias("files"),
            pl.col("size_bytes").cast(pl.Int64).sum().alias("bytes"),
            pl.col("min.time").dt.epoch("ms").min().alias("first_ms"),
            pl.col("max.time").dt.epoch("ms").max().alias("last_ms"),
        )
        .sort("symbol")
    )


def where_in_table(uri: object, symbol: str, *, storage_options: Any = None) -> str:
    """``"BTCUSDT has trades in /t from 2024-08-08 23:00 to 2024-08-09 00:05 UTC"``, or
    ``"the table at /t holds no BTCUSDT trades"``, from the log's file statistics."""
    sym = validate_symbol(symbol)
    target = normalize_uri(uri)
    table = open_table(target, check_storage_options(storage_options))
    adds = pl.DataFrame(table.get_add_actions(flatten=True))
    if adds.height:
        adds = adds.filter(pl.col("partition.symbol") == sym)
    if adds.height == 0:
        return f"the table at {target} holds no {sym} trades"
    lo = int(adds["min.time"].dt.epoch("ms").min())  # type: ignore[arg-type]
    hi = int(adds["max.time"].dt.epoch("ms").max())  # type: ignore[arg-type]
    return f"{sym} has trades in {target} from {moment_text(lo)} to {moment_text(hi)} UTC"


def volume_profile_from(
    uri: object,
    symbol: str,
    start: object,
    end: object,
    *,
    storage_options: dict[str, str] | None = None,
    **profile_kwargs: Any,
) -> VolumeProfile:
    """:func:`tradelab.volume_profile` of the window's trades read from the table
    (:func:`scan_trades`); ``profile_kwargs`` are its ``row_size``, ``rows``, ``tick_size``,
    ``value_area``, ``method``. The profile's ``start``/``end`` are the window."""
    win = resolve(uri, symbol, start, end, storage_options)
    trades = collect(lazy_window(win), win)
    if trades.height == 0:
        raise InsufficientTradesError(
            f"{win.symbol}: no trades in the table from {win.text().replace(' → ', ' to ')}; "
            f"{where_in_table(win.uri, win.symbol, storage_options=win.options)}",
            found=0,
            needed=1,
        )
    return volume_profile(
        trades, symbol=win.symbol, start=win.start_ms, end=win.end_ms, **profile_kwargs
    )
