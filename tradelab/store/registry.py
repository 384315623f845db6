"""The notebook's TradeBuffer: ``tradelab.trades("BTCUSDT", hours=24)`` (or
``start=``/``end=`` for a range), and ``open_store``.

``open_store`` keeps one :class:`~tradelab.store.TradeStore` per path for the whole process:
the collector's writer when this process collects, otherwise one reader (a RocksDB secondary
that catches up with the writing process before each query). Front-ends (magic, CLI, MCP
server) all go through it, so a notebook that runs the collector queries the very store it
writes, and one that does not simply follows another process's writer.
"""

from __future__ import annotations

import atexit
import datetime as dt
import os
import threading
import time
from pathlib import Path

import polars as pl

from tradelab.config import (
    MAX_WINDOW_HOURS,
    resolve_data_dir,
    retention_days_from_env,
    validate_symbol,
)
from tradelab.exceptions import InvalidParameterError
from tradelab.store.tradestore import TradeStore
from tradelab.timerange import resolve_window

__all__ = ["close_stores", "open_store", "trades"]

_lock = threading.Lock()
_writers: dict[Path, TradeStore] = {}
_readers: dict[Path, TradeStore] = {}


def _key(path: str | os.PathLike[str] | None) -> Path:
    return resolve_data_dir(path).expanduser().absolute()


def open_store(path: str | os.PathLike[str] | None = None, *, write: bool = False) -> TradeStore:
    """The process-wide store for ``path`` (default: the configured data directory).

    ``write=True`` returns this process's writer, opening it if needed (raises
    :class:`~tradelab.exceptions.StoreLockedError` if another process writes there).
    ``write=False`` returns this process's writer if it has one, else a shared reader (raises
    :class:`~tradelab.exceptions.NoDataError` if nothing was ever collected there).
    """
    if not isinstance(write, bool):
        raise InvalidParameterError(f"write must be True or False, got {write!r}")
    key = _key(path)
    with _lock:
        writer = _writers.get(key)
        if writer is not None and writer.closed:
            del _writers[key]
            writer = None
        if writer is not None:
            return writer
        if write:
            # a reader handed out earlier stays open (someone may hold it); from now on
            # open_store(path) returns the writer
            store = TradeStore(key)
            _writers[key] = store
            return store
        reader = _readers.get(key)
        if reader is None or reader.closed:
            reader = TradeStore(key, readonly=True)
            _readers[key] = reader
        return reader


def close_stores() -> None:
    """Close every store :func:`open_store` opened in this process (tests, shutdown)."""
    with _lock:
        stores = [*_writers.values(), *_readers.values()]
        _writers.clear()
        _readers.clear()
    for s in stores:
        s.close()


# Writers release their lock and owner file, and the roll-up worker stops, at interpreter exit.
atexit.register(close_stores)


def trades(
    symbol: str,
    hours: int | float | None = None,
    *,
    start: dt.datetime | int | str | None = None,
    end: dt.datetime | int | str | None = None,
    store: TradeStore | None = None,
) -> pl.DataFrame:
    """``symbol``'s trades over the last ``hours`` hours (1–168, default 1), or over the range
    ``start``–``end``, as a Polars frame sorted by ``agg_id``, in the trade schema.

    The window is ``[end - hours, end)`` with ``end`` defaulting to now, or ``[start, end)``
    (``end`` default: now). ``start``/``end`` are timezone-aware datetimes, unix ms or ISO-8601
    strings (no zone = UTC); giving both ``hours`` and ``start``, an inverted range or one
    longer than the store's retention raises :class:`~tradelab.exceptions.InvalidWindowError`.
    ``store`` defaults to :func:`open_store` on the configured data directory.
    """
    sym = validate_symbol(symbol)
    if store is not None and not isinstance(store, TradeStore):
        raise InvalidParameterError(
            f"store must be a tradelab.TradeStore (or None for the default), got "
            f"{type(store).__name__}"
        )
    days = store.retention_days if store is not None else retention_days_from_env()
    window = resolve_window(
        hours=hours,
        start=start,
        end=end,
        now_ms=int(time.time() * 1000) + 1,
        max_hours=max(float(MAX_WINDOW_HOURS), days * 24),
        default_hours=1,
    )
    if store is None:
        store = open_store()
    return store.trades(sym, window.start_ms, window.end_ms)
