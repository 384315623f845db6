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

import itertools
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import msgpack
import numpy as np
import polars as pl
import rocksdict as rd

from tradelab.schema import TRADE_COLUMNS, empty_trades
from tradelab.store import buffers
from tradelab.store.blocks import (
    DTYPES,
    Columns,
    columns_to_frame,
    decode_block,
    decode_into,
    decode_rows_into,
    sort_dedupe,
    take,
)
from tradelab.store.coverage import IndexEntry, entry_from_stored
from tradelab.store.histograms import histogram_fingerprint
from tradelab.store.keys import (
    HOUR_MS,
    SymbolState,
    block_end,
    block_key,
    empty_meta,
    floor_to,
    hist_prefix,
    index_prefix,
    symbol_key,
    unrepairable_key,
)
from tradelab.store.smallblocks import SMALL_ROWS, decode_small_into

__all__ = [
    "count_blocks",
    "iter_blocks",
    "iter_docs",
    "load_state",
    "read_frame",
    "read_hist_fingerprints",
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


def _pool() -> ThreadPoolExecutor | None:
    """The decoding threads (one per core beyond this thread, at most 3), made on first use;
    None on a single core."""
    global _POOL
    if _POOL is None and _WORKERS > 1:
        _POOL = ThreadPoolExecutor(_WORKERS - 1, thread_name_prefix="tradelab-decode")
    return _POOL


_WORKERS = max(1, min(4, os.cpu_count() or 1))
_POOL: ThreadPoolExecutor | None = None


def _forget_pool() -> None:
    """In a forked child the parent's decoding threads do not exist: start a pool afresh."""
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget_pool)
_PARALLEL_ROWS = 400_000  # below this, handing blocks to threads costs more than it saves


def _units(work: list[tuple[dict[str, Any], int]]) -> list[tuple[list[dict[str, Any]], int]]:
    """Whole blocks grouped for decoding: each run of adjacent small blocks (the open hour's
    minute and 1-second blocks) together, every larger block alone."""
    units: list[tuple[list[dict[str, Any]], int]] = []
    run_end = -1  # where the current run of small blocks ends (-1: no run open)
    for doc, off in work:
        n = doc["n"]
        if n <= SMALL_ROWS and off == run_end:
            units[-1][0].append(doc)
        else:
            units.append(([doc], off))
        run_end = off + n if n <= SMALL_ROWS else -1
    return units


def _decode_unit(docs: list[dict[str, Any]], out: Columns, off: int) -> None:
    if len(docs) == 1:
        decode_into(docs[0], out, off)
    else:
        decode_small_into(docs, out, off)


def _decode_all(work: list[tuple[dict[str, Any], int]], out: Columns, rows: int) -> None:
    """Decode whole blocks ``(doc, offset)`` into ``out``: runs of small blocks together
    (:mod:`.smallblocks`), large ones one by one; on several cores, contiguous shares of about
    equal rows go to the decoding threads (numpy releases the GIL on these arrays), each
    writing its own rows of the same output arrays."""
    units = _units(work)
    pool = _pool() if rows >= _PARALLEL_ROWS else None
    if pool is None or len(units) < 2:
        for docs, off in units:
            _decode_unit(docs, out, off)
        return
    parts: list[list[tuple[list[dict[str, Any]], int]]] = [[] for _ in range(_WORKERS)]
    share = rows / _WORKERS
    for docs, off in units:
        parts[min(int(off / share), _WORKERS - 1)].append((docs, off))

    def run(part: list[tuple[list[dict[str, Any]], int]]) -> None:
        for docs, off in part:
            _decode_unit(docs, out, off)

    futures = [pool.submit(run, part) for part in parts[1:] if part]
    run(parts[0])
    for f in futures:
        f.result()


def _edge_rows(doc: dict[str, Any], lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """An edge block's ``time`` column and the rows of it inside ``[lo, hi)``."""
    t = buffers.empty(doc["n"], DTYPES["time"])  # an hour block's is ~0.7 MB: reused
    decode_into(doc, {"time": t}, 0)
    return t, np.flatnonzero((t >= lo) & (t < hi))


def _decode_edge(
    doc: dict[str, Any], t: np.ndarray, rows: np.ndarray, out: Columns, off: int
) -> None:
    """Rows ``rows`` (ascending) of an edge block into ``out`` from row ``off``.

    A window cuts an hour block at a time, and times rise with ids, so its rows are one run:
    only that run is decoded (:func:`decode_rows_into`), straight into ``out``, and ``time``
    is copied from the column already decoded. Otherwise (times out of id order) the span
    from the first to the last row is decoded apart and the rows picked from it.
    """
    a, b, k = int(rows[0]), int(rows[-1]) + 1, len(rows)
    rest = {c: arr for c, arr in out.items() if c != "time"}
    if b - a == k:
        if "time" in out:
            out["time"][off : off + k] = t[a:b]
        if rest:
            decode_rows_into(doc, rest, off, a, b)
        return
    span = {c: buffers.empty(b - a, arr.dtype) for c, arr in rest.items()}
    decode_rows_into(doc, span, 0, a, b)
    span["time"] = t[a:b]
    pick = rows - a
    for c, arr in out.items():
        np.take(span[c], pick, out=arr[off : off + k])


def read_range(
    db: rd.Rdict, sym: str, lo: int, hi: int, columns: Sequence[str] = TRADE_COLUMNS
) -> Columns:
    """The trades of ``sym`` with ``lo <= time < hi``, sorted by agg_id: the ``columns`` asked
    for (in that order; only they are decoded)."""
    names = list(columns)
    docs = list(iter_docs(db, sym, lo, hi))
    # blocks arrive in key order; their trades are in agg_id order with no repeats when every
    # block's ids lie above the previous block's (always, unless a backfill's block landed in
    # an hour beside live blocks that overlap it): then there is nothing to sort or dedupe
    ordered = all(a["i1"] < b["i0"] for a, b in itertools.pairwise(docs))
    want = names if ordered or "agg_id" in names else [*names, "agg_id"]
    whole: list[tuple[dict[str, Any], int]] = []
    edges: list[tuple[dict[str, Any], np.ndarray, np.ndarray, int]] = []
    total = 0
    for doc in docs:
        if doc["t0"] < lo or doc["t1"] >= hi:  # an edge block: only its rows in the window
            t, rows = _edge_rows(doc, lo, hi)
            if len(rows):
                edges.append((doc, t, rows, total))
                total += len(rows)
        else:
            whole.append((doc, total))
            total += doc["n"]
    out: Columns = {c: buffers.empty(total, DTYPES[c]) for c in want}  # reused when large
    for doc, t, rows, off in edges:
        _decode_edge(doc, t, rows, out, off)
    del edges
    _decode_all(whole, out, total)
    if not ordered:
        out = sort_dedupe(out)
    return {c: out[c] for c in names}


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


def read_hist_fingerprints(db: rd.Rdict, sym: str) -> dict[int, tuple[int, ...]]:
    """Hour -> the fingerprint of every stored histogram of ``sym`` (one scan of them)."""
    out: dict[int, tuple[int, ...]] = {}
    prefix = hist_prefix(sym)
    ro = rd.ReadOptions()
    ro.set_iterate_upper_bound(prefix + b"\xff")
    for k, v in db.items(from_key=prefix, read_opt=ro):
        fp = histogram_fingerprint(v)
        if fp is not None:
            out[int(cast(bytes, k)[len(prefix) :])] = fp
    del ro
    return out


def load_state(db: rd.Rdict, sym: str) -> SymbolState:
    """``sym``'s counters, its whole block index, its unrepairable ranges and which hour
    histograms it has, read once when the writer first needs them."""
    index = read_index(db, sym)
    return SymbolState(
        meta=read_meta(db, sym),
        index=index,
        keys=sorted(index),
        unrepairable=read_unrepairable(db, sym),
        hists=read_hist_fingerprints(db, sym),
    )


def read_frame(
    db: rd.Rdict, sym: str, lo: int, hi: int, columns: Sequence[str] = TRADE_COLUMNS
) -> pl.DataFrame:
    """:func:`read_range` as a Polars frame of the trade schema's ``columns`` (the arrays
    become its columns without a copy)."""
    cols = read_range(db, sym, lo, hi, columns)
    if not len(next(iter(cols.values()))):
        return empty_trades().select(columns)
    return columns_to_frame(cols)
