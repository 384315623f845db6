"""TradeStore: Binance aggTrades in an embedded RocksDB, back as Polars frames in milliseconds.

Layout (why: docs/storage-layout.md; codec: :mod:`tradelab.store.blocks`). All keys are bytes::

    tradelab:store                  marker {"format": 1, "created_ms": ...}; absent = not ours
    trades:{SYMBOL}:{13-digit ms}   one block of trades; the key is the block's first trade time;
                                    a block never crosses a clock hour
    index:{SYMBOL}:{13-digit ms}    the block's header [n, t_min, t_max, id_min, id_max, bytes]
    symbol:{SYMBOL}                 {count, first_time, last_time, first_agg_id, last_agg_id, bytes}
    meta:{name}                     small MessagePack documents (put_meta / get_meta)

Closed hours hold one block each; the open hour holds one block per closed minute plus the
~1-second blocks the collector appended since the minute turned (≤ ~120 blocks). Every change —
new trades, the minute/hour roll-ups they trigger, the symbol's counters — goes into ONE
WriteBatch, so a reader never sees half of it and a failed append leaves the store as it was.

A query ``[start, end)`` seeks to ``trades:{SYMBOL}:{floor_hour(start)}``, reads blocks up to the
key ``end`` (an iterator is a snapshot: deletions running meanwhile do not disturb it), trims the
edge blocks with a mask and concatenates numpy arrays into a Polars frame.

Processes: one writer (``TradeStore(path)``) holds RocksDB's lock and an owner file
``TRADELAB-WRITER.json`` (pid, host, start) so a second writer gets :class:`StoreLockedError`
naming the holder. Readers (``readonly=True``) open a RocksDB *secondary* instance in their own
temporary directory and catch up with the writer before every query (``refresh``).

The parts of that live in their own modules, one responsibility each: :mod:`tradelab.store.keys`
(key layout, constants, :class:`StoreStats`), :mod:`tradelab.store.opening` (opening the writer and
secondary readers, the owner file), :mod:`tradelab.store.plan` (change sets and their
WriteBatch) and :mod:`tradelab.store.reading` (reading blocks into columns). This module is the
:class:`TradeStore` that ties them together: life cycle, appends exactly once, the roll-up
worker, retention, queries and small meta documents.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import msgpack
import numpy as np
import polars as pl
import rocksdict as rd

from tradelab.config import DEFAULT_RETENTION_DAYS, resolve_data_dir, validate_symbol
from tradelab.exceptions import (
    ConfigurationError,
    InvalidParameterError,
    InvalidTradesError,
    InvalidWindowError,
    StorageError,
    StorageWriteError,
)
from tradelab.logs import get_logger
from tradelab.schema import empty_trades, to_trade_frame
from tradelab.store.blocks import (
    Columns,
    columns_to_frame,
    decode_block,
    frame_to_columns,
    sort_dedupe,
    take,
)
from tradelab.store.keys import (
    HOUR_MS,
    MAX_MS,
    MINUTE_MS,
    OWNER_FILE,
    STORE_FORMAT,
    StoreStats,
    _bkey,
    _dir_size,
    _dt,
    _empty_meta,
    _floor,
    _ikey,
    _max,
    _min,
    _ms_arg,
    _skey,
    _SymbolState,
)
from tradelab.store.opening import check_path, open_secondary, open_writer, read_owner, wal_files
from tradelab.store.plan import _BlockGone, _Plan, plan_append, plan_to_batch
from tradelab.store.reading import count_blocks, iter_blocks, read_range, symbol_names

__all__ = ["OWNER_FILE", "STORE_FORMAT", "StoreStats", "TradeStore"]

log = get_logger("tradelab.store")

_META_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
_MAX_META_BYTES = 1 << 20


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
        self.readonly = bool(readonly)
        if retention_days is None:
            from tradelab.config import _env_float

            retention_days = _env_float("TRADELAB_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)
        if (
            isinstance(retention_days, bool)
            or not isinstance(retention_days, int | float)
            or not (0 < retention_days < float("inf"))
        ):
            raise InvalidParameterError(
                f"retention_days must be a finite number of days > 0, got {retention_days!r}"
            )
        self.retention_days = float(retention_days)
        self._wlock = threading.RLock()
        self._refresh_lock = threading.Lock()
        self._cond = threading.Condition()
        self._active = 0
        self._closed = False
        self._states: dict[str, _SymbolState] = {}
        self._secondary_dir: str | None = None
        self._threads: list[threading.Thread] = []
        self._retention_stop = threading.Event()
        self._pending: set[str] = set()
        self._worker: threading.Thread | None = None
        self._wake = threading.Event()
        self._busy = False
        check_path(self.path, self.readonly)
        self._db = self._open_reader() if self.readonly else open_writer(self.path)

    # --- opening (the writer and the path checks: tradelab.store.opening) ------------------------

    def _open_reader(self) -> rd.Rdict:
        """Open a secondary in a new temporary directory; note the writer's WALs seen at open."""
        self._wals = wal_files(self.path)  # before opening: a flush meanwhile shows up as a change
        self._secondary_dir = tempfile.mkdtemp(prefix="tradelab-reader-")
        db = open_secondary(self.path, self._secondary_dir)
        self._last_refresh = time.monotonic()
        return db

    # --- life cycle ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _op(self) -> Iterator[None]:
        with self._cond:
            if self._closed:
                raise StorageError(f"the trade store at {self.path} is closed")
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                if not self._active:
                    self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Wait for running operations, then release the database (and the writer lock)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._retention_stop.set()
            self._wake.set()
            self._cond.wait_for(lambda: self._active == 0)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()
        self._db.close()
        if self.readonly:
            if self._secondary_dir:
                shutil.rmtree(self._secondary_dir, ignore_errors=True)
        else:
            owner = read_owner(self.path)
            if owner and owner.get("pid") == os.getpid():
                with contextlib.suppress(OSError):
                    (self.path / OWNER_FILE).unlink()

    def __enter__(self) -> TradeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "reader" if self.readonly else "writer"
        return f"<TradeStore {mode} {self.path}{' closed' if self._closed else ''}>"

    def refresh(self) -> None:
        """Readers: catch up with the writing process (no-op for the writer)."""
        if not self.readonly:
            return
        with self._op(), self._refresh_lock:
            if wal_files(self.path) != self._wals:
                self._reopen_reader()
            else:
                try:
                    self._db.try_catch_up_with_primary()
                except Exception as exc:  # e.g. a WAL deleted by a flush just now: re-open
                    log.debug("Catch-up failed (%s); re-opening the reader", exc)
                    self._reopen_reader()
            self._last_refresh = time.monotonic()

    def _reopen_reader(self) -> None:
        """Open a fresh secondary after the writer flushed (a new write-ahead log appeared).

        RocksDB secondaries keep entries replayed from a WAL the primary has since flushed in
        their memtable, where they shadow newer values (facebook/rocksdb#15051, #14444): ``get``
        returns stale counters and, after a bottommost compaction, iterators can resurrect
        deleted blocks. A flush is rare (every ~64 MB of writes, and when a writer closes), so
        re-opening then is cheap and keeps every read exact. The old instance is not closed
        explicitly: a query on another thread may still iterate it; it goes with its last
        reference.
        """
        old_dir = self._secondary_dir
        try:
            db = self._open_reader()
        except StorageError as exc:
            self._secondary_dir = old_dir
            raise StorageError(f"cannot follow the writer of {self.path}: {exc}") from None
        self._db = db
        if old_dir:
            shutil.rmtree(old_dir, ignore_errors=True)

    # --- symbol state (writer) ----------------------------------------------------------------

    def _read_meta(self, sym: str) -> dict[str, Any]:
        raw = self._db.get(_skey(sym))
        return _empty_meta() if raw is None else msgpack.unpackb(raw)

    def _state(self, sym: str) -> _SymbolState:
        st = self._states.get(sym)
        if st is None:
            st = _SymbolState(meta=self._read_meta(sym))
            prefix = b"index:%s:" % sym.encode()
            ro = rd.ReadOptions()
            ro.set_iterate_upper_bound(prefix + b"\xff")
            for k, v in self._db.items(from_key=prefix, read_opt=ro):
                # raw_mode: keys are bytes, which the rocksdict stubs cannot know.
                key_ms = int(cast(bytes, k)[len(prefix) :])
                st.index[key_ms] = tuple(msgpack.unpackb(v))  # type: ignore[assignment]
                st.keys.append(key_ms)
            del ro
            self._states[sym] = st
        return st

    # --- writing -------------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.readonly:
            raise StorageWriteError(
                f"this TradeStore on {self.path} is a reader (readonly=True); only the writing "
                "process (the collector) can change it"
            )

    @staticmethod
    def _validate_columns(cols: Columns) -> None:
        t = cols["time"]
        problems = []
        if bool((t < 0).any()) or bool((t > MAX_MS).any()):
            problems.append(f"time must lie between 1970 and the year 2286 (0..{MAX_MS} ms)")
        for c in ("agg_id", "first_id", "last_id"):
            if bool((cols[c] < 0).any()):
                problems.append(f"{c} must be >= 0")
        if bool((cols["last_id"] < cols["first_id"]).any()):
            problems.append("last_id must be >= first_id")
        if problems:
            raise InvalidTradesError("invalid trades: " + "; ".join(problems))

    def append(self, symbol: str, trades: pl.DataFrame | Iterable[Mapping[str, Any]]) -> int:
        """Store trades of ``symbol`` exactly once, in one atomic write; return how many were new.

        ``trades`` is a frame in the trade schema (or records, see
        :func:`tradelab.schema.to_trade_frame`). Trades whose ``agg_id`` is already stored are
        dropped, so replays and overlapping backfills are harmless. On any failure nothing is
        written (:class:`StorageWriteError`) and the store is exactly as before.
        """
        sym = validate_symbol(symbol)
        self._check_writable()
        frame = to_trade_frame(trades)
        if frame.height == 0:
            return 0
        cols = frame_to_columns(frame)
        self._validate_columns(cols)
        cols = sort_dedupe(cols)
        with self._op(), self._wlock:
            st = self._state(sym)
            last_id = st.meta["last_agg_id"]
            if last_id is not None and int(cols["agg_id"][0]) <= last_id:
                cols = self._drop_stored(sym, st, cols)
            n = len(cols["agg_id"])
            if n == 0:
                return 0
            plan = plan_append(self, sym, st, cols)  # one new block per clock hour
            meta = dict(st.meta)
            t = cols["time"]
            meta["count"] += n
            meta["first_time"] = _min(meta["first_time"], int(t.min()))
            meta["last_time"] = _max(meta["last_time"], int(t.max()))
            meta["first_agg_id"] = _min(meta["first_agg_id"], int(cols["agg_id"][0]))
            meta["last_agg_id"] = _max(meta["last_agg_id"], int(cols["agg_id"][-1]))
            old_last = st.meta["last_time"]
            self._commit(sym, st, plan, meta, what=f"appending {n} trades of {sym}")
        open_minute = _floor(meta["last_time"], MINUTE_MS)
        if (
            old_last is None
            or _floor(old_last, MINUTE_MS) < open_minute
            or min(plan.puts, default=open_minute) < open_minute
        ):
            self._schedule_roll_up(sym)
        log.debug("Stored %d trades for %s", n, sym, extra={"symbol": sym, "trades": n})
        return n

    def _drop_stored(self, sym: str, st: _SymbolState, cols: Columns) -> Columns:
        """Slow path: drop incoming trades whose agg_id some block already holds."""
        ids = cols["agg_id"]
        lo, hi = int(ids[0]), int(ids[-1])
        keep = np.ones(len(ids), dtype=bool)
        for key in st.keys:
            _n, _t0, _t1, i0, i1, _b = st.index[key]
            if i1 < lo or i0 > hi:
                continue
            raw = self._db.get(_bkey(sym, key))
            if raw is None:
                continue
            stored = decode_block(raw)[1]["agg_id"]
            keep &= ~np.isin(ids, stored, assume_unique=True)
        return cols if bool(keep.all()) else take(cols, keep)

    # --- roll-ups (background) -----------------------------------------------------------------

    def roll_up(self, symbol: str | None = None) -> int:
        """Merge blocks now: each closed hour into one block, each closed minute of the open hour
        into one block. Returns how many blocks were merged away.

        The writer does this on a background thread after appends that cross a minute; call it
        to have the final layout immediately (tests, benchmarks, before a backup). Each merge is
        one atomic batch (write the merged block, delete its parts): readers never see half.
        """
        self._check_writable()
        syms = [validate_symbol(symbol)] if symbol is not None else self._symbol_names()
        merged = 0
        with self._op():
            for sym in syms:
                merged += self._roll_up(sym)
        return merged

    def _roll_up(self, sym: str) -> int:
        with self._wlock:
            st = self._state(sym)
            last = st.meta["last_time"]
            if last is None:
                return 0
            ranges: dict[int, int] = {}
            for k in st.keys:
                h = _floor(k, HOUR_MS)
                ranges[h] = ranges.get(h, 0) + 1
            open_hour, open_minute = _floor(last, HOUR_MS), _floor(last, MINUTE_MS)
            todo = [(h, h + HOUR_MS) for h, c in sorted(ranges.items()) if c > 1 and h < open_hour]
            minutes: dict[int, int] = {}
            for k in st.keys_between(open_hour, open_minute):
                m = _floor(k, MINUTE_MS)
                minutes[m] = minutes.get(m, 0) + 1
            todo += [(m, m + MINUTE_MS) for m, c in sorted(minutes.items()) if c > 1]
        return sum(self._merge_range(sym, st, lo, hi) for lo, hi in todo)

    def _merge_range(self, sym: str, st: _SymbolState, lo: int, hi: int) -> int:
        """Merge the blocks keyed in ``[lo, hi)`` into one. The reading and encoding happen
        outside the write lock (appends keep flowing); the commit re-checks under the lock that
        no append or retention touched those blocks meanwhile, else it leaves them for later."""
        with self._wlock:
            keys = st.keys_between(lo, hi)
            entries = [st.index[k] for k in keys]
        if len(keys) < 2:
            return 0
        plan = _Plan(self, sym, st)
        try:
            plan.merge(keys, None)
        except _BlockGone:
            return 0
        with self._wlock:
            if st.keys_between(lo, hi) != keys or [st.index[k] for k in keys] != entries:
                return 0
            self._commit(sym, st, plan, dict(st.meta), what=f"rolling up blocks of {sym}")
        return len(keys) - 1

    def _schedule_roll_up(self, sym: str) -> None:
        with self._cond:
            if self._closed:
                return
            self._pending.add(sym)
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._worker_loop, name="tradelab-rollup", daemon=True
                )
                self._threads.append(self._worker)
                self._worker.start()
        self._wake.set()

    def _worker_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._cond:
                if self._closed:
                    return
                pending, self._pending = self._pending, set()
                self._busy = True
            try:
                for sym in sorted(pending):
                    self._roll_up_logged(sym)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _roll_up_logged(self, sym: str) -> None:
        try:
            with self._op():
                self._roll_up(sym)
        except StorageError as exc:
            if not self._closed:
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
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _commit(
        self,
        sym: str,
        st: _SymbolState,
        plan: _Plan,
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
        st.index = index
        st.keys = sorted(index)
        st.meta = meta

    def _write(self, batch: rd.WriteBatch, what: str) -> None:
        try:
            self._db.write(batch)
        except Exception as exc:
            raise StorageWriteError(
                f"{what} failed, nothing of it was stored (the store is unchanged): {exc}"
            ) from None

    # --- retention -----------------------------------------------------------------------------

    def delete_before(self, cutoff: dt.datetime | int) -> int:
        """Delete every trade with ``time < cutoff`` (all symbols); return how many were removed.

        One atomic batch: whole hours go with a range tombstone, the edge hour's blocks are
        rewritten. Queries running meanwhile keep their snapshot. Disk space comes back when
        RocksDB compacts the range, which runs on a background thread.
        """
        cut = _ms_arg(cutoff, "cutoff")
        self._check_writable()
        removed_total = 0
        with self._op(), self._wlock:
            for sym in self._symbol_names():
                st = self._state(sym)
                if not st.keys or st.keys[0] >= cut:
                    continue
                plan = _Plan(self, sym, st)
                cut_hour = _floor(cut, HOUR_MS)
                whole = st.keys_between(0, cut_hour)
                removed = sum(st.index[key][0] for key in whole)
                batch = rd.WriteBatch(raw_mode=True)
                if whole:
                    batch.delete_range(_bkey(sym, 0), _bkey(sym, cut_hour))
                    batch.delete_range(_ikey(sym, 0), _ikey(sym, cut_hour))
                for key in st.keys_between(cut_hour, cut):
                    n, _t0, t1, _i0, _i1, _b = st.index[key]
                    plan.deletes.add(key)
                    if t1 < cut:
                        removed += n
                        continue
                    cols = plan.cols(key)
                    keep = cols["time"] >= cut
                    removed += int((~keep).sum())
                    plan.merge([], take(cols, keep))
                if not removed and not plan.deletes:
                    continue
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
                    _dt(cut),
                    extra={"symbol": sym, "trades": removed, "cutoff_ms": cut},
                )
                self._compact_later(_bkey(sym, 0), _bkey(sym, cut_hour + HOUR_MS))
        return removed_total

    def enforce_retention(self, now: dt.datetime | int | None = None) -> int:
        """Delete trades older than ``retention_days`` before ``now`` (default: the clock)."""
        now_ms = int(time.time() * 1000) if now is None else _ms_arg(now, "now")
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
                    if self._closed:
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

    def trades(self, symbol: str, start: dt.datetime | int, end: dt.datetime | int) -> pl.DataFrame:
        """Trades of ``symbol`` with ``start <= time < end``, sorted by agg_id (trade schema).

        ``start``/``end`` are timezone-aware datetimes or unix milliseconds.
        """
        sym = validate_symbol(symbol)
        lo, hi = _ms_arg(start, "start"), _ms_arg(end, "end")
        if lo < 0 or hi > MAX_MS + 1:
            raise InvalidWindowError(
                f"window [{lo}, {hi}) ms lies outside 1970..2286 (0..{MAX_MS + 1} unix ms)"
            )
        if hi <= lo:
            raise InvalidWindowError(
                f"end ({_dt(hi)}) must be after start ({_dt(lo)}): the window is [start, end)"
            )
        self._auto_refresh()
        with self._op():
            cols = self._read_range(sym, lo, hi)
        if not len(cols["agg_id"]):
            return empty_trades()
        return columns_to_frame(cols)

    def _iter_blocks(self, sym: str, lo: int, hi: int) -> Iterator[Columns]:
        """Decoded blocks overlapping ``[lo, hi)``, trimmed to it, from one snapshot."""
        yield from iter_blocks(self._db, sym, lo, hi)

    def _read_range(self, sym: str, lo: int, hi: int) -> Columns:
        return read_range(self._db, sym, lo, hi)

    def _symbol_names(self) -> list[str]:
        return symbol_names(self._db)

    def symbols(self) -> list[str]:
        """Symbols with trades stored, sorted."""
        self._auto_refresh()
        with self._op():
            out = []
            for sym in self._symbol_names():
                if self._meta_of(sym)["count"]:
                    out.append(sym)
            return out

    def _meta_of(self, sym: str) -> dict[str, Any]:
        if not self.readonly:
            with self._wlock:
                return self._state(sym).meta
        return self._read_meta(sym)

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
                all_bytes = sum(self._meta_of(s)["bytes"] for s in self._symbol_names())
                total = int(_dir_size(self.path) * meta["bytes"] / max(all_bytes, 1))
        count = meta["count"]
        return StoreStats(
            symbol=sym,
            trade_count=count,
            first_time=_dt(meta["first_time"]) if count else None,
            last_time=_dt(meta["last_time"]) if count else None,
            first_agg_id=meta["first_agg_id"] if count else None,
            last_agg_id=meta["last_agg_id"] if count else None,
            bytes_on_disk=total,
        )

    def block_count(self, symbol: str, start: dt.datetime | int, end: dt.datetime | int) -> int:
        """How many blocks a query of ``[start, end)`` reads (diagnostics, tests, benchmarks)."""
        sym = validate_symbol(symbol)
        lo, hi = _ms_arg(start, "start"), _ms_arg(end, "end")
        self._auto_refresh()
        with self._op():
            return count_blocks(self._db, sym, lo, hi)

    # --- small documents -----------------------------------------------------------------------

    @staticmethod
    def _meta_key(name: object) -> bytes:
        if not isinstance(name, str) or not _META_NAME.match(name):
            raise InvalidParameterError(
                f"meta name must be 1-100 characters of letters, digits, '_', '.', '-', "
                f"got {name!r}"
            )
        return b"meta:" + name.encode()

    def put_meta(self, name: str, value: dict[str, Any]) -> None:
        """Store a small MessagePack document (≤ 1 MiB) under ``name`` (e.g. collector status)."""
        key = self._meta_key(name)
        self._check_writable()
        if not isinstance(value, dict):
            raise InvalidParameterError(f"meta value must be a dict, got {type(value).__name__}")
        try:
            raw = msgpack.packb(value, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidParameterError(
                f"meta {name!r} is not MessagePack-serialisable: {exc}"
            ) from None
        if len(raw) > _MAX_META_BYTES:
            raise InvalidParameterError(
                f"meta {name!r} is {len(raw)} bytes packed; the limit is {_MAX_META_BYTES}"
            )
        with self._op(), self._wlock:
            batch = rd.WriteBatch(raw_mode=True)
            batch.put(key, raw)
            self._write(batch, f"writing meta {name!r}")

    def get_meta(self, name: str) -> dict[str, Any] | None:
        """The document stored under ``name``, or None."""
        key = self._meta_key(name)
        self._auto_refresh()
        with self._op():
            raw = self._db.get(key)
        return None if raw is None else msgpack.unpackb(raw, raw=False, strict_map_key=False)
