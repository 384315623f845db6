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
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import cast

import msgpack
import rocksdict as rd

from tradelab.store.blocks import Columns, decode_block
from tradelab.store.coverage import IndexEntry, entry_from_stored
from tradelab.store.dayhists import DAY_MS, add_day_histograms, covered_hours, valid_days
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
    MAX_MS,
    SymbolState,
    block_key,
    floor_to,
    hist_key,
    index_key,
    index_prefix,
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


def missing_histograms(
    st: SymbolState, skip: Collection[int] = ()
) -> list[tuple[int, int, Fingerprint]]:
    """``(hour, block key, fingerprint)`` of every closed hour stored as exactly one block
    without a histogram of that block, but the hours ``skip`` (those a day histogram stands
    for: :func:`tradelab.store.dayhists.covered_hours`); call under the writer's lock."""
    last = st.meta["last_time"]
    if last is None:
        return []
    open_hour = floor_to(last, HOUR_MS)
    per_hour: dict[int, list[int]] = {}
    for k in st.keys[: bisect.bisect_left(st.keys, open_hour)]:
        per_hour.setdefault(floor_to(k, HOUR_MS), []).append(k)
    todo = []
    for hour, keys in per_hour.items():
        if len(keys) == 1 and hour not in skip:
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
    """The roll-up worker's second job: first the day histograms
    (:func:`tradelab.store.dayhists.add_day_histograms`), then the histogram of every closed
    hour of ``sym`` stored as one block without one that no day histogram stands for, each
    read and built outside the writer's ``lock`` and written (``write``, one small batch) only
    if the hour is still that block. Returns how many hour histograms were written."""
    add_day_histograms(read, sym, st, lock, write)
    with lock:
        todo = missing_histograms(st, covered_hours(st))
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
    """A window's trades as histograms plus decoded trades: ``hours`` (the hour histograms
    used), ``days`` (the day histograms used), ``rest`` (``price``/``qty``/``buyer_is_maker``
    columns of everything else, one set per contiguous span), ``minus`` (the same columns of
    the trades of ``days`` outside the window, to take away) and ``trades`` (how many in the
    window, all told)."""

    hours: list[HourHistogram] = field(default_factory=list)
    rest: list[Columns] = field(default_factory=list)
    trades: int = 0
    days: list[HourHistogram] = field(default_factory=list)
    minus: list[Columns] = field(default_factory=list)


def _index_between(db: rd.Rdict, sym: str, lo: int, hi: int) -> dict[int, IndexEntry]:
    """Headers of the blocks keyed in ``[lo, hi)`` (``hi`` beyond the 13-digit keys: all)."""
    out: dict[int, IndexEntry] = {}
    start = index_key(sym, lo)
    end = index_key(sym, hi) if hi <= MAX_MS else index_prefix(sym)[:-1] + b";"
    ro = rd.ReadOptions()  # must outlive the iterator
    ro.set_iterate_upper_bound(end)
    prefix = len(start) - 13
    for k, v in db.items(from_key=start, read_opt=ro):
        out[int(cast(bytes, k)[prefix:])] = entry_from_stored(msgpack.unpackb(v))
    del ro
    return out


def _trades_in(
    per_hour: dict[int, list[int]],
    index: dict[int, IndexEntry],
    a: int,
    b: int,
    but: Collection[int] = (),
) -> int:
    """The trades of the blocks of the hours meeting ``[a, b)`` but the hours ``but`` (what
    decoding that span costs)."""
    return sum(
        int(index[k][0])
        for h, keys in per_hour.items()
        if h < b and h + HOUR_MS > a and h not in but
        for k in keys
    )


def _minus(spans: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` less the ``spans`` (disjoint), as sorted spans."""
    out, cursor = [], lo
    for a, b in sorted(spans):
        if a > cursor:
            out.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < hi:
        out.append((cursor, hi))
    return out


def window_histograms(db: rd.Rdict, sym: str, lo: int, hi: int) -> WindowHistograms:
    """``sym``'s trades of ``[lo, hi)`` as :class:`WindowHistograms` (see the module doc).

    A day wholly inside the window is taken from its day histogram; a day partly inside from
    its day histogram less its decoded trades outside the window, when those are fewer than
    the trades its part inside would decode (an hour with a valid histogram costs none);
    every other whole hour from its hour histogram; the rest is decoded."""
    d_lo, d_hi = floor_to(lo, DAY_MS), floor_to(hi - 1, DAY_MS) + DAY_MS
    index = _index_between(db, sym, d_lo, d_hi)
    per_hour: dict[int, list[int]] = {}
    for k in sorted(index):
        per_hour.setdefault(floor_to(k, HOUR_MS), []).append(k)
    stored = sorted({floor_to(k, DAY_MS) for k in index})
    whole = [d for d in stored if lo <= d and d + DAY_MS <= hi]
    days = valid_days(db, sym, index, whole)  # the days wholly inside: taken if valid
    candidates = [
        h
        for h, keys in per_hour.items()
        if len(keys) == 1 and h >= lo and h + HOUR_MS <= hi and floor_to(h, DAY_MS) not in days
    ]
    hours: dict[int, HourHistogram] = {}
    if candidates:
        values = cast(list[bytes | None], db.get([hist_key(sym, h) for h in candidates]))
        for hour, value in zip(candidates, values, strict=True):
            key = per_hour[hour][0]
            hist = None if value is None else decode_histogram(value)
            if hist is not None and hist.fingerprint == fingerprint_of(key, index[key]):
                hours[hour] = hist
    taken: list[tuple[int, int]] = []  # spans decoded to be taken away
    for day in stored:  # the days partly inside: read only if taking them decodes less
        a, b = max(lo, day), min(hi, day + DAY_MS)
        if day in whole or b <= a:
            continue
        inside = _trades_in(per_hour, index, a, b, hours)
        outside = _trades_in(per_hour, index, day, a) + _trades_in(per_hour, index, b, day + DAY_MS)
        hist = valid_days(db, sym, index, [day]).get(day) if outside < inside else None
        if hist is not None:
            days[day] = hist
            taken += [(x, y) for x, y in ((day, a), (b, day + DAY_MS)) if x < y]
            for h in [h for h in hours if day <= h < day + DAY_MS]:
                del hours[h]
    used = sorted(days)
    out = WindowHistograms(hours=[hours[h] for h in sorted(hours)])
    out.days = [days[d] for d in used]
    out.trades = sum(h.trades for h in out.hours) + sum(d.trades for d in out.days)
    covered = [(h, h + HOUR_MS) for h in hours]
    covered += [(max(lo, d), min(hi, d + DAY_MS)) for d in used]
    for spans, sink, sign in ((_minus(covered, lo, hi), out.rest, 1), (taken, out.minus, -1)):
        for a, b in spans:
            if not any(h < b and h + HOUR_MS > a for h in per_hour):  # nothing stored there
                continue
            cols = read_range(db, sym, a, b, HIST_COLUMNS)
            n = len(cols["price"])
            if n:
                sink.append(cols)
                out.trades += sign * n
    return out
