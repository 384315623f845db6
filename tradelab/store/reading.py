"""Reading the trade store: blocks out of one RocksDB snapshot, into numpy columns.

Plain functions of an open database handle (the writer's or a reader's), used by
:class:`tradelab.store.TradeStore`'s queries. A query ``[lo, hi)`` seeks to
``trades:{SYMBOL}:{floor_hour(lo)}`` (a block never crosses an hour and is keyed by its first
trade), iterates with an upper bound at ``hi``, skips blocks that end before ``lo``, decodes the
blocks wholly inside straight into preallocated arrays and trims the ≤ 2 edge blocks with a
mask. The ``ReadOptions`` object must outlive its iterator: a temporary intermittently returns
wrong rows (docs/storage-layout.md). Also here: a symbol's counters (:func:`read_meta`) and the
writer's in-memory copy of them with the block index (:func:`load_state`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import msgpack
import numpy as np
import rocksdict as rd

from tradelab.store.blocks import (
    Columns,
    decode_block,
    decode_into,
    empty_columns,
    sort_dedupe,
    take,
)
from tradelab.store.coverage import IndexEntry, entry_from_stored
from tradelab.store.keys import (
    HOUR_MS,
    SymbolState,
    block_end,
    block_key,
    empty_meta,
    floor_to,
    index_prefix,
    symbol_key,
    unrepairable_key,
)

__all__ = [
    "count_blocks",
    "iter_blocks",
    "iter_docs",
    "load_state",
    "read_ids",
    "read_index",
    "read_meta",
    "read_range",
    "read_unrepairable",
    "symbol_names",
]


def iter_docs(db: rd.Rdict, sym: str, lo: int, hi: int) -> Iterator[dict[str, Any]]:
    """Unpacked blocks that overlap ``[lo, hi)``, in key order, from one snapshot."""
    ro = rd.ReadOptions()  # must outlive the iterator (see docs/storage-layout.md)
    ro.set_iterate_upper_bound(block_end(sym, hi))
    items = db.values(from_key=block_key(sym, floor_to(lo, HOUR_MS)), read_opt=ro)
    try:
        for value in items:
            try:
                doc = msgpack.unpackb(value, raw=False)
                overlaps = doc["t1"] >= lo
            except Exception:
                decode_block(value)  # raises NotADatabaseError with the reason
                raise
            if overlaps:
                yield doc
    finally:
        del items, ro


def iter_blocks(db: rd.Rdict, sym: str, lo: int, hi: int) -> Iterator[Columns]:
    """Decoded blocks overlapping ``[lo, hi)``, trimmed to it, from one snapshot."""
    for doc in iter_docs(db, sym, lo, hi):
        cols = decode_block(doc)[1]
        if doc["t0"] < lo or doc["t1"] >= hi:
            t = cols["time"]
            cols = take(cols, (t >= lo) & (t < hi))
        yield cols


def read_range(db: rd.Rdict, sym: str, lo: int, hi: int) -> Columns:
    """The trades of ``sym`` with ``lo <= time < hi`` as columns sorted by agg_id."""
    # blocks wholly inside the window are decoded straight into the output arrays; only
    # the (at most ~2) edge blocks are decoded apart and trimmed
    parts: list[dict[str, Any] | Columns] = []
    total = 0
    for doc in iter_docs(db, sym, lo, hi):
        if doc["t0"] < lo or doc["t1"] >= hi:
            cols = decode_block(doc)[1]
            t = cols["time"]
            cols = take(cols, (t >= lo) & (t < hi))
            total += len(cols["agg_id"])
            parts.append(cols)
        else:
            total += doc["n"]
            parts.append(doc)
    out = {c: np.empty(total, dtype=a.dtype) for c, a in empty_columns().items()}
    off = 0
    for part in parts:
        if "c" in part and "v" in part:
            off += decode_into(part, out, off)  # type: ignore[arg-type]
        else:
            k = len(part["agg_id"])
            for c, a in part.items():
                out[c][off : off + k] = a
            off += k
    return sort_dedupe(out)  # a no-op check unless blocks interleave


def symbol_names(db: rd.Rdict) -> list[str]:
    """Every symbol that has counters (possibly zero trades, after retention), sorted."""
    ro = rd.ReadOptions()
    ro.set_iterate_upper_bound(b"symbol;")
    names = [  # raw_mode: keys are bytes, which the rocksdict stubs cannot know
        cast(bytes, k)[len(b"symbol:") :].decode()
        for k in db.keys(from_key=b"symbol:", read_opt=ro)
    ]
    del ro
    return names


def count_blocks(db: rd.Rdict, sym: str, lo: int, hi: int) -> int:
    """How many block keys a query of ``[lo, hi)`` iterates."""
    ro = rd.ReadOptions()
    ro.set_iterate_upper_bound(block_end(sym, hi))
    n = sum(1 for _ in db.keys(from_key=block_key(sym, floor_to(lo, HOUR_MS)), read_opt=ro))
    del ro
    return n


def read_meta(db: rd.Rdict, sym: str) -> dict[str, Any]:
    """The counters of ``sym`` as stored (zeros and None if it has none yet)."""
    raw = db.get(symbol_key(sym))
    return empty_meta() if raw is None else msgpack.unpackb(raw)


def read_index(db: rd.Rdict, sym: str) -> dict[int, IndexEntry]:
    """Every block header of ``sym`` (key -> header), from one scan of its index."""
    out: dict[int, IndexEntry] = {}
    prefix = index_prefix(sym)
    ro = rd.ReadOptions()
    ro.set_iterate_upper_bound(prefix + b"\xff")
    for k, v in db.items(from_key=prefix, read_opt=ro):
        # raw_mode: keys are bytes, which the rocksdict stubs cannot know.
        out[int(cast(bytes, k)[len(prefix) :])] = entry_from_stored(msgpack.unpackb(v))
    del ro
    return out


def read_unrepairable(db: rd.Rdict, sym: str) -> list[tuple[int, int]]:
    """The id ranges of ``sym`` recorded as unrepairable (sorted, merged)."""
    raw = db.get(unrepairable_key(sym))
    return [] if raw is None else [(int(a), int(b)) for a, b in msgpack.unpackb(raw)]


def read_ids(db: rd.Rdict, sym: str, key: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``agg_id`` and ``time`` columns of one block (empty if it went meanwhile)."""
    raw = db.get(block_key(sym, key))
    if raw is None:
        e = np.empty(0, dtype=np.int64)
        return e, e
    cols = decode_block(raw)[1]
    return cols["agg_id"], cols["time"]


def load_state(db: rd.Rdict, sym: str) -> SymbolState:
    """``sym``'s counters, its whole block index and its unrepairable ranges, read once when
    the writer first needs them."""
    index = read_index(db, sym)
    return SymbolState(
        meta=read_meta(db, sym),
        index=index,
        keys=sorted(index),
        unrepairable=read_unrepairable(db, sym),
    )
