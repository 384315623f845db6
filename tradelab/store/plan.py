"""Change sets of the trade store's writer: which blocks to put and delete, as one WriteBatch.

Every change to a symbol — an append, a roll-up merge, a retention rewrite — is first planned
in memory as a :class:`Plan` (blocks to put, keys to delete, the decoded blocks it read), then
written with the symbol's new counters in ONE RocksDB WriteBatch (:func:`plan_to_batch`), so a
reader never sees half of it and a failed write leaves the store as it was. The writer
(:class:`tradelab.store.TradeStore`) decides *when*; this module decides *what*: the blocks of
an append (:func:`plan_append`, :func:`drop_stored`, :func:`appended_meta`), the ranges a
roll-up merges (:func:`roll_up_ranges`) and the rewrite of a retention cut
(:func:`plan_retention`). It reads stored blocks only through the :data:`BlockReader` it is
handed and never sees the store itself. See docs/storage-layout.md, "Blocks" and "Exactly once".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgpack
import numpy as np
import rocksdict as rd

from tradelab.exceptions import StorageError
from tradelab.store.blocks import (
    BlockHeader,
    Columns,
    concat_columns,
    decode_block,
    encode_block,
    encode_raw_block,
    sort_dedupe,
    take,
)
from tradelab.store.coverage import IndexEntry, inner_runs
from tradelab.store.histograms import Fingerprint, build_histogram, fingerprint_of
from tradelab.store.keys import (
    HOUR_MS,
    MAX_MERGE_ROWS,
    MINUTE_MS,
    RAW_BLOCK_ROWS,
    SMALL_BLOCK_ROWS,
    SMALL_CACHE_ROWS,
    SPAN_MS,
    SymbolState,
    block_key,
    floor_to,
    hist_key,
    index_key,
    symbol_key,
    unrepairable_key,
)

__all__ = [
    "BlockGone",
    "BlockReader",
    "Plan",
    "appended_meta",
    "drop_hours_before",
    "drop_stored",
    "plan_append",
    "plan_retention",
    "plan_to_batch",
    "prepare_histograms",
    "remember_small",
    "roll_up_ranges",
    "sorted_keys",
    "time_range",
]

BlockReader = Callable[[bytes], "bytes | None"]
"""Reads one stored value by key (``Rdict.get`` of the writer's database): None if absent."""


class BlockGone(StorageError):
    """A block named by the index was deleted meanwhile (a concurrent retention): a roll-up
    that meets one leaves its blocks for a later round."""


class Plan:
    """An in-memory change set for one symbol: blocks to put and keys to delete.

    ``read`` fetches the blocks the plan merges; ``st`` is the symbol's state as the writer
    holds it (only read here: the writer updates it once the batch is written).
    """

    def __init__(self, read: BlockReader, sym: str, st: SymbolState) -> None:
        self.read, self.sym, self.st = read, sym, st
        self.puts: dict[int, tuple[bytes, BlockHeader]] = {}
        self.deletes: set[int] = set()
        self.loaded: dict[int, Columns] = {}
        self.unrepairable: list[tuple[int, int]] | None = None
        """The symbol's new unrepairable id ranges (None: unchanged); :func:`plan_to_batch`
        writes them in the same batch and leaves here the list as written."""
        self.hists: dict[int, tuple[Fingerprint, bytes | None]] = {}
        """Hour histograms built ahead (:func:`prepare_histograms`, outside the write lock)."""
        self.hists_written: dict[int, Fingerprint] = {}
        self.hists_deleted: set[int] = set()
        self.raw: set[int] = set()
        """Keys of the blocks it puts unnarrowed (:func:`plan_append`)."""

    def cols(self, key: int) -> Columns:
        """The trades of block ``key``, read once (through the plan's reader)."""
        if key not in self.loaded and key in self.st.small:
            self.loaded[key] = self.st.small[key]  # as written; no read, no decoding
        if key not in self.loaded:
            raw = self.read(block_key(self.sym, key))
            if raw is None:
                raise BlockGone(f"block {key} of {self.sym} is in the index but missing")
            self.loaded[key] = decode_block(raw)[1]
        return self.loaded[key]

    def merge(self, keys: list[int], extra: Columns | None) -> None:
        """Replace blocks ``keys`` (plus ``extra`` trades) by one block."""
        parts = [self.cols(k) for k in keys]
        if extra is not None:
            parts.append(extra)
        merged = sort_dedupe(concat_columns(parts))
        if not len(merged["agg_id"]):
            self.deletes.update(keys)
            return
        t_min = int(merged["time"].min())
        if t_min not in keys and (
            t_min in self.puts or (t_min in self.st.index and t_min not in self.deletes)
        ):
            # another block already starts at that ms: fold it in rather than overwrite it
            self.merge([*keys, t_min], extra)
            return
        value = encode_block(merged)
        hdr = BlockHeader(
            len(merged["agg_id"]),
            t_min,
            int(merged["time"].max()),
            int(merged["agg_id"][0]),
            int(merged["agg_id"][-1]),
            inner_runs(merged["agg_id"], merged["time"]),
        )
        for k in keys:
            if k != t_min:
                self.deletes.add(k)
                self.puts.pop(k, None)
        self.deletes.discard(t_min)
        self.puts[t_min] = (value, hdr)
        self.loaded[t_min] = merged


def plan_append(read: BlockReader, sym: str, st: SymbolState, cols: Columns) -> Plan:
    """One new block per clock hour the trades touch (merged into a block of the same key);
    a new block of at most :data:`RAW_BLOCK_ROWS` trades is stored unnarrowed.

    Roll-ups (closed minutes -> minute blocks, closed hours -> one block) are left to the
    background worker (:meth:`TradeStore.roll_up`) so an append stays well under 1 ms.
    """
    plan = Plan(read, sym, st)
    t0, t1 = time_range(cols["time"])
    if floor_to(t0, HOUR_MS) == floor_to(t1, HOUR_MS):
        groups = [(cols, t0, t1)]  # the usual case: one clock hour
    else:
        t = cols["time"]
        hours = t - t % HOUR_MS
        groups = []
        for h in np.unique(hours):
            part = take(cols, hours == h)
            groups.append((part, int(part["time"].min()), int(part["time"].max())))
    for part, key, last in groups:
        if key in st.index or key in plan.puts:
            plan.merge([key], part)
            continue
        ids = part["agg_id"]
        n = len(ids)
        if n <= RAW_BLOCK_ROWS:
            plan.raw.add(key)
        plan.puts[key] = (
            encode_raw_block(part, (key, last)) if n <= RAW_BLOCK_ROWS else encode_block(part),
            BlockHeader(n, key, last, int(ids[0]), int(ids[-1]), inner_runs(ids, part["time"])),
        )
        plan.loaded[key] = part
    return plan


def plan_to_batch(
    batch: rd.WriteBatch,
    sym: str,
    st: SymbolState,
    plan: Plan,
    meta: dict[str, Any],
    dropped: Iterable[int] = (),
) -> dict[int, IndexEntry]:
    """Add ``plan`` and the counters ``meta`` (updated here, in place) to ``batch``.

    Returns the symbol's block index as it will be once the batch is written; ``st`` itself is
    not touched, so the caller updates its in-memory state only after the write succeeded.
    ``dropped``: block keys the caller already removed in ``batch`` with a range tombstone.
    ``plan.unrepairable`` (if set) goes into the same batch; ranges below the first id kept
    are dropped when blocks go (retention), and ``plan.unrepairable`` is left as written.
    """
    index = dict(st.index)
    for key in dropped:
        entry = index.pop(key)
        meta["bytes"] -= entry[5]
    for key in plan.deletes:
        if key in plan.puts:
            continue
        batch.delete(block_key(sym, key))
        batch.delete(index_key(sym, key))
        stale = index.pop(key, None)
        if stale is not None:
            meta["bytes"] -= stale[5]
    for key, (value, h) in plan.puts.items():
        new: IndexEntry = (h.n, h.t_min, h.t_max, h.id_min, h.id_max, len(value), h.inner)
        batch.put(block_key(sym, key), value)
        batch.put(index_key(sym, key), msgpack.packb(list(new)))
        old = index.get(key)
        if old is not None:
            meta["bytes"] -= old[5]
        index[key] = new
        meta["bytes"] += len(value)
    _histograms_to_batch(batch, sym, st, plan, index, meta["last_time"])
    if not index:
        # last_time/last_agg_id stay: they tell the collector where it left off
        meta.update(count=0, first_time=None, first_agg_id=None, bytes=0)
    elif plan.deletes or dropped:
        meta["first_time"] = min(e[1] for e in index.values())
        meta["first_agg_id"] = min(e[3] for e in index.values())
    batch.put(symbol_key(sym), msgpack.packb(meta))
    lost = st.unrepairable if plan.unrepairable is None else plan.unrepairable
    if dropped or plan.deletes:
        first = meta["first_agg_id"] if index else None
        lost = [] if first is None else [r for r in lost if r[1] >= first]
    if lost != st.unrepairable:
        batch.put(unrepairable_key(sym), msgpack.packb([list(r) for r in lost]))
        plan.unrepairable = lost
    return index


def _hour_histogram(
    plan: Plan, hour: int, key: int, fp: Fingerprint
) -> tuple[Fingerprint, bytes | None]:
    prepared = plan.hists.get(hour)
    if prepared is not None and prepared[0] == fp:
        return prepared
    cols = plan.loaded.get(key)
    return fp, None if cols is None else build_histogram(cols, fp)


def prepare_histograms(plan: Plan, last_time: int | None) -> None:
    """Build ahead the histograms of the closed hours ``plan`` puts as one block (a roll-up
    merging an hour runs this outside the write lock; :func:`plan_to_batch` uses them when
    the block is still the one it writes)."""
    if last_time is None:
        return
    open_hour = floor_to(last_time, HOUR_MS)
    for key, (value, h) in plan.puts.items():
        hour = floor_to(key, HOUR_MS)
        if hour < open_hour:
            entry: IndexEntry = (h.n, h.t_min, h.t_max, h.id_min, h.id_max, len(value), h.inner)
            plan.hists[hour] = _hour_histogram(plan, hour, key, fingerprint_of(key, entry))


def _histograms_to_batch(
    batch: rd.WriteBatch,
    sym: str,
    st: SymbolState,
    plan: Plan,
    index: dict[int, IndexEntry],
    last_time: int | None,
) -> None:
    """Put the histogram of every closed hour the plan leaves as exactly one block it writes
    (in the same batch as the block); delete the histogram of an hour left without blocks."""
    if last_time is None:
        return
    open_hour = floor_to(last_time, HOUR_MS)
    for hour in sorted({floor_to(k, HOUR_MS) for k in (*plan.puts, *plan.deletes)}):
        if hour >= open_hour and hour not in st.hists:
            continue  # the open hour (an append): never a histogram
        inside = {k for k in st.keys_between(hour, hour + HOUR_MS) if k in index}
        inside |= {k for k in plan.puts if hour <= k < hour + HOUR_MS}
        if not inside:
            if hour in st.hists:
                batch.delete(hist_key(sym, hour))
                plan.hists_deleted.add(hour)
            continue
        key = min(inside)
        if hour >= open_hour or len(inside) != 1 or key not in plan.puts:
            continue  # a stale histogram stays unused: its fingerprint no longer matches
        fp, value = _hour_histogram(plan, hour, key, fingerprint_of(key, index[key]))
        if value is not None:
            batch.put(hist_key(sym, hour), value)
        plan.hists_written[hour] = fp


def sorted_keys(
    st: SymbolState, plan: Plan, index: dict[int, IndexEntry], dropped: Iterable[int] = ()
) -> list[int]:
    """The keys of ``index`` (what :func:`plan_to_batch` returned for ``plan``), sorted: for
    an append, whose new keys come after every other, ``st.keys`` plus them (no sort of the
    whole index on every append)."""
    new = sorted(k for k in plan.puts if k not in st.index)
    if plan.deletes or dropped or (st.keys and new and new[0] <= st.keys[-1]):
        return sorted(index)
    return st.keys + new


def remember_small(st: SymbolState, plan: Plan, dropped: Iterable[int] = ()) -> None:
    """After ``plan`` was written: keep the columns of its small new blocks in ``st.small``
    (own copies: an append's arrays may be the caller's) and forget the blocks that went;
    note the hour histograms written and deleted (``st.hists``) and which blocks are stored
    unnarrowed (``st.raw``)."""
    small = st.small
    for key in (*plan.deletes, *dropped):
        gone = small.pop(key, None)
        if gone is not None:
            st.small_rows -= len(gone["agg_id"])
        st.raw.discard(key)
    for key in dropped:
        st.hists.pop(floor_to(key, HOUR_MS), None)
    for hour in plan.hists_deleted:
        st.hists.pop(hour, None)
    st.hists.update(plan.hists_written)
    before: dict[int, Columns] = {}
    for key in plan.puts:
        if key in small:
            before[key] = prior = small.pop(key)
            st.small_rows -= len(prior["agg_id"])
    cached = st.small_rows  # bounded: SMALL_CACHE_ROWS
    for key, (_value, h) in plan.puts.items():
        if key in plan.raw:
            st.raw.add(key)
        else:
            st.raw.discard(key)
        cols = plan.loaded.get(key)
        if cols is not None and h.n <= SMALL_BLOCK_ROWS and cached + h.n <= SMALL_CACHE_ROWS:
            cached += h.n
            kept = before.get(key)
            small[key] = cols if cols is kept else {c: a.copy() for c, a in cols.items()}
    st.small_rows = cached


def drop_stored(read: BlockReader, sym: str, st: SymbolState, cols: Columns) -> Columns:
    """Slow path of an append: drop incoming trades whose agg_id some block already holds."""
    ids = cols["agg_id"]
    lo, hi = int(ids[0]), int(ids[-1])
    keep = np.ones(len(ids), dtype=bool)
    for key in st.keys:
        entry = st.index[key]
        i0, i1, inner = entry[3], entry[4], entry[6]
        if i1 < lo or i0 > hi:
            continue
        if inner and any(inner[j] <= lo and hi <= inner[j + 1] for j in range(0, len(inner), 4)):
            continue  # the batch lies inside a hole of this block (a backfill): none stored

        raw = read(block_key(sym, key))
        if raw is None:
            continue
        stored = decode_block(raw)[1]["agg_id"]
        keep &= ~np.isin(ids, stored, assume_unique=True)
    return cols if bool(keep.all()) else take(cols, keep)


def time_range(t: np.ndarray) -> tuple[int, int]:
    """The first and last of the times ``t`` (Python's min and max for a 1-second batch: cheaper
    than numpy's reductions on a few rows)."""
    if len(t) <= 64:
        listed = t.tolist()
        return min(listed), max(listed)
    return int(np.minimum.reduce(t)), int(np.maximum.reduce(t))


def _min(a: int | None, b: int) -> int:
    """``min`` where None means "no value yet"."""
    return b if a is None else min(a, b)


def _max(a: int | None, b: int) -> int:
    """``max`` where None means "no value yet"."""
    return b if a is None else max(a, b)


def appended_meta(meta: dict[str, Any], cols: Columns) -> dict[str, Any]:
    """The counters ``meta`` (not changed) once the new trades ``cols`` (sorted) are stored."""
    out = dict(meta)
    t0, t1 = time_range(cols["time"])
    out["count"] += len(cols["agg_id"])
    out["first_time"] = _min(out["first_time"], t0)
    out["last_time"] = _max(out["last_time"], t1)
    out["first_agg_id"] = _min(out["first_agg_id"], int(cols["agg_id"][0]))
    out["last_agg_id"] = _max(out["last_agg_id"], int(cols["agg_id"][-1]))
    return out


def roll_up_ranges(st: SymbolState) -> list[tuple[int, int]]:
    """The key ranges a roll-up merges, each into one block: every closed hour of more than one
    block; in the open hour, everything before its last :data:`SPAN_MS` boundary (the closed
    ten-minute spans: one block, re-encoded as it grows, six times an hour), then every closed
    minute after it of more than one block — split so that no merged block exceeds
    :data:`MAX_MERGE_ROWS` trades (a merge holds its rows decoded, several times over: under a
    flood one minute can hold millions of trades). A closed hour whose one block is stored
    unnarrowed (``st.raw``) is "merged" alone: re-encoded narrowed.

    Why the spans: a 1 h window read ~120 blocks of the open hour (its closed minutes, then
    the open minute's 1-second blocks), at a cost per block; now at most ~70, one large."""
    last = st.meta["last_time"]
    if last is None:
        return []
    open_hour, open_span = floor_to(last, HOUR_MS), floor_to(last, SPAN_MS)
    todo: list[tuple[int, int]] = []
    for span, keys, end in (
        (HOUR_MS, st.keys_between(st.keys[0] if st.keys else 0, open_hour), None),
        (HOUR_MS, st.keys_between(open_hour, open_span), open_span),
        (MINUTE_MS, st.keys_between(open_span, floor_to(last, MINUTE_MS)), None),
    ):
        groups: dict[int, list[int]] = {}
        for k in keys:
            groups.setdefault(floor_to(k, span), []).append(k)
        for start, members in sorted(groups.items()):
            stop = start + span if end is None else end
            if len(members) > 1:
                todo += _capped(members, [st.index[k][0] for k in members], stop)
            elif end is None and span == HOUR_MS and members[0] in st.raw:
                todo.append((members[0], stop))
    return todo


def _capped(keys: list[int], rows: list[int], end: int) -> list[tuple[int, int]]:
    """``keys`` (ascending, ``rows`` trades each) cut greedily into runs of at most
    :data:`MAX_MERGE_ROWS` trades; the key ranges of the runs of more than one block."""
    out: list[tuple[int, int]] = []
    first, total, count = keys[0], 0, 0
    for k, n in zip(keys, rows, strict=True):
        if count and total + n > MAX_MERGE_ROWS:
            if count > 1:
                out.append((first, k))
            first, total, count = k, 0, 0
        total += n
        count += 1
    if count > 1:
        out.append((first, end))
    return out


def plan_retention(
    read: BlockReader, sym: str, st: SymbolState, cut: int
) -> tuple[Plan, list[int], int]:
    """What deleting ``sym``'s trades before ``cut`` takes: ``(plan, whole, removed)``.

    ``whole``: the block keys of the hours wholly before ``cut`` (dropped by
    :func:`drop_hours_before`, two range tombstones, not one delete per block); ``plan``
    deletes the blocks of the edge hour and rewrites the one ``cut`` falls in; ``removed``
    counts the trades that go.
    """
    plan = Plan(read, sym, st)
    cut_hour = floor_to(cut, HOUR_MS)
    whole = st.keys_between(0, cut_hour)
    removed = sum(st.index[key][0] for key in whole)
    for key in st.keys_between(cut_hour, cut):
        n, _t0, t1 = st.index[key][:3]
        plan.deletes.add(key)
        if t1 < cut:
            removed += n
            continue
        cols = plan.cols(key)
        keep = cols["time"] >= cut
        removed += int((~keep).sum())
        plan.merge([], take(cols, keep))
    return plan, whole, removed


def drop_hours_before(batch: rd.WriteBatch, sym: str, hour: int) -> None:
    """Add to ``batch`` the deletion of every block of ``sym`` keyed before ``hour``, of their
    headers and of their hours' histograms (range tombstones: readers iterating meanwhile keep
    their snapshot)."""
    batch.delete_range(block_key(sym, 0), block_key(sym, hour))
    batch.delete_range(index_key(sym, 0), index_key(sym, hour))
    batch.delete_range(hist_key(sym, 0), hist_key(sym, hour))
