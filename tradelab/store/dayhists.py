"""Day histograms: a closed UTC day's hour histograms merged into one value, and the hours'
deleted once a 48-hour window no longer needs them (issue 14: bytes per trade ≤ 5).

An hour of BTCUSDT has ~16 k distinct prices; a day ~60–90 k, not 24 × 16 k: one histogram per
day holds a week in ~4–5× fewer entries than its hours'. So the roll-up worker
(:func:`add_day_histograms`, called first by :func:`tradelab.store.hourhists.add_histograms`)
keeps, for each symbol:

- ``hday:{SYMBOL}:{13-digit ms}`` (:func:`hday_key`), the histogram of every **closed day**
  (its last hour closed: ``day + 24 h <= the open hour``), in the codec of
  :mod:`tradelab.store.histograms`, fingerprinted by the fingerprints of **every block of the
  day** (``"d"``: key, n, id_min, id_max, bytes of each, in key order). It is built from the
  day's valid hour histograms and the decoded blocks of its other hours, out of the writer's
  lock, and written only if the day's blocks are still those;
- hour histograms only for hours that are not in such a day or that a 48-hour window ending at
  the open hour still touches (``hour >= open hour - 48 h``): the others are deleted in the
  same batch that writes the day histogram (or later, as they age), and
  :func:`covered_hours` tells the hour pass not to build them again.

A reader (:func:`valid_days`) uses a day histogram only if the index shows exactly the blocks
it names; any change to the day — a backfill, a roll-up of a flood hour, retention cutting
into it — makes it stale (then unused, and rebuilt by the next round). A window covering part
of a day takes the day histogram **minus** the decoded trades of the day outside the window
when that decodes fewer trades than the part inside (exact integer units: the difference is
the window's histogram, bit for bit); see :func:`tradelab.store.hourhists.window_histograms`.

Day histograms of days with no block left (retention) are deleted by the next round: the one
before the first stored day by one range tombstone, once per writer and first day.

Stores without day histograms (written before they existed) need no migration: the first
round of a writer builds them; readers meanwhile use hour histograms or decode.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

import rocksdict as rd

from tradelab.store.blocks import decode_block
from tradelab.store.coverage import IndexEntry
from tradelab.store.histograms import (
    HIST_COLUMNS,
    Fingerprint,
    HourHistogram,
    build_day_histogram,
    day_fingerprint,
    decode_histogram,
    fingerprint_of,
    merge_window,
)
from tradelab.store.keys import HOUR_MS, SymbolState, block_key, floor_to, hist_key
from tradelab.store.plan import BlockReader

__all__ = [
    "DAY_MS",
    "KEEP_HOURS_MS",
    "DayPrint",
    "add_day_histograms",
    "covered_hours",
    "day_blocks",
    "hday_key",
    "valid_days",
]

DAY_MS = 86_400_000
KEEP_HOURS_MS = 48 * HOUR_MS
"""Hour histograms are kept for the hours from ``open hour - KEEP_HOURS_MS`` on: every whole
hour of a window of up to two days ending now (such a profile merges hours and whole days, never
decodes an aged day). With 24 h a 36 h profile starting at noon decoded 12 hours of an aged day:
73 ms vs DuckDB's 46 ms; with 48 h, ~30 ms. Two days cost ~0.12 bytes per trade on a week,
paid for by zstd level 9 at the bottom level (:func:`tradelab.store.opening.options`)."""
DayPrint = tuple[Fingerprint, ...]
"""The fingerprints of every block of a day, in key order."""


def hday_key(sym: str, day: int) -> bytes:
    """The key of ``sym``'s histogram of the UTC day starting at ``day`` (unix ms). ``hday:``
    is met by no other scan (``trades:``, ``index:``, ``hist:``, ``symbol:``, …)."""
    return b"hday:%s:%013d" % (sym.encode(), day)


def day_blocks(index: Mapping[int, IndexEntry], keys: list[int]) -> DayPrint:
    """The fingerprint of a day whose blocks are ``keys`` (ascending)."""
    return tuple(fingerprint_of(k, index[k]) for k in keys)


# --- the writer ---------------------------------------------------------------------------------


@dataclass
class _Ledger:
    """What this writer knows of one symbol's day histograms (changed under its lock)."""

    stored: dict[int, DayPrint] = field(default_factory=dict)
    """Day -> the blocks its stored day histogram names (read once per day, then kept)."""
    failed: dict[int, DayPrint] = field(default_factory=dict)
    """Day -> blocks no exact histogram holds (not retried until the day changes)."""
    known: set[int] = field(default_factory=set)
    """Days whose stored value was looked up."""
    cleared_below: int = -1
    """Day histograms before this day were range-deleted by this writer."""
    prints: tuple[object, tuple[int, ...], dict[int, DayPrint]] | None = None
    """``(index, its state, closed day -> its blocks)`` as last computed: the writer replaces
    ``SymbolState.index`` by a new dict at every change (the state — open day, blocks, trades,
    bytes — would tell an in-place change too). Only work is saved: every write re-checks the
    day's blocks, and readers check them against the index they read."""


_LEDGERS: dict[int, tuple[weakref.ref[SymbolState], _Ledger]] = {}


def _ledger(st: SymbolState) -> _Ledger:
    """``st``'s ledger: kept beside it (a ``SymbolState`` lives as long as its writer's
    handle) and dropped with it."""
    got = _LEDGERS.get(id(st))
    if got is not None and got[0]() is st:
        return got[1]
    ledger = _Ledger()
    _LEDGERS[id(st)] = (weakref.ref(st), ledger)
    weakref.finalize(st, _LEDGERS.pop, id(st), None)
    return ledger


def _closed_days(st: SymbolState) -> dict[int, DayPrint]:
    """Day -> the fingerprints of its blocks, for every closed day (``day + 24 h <= the open
    hour``); call under the lock."""
    last = st.meta["last_time"]
    if last is None or not st.keys:
        return {}
    open_day = floor_to(floor_to(last, HOUR_MS), DAY_MS)
    ledger = _ledger(st)
    state = (open_day, len(st.index), st.meta["count"], st.meta["bytes"])
    if ledger.prints is not None and ledger.prints[0] is st.index and ledger.prints[1] == state:
        return ledger.prints[2]
    days: dict[int, list[int]] = {}
    for k in st.keys_between(0, open_day):
        days.setdefault(floor_to(k, DAY_MS), []).append(k)
    prints = {day: day_blocks(st.index, keys) for day, keys in days.items()}
    ledger.prints = (st.index, state, prints)
    return prints


def _keep_from(st: SymbolState) -> int:
    last = st.meta["last_time"]
    return -1 if last is None else floor_to(last, HOUR_MS) - KEEP_HOURS_MS


def covered_hours(st: SymbolState) -> set[int]:
    """The closed hours a valid day histogram stands for and no 48-hour window ending now
    needs: the hour pass neither builds nor keeps their histograms (call under the lock)."""
    ledger, keep_from = _ledger(st), _keep_from(st)
    out: set[int] = set()
    for day, blocks in _closed_days(st).items():
        if day < keep_from and ledger.stored.get(day) == blocks:
            out.update(range(day, min(day + DAY_MS, keep_from), HOUR_MS))
    return out


_GONE = b""  # a block changed while the day was being built: try again next round


@dataclass(frozen=True)
class _Job:
    day: int
    blocks: DayPrint
    hours: list[tuple[int, list[Fingerprint], bool]]  # hour, its blocks, a valid hour hist?


def _build(read: BlockReader, sym: str, job: _Job) -> bytes | None:
    """The day histogram's value (None: no exact one; ``_GONE``: the day changed)."""
    parts: list[HourHistogram] = []
    for hour, fps, has_hist in job.hours:
        if has_hist:
            raw = read(hist_key(sym, hour))
            got = None if raw is None else decode_histogram(raw)
            if got is not None and got.fingerprint == fps[0]:
                parts.append(got)
                continue
        cols = []
        for fp in fps:
            raw = read(block_key(sym, fp[0]))
            if raw is None or len(raw) != fp[4]:
                return _GONE
            block = decode_block(raw)[1]
            cols.append({c: block[c] for c in HIST_COLUMNS})
        merged = merge_window([], cols)  # an hour at a time: bounded memory
        if merged is None:
            return None
        parts.append(merged)
    day = merge_window(parts, [])
    return None if day is None else build_day_histogram(day, job.blocks)


def add_day_histograms(
    read: BlockReader,
    sym: str,
    st: SymbolState,
    lock: threading.RLock,
    write: Callable[[rd.WriteBatch, str], None],
) -> int:
    """The roll-up worker's day pass for ``sym``: build the histogram of every closed day
    without a valid one (reading and building outside ``lock``; written, with the deletion of
    the day's hour histograms older than :data:`KEEP_HOURS_MS`, only if the day's blocks are
    still those), delete the aged hour histograms of valid days and the day histograms of
    days without blocks. Returns how many day histograms were written."""
    with lock:
        ledger = _ledger(st)
        unknown = [d for d in _closed_days(st) if d not in ledger.known]
    for day in unknown:  # once per day and writer: what is stored already
        raw = read(hday_key(sym, day))
        fps = None if raw is None else day_fingerprint(raw)
        with lock:
            ledger.known.add(day)
            if fps is not None:
                ledger.stored[day] = fps
    with lock:
        prints = _closed_days(st)
        _tidy(sym, st, ledger, write, prints)
        jobs = _jobs(st, ledger, prints)
    done = 0
    for job in jobs:
        value = _build(read, sym, job)
        if value == _GONE:
            continue
        with lock:
            keys = st.keys_between(job.day, job.day + DAY_MS)
            if day_blocks(st.index, keys) != job.blocks:
                continue
            batch = rd.WriteBatch(raw_mode=True)
            drop: list[int] = []
            if value is not None:
                batch.put(hday_key(sym, job.day), value)
                drop = _aged(st, job.day)
            elif job.day in ledger.stored:
                batch.delete(hday_key(sym, job.day))  # stale, and no exact one now
            for hour in drop:
                batch.delete(hist_key(sym, hour))
            write(batch, f"writing the histogram of a day of {sym}")
            for hour in drop:
                st.hists.pop(hour, None)
            if value is not None:
                ledger.stored[job.day] = job.blocks
                ledger.failed.pop(job.day, None)
                done += 1
            else:
                ledger.stored.pop(job.day, None)
                ledger.failed[job.day] = job.blocks
    return done


def _aged(st: SymbolState, day: int) -> list[int]:
    """The stored hour histograms of ``day`` no 48-hour window ending now needs."""
    end = min(day + DAY_MS, _keep_from(st))
    return sorted(h for h in st.hists if day <= h < end)


def _jobs(st: SymbolState, ledger: _Ledger, prints: dict[int, DayPrint]) -> list[_Job]:
    """The closed days (``prints``: their blocks) whose histogram is missing or stale (under
    the lock)."""
    jobs = []
    for day, blocks in prints.items():
        if ledger.stored.get(day) == blocks or ledger.failed.get(day) == blocks:
            continue
        per_hour: dict[int, list[Fingerprint]] = {}
        for fp in blocks:
            per_hour.setdefault(floor_to(fp[0], HOUR_MS), []).append(fp)
        hours = [
            (hour, fps, len(fps) == 1 and st.hists.get(hour) == fps[0])
            for hour, fps in per_hour.items()
        ]
        jobs.append(_Job(day, blocks, hours))
    return jobs


def _tidy(
    sym: str,
    st: SymbolState,
    ledger: _Ledger,
    write: Callable[[rd.WriteBatch, str], None],
    prints: dict[int, DayPrint],
) -> None:
    """Under the lock: delete the aged hour histograms of valid days (``prints``: the closed
    days' blocks), and the day histograms of days left without blocks (retention); one small
    batch, only when there is something."""
    batch = rd.WriteBatch(raw_mode=True)
    drop: list[int] = []
    for day, blocks in prints.items():
        if ledger.stored.get(day) == blocks:
            drop += _aged(st, day)
    gone = [d for d in ledger.stored if not st.keys_between(d, d + DAY_MS)]
    first = floor_to(st.keys[0], DAY_MS) if st.keys else None
    below = first is not None and ledger.cleared_below < first
    if not (drop or gone or below):
        return
    for hour in drop:
        batch.delete(hist_key(sym, hour))
    for day in gone:
        batch.delete(hday_key(sym, day))
    if below:
        batch.delete_range(hday_key(sym, 0), hday_key(sym, cast(int, first)))
    write(batch, f"deleting histograms of {sym} no longer needed")
    for hour in drop:
        st.hists.pop(hour, None)
    for day in gone:
        ledger.stored.pop(day, None)
        ledger.known.discard(day)
    if below:
        ledger.cleared_below = cast(int, first)


# --- readers ------------------------------------------------------------------------------------


def valid_days(
    db: rd.Rdict, sym: str, index: Mapping[int, IndexEntry], days: list[int]
) -> dict[int, HourHistogram]:
    """Day -> its histogram, for each of ``days`` whose stored day histogram names exactly the
    blocks ``index`` shows in it (``index``: every block of those days)."""
    if not days:
        return {}
    per_day: dict[int, list[int]] = {d: [] for d in days}
    for k in sorted(index):
        keys = per_day.get(floor_to(k, DAY_MS))
        if keys is not None:
            keys.append(k)
    out: dict[int, HourHistogram] = {}
    values = cast(list[bytes | None], db.get([hday_key(sym, d) for d in days]))
    for day, raw in zip(days, values, strict=True):
        hist = None if raw is None else decode_histogram(raw)
        if hist is not None and hist.blocks and hist.blocks == day_blocks(index, per_day[day]):
            out[day] = hist
    return out
