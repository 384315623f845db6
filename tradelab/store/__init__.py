"""The trade store: RocksDB blocks of MessagePack columns, keyed ``trades:{SYMBOL}:{unix_ms}``.

:mod:`.tradestore` holds :class:`TradeStore` (append, time-range reads as Polars frames,
retention, stats). Its helpers: :mod:`.blocks` (the pure block codec), :mod:`.keys` (key layout
and per-symbol state), :mod:`.opening` (opening, locking, the owner file, secondaries),
:mod:`.plan` (turning an append, a roll-up or a retention cut into one atomic WriteBatch),
:mod:`.reading` (range scans), :mod:`.rollups` (the background roll-up thread),
:mod:`.documents` (the small ``meta:`` documents), :mod:`.errors` (RocksDB's errors as one line;
:class:`CorruptStoreError` for a damaged store), :mod:`.gate`, :mod:`.recovery` (reopening
after a full disk) and :mod:`.scratch` (readers' scratch directories, read-only media).
:mod:`.registry` keeps one store per path per process (``open_store``) and serves the
notebook's TradeBuffer (``trades``). Names these modules share are public inside the package;
only the names below are its API. The layout is explained in ``docs/storage-layout.md``.
"""

from __future__ import annotations

from tradelab.store.errors import CorruptStoreError
from tradelab.store.registry import close_stores, open_store, trades
from tradelab.store.tradestore import OWNER_FILE, STORE_FORMAT, StoreStats, TradeStore

__all__ = [
    "OWNER_FILE",
    "STORE_FORMAT",
    "CorruptStoreError",
    "StoreStats",
    "TradeStore",
    "close_stores",
    "open_store",
    "trades",
]
