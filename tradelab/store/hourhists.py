"""Hour histograms in the store: which closed hours still need one (the writer), and a window's
price histogram read from them plus the trades of the hours without one (readers).

The codec and the fingerprint rule are in :mod:`tradelab.store.histograms`. The writer puts a
histogram in the same batch as the block it describes when a roll-up merges a closed hour into
one block (:func:`tradelab.store.plan.plan_to_batch`); the roll-up worker also adds the
histograms of closed hours that became one block otherwise — an hour appended whole and closed
later, a store written before histograms existed — with :func:`missing_histograms`,
:func:`histogram_of_block` and :func:`histogram_batch`.

A window ``[lo, hi)`` (:func:`window_histograms`) takes the histogram of every hour wholly
inside it whose index shows exactly one block with the histogram's fingerprint, and decodes
the ``price``, ``qty`` and ``buyer_is_maker`` of everything else (the partial edge hours, the
open hour, an hour a backfill changed, hours of an old store) — so its answer is always that of
the trades themselves. The index, the histograms and the trades are each read once; an hour is
used whole from one of them, never both.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import msgpack
import rocksdict as rd

from tradelab.store.blocks import Columns, decode_block
from tradelab.store.coverage import IndexEntry, entry_from_stored
from tradelab.store.histograms import (
    HIST_COLUMNS,
    Fingerprint,
    HourHistogram,
    build_histogram,
    decode_histogram,
    fingerprint_of,
)
from tradelab.store.keys import (
    HOUR_MS,
    SymbolState,
    block_key,
    floor_to,
    hist_key,
    index_key,
)
from tradelab.store.plan import BlockReader
from tradelab.store.reading import read_range

__all__ = [
    "WindowHistograms",
    "add_histograms",
    "histogram_batch",
    "histogram_of_block",
    "missing_histograms",
    "window_histograms",
]


def missing_histograms(st: SymbolState) -> list[tuple[int, int, Fingerprint]]:
    """``(hour, block key, fingerprint)`` of every closed hour stored as exactly one block
    without a histogram of that block (call under the writer's lock)."""
    last = st.meta["last_time"]
    if last is None:
        return []
    open_hour = floor_to(last, HOUR_MS)
    per_hour: dict[int, list[int]] = {}
    for k in st.keys[: bisect.bisect_left(st.keys, open_hour)]:
        per_hour.setdefault(floor_to(k, HOUR_MS), []).append(k)
    todo = []
    for hour, keys in per_hour.items():
        if len(keys) == 1:
            fp = fingerprint_of(keys[0], st.index[keys[0]])
            if st.hists.get(hour) != fp:
                todo.append((hour, keys[0], fp))
    return todo


def histogram_of_block(read: BlockReader, sym: str, key: int, fp: Fingerprint) -> bytes | None:
    """The histogram value of block ``key`` as stored now (None: gone, or not exact-able);
    reads and builds outside the writer's lock."""
    raw = read(block_key(sym, key))
    if raw is None or len(raw) != fp[4]:
        return None
    cols = decode_block(raw)[1]
    return build_histogram(cols, fp)


def histogram_batch(
    sym: str, st: SymbolState, hour: int, key: int, fp: Fingerprint, value: bytes | None
) -> rd.WriteBatch | None:
    """Under the writer's lock: the batch putting ``value`` as ``hour``'s histogram if the
    hour is still that one block (else None: a later round sees the hour as it is then). A
    value of None (trades no exact histogram can hold) writes nothing; the caller notes the
    fingerprint anyway, so the hour is not rebuilt at every round."""
    keys = st.keys_between(hour, hour + HOUR_MS)
    if keys != [key] or fingerprint_of(key, st.index[key]) != fp:
        return None
    batch = rd.WriteBatch(raw_mode=True)
    if value is not None:
        batch.put(hist_key(sym, hour), value)
    return batch


def add_histograms(
    read: BlockReader,
    sym: str,
    st: SymbolState,
    lock: threading.RLock,
    write: Callable[[rd.WriteBatch, str], None],
) -> int:
    """The roll-up worker's second job: the histogram of every closed hour of ``sym`` stored
    as one block without one, each read and built outside the writer's ``lock`` and written
    (``write``, one small batch) only if the hour is still that block. Returns how many."""
    with lock:
        todo = missing_histograms(st)
    done = 0
    for hour, key, fp in todo:
        value = histogram_of_block(read, sym, key, fp)
        with lock:
            batch = histogram_batch(sym, st, hour, key, fp, value)
            if batch is not None:
                write(batch, f"writing the histogram of an hour of {sym}")
                st.hists[hour] = fp
                done += value is not None
    return done


@dataclass
class WindowHistograms:
    """A window's trades as hour histograms plus decoded trades: ``hours`` (the histograms
    used), ``rest`` (``price``/``qty``/``buyer_is_maker`` columns of everything else, one set
    per contiguous span) and ``trades`` (how many in all)."""

    hours: list[HourHistogram] = field(default_factory=list)
    rest: list[Columns] = field(default_factory=list)
    trades: int = 0


def _index_between(db: rd.Rdict, sym: str, lo: int, hi: int) -> dict[int, IndexEntry]:
    """Headers of the blocks keyed in ``[lo, hi)``."""
    out: dict[int, IndexEntry] = {}
    start, end = index_key(sym, lo), index_key(sym, hi)
    ro = rd.ReadOptions()  # must outlive the iterator
    ro.set_iterate_upper_bound(end)
    prefix = len(start) - 13
    for k, v in db.items(from_key=start, read_opt=ro):
        out[int(cast(bytes, k)[prefix:])] = entry_from_stored(msgpack.unpackb(v))
    del ro
    return out


def window_histograms(db: rd.Rdict, sym: str, lo: int, hi: int) -> WindowHistograms:
    """``sym``'s trades of ``[lo, hi)`` as :class:`WindowHistograms` (see the module doc)."""
    first = floor_to(lo, HOUR_MS)
    index = _index_between(db, sym, first, hi)
    per_hour: dict[int, list[int]] = {}
    for k in sorted(index):
        per_hour.setdefault(floor_to(k, HOUR_MS), []).append(k)
    candidates = [
        h for h, keys in per_hour.items() if len(keys) == 1 and h >= lo and h + HOUR_MS <= hi
    ]
    out = WindowHistograms()
    used: set[int] = set()
    if candidates:
        values = cast(list[bytes | None], db.get([hist_key(sym, h) for h in candidates]))
        for hour, raw in zip(candidates, values, strict=True):
            key = per_hour[hour][0]
            hist = None if raw is None else decode_histogram(raw)
            if hist is not None and hist.fingerprint == fingerprint_of(key, index[key]):
                out.hours.append(hist)
                out.trades += hist.trades
                used.add(hour)
    # everything else, in contiguous spans between the hours taken from histograms
    spans: list[tuple[int, int]] = []
    cursor = lo
    for hour in sorted(used):
        if hour > cursor:
            spans.append((cursor, hour))
        cursor = hour + HOUR_MS
    if cursor < hi:
        spans.append((cursor, hi))
    for a, b in spans:
        if not any(a - HOUR_MS < k < b for k in per_hour):  # nothing stored there
            continue
        cols = read_range(db, sym, a, b, HIST_COLUMNS)
        n = len(cols["price"])
        if n:
            out.rest.append(cols)
            out.trades += n
    return out
