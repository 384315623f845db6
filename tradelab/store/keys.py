"""The trade store's key layout, constants and small value types — pure code, no I/O.

Every module of the store (:mod:`.tradestore` and its helpers) builds keys and
converts times through these functions, so the byte layout documented in
docs/storage-layout.md is written down exactly once::

    trades:{SYMBOL}:{13-digit ms}   a block (``_bkey``; ``_bend`` is a range's upper bound)
    index:{SYMBOL}:{13-digit ms}    its header (``_ikey``)
    symbol:{SYMBOL}                 the symbol's counters (``_skey``, ``_empty_meta``)

Also here: :class:`StoreStats` (what :meth:`TradeStore.stats` returns), ``_SymbolState`` (the
writer's in-memory counters and block index of one symbol) and the argument/time helpers.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tradelab.schema import to_ms

__all__ = [
    "HOUR_MS",
    "MAX_MS",
    "MINUTE_MS",
    "OWNER_FILE",
    "STORE_FORMAT",
    "StoreStats",
]

STORE_FORMAT = 1
OWNER_FILE = "TRADELAB-WRITER.json"
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
MAX_MS = 10**13 - 1  # 13 digits: until the year 2286
_MARKER = b"tradelab:store"


def _bkey(sym: str, ms: int) -> bytes:
    """The key of the block of ``sym`` whose first trade is at ``ms`` (byte order = time order)."""
    return b"trades:%s:%013d" % (sym.encode(), ms)


def _bend(sym: str, ms: int) -> bytes:
    """The exclusive upper-bound key for blocks of ``sym`` starting before ``ms``."""
    return _bkey(sym, ms) if ms <= MAX_MS else b"trades:%s;" % sym.encode()


def _ikey(sym: str, ms: int) -> bytes:
    """The key of that block's header in the index."""
    return b"index:%s:%013d" % (sym.encode(), ms)


def _skey(sym: str) -> bytes:
    """The key of ``sym``'s counters."""
    return b"symbol:%s" % sym.encode()


def _floor(ms: int, unit: int) -> int:
    """``ms`` rounded down to a multiple of ``unit`` (a minute or an hour)."""
    return ms - ms % unit


def _dt(ms: int | None) -> dt.datetime | None:
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


@dataclass
class _SymbolState:
    """The writer's authoritative in-memory copy of one symbol's counters and block index."""

    meta: dict[str, Any]
    index: dict[int, tuple[int, int, int, int, int, int]] = field(default_factory=dict)
    keys: list[int] = field(default_factory=list)  # sorted block keys

    def keys_between(self, lo: int, hi: int) -> list[int]:
        return self.keys[bisect.bisect_left(self.keys, lo) : bisect.bisect_left(self.keys, hi)]


def _empty_meta() -> dict[str, Any]:
    """The counters of a symbol with nothing stored."""
    return {
        "count": 0,
        "first_time": None,
        "last_time": None,
        "first_agg_id": None,
        "last_agg_id": None,
        "bytes": 0,
    }


def _ms_arg(value: Any, name: str) -> int:
    """Unix ms from a tz-aware datetime or a number (numpy integers included)."""
    if isinstance(value, np.integer):
        value = int(value)
    return to_ms(value, name=name)


def _min(a: int | None, b: int) -> int:
    """``min`` where None means "no value yet"."""
    return b if a is None else min(a, b)


def _max(a: int | None, b: int) -> int:
    """``max`` where None means "no value yet"."""
    return b if a is None else max(a, b)


def _dir_size(path: Path) -> int:
    """Bytes of the table files and write-ahead logs (not RocksDB's info LOG files)."""
    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(path):
            with contextlib.suppress(OSError):
                if entry.name.endswith((".sst", ".log", ".blob")) and entry.is_file(
                    follow_symlinks=False
                ):
                    total += entry.stat(follow_symlinks=False).st_size
    return total
