"""The trade store's key layout, constants and small value types — pure code, no I/O.

Every module of the store (:mod:`.tradestore` and its helpers) builds keys and
converts times through these functions, so the byte layout documented in
docs/storage-layout.md is written down exactly once::

    tradelab:store                  the marker (``MARKER``)
    trades:{SYMBOL}:{13-digit ms}   a block (``block_key``; ``block_end`` bounds a range)
    index:{SYMBOL}:{13-digit ms}    its header (``index_key``)
    symbol:{SYMBOL}                 the symbol's counters (``symbol_key``, ``empty_meta``)
    unrepairable:{SYMBOL}           id ranges the exchange cannot serve (``unrepairable_key``)
    hist:{SYMBOL}:{13-digit ms}     a closed hour's price histogram (``hist_key``,
                                    :mod:`tradelab.store.histograms`)
    hday:{SYMBOL}:{13-digit ms}     a closed day's price histogram
                                    (:func:`tradelab.store.dayhists.hday_key`)

Also here: :class:`StoreStats` (what :meth:`TradeStore.stats` returns), :class:`SymbolState`
(the writer's in-memory counters and block index of one symbol) and the argument/time helpers
(:func:`ms_arg`, :func:`retention_days_arg`, :func:`utc_datetime`).
These names are public inside :mod:`tradelab.store` (its modules share them) but not exported
by the package.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tradelab.config import retention_days_from_env
from tradelab.exceptions import InvalidParameterError, InvalidWindowError
from tradelab.schema import TRADE_COLUMNS, to_ms
from tradelab.store.coverage import IndexEntry

__all__ = [
    "HOUR_MS",
    "MARKER",
    "MAX_MERGE_ROWS",
    "MAX_MS",
    "MINUTE_MS",
    "OWNER_FILE",
    "RAW_BLOCK_ROWS",
    "SMALL_BLOCK_ROWS",
    "SMALL_CACHE_ROWS",
    "SPAN_MS",
    "STORE_FORMAT",
    "StoreStats",
    "SymbolState",
    "block_end",
    "block_key",
    "columns_arg",
    "empty_meta",
    "floor_to",
    "hist_key",
    "hist_prefix",
    "index_key",
    "index_prefix",
    "ms_arg",
    "retention_days_arg",
    "stats_from_meta",
    "symbol_key",
    "unrepairable_key",
    "utc_datetime",
    "window_arg",
]

STORE_FORMAT = 1
OWNER_FILE = "TRADELAB-WRITER.json"
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
SPAN_MS = 600_000
"""The open hour's closed ten-minute spans are rolled up into one block
(:func:`tradelab.store.plan.roll_up_ranges`)."""
MAX_MS = 10**13 - 1  # 13 digits: until the year 2286
SMALL_BLOCK_ROWS = 5_000
MAX_MERGE_ROWS = 250_000
"""A roll-up merges blocks into one only up to this many trades (~3 BTCUSDT hours at its usual
rate): merging holds the rows decoded several times over, so under a flood (130 k trades/s puts
millions in one minute) an unbounded merge took +500 MB. Hours busier than this keep a few
blocks; readers do not care, profiles decode such hours instead of using a histogram."""
RAW_BLOCK_ROWS = 1_000
"""An append's new block of at most this many trades is stored unnarrowed
(:func:`tradelab.store.blocks.encode_raw_block`: ~10 µs instead of ~75 for a 1-second batch);
the roll-up of its minute or hour stores the merge narrowed. Larger ones (a bulk load, a
flood's batches) are narrowed at once: unnarrowed they would take ~5 times the space."""
SMALL_CACHE_ROWS = 200_000
"""At most this many rows of small blocks kept decoded per symbol (~11 MB): appends faster than
the collector's one batch a second (a bulk load in small batches, a flood) must not grow the
writer's memory; blocks beyond it are read back at roll-up like any other."""
"""Blocks up to this many trades stay decoded in the writer's memory until rolled up."""
MARKER = b"tradelab:store"
"""The key whose value ({"format", "created_ms"}) says a RocksDB directory is a tradelab store."""


def block_key(sym: str, ms: int) -> bytes:
    """The key of the block of ``sym`` whose first trade is at ``ms`` (byte order = time order)."""
    return b"trades:%s:%013d" % (sym.encode(), ms)


def block_end(sym: str, ms: int) -> bytes:
    """The exclusive upper-bound key for blocks of ``sym`` starting before ``ms``."""
    return block_key(sym, ms) if ms <= MAX_MS else b"trades:%s;" % sym.encode()


def index_key(sym: str, ms: int) -> bytes:
    """The key of that block's header in the index."""
    return b"index:%s:%013d" % (sym.encode(), ms)


def index_prefix(sym: str) -> bytes:
    """The prefix of every header key of ``sym`` (what a scan of its index starts from)."""
    return b"index:%s:" % sym.encode()


def hist_key(sym: str, hour: int) -> bytes:
    """The key of the price histogram of ``sym``'s hour starting at ``hour`` (unix ms). The
    ``hist:`` prefix is new and no other scan (``trades:``, ``index:``, ``symbol:``) meets it."""
    return b"hist:%s:%013d" % (sym.encode(), hour)


def hist_prefix(sym: str) -> bytes:
    """The prefix of every histogram key of ``sym``."""
    return b"hist:%s:" % sym.encode()


def symbol_key(sym: str) -> bytes:
    """The key of ``sym``'s counters."""
    return b"symbol:%s" % sym.encode()


def unrepairable_key(sym: str) -> bytes:
    """The key of ``sym``'s unrepairable id ranges (MessagePack ``[[first, last], ...]``)."""
    return b"unrepairable:%s" % sym.encode()


def floor_to(ms: int, unit: int) -> int:
    """``ms`` rounded down to a multiple of ``unit`` (a minute or an hour)."""
    return ms - ms % unit


def utc_datetime(ms: int | None) -> dt.datetime | None:
    """Unix ms as a UTC datetime (None stays None)."""
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


@dataclass(frozen=True)
class StoreStats:
    """What the store holds for one symbol, read from counters (no trade is decoded).

    ``bytes_on_disk`` is the store directory's size on disk shared out by each symbol's share of
    the encoded block bytes (RocksDB does not account per key prefix).
    """

    symbol: str
    trade_count: int
    first_time: dt.datetime | None
    last_time: dt.datetime | None
    first_agg_id: int | None
    last_agg_id: int | None
    bytes_on_disk: int


def stats_from_meta(sym: str, meta: dict[str, Any], bytes_on_disk: int) -> StoreStats:
    """The :class:`StoreStats` of ``sym`` from its counters ``meta``: times and ids only while
    it holds trades (after retention empties it, the counters keep where collection stopped)."""
    count = meta["count"]
    return StoreStats(
        symbol=sym,
        trade_count=count,
        first_time=utc_datetime(meta["first_time"]) if count else None,
        last_time=utc_datetime(meta["last_time"]) if count else None,
        first_agg_id=meta["first_agg_id"] if count else None,
        last_agg_id=meta["last_agg_id"] if count else None,
        bytes_on_disk=bytes_on_disk,
    )


@dataclass
class SymbolState:
    """The writer's authoritative in-memory copy of one symbol's counters and block index.

    ``meta`` is the ``symbol:`` document, ``index`` maps a block key to its header
    ``(n, t_min, t_max, id_min, id_max, bytes, inner runs)`` (see
    :mod:`tradelab.store.coverage`), ``keys`` lists the block keys sorted and ``unrepairable``
    the merged id ranges the exchange cannot serve. ``small`` keeps the columns of the small
    blocks this writer wrote (1-second and minute blocks of at most :data:`SMALL_BLOCK_ROWS`
    trades, as written: the same values, never changed) until a roll-up merges them away, so
    a roll-up merges them without reading and decoding them back (a minute roll-up: ~4.5 ms
    of CPU, the GIL held, otherwise); it changes with ``index``, under the writer's lock.
    ``hists`` maps an hour to the fingerprint of the block its stored histogram was built from
    (:mod:`tradelab.store.histograms`), so the roll-up worker knows which closed hours still
    lack a valid one.
    """

    meta: dict[str, Any]
    index: dict[int, IndexEntry] = field(default_factory=dict)
    keys: list[int] = field(default_factory=list)  # sorted block keys
    unrepairable: list[tuple[int, int]] = field(default_factory=list)
    small: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    hists: dict[int, tuple[int, ...]] = field(default_factory=dict)
    small_rows: int = 0
    """The rows ``small`` holds (kept up to date with it: an append needs it, not a sum)."""
    raw: set[int] = field(default_factory=set)
    """Keys of the blocks this writer stored unnarrowed (:data:`RAW_BLOCK_ROWS`): a closed
    hour left with one of them alone is re-encoded by the roll-up."""

    def keys_between(self, lo: int, hi: int) -> list[int]:
        """The block keys in ``[lo, hi)``, ascending."""
        return self.keys[bisect.bisect_left(self.keys, lo) : bisect.bisect_left(self.keys, hi)]


def empty_meta() -> dict[str, Any]:
    """The counters of a symbol with nothing stored."""
    return {
        "count": 0,
        "first_time": None,
        "last_time": None,
        "first_agg_id": None,
        "last_agg_id": None,
        "bytes": 0,
    }


def ms_arg(value: Any, name: str) -> int:
    """Unix ms from a tz-aware datetime or a number (numpy integers included)."""
    if isinstance(value, np.integer):
        value = int(value)
    return to_ms(value, name=name)


def retention_days_arg(value: object) -> float:
    """The ``retention_days`` of a store: ``value`` if given, else ``TRADELAB_RETENTION_DAYS``
    (read as :mod:`tradelab.config` reads it for the collector), else the default of 7 days."""
    if value is None:
        value = retention_days_from_env()
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (0 < value < float("inf"))
    ):
        raise InvalidParameterError(
            f"retention_days must be a finite number of days > 0, got {value!r}"
        )
    return float(value)


def window_arg(start: Any, end: Any) -> tuple[int, int]:
    """A query's ``[start, end)`` as unix ms, refused if empty or outside 1970..2286."""
    lo, hi = ms_arg(start, "start"), ms_arg(end, "end")
    if lo < 0 or hi > MAX_MS + 1:
        raise InvalidWindowError(
            f"window [{lo}, {hi}) ms lies outside 1970..2286 (0..{MAX_MS + 1} unix ms)"
        )
    if hi <= lo:
        raise InvalidWindowError(
            f"end ({utc_datetime(hi)}) must be after start ({utc_datetime(lo)}): the window "
            "is [start, end)"
        )
    return lo, hi


def columns_arg(columns: object) -> tuple[str, ...]:
    """The trade columns a query returns: all (None) or the names given, in that order."""
    allowed = ", ".join(TRADE_COLUMNS)
    if columns is None:
        return TRADE_COLUMNS
    if isinstance(columns, str | bytes) or not isinstance(columns, Iterable):
        raise InvalidParameterError(
            f"columns must be None (all) or a list of trade column names, e.g. "
            f"['price', 'qty'], got {columns!r}; the trade columns are {allowed}"
        )
    names = tuple(columns)
    unknown = [c for c in names if not isinstance(c, str) or c not in TRADE_COLUMNS]
    if unknown:
        raise InvalidParameterError(
            f"unknown column(s) {', '.join(map(repr, unknown))}; the trade columns are {allowed}"
        )
    if not names:
        raise InvalidParameterError(f"columns names no column; give some of {allowed}, or None")
    twice = sorted({c for c in names if names.count(c) > 1})
    if twice:
        raise InvalidParameterError(f"columns names {', '.join(twice)} more than once")
    return names
