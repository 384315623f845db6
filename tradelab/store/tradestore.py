"""TradeStore: Binance aggTrades in an embedded RocksDB, back as Polars frames in milliseconds.

Key layout: :mod:`.keys` (why: docs/storage-layout.md); codec: :mod:`.blocks`; closed hours'
price histograms: :mod:`.histograms`, :mod:`.hourhists`. Every change — new trades, the
unrepairable ranges around them, roll-ups, histograms, the counters — goes into ONE WriteBatch
(:mod:`.plan`), so a reader never sees half of it and a failed append leaves the store as it
was. Coverage (:meth:`TradeStore.holes`) comes from the headers alone (:mod:`.coverage`). One
writer per path (:mod:`.opening`); readers are RocksDB secondaries that catch up before every
query. RocksDB errors become one-line errors (:mod:`.errors`, :mod:`.gate`); after a refused
write the next write reopens the database (:mod:`.recovery`). This module is the class tying
the parts together: life cycle, locking, when to write, queries.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import rocksdict as rd

from tradelab.config import resolve_data_dir, validate_symbol
from tradelab.exceptions import (
    ConfigurationError,
    InvalidParameterError,
    StorageError,
    StorageWriteError,
)
from tradelab.logs import get_logger
from tradelab.schema import empty_trades
from tradelab.store.blocks import Columns, sort_dedupe
from tradelab.store.coverage import (
    find_holes,
    merge_ranges,
    segments_of_entries,
    validate_ranges,
)
from tradelab.store.documents import document_key, pack_document, unpack_document
from tradelab.store.errors import write_error
from tradelab.store.gate import Gate
from tradelab.store.hourhists import WindowHistograms, add_histograms, window_histograms
from tradelab.store.intake import Trades, trade_columns
from tradelab.store.keys import (
    HOUR_MS,
    MINUTE_MS,
    OWNER_FILE,
    STORE_FORMAT,
    StoreStats,
    SymbolState,
    block_key,
    columns_arg,
    floor_to,
    ms_arg,
    retention_days_arg,
    stats_from_meta,
    utc_datetime,
    window_arg,
)
from tradelab.store.opening import (
    SecondaryFollower,
    check_path,
    dir_size,
    open_writer,
)
from tradelab.store.plan import (
    BlockGone,
    Plan,
    appended_meta,
    drop_hours_before,
    drop_stored,
    plan_append,
    plan_retention,
    plan_to_batch,
    prepare_histograms,
    remember_small,
    roll_up_ranges,
    sorted_keys,
)
from tradelab.store.reading import (
    count_blocks,
    iter_blocks,
    load_state,
    read_frame,
    read_ids,
    read_index,
    read_meta,
    read_unrepairable,
    symbol_names,
)
from tradelab.store.recovery import Recovery, close_writer, reopen
from tradelab.store.rollups import RollUpWorker

__all__ = ["OWNER_FILE", "STORE_FORMAT", "StoreStats", "TradeStore"]

log = get_logger("tradelab.store")


class TradeStore:
    """Trades of many symbols in one RocksDB directory; see the module docstring for the layout.

    ``TradeStore(path)`` opens (creating if needed) the store for writing — one process at a
    time; ``TradeStore(path, readonly=True)`` opens a reader that follows a writer in another
    process. Thread-safe: appends are serialised; queries run concurrently with them.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        readonly: bool = False,
        retention_days: float | None = None,
    ) -> None:
        if path is not None and not isinstance(path, str | os.PathLike):
            raise ConfigurationError(
                f"path must be a directory path (str or Path), got {type(path).__name__}"
            )
        self.path: Path = (
            resolve_data_dir(None) if path in (None, "") else Path(path).expanduser()
        ).absolute()
        if not isinstance(readonly, bool):
            raise InvalidParameterError(f"readonly must be True or False, got {readonly!r}")
        self.readonly = readonly
        self.retention_days = retention_days_arg(retention_days)
        self._wlock = threading.RLock()
        self._states: dict[str, SymbolState] = {}
        self._threads: list[threading.Thread] = []
        self._retention_stop = threading.Event()
        self._rollups = RollUpWorker(self._roll_up_logged)
        self._recovery = Recovery(self.path)
        self._gate = Gate(self.path, self._recovery)
        check_path(self.path, self.readonly)
        self._follower = SecondaryFollower(self.path) if self.readonly else None
        self._db = self._follower.db if self._follower is not None else open_writer(self.path)

    # --- life cycle ----------------------------------------------------------------------------

    def _op(self) -> contextlib.AbstractContextManager[None]:
        """One operation on the database (:class:`~tradelab.store.gate.Gate`)."""
        return self._gate.op()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._gate.closed

    def close(self) -> None:
        """Wait for running operations, then release the database (and the writer lock).

        Never raises: a database that cannot close cleanly (a full disk) is logged in one
        line; every write it acknowledged is in its write-ahead log, replayed at the next open.
        """
        if not self._gate.close():
            return
        self._retention_stop.set()
        self._rollups.stop()
        self._gate.wait_idle()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()
        self._rollups.join()
        if self._follower is not None:
            self._follower.close()
        else:
            close_writer(self.path, self._db)

    def __enter__(self) -> TradeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "reader" if self.readonly else "writer"
        return f"<TradeStore {mode} {self.path}{' closed' if self.closed else ''}>"

    def refresh(self) -> None:
        """Readers: catch up with the writing process (no-op for the writer); see
        :class:`~tradelab.store.opening.SecondaryFollower` for why it sometimes re-opens."""
        if self._follower is not None:
            with self._op():
                self._db = self._follower.refresh()

    # --- writing (the writer's per-symbol state: counters, block index) -------------------------

    def _state(self, sym: str) -> SymbolState:
        if sym not in self._states:
            self._states[sym] = load_state(self._db, sym)
        return self._states[sym]

    def _check_writable(self) -> None:
        """Refuse writes on a reader; reopen the database first if the last write failed."""
        if self.readonly:
            raise StorageWriteError(
                f"this TradeStore on {self.path} is a reader (readonly=True); only the writing "
                "process (the collector) can change it"
            )
        self._recover()

    def _recover(self) -> None:
        """Reopen the database after a write RocksDB refused (:mod:`.recovery`), once no
        operation runs; raise :class:`StorageWriteError` while it still cannot write."""
        rec = self._recovery
        if not rec.broken:
            return
        if not rec.due():
            raise rec.not_yet()
        error = None
        with self._gate.exclusive(lambda: rec.broken) as go:
            if go:
                self._db, error, usable = reopen(self.path, self._db)
                self._states.clear()  # re-read the counters: the database is the truth
                rec.attempted(error is None, usable)
        if error is not None:
            raise rec.still_failing(error) from None

    def append(
        self,
        symbol: str,
        trades: Trades,
        *,
        unrepairable: Iterable[tuple[int, int]] = (),
    ) -> int:
        """Store trades of ``symbol`` exactly once, in one atomic write; return how many were new.

        ``trades``: a frame in the trade schema (the fast path: checked with numpy, no copy), a
        mapping of column name -> 1-D array (``time`` in unix ms), or anything
        :func:`tradelab.schema.to_trade_frame` coerces (see :mod:`.intake`). Trades whose
        ``agg_id`` is already stored are dropped, so replays and overlapping backfills are
        harmless. ``unrepairable``: id ranges ``(first, last)`` the exchange said it does not
        have (a hole REST skipped), recorded in the SAME write as these trades, so no crash can
        leave the trades without the record (:meth:`holes` then flags them; ``trades`` may be
        empty). On any failure nothing is written (:class:`StorageWriteError`) and the store is
        exactly as before.
        """
        sym = symbol if type(symbol) is str and symbol in self._states else validate_symbol(symbol)
        self._check_writable()
        lost = validate_ranges(unrepairable)
        given = trade_columns(trades)
        if not len(given["agg_id"]) and not lost:
            return 0
        cols = sort_dedupe(given) if len(given["agg_id"]) else None
        with self._op(), self._wlock:
            st = self._state(sym)
            last_id = st.meta["last_agg_id"]
            if cols is not None and last_id is not None and int(cols["agg_id"][0]) <= last_id:
                cols = drop_stored(self._db.get, sym, st, cols)
            n = 0 if cols is None else len(cols["agg_id"])
            new_lost = merge_ranges([*st.unrepairable, *lost]) if lost else None
            if n == 0 or cols is None:
                if new_lost is not None and new_lost != st.unrepairable:
                    plan = Plan(self._db.get, sym, st)
                    plan.unrepairable = new_lost
                    what = f"recording unrepairable ids of {sym}"
                    self._commit(sym, st, plan, dict(st.meta), what=what)
                return 0
            plan = plan_append(self._db.get, sym, st, cols)  # one new block per clock hour
            plan.unrepairable = new_lost
            meta = appended_meta(st.meta, cols)
            old_last = st.meta["last_time"]
            self._commit(sym, st, plan, meta, what=f"appending {n} trades of {sym}")
        open_minute = floor_to(meta["last_time"], MINUTE_MS)
        if (
            old_last is None
            or floor_to(old_last, MINUTE_MS) < open_minute
            or min(plan.puts, default=open_minute) < open_minute
        ):
            self._rollups.schedule(sym)
        log.debug("Stored %d trades for %s", n, sym, extra={"symbol": sym, "trades": n})
        return n

    # --- roll-ups (background) -----------------------------------------------------------------

    def roll_up(self, symbol: str | None = None) -> int:
        """Merge blocks now: each closed hour into one block, each closed minute of the open hour
        into one block. Returns how many blocks were merged away.

        The writer does this on a background thread after appends that cross a minute; call it
        to have the final layout immediately (tests, benchmarks, before a backup). Each merge is
        one atomic batch (write the merged block, delete its parts): readers never see half.
        """
        self._check_writable()
        merged = 0
        with self._op():
            syms = [validate_symbol(symbol)] if symbol is not None else symbol_names(self._db)
            for sym in syms:
                merged += self._roll_up(sym)
        return merged

    def _roll_up(self, sym: str) -> int:
        with self._wlock:
            st = self._state(sym)
            todo = roll_up_ranges(st)
        merged = sum(self._merge_range(sym, st, lo, hi) for lo, hi in todo)
        add_histograms(self._db.get, sym, st, self._wlock, self._write)
        return merged

    def _merge_range(self, sym: str, st: SymbolState, lo: int, hi: int) -> int:
        """Merge the blocks keyed in ``[lo, hi)`` into one. The reading and encoding happen
        outside the write lock (appends keep flowing); the commit re-checks under the lock that
        no append or retention touched those blocks meanwhile, else it leaves them for later."""
        with self._wlock:
            keys = st.keys_between(lo, hi)
            entries = [st.index[k] for k in keys]
            if len(keys) < 2 and not (keys and keys[0] in st.raw):  # alone: re-encoded
                return 0
        plan = Plan(self._db.get, sym, st)
        try:
            plan.merge(keys, None)
        except BlockGone:
            return 0
        prepare_histograms(plan, st.meta["last_time"])
        with self._wlock:
            if st.keys_between(lo, hi) != keys or [st.index[k] for k in keys] != entries:
                return 0
            self._commit(sym, st, plan, dict(st.meta), what=f"rolling up blocks of {sym}")
        return len(keys) - 1

    def _roll_up_logged(self, sym: str) -> None:
        if self._recovery.broken:  # the next append reopens the database; roll up after it
            return
        try:
            with self._op():
                self._roll_up(sym)
        except StorageError as exc:
            if not self.closed:
                log.warning(
                    "Roll-up of %s failed (retried after the next minute): %s",
                    sym,
                    exc,
                    extra={"symbol": sym, "error": str(exc)},
                )
        except Exception:  # never let the worker die silently
            log.exception("Roll-up of %s failed", sym, extra={"symbol": sym})

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until the background roll-up worker has nothing left to do; False on timeout."""
        return self._rollups.wait_idle(timeout)

    def _commit(
        self,
        sym: str,
        st: SymbolState,
        plan: Plan,
        meta: dict[str, Any],
        *,
        what: str,
        batch: rd.WriteBatch | None = None,
        dropped: Iterable[int] = (),
    ) -> None:
        """Write the plan and the new counters in one batch; update the cache only on success.
        ``dropped``: block keys the caller already removed in ``batch`` with a range tombstone.
        """
        batch = batch if batch is not None else rd.WriteBatch(raw_mode=True)
        index = plan_to_batch(batch, sym, st, plan, meta, dropped)
        self._write(batch, what)
        st.keys = sorted_keys(st, plan, index, dropped)
        st.index = index
        st.meta = meta
        if plan.unrepairable is not None:
            st.unrepairable = plan.unrepairable
        remember_small(st, plan, dropped)

    def _write(self, batch: rd.WriteBatch, what: str) -> None:
        try:
            self._db.write(batch)
        except Exception as exc:
            if not self.readonly:
                self._recovery.failed(exc)
            raise write_error(self.path, exc, what) from None

    # --- retention -----------------------------------------------------------------------------

    def delete_before(self, cutoff: dt.datetime | int) -> int:
        """Delete every trade with ``time < cutoff`` (all symbols); return how many were removed.

        One atomic batch: whole hours go with a range tombstone, the edge hour's blocks are
        rewritten. Queries running meanwhile keep their snapshot. Disk space comes back when
        RocksDB compacts the range, which runs on a background thread.
        """
        cut = ms_arg(cutoff, "cutoff")
        self._check_writable()
        removed_total = 0
        with self._op(), self._wlock:
            for sym in symbol_names(self._db):
                st = self._state(sym)
                if not st.keys or st.keys[0] >= cut:
                    continue
                plan, whole, removed = plan_retention(self._db.get, sym, st, cut)
                if not removed and not plan.deletes:
                    continue
                cut_hour = floor_to(cut, HOUR_MS)
                batch = rd.WriteBatch(raw_mode=True)
                if whole:
                    drop_hours_before(batch, sym, cut_hour)
                meta = dict(st.meta)
                meta["count"] -= removed
                self._commit(
                    sym, st, plan, meta, what=f"retention of {sym}", batch=batch, dropped=whole
                )
                removed_total += removed
                log.info(
                    "Retention removed %d trades of %s older than %s",
                    removed,
                    sym,
                    utc_datetime(cut),
                    extra={"symbol": sym, "trades": removed, "cutoff_ms": cut},
                )
                self._compact_later(block_key(sym, 0), block_key(sym, cut_hour + HOUR_MS))
        return removed_total

    def enforce_retention(self, now: dt.datetime | int | None = None) -> int:
        """Delete trades older than ``retention_days`` before ``now`` (default: the clock)."""
        now_ms = int(time.time() * 1000) if now is None else ms_arg(now, "now")
        return self.delete_before(now_ms - int(self.retention_days * 86_400_000))

    def start_retention(self, every_s: float = 3600.0) -> None:
        """Run :meth:`enforce_retention` now and then every ``every_s`` seconds until close."""
        self._check_writable()
        if not (isinstance(every_s, int | float) and every_s > 0):
            raise InvalidParameterError(f"every_s must be > 0 seconds, got {every_s!r}")

        def loop() -> None:
            while not self._retention_stop.is_set():
                try:
                    self.enforce_retention()
                except StorageError as exc:
                    if self.closed:
                        return
                    log.warning("Retention failed: %s", exc, extra={"error": str(exc)})
                self._retention_stop.wait(every_s)

        t = threading.Thread(target=loop, name="tradelab-retention", daemon=True)
        self._threads.append(t)
        t.start()

    def _compact_later(self, lo: bytes, hi: bytes) -> None:
        def run() -> None:
            try:
                with self._op():
                    self._db.compact_range(lo, hi)
            except Exception as exc:  # closed meanwhile, or RocksDB refused: space comes later
                log.debug("Compaction skipped: %s", exc)

        t = threading.Thread(target=run, name="tradelab-compact", daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()]
        self._threads.append(t)
        t.start()

    def compact(self) -> None:
        """Compact the whole database now (blocking; releases the GIL). For benchmarks/tools."""
        with self._op():
            self._db.compact_range(None, None)

    # --- reading -------------------------------------------------------------------------------

    def _auto_refresh(self) -> None:
        if self.readonly:
            self.refresh()

    def trades(
        self,
        symbol: str,
        start: dt.datetime | int,
        end: dt.datetime | int,
        *,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Trades of ``symbol`` with ``start <= time < end``, sorted by agg_id (trade schema).

        ``start``/``end`` are timezone-aware datetimes or unix milliseconds. ``columns``: the
        trade columns to return, in that order (default all); only those are decoded, so a
        volume profile asking for ``("price", "qty", "buyer_is_maker")`` reads less than half.
        """
        sym = validate_symbol(symbol)
        lo, hi = window_arg(start, end)
        names = columns_arg(columns)
        self._auto_refresh()
        with self._op():
            return read_frame(self._db, sym, lo, hi, names)

    def price_histograms(
        self, symbol: str, start: dt.datetime | int, end: dt.datetime | int
    ) -> WindowHistograms:
        """``[start, end)`` of ``symbol`` for a profile: closed hours' histograms + the rest's
        price/qty/side (:mod:`.hourhists`)."""
        sym = validate_symbol(symbol)
        lo, hi = window_arg(start, end)
        self._auto_refresh()
        with self._op():
            return window_histograms(self._db, sym, lo, hi)

    def _iter_blocks(self, sym: str, lo: int, hi: int) -> Iterator[Columns]:
        yield from iter_blocks(self._db, sym, lo, hi)  # trimmed decoded blocks (tests)

    def symbols(self) -> list[str]:
        """Symbols with trades stored, sorted."""
        self._auto_refresh()
        with self._op():
            out = []
            for sym in symbol_names(self._db):
                if self._meta_of(sym)["count"]:
                    out.append(sym)
            return out

    def _meta_of(self, sym: str) -> dict[str, Any]:
        if not self.readonly:
            with self._wlock:
                return self._state(sym).meta
        return read_meta(self._db, sym)

    def last_agg_id(self, symbol: str) -> int | None:
        """The highest aggregate id stored for ``symbol`` (None if none): where to resume."""
        sym = validate_symbol(symbol)
        self._auto_refresh()
        with self._op():
            return self._meta_of(sym)["last_agg_id"]

    def stats(self, symbol: str) -> StoreStats:
        """Counters for ``symbol`` (zeros/None if nothing is stored) without reading trades."""
        sym = validate_symbol(symbol)
        self._auto_refresh()
        with self._op():
            meta = self._meta_of(sym)
            total = 0
            if meta["bytes"]:
                all_bytes = sum(self._meta_of(s)["bytes"] for s in symbol_names(self._db))
                total = int(dir_size(self.path) * meta["bytes"] / max(all_bytes, 1))
        return stats_from_meta(sym, meta, total)

    def holes(self, symbol: str) -> pl.DataFrame:
        """Every missing run of aggregate ids between the first and the last stored id of
        ``symbol``, one row each: ``first_missing``, ``last_missing``, ``count``,
        ``after_time``/``before_time`` (the stored trades either side) and ``unrepairable``
        (the exchange cannot serve them). Empty when the store is complete.

        Computed from the block headers (:mod:`tradelab.store.coverage`), not the trades: a
        week of 15 M trades takes well under a millisecond. Works on readers too.
        """
        sym = validate_symbol(symbol)
        self._auto_refresh()
        with self._op():
            db = self._db
            if self.readonly:
                entries, lost = read_index(db, sym), read_unrepairable(db, sym)
            else:
                with self._wlock:
                    st = self._state(sym)
                    entries, lost = dict(st.index), list(st.unrepairable)
            segments = segments_of_entries(
                sorted(entries.items()), lambda key: read_ids(db, sym, key)
            )
        return find_holes(segments, lost)

    def mark_unrepairable(self, symbol: str, ranges: Iterable[tuple[int, int]]) -> int:
        """Record id ranges ``(first, last)`` of ``symbol`` as unrepairable (the exchange does
        not have them), e.g. a hole an operator has given up on; returns how many of the ids
        missing now became unrepairable. One atomic write; ids stored later still count."""
        sym = validate_symbol(symbol)
        lost = validate_ranges(ranges, "ranges")

        def repairable() -> int:
            h = self.holes(sym)
            return int(h.filter(~pl.col("unrepairable"))["count"].sum()) if h.height else 0

        before = repairable()
        self.append(sym, empty_trades(), unrepairable=lost)
        return before - repairable()

    def block_count(self, symbol: str, start: dt.datetime | int, end: dt.datetime | int) -> int:
        """How many blocks a query of ``[start, end)`` reads (diagnostics, tests, benchmarks)."""
        sym, lo, hi = validate_symbol(symbol), ms_arg(start, "start"), ms_arg(end, "end")
        self._auto_refresh()
        with self._op():
            return count_blocks(self._db, sym, lo, hi)

    # --- small documents (names, sizes, packing: tradelab.store.documents) ---------------------

    def put_meta(self, name: str, value: dict[str, Any]) -> None:
        """Store a small MessagePack document (≤ 1 MiB) under ``name`` (e.g. collector status)."""
        key = document_key(name)
        self._check_writable()
        raw = pack_document(name, value)
        with self._op(), self._wlock:
            batch = rd.WriteBatch(raw_mode=True)
            batch.put(key, raw)
            self._write(batch, f"writing meta {name!r}")

    def get_meta(self, name: str) -> dict[str, Any] | None:
        """The document stored under ``name``, or None."""
        key = document_key(name)
        self._auto_refresh()
        with self._op():
            raw = self._db.get(key)
        return None if raw is None else unpack_document(raw)
