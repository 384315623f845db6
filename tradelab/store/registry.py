"""The notebook's TradeBuffer: ``tradelab.trades("BTCUSDT", hours=24)`` (or
``start=``/``end=`` for a range), ``open_store``, and where a window is read from.

``open_store`` keeps one :class:`~tradelab.store.TradeStore` per path for the whole process:
the collector's writer when this process collects, otherwise one reader (a RocksDB secondary
that catches up with the writing process before each query). Front-ends (magic, CLI, MCP
server) all go through it, so a notebook that runs the collector queries the very store it
writes, and one that does not simply follows another process's writer.

``source=`` (a team's shared Delta Lake table, ``tradelab export``) is the alternative to a local
store: :func:`table_source` checks it and :func:`open_source` is the one place that decides where
a window is read from — the store (``store=``, ``data=``, the configured default) or the table
(:class:`TableReader`, read lazily by :func:`tradelab.scale.scan_trades`). ``trades`` here and
every analytics function (:mod:`tradelab.analytics.api`) go through it, and every front-end
passes ``source`` through.
"""

from __future__ import annotations

import atexit
import datetime as dt
import math
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

__all__ = [
    "TableReader",
    "close_stores",
    "open_source",
    "open_store",
    "resolve_store",
    "table_source",
    "trades",
]

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


class TableReader:
    """A shared Delta table (``tradelab export``) read the way a store answers.

    ``trades(symbol, start_ms, end_ms)`` is :func:`tradelab.scale.scan_trades`: the trade
    schema, sorted by ``agg_id``, ``[start, end)``, read lazily (only the window's partitions
    and files). ``where(symbol)`` says where the table has trades of ``symbol``. A table has no
    retention of the store's (it keeps what the team decides), so ``retention_days`` is None.
    Credentials for ``s3://``, ``gs://``, ``az://`` come from the environment.
    """

    retention_days = None

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def trades(self, symbol: str, start_ms: int, end_ms: int) -> pl.DataFrame:
        """The trades of ``symbol`` with ``start_ms <= time < end_ms`` in the table."""
        from tradelab.scale.reading import scan_trades  # deltalake only when a table is read

        return scan_trades(self.uri, symbol, start_ms, end_ms)

    def where(self, symbol: str) -> str:
        """``"BTCUSDT has trades in /t from … to … UTC"`` (or that it holds none)."""
        from tradelab.scale.reading import where_in_table

        return where_in_table(self.uri, symbol)

    def __repr__(self) -> str:
        return f"TableReader({self.uri!r})"


def table_source(
    source: object, *, store: object = None, data: object = None
) -> TableReader | None:
    """``source=`` checked: None (read a local store), or the :class:`TableReader` of the Delta
    table at ``source`` — a local directory or an ``s3://``, ``gs://``, ``az://`` URL (the
    scheme is checked now, the table is opened when read). ``source`` with ``store`` or
    ``data`` is an :class:`~tradelab.exceptions.InvalidParameterError`: one or the other."""
    if source is None:
        return None
    if store is not None or data is not None:
        given = "store" if store is not None else "data"
        raise InvalidParameterError(
            f"give either source (a shared Delta table) or {given} (a local store), not both"
        )
    from tradelab.scale.extra import normalize_uri  # no deltalake needed to check a URI

    try:
        return TableReader(normalize_uri(source))
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"source: {str(exc).removeprefix('uri ')}") from None


def resolve_store(store: object, data: str | os.PathLike[str] | None) -> TradeStore:
    """The local store to read: ``store`` (an open one) or :func:`open_store` of ``data``
    (None: the configured directory); both given is an error."""
    if store is None:
        return open_store(data)
    if not isinstance(store, TradeStore):
        raise InvalidParameterError(
            f"store must be a tradelab.TradeStore (or None for the default store), got "
            f"{type(store).__name__}"
        )
    if data is not None:
        raise InvalidParameterError("give either store (an open TradeStore) or data, not both")
    return store


def open_source(
    store: object, data: str | os.PathLike[str] | None, table: TableReader | None
) -> TradeStore | TableReader:
    """Where a window is read from, opened only now that every argument is valid: the table
    of ``source=`` (:func:`table_source`) when given, else the local store."""
    return table if table is not None else resolve_store(store, data)


# Writers release their lock and owner file, and the roll-up worker stops, at interpreter exit.
atexit.register(close_stores)


def trades(
    symbol: str,
    hours: int | float | None = None,
    *,
    start: dt.datetime | int | str | None = None,
    end: dt.datetime | int | str | None = None,
    store: TradeStore | None = None,
    source: str | os.PathLike[str] | None = None,
) -> pl.DataFrame:
    """``symbol``'s trades over the last ``hours`` hours (1–168, default 1), or over the range
    ``start``–``end``, as a Polars frame sorted by ``agg_id``, in the trade schema.

    The window is ``[end - hours, end)`` with ``end`` defaulting to now, or ``[start, end)``
    (``end`` default: now). ``start``/``end`` are timezone-aware datetimes, unix ms or ISO-8601
    strings (no zone = UTC); giving both ``hours`` and ``start``, an inverted range or one
    longer than the store's retention raises :class:`~tradelab.exceptions.InvalidWindowError`.
    ``store`` defaults to :func:`open_store` on the configured data directory.

    ``source`` reads a team's shared Delta table instead (``tradelab export``; a local
    directory or an ``s3://``, ``gs://``, ``az://`` URL): the same schema and trades as the
    store that exported them, read lazily; a range is not capped at the store's retention
    (the table keeps what the team decides). Not together with ``store``.
    """
    sym = validate_symbol(symbol)
    table = table_source(source, store=store)
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
        max_hours=math.inf if table is not None else max(float(MAX_WINDOW_HOURS), days * 24),
        default_hours=1,
    )
    return open_source(store, None, table).trades(sym, window.start_ms, window.end_ms)
