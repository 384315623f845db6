"""TradeStore: Binance aggTrades in an embedded RocksDB, back as Polars frames in milliseconds.

Layout (why: docs/storage-layout.md; codec: :mod:`tradelab.blocks`). All keys are bytes::

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
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import msgpack
import numpy as np
import polars as pl
import rocksdict as rd

from .blocks import (
    BlockHeader,
    Columns,
    columns_to_frame,
    concat_columns,
    decode_block,
    decode_into,
    empty_columns,
    encode_block,
    frame_to_columns,
    sort_dedupe,
    take,
)
from .config import DEFAULT_RETENTION_DAYS, resolve_data_dir, validate_symbol
from .exceptions import (
    ConfigurationError,
    InvalidParameterError,
    InvalidTradesError,
    InvalidWindowError,
    NoDataError,
    NotADatabaseError,
    StorageError,
    StorageWriteError,
    StoreLockedError,
)
from .logs import get_logger
from .schema import empty_trades, to_ms, to_trade_frame

__all__ = ["OWNER_FILE", "STORE_FORMAT", "StoreStats", "TradeStore"]

log = get_logger("tradelab.store")

STORE_FORMAT = 1
OWNER_FILE = "TRADELAB-WRITER.json"
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
MAX_MS = 10**13 - 1  # 13 digits: until the year 2286
_MARKER = b"tradelab:store"
_META_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
_MAX_META_BYTES = 1 << 20
_BLOCK_CACHE_BYTES = 256 << 20  # a week of BTCUSDT is ~140 MB uncompressed
_START_HINT = "start collection first: `%tradelab start` in a notebook or `tradelab collect`"


def _bkey(sym: str, ms: int) -> bytes:
    return b"trades:%s:%013d" % (sym.encode(), ms)


def _bend(sym: str, ms: int) -> bytes:
    """The exclusive upper-bound key for blocks of ``sym`` starting before ``ms``."""
    return _bkey(sym, ms) if ms <= MAX_MS else b"trades:%s;" % sym.encode()


def _ikey(sym: str, ms: int) -> bytes:
    return b"index:%s:%013d" % (sym.encode(), ms)


def _skey(sym: str) -> bytes:
    return b"symbol:%s" % sym.encode()


def _floor(ms: int, unit: int) -> int:
    return ms - ms % unit


def _dt(ms: int | None) -> dt.datetime | None:
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
        import bisect

        return self.keys[bisect.bisect_left(self.keys, lo) : bisect.bisect_left(self.keys, hi)]


def _empty_meta() -> dict[str, Any]:
    return {
        "count": 0,
        "first_time": None,
        "last_time": None,
        "first_agg_id": None,
        "last_agg_id": None,
        "bytes": 0,
    }


class _BlockGone(StorageError):
    """A block named by the index was deleted meanwhile (a concurrent retention)."""


class _Plan:
    """An in-memory change set for one symbol: blocks to put and keys to delete."""

    def __init__(self, store: TradeStore, sym: str, st: _SymbolState) -> None:
        self.store, self.sym, self.st = store, sym, st
        self.puts: dict[int, tuple[bytes, BlockHeader]] = {}
        self.deletes: set[int] = set()
        self.loaded: dict[int, Columns] = {}

    def cols(self, key: int) -> Columns:
        if key not in self.loaded:
            raw = self.store._db.get(_bkey(self.sym, key))
            if raw is None:
                raise _BlockGone(f"block {key} of {self.sym} is in the index but missing")
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
        )
        for k in keys:
            if k != t_min:
                self.deletes.add(k)
                self.puts.pop(k, None)
        self.deletes.discard(t_min)
        self.puts[t_min] = (value, hdr)
        self.loaded[t_min] = merged


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
            from .config import _env_float

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
        self._check_path()
        self._db = self._open_reader() if self.readonly else self._open_writer()

    # --- opening -------------------------------------------------------------------------------

    def _check_path(self) -> None:
        p = self.path
        if p.exists() and not p.is_dir():
            raise NotADatabaseError(f"{p} is a file, not a tradelab store (a directory)")
        has_db = (p / "CURRENT").is_file()
        if p.is_dir() and not has_db:
            entries = [e for e in p.iterdir() if e.name != OWNER_FILE]
            if entries:
                raise NotADatabaseError(
                    f"{p} holds files but no tradelab store (no RocksDB database there); "
                    "give an empty or new directory, or the directory of an existing store"
                )
        if self.readonly and not has_db:
            raise NoDataError(f"no trade store at {p} yet: {_START_HINT}")

    @staticmethod
    def _options(create: bool) -> rd.Options:
        opts = rd.Options(raw_mode=True)
        opts.create_if_missing(create)
        opts.set_compression_type(rd.DBCompressionType.zstd())
        opts.set_bottommost_compression_type(rd.DBCompressionType.zstd())
        table = rd.BlockBasedOptions()
        table.set_block_cache(rd.Cache(_BLOCK_CACHE_BYTES))  # hot hours stay decompressed
        opts.set_block_based_table_factory(table)
        opts.set_keep_log_file_num(3)
        opts.set_max_background_jobs(2)
        return opts

    def _open_writer(self) -> rd.Rdict:
        p = self.path
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageWriteError(f"cannot create the store directory {p}: {exc}") from None
        try:
            db = rd.Rdict(str(p), self._options(create=True))
        except Exception as exc:
            msg = str(exc)
            if "lock" in msg.lower():
                raise StoreLockedError(self._locked_message()) from None
            if "Corruption" in msg or "Invalid argument" in msg or "CURRENT" in msg:
                raise NotADatabaseError(f"{p} is not a readable tradelab store: {msg}") from None
            raise StorageError(f"cannot open the store at {p} for writing: {msg}") from None
        try:
            marker = db.get(_MARKER)
            if marker is None:
                if next(iter(db.keys()), None) is not None:
                    raise NotADatabaseError(
                        f"{p} is a RocksDB database but not a tradelab store (no marker key)"
                    )
                db.put(
                    _MARKER,
                    msgpack.packb({"format": STORE_FORMAT, "created_ms": int(time.time() * 1000)}),
                )
            else:
                self._check_marker(marker)
            self._write_owner()
        except BaseException:
            db.close()
            raise
        log.debug("Opened trade store %s for writing", p, extra={"path": str(p)})
        return db

    def _check_marker(self, marker: bytes) -> None:
        try:
            doc = msgpack.unpackb(marker)
        except Exception:
            doc = None
        if not isinstance(doc, dict) or doc.get("format") != STORE_FORMAT:
            raise NotADatabaseError(
                f"{self.path} holds a store of an unknown format {doc!r}; this tradelab reads "
                f"format {STORE_FORMAT}"
            )

    def _owner(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.path / OWNER_FILE).read_text())
        except (OSError, ValueError):
            return None

    def _locked_message(self) -> str:
        owner = self._owner()
        who = "another process"
        if owner:
            started = _dt(owner.get("started_ms"))
            who = f"process {owner.get('pid')} on {owner.get('host')}" + (
                f" (since {started:%Y-%m-%d %H:%M:%S} UTC)" if started else ""
            )
        if owner and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            who = f"this process (pid {os.getpid()}) — reuse it via tradelab.open_store(path)"
        return (
            f"the trade store at {self.path} is being written by {who}; only one writer at a "
            "time: open it with readonly=True (or tradelab.open_store(path)) to read while "
            "it writes"
        )

    def _write_owner(self) -> None:
        doc = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_ms": int(time.time() * 1000),
        }
        tmp = self.path / (OWNER_FILE + ".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.path / OWNER_FILE)

    def _wal_files(self) -> frozenset[str]:
        try:
            return frozenset(e.name for e in os.scandir(self.path) if e.name.endswith(".log"))
        except OSError:
            return frozenset()

    def _open_reader(self) -> rd.Rdict:
        self._wals = self._wal_files()  # before opening: a flush meanwhile shows up as a change
        self._secondary_dir = tempfile.mkdtemp(prefix="tradelab-reader-")
        try:
            db = rd.Rdict(
                str(self.path),
                self._options(create=False),
                access_type=rd.AccessType.secondary(self._secondary_dir),
            )
        except Exception as exc:
            shutil.rmtree(self._secondary_dir, ignore_errors=True)
            msg = str(exc)
            if "No such file" in msg:
                raise NoDataError(f"no trade store at {self.path} yet: {_START_HINT}") from None
            raise NotADatabaseError(f"cannot read {self.path} as a tradelab store: {msg}") from None
        try:
            marker = db.get(_MARKER)
            if marker is None:
                if next(iter(db.keys()), None) is None:  # a writer is creating it right now
                    raise NoDataError(f"the trade store at {self.path} is empty: {_START_HINT}")
                raise NotADatabaseError(
                    f"{self.path} is a RocksDB database but not a tradelab store (no marker key)"
                )
            self._check_marker(marker)
        except BaseException:
            db.close()
            shutil.rmtree(self._secondary_dir, ignore_errors=True)
            raise
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
            owner = self._owner()
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
            if self._wal_files() != self._wals:
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
            plan = self._plan_append(sym, st, cols)
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

    def _plan_append(self, sym: str, st: _SymbolState, cols: Columns) -> _Plan:
        """One new block per clock hour the trades touch (merged into a block of the same key).

        Roll-ups (closed minutes -> minute blocks, closed hours -> one block) are left to the
        background worker (:meth:`roll_up`) so an append stays ~1 ms whatever the time.
        """
        plan = _Plan(self, sym, st)
        t = cols["time"]
        hours = t - t % HOUR_MS
        first_hour = int(hours[0])
        groups = (
            [cols]
            if bool((hours == first_hour).all())
            else [take(cols, hours == h) for h in np.unique(hours)]
        )
        for part in groups:
            key = int(part["time"].min())
            if key in st.index or key in plan.puts:
                plan.merge([key], part)
                continue
            plan.puts[key] = (
                encode_block(part),
                BlockHeader(
                    len(part["agg_id"]),
                    key,
                    int(part["time"].max()),
                    int(part["agg_id"][0]),
                    int(part["agg_id"][-1]),
                ),
            )
            plan.loaded[key] = part
        return plan

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
        index = dict(st.index)
        for key in dropped:
            entry = index.pop(key)
            meta["bytes"] -= entry[5]
        for key in plan.deletes:
            if key in plan.puts:
                continue
            batch.delete(_bkey(sym, key))
            batch.delete(_ikey(sym, key))
            stale = index.pop(key, None)
            if stale is not None:
                meta["bytes"] -= stale[5]
        for key, (value, h) in plan.puts.items():
            entry = (h.n, h.t_min, h.t_max, h.id_min, h.id_max, len(value))
            batch.put(_bkey(sym, key), value)
            batch.put(_ikey(sym, key), msgpack.packb(list(entry)))
            old = index.get(key)
            if old is not None:
                meta["bytes"] -= old[5]
            index[key] = entry
            meta["bytes"] += len(value)
        if not index:
            # last_time/last_agg_id stay: they tell the collector where it left off
            meta.update(count=0, first_time=None, first_agg_id=None, bytes=0)
        elif plan.deletes or dropped:
            meta["first_time"] = min(e[1] for e in index.values())
            meta["first_agg_id"] = min(e[3] for e in index.values())
        batch.put(_skey(sym), msgpack.packb(meta))
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

    def _iter_docs(self, sym: str, lo: int, hi: int) -> Iterator[dict[str, Any]]:
        """Unpacked blocks that overlap ``[lo, hi)``, in key order, from one snapshot."""
        ro = rd.ReadOptions()  # must outlive the iterator (see docs/storage-layout.md)
        ro.set_iterate_upper_bound(_bend(sym, hi))
        items = self._db.values(from_key=_bkey(sym, _floor(lo, HOUR_MS)), read_opt=ro)
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

    def _iter_blocks(self, sym: str, lo: int, hi: int) -> Iterator[Columns]:
        """Decoded blocks overlapping ``[lo, hi)``, trimmed to it, from one snapshot."""
        for doc in self._iter_docs(sym, lo, hi):
            cols = decode_block(doc)[1]
            if doc["t0"] < lo or doc["t1"] >= hi:
                t = cols["time"]
                cols = take(cols, (t >= lo) & (t < hi))
            yield cols

    def _read_range(self, sym: str, lo: int, hi: int) -> Columns:
        # blocks wholly inside the window are decoded straight into the output arrays; only
        # the (at most ~2) edge blocks are decoded apart and trimmed
        parts: list[dict[str, Any] | Columns] = []
        total = 0
        for doc in self._iter_docs(sym, lo, hi):
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

    def _symbol_names(self) -> list[str]:
        ro = rd.ReadOptions()
        ro.set_iterate_upper_bound(b"symbol;")
        names = [  # raw_mode: keys are bytes, which the rocksdict stubs cannot know
            cast(bytes, k)[len(b"symbol:") :].decode()
            for k in self._db.keys(from_key=b"symbol:", read_opt=ro)
        ]
        del ro
        return names

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
            ro = rd.ReadOptions()
            ro.set_iterate_upper_bound(_bend(sym, hi))
            n = sum(1 for _ in self._db.keys(from_key=_bkey(sym, _floor(lo, HOUR_MS)), read_opt=ro))
            del ro
            return n

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


def _ms_arg(value: Any, name: str) -> int:
    """Unix ms from a tz-aware datetime or a number (numpy integers included)."""
    if isinstance(value, np.integer):
        value = int(value)
    return to_ms(value, name=name)


def _min(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


def _max(a: int | None, b: int) -> int:
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
