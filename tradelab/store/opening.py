"""Opening a trade store's RocksDB: the writer with its lock owner file, and secondary readers.

Plain functions of the store's path, used by :class:`tradelab.store.TradeStore` when it opens
(and, for readers, re-opens) its database. Why it is done this way: docs/storage-layout.md,
"Processes" and "Paths":

* one writer per path — RocksDB's ``LOCK`` plus the owner file ``TRADELAB-WRITER.json`` (pid,
  host, start), so a second writer gets :class:`StoreLockedError` naming the holder instead of
  RocksDB's raw ``IO error: While lock file``;
* readers are RocksDB *secondary* instances in a scratch directory of their own
  (:mod:`.scratch`: under the temporary directory, removed on close and, after a kill, by the
  next reader; on read-only media they read through a view of symbolic links); the set of
  write-ahead logs seen at open (:func:`wal_files`) tells a reader when the writer flushed;
* every RocksDB error becomes a one-line :class:`~tradelab.exceptions.StorageError`
  (:mod:`.errors`): a damaged or missing file is
  :class:`~tradelab.store.errors.CorruptStoreError` naming it, for readers and writers alike;
* a file, a non-empty directory without a RocksDB or a RocksDB without the marker key is
  :class:`NotADatabaseError`; a reader on a missing/empty path is :class:`NoDataError`.

:class:`SecondaryFollower` is a reader's secondary instance with its catch-up rule. Also the
store directory's files: :func:`wal_files` and :func:`dir_size` (its size on disk).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import rocksdict as rd

from tradelab.exceptions import (
    NoDataError,
    NotADatabaseError,
    StorageError,
    StorageWriteError,
    StoreLockedError,
)
from tradelab.logs import get_logger
from tradelab.store.errors import (
    CorruptStoreError,
    corrupt_message,
    describe_cause,
    is_rocksdb_error,
    one_line,
    storage_error,
)
from tradelab.store.keys import MARKER, OWNER_FILE, STORE_FORMAT, utc_datetime
from tradelab.store.scratch import (
    new_scratch_dir,
    pid_alive,
    remove_orphans,
    store_writable,
    sync_view,
)

__all__ = [
    "SecondaryFollower",
    "check_live_files",
    "check_marker",
    "check_path",
    "dir_size",
    "locked_message",
    "open_fallback_reader",
    "open_rdict",
    "open_secondary",
    "open_writer",
    "options",
    "read_owner",
    "wal_files",
    "write_owner",
    "writer_alive",
]

log = get_logger("tradelab.store")  # one logger for the whole store

_BLOCK_CACHE_BYTES = 512 << 20  # a week of BTCUSDT is ~170 MB uncompressed
_block_cache: rd.Cache | None = None
_START_HINT = "start collection first: `%tradelab start` in a notebook or `tradelab collect`"


def check_path(p: Path, readonly: bool) -> None:
    """Refuse, before RocksDB touches anything, a path that is not (or cannot become) a store."""
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
    if readonly and not has_db:
        raise NoDataError(f"no trade store at {p} yet: {_START_HINT}")


def options(create: bool) -> rd.Options:
    """The RocksDB settings of every store (raw bytes, zstd, a 512 MiB block cache shared by
    every store this process opens).

    The cache is a hyper clock cache: hour blocks are 0.5–1 MB values, and a sharded LRU cache
    of that size evicts some of a week's 170 MB from its fuller shards (a 168 h read then
    decompresses them again: ~90 ms instead of ~12 ms). Memory is only used by what is read.
    Open with :func:`open_rdict`: options given otherwise are ignored on an existing database.
    """
    global _block_cache
    if _block_cache is None:
        _block_cache = rd.Cache.new_hyper_clock_cache(_BLOCK_CACHE_BYTES, 0)
    opts = rd.Options(raw_mode=True)
    opts.create_if_missing(create)
    opts.set_compression_type(rd.DBCompressionType.zstd())
    opts.set_bottommost_compression_type(rd.DBCompressionType.zstd())
    # zstd level 9 where data settles (default 3): 4.90 -> 4.85 bytes per trade on the synthetic
    # week, which pays for two days of hour histograms (dayhists.KEEP_HOURS_MS); compacting a
    # whole week takes ~4.3 s instead of ~1.6 s in RocksDB's background threads, a day's worth
    # well under a second; reading is unchanged (zstd decodes at the same speed at any level)
    opts.set_bottommost_compression_options(-14, 9, 0, 0, True)
    table = rd.BlockBasedOptions()
    table.set_block_cache(_block_cache)  # hot hours stay decompressed
    opts.set_block_based_table_factory(table)
    opts.set_keep_log_file_num(3)
    opts.set_max_background_jobs(2)
    return opts


def open_rdict(path: str, create: bool, access_type: rd.AccessType | None = None) -> rd.Rdict:
    """Open a RocksDB database with :func:`options`.

    The options go in as the default column family's too: on an existing database rocksdict
    otherwise takes the column family's settings from the OPTIONS file, which cannot name a
    cache object — every reopened store read through RocksDB's default 8 MiB cache, so a
    warm 168 h read decompressed all its blocks again (~250 ms of a ~500 ms read).
    """
    opts = options(create)
    if access_type is None:
        return rd.Rdict(path, opts, column_families={"default": opts})
    return rd.Rdict(path, opts, column_families={"default": opts}, access_type=access_type)


def _is_lock_error(msg: str) -> bool:
    return "While lock file" in msg or "lock hold by" in msg or "/LOCK:" in msg


def open_writer(p: Path) -> rd.Rdict:
    """Open (creating if needed) the store at ``p`` for writing: lock, marker, owner file."""
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageWriteError(f"cannot create the store directory {p}: {exc}") from None
    try:
        db = open_rdict(str(p), create=True)
    except Exception as exc:
        msg = one_line(exc)
        if _is_lock_error(msg):
            raise StoreLockedError(locked_message(p)) from None
        if "Invalid argument" in msg:
            raise NotADatabaseError(f"{p} is not a readable tradelab store: {msg}") from None
        raise storage_error(p, exc, f"opening the store at {p} for writing") from None
    try:
        marker = db.get(MARKER)
        if marker is None:
            if next(iter(db.keys()), None) is not None:
                raise NotADatabaseError(
                    f"{p} is a RocksDB database but not a tradelab store (no marker key)"
                )
            db.put(
                MARKER,
                msgpack.packb({"format": STORE_FORMAT, "created_ms": int(time.time() * 1000)}),
            )
        else:
            check_marker(p, marker)
        write_owner(p)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            db.close()
        if is_rocksdb_error(exc):
            raise storage_error(p, exc, f"opening the store at {p} for writing") from None
        if isinstance(exc, OSError):  # the owner file
            raise StorageWriteError(
                f"opening the store at {p} for writing failed: {describe_cause(p, str(exc))}"
            ) from None
        raise
    log.debug("Opened trade store %s for writing", p, extra={"path": str(p)})
    return db


def open_fallback_reader(p: Path) -> rd.Rdict | None:
    """A read-only instance of ``p`` (no lock, nothing written but rocksdict's small config
    file), for the writer to keep answering queries while it cannot reopen for writing; None
    if even that fails."""
    try:
        return open_rdict(str(p), False, rd.AccessType.read_only(False))
    except Exception as exc:
        log.debug("Read-only fallback of %s failed: %s", p, one_line(exc))
        return None


def check_marker(p: Path, marker: bytes) -> None:
    """Refuse a store whose marker names a format this tradelab does not read."""
    try:
        doc = msgpack.unpackb(marker)
    except Exception:
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != STORE_FORMAT:
        raise NotADatabaseError(
            f"{p} holds a store of an unknown format {doc!r}; this tradelab reads "
            f"format {STORE_FORMAT}"
        )


def read_owner(p: Path) -> dict[str, Any] | None:
    """The owner file of the store at ``p`` (who writes it), or None if absent/unreadable."""
    try:
        return json.loads((p / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None


def locked_message(p: Path) -> str:
    """The :class:`StoreLockedError` text: who holds the store, and how to read it meanwhile."""
    owner = read_owner(p)
    who = "another process"
    if owner:
        started = utc_datetime(owner.get("started_ms"))
        who = f"process {owner.get('pid')} on {owner.get('host')}" + (
            f" (since {started:%Y-%m-%d %H:%M:%S} UTC)" if started else ""
        )
    if owner and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        who = f"this process (pid {os.getpid()}) — reuse it via tradelab.open_store(path)"
    return (
        f"the trade store at {p} is being written by {who}; only one writer at a "
        "time: open it with readonly=True (or tradelab.open_store(path)) to read while "
        "it writes"
    )


def writer_alive(p: Path) -> tuple[dict[str, Any] | None, bool | None]:
    """The owner file of ``p`` and whether that writer still runs: True/False when it names a
    process on this host (checked with signal 0 and, for another process, RocksDB's lock:
    a pid reused by an unrelated process holds no lock), None when it cannot be told (another
    host, no owner file)."""
    owner = read_owner(p)
    if not owner or owner.get("host") != socket.gethostname():
        return owner, None
    pid = owner.get("pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        return owner, False
    if pid == os.getpid():
        return owner, True
    holder = _lock_holder(p / "LOCK")
    return owner, (holder is None or holder == pid)


def _lock_holder(lock: Path) -> int | None:
    """The pid holding a POSIX write lock on RocksDB's ``LOCK`` file: 0 if nobody does, None
    if it cannot be told. Only for a lock held by *another* process: closing a descriptor of
    the file would drop this process's own lock on it."""
    try:
        import fcntl
        import struct

        fd = os.open(lock, os.O_RDONLY)
    except (ImportError, OSError):
        return None
    try:
        query = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        res = fcntl.fcntl(fd, fcntl.F_GETLK, query)
        l_type, _, _, _, l_pid = struct.unpack("hhqqi", res)
        return 0 if l_type == fcntl.F_UNLCK else int(l_pid)
    except OSError:
        return None
    finally:
        os.close(fd)


def write_owner(p: Path) -> None:
    """Name this process as the store's writer (atomically: write a temporary file, rename)."""
    doc = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_ms": int(time.time() * 1000),
    }
    tmp = p / (OWNER_FILE + ".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(p / OWNER_FILE)


def wal_files(p: Path) -> frozenset[str]:
    """The writer's current write-ahead logs; a change means it flushed (or restarted)."""
    try:
        return frozenset(e.name for e in os.scandir(p) if e.name.endswith(".log"))
    except OSError:
        return frozenset()


def open_secondary(p: Path, secondary_dir: str, data: Path | None = None) -> rd.Rdict:
    """Open the store at ``p`` as a RocksDB secondary keeping its files in ``secondary_dir``
    (``data``: the directory RocksDB opens, a view of ``p`` on read-only media; default ``p``).

    On failure ``secondary_dir`` is removed and the error says whether there is no store yet
    (:class:`NoDataError`), something that is not one (:class:`NotADatabaseError`) or a damaged
    one (:class:`~tradelab.store.errors.CorruptStoreError`).
    """
    try:
        db = open_rdict(str(data or p), False, rd.AccessType.secondary(secondary_dir))
    except Exception as exc:
        shutil.rmtree(secondary_dir, ignore_errors=True)
        msg = one_line(exc)
        if "No such file" in msg and not re.search(r"\.(sst|blob)\b", msg):
            raise NoDataError(f"no trade store at {p} yet: {_START_HINT}") from None
        if "Corruption" in msg or "No such file" in msg:
            raise storage_error(p, exc, f"reading {p}") from None
        if any(s in msg for s in ("os error 30", "os error 13", "Read-only", "ermission")):
            raise StorageError(
                f"cannot read {p}: {describe_cause(p, msg)} (the reader could not use a "
                "view of it either)"
            ) from None
        raise NotADatabaseError(f"cannot read {p} as a tradelab store: {msg}") from None
    try:
        check_live_files(p, db)
        marker = db.get(MARKER)
        if marker is None:
            if next(iter(db.keys()), None) is None:  # a writer is creating it right now
                _diagnose_empty(p, secondary_dir)  # ... or its table files are gone
                raise NoDataError(f"the trade store at {p} is empty: {_START_HINT}")
            raise NotADatabaseError(
                f"{p} is a RocksDB database but not a tradelab store (no marker key)"
            )
        check_marker(p, marker)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            db.close()
        shutil.rmtree(secondary_dir, ignore_errors=True)
        if is_rocksdb_error(exc):
            raise storage_error(p, exc, f"reading {p}") from None
        raise
    return db


def _diagnose_empty(p: Path, scratch: str) -> None:
    """A secondary silently skips table files that are missing, so a store whose files were
    deleted reads as empty. So open an empty-looking store read-only (through a view in
    ``scratch``: nothing is written into the store), which checks every file the MANIFEST
    lists, and raise what that finds — the same error the writer gets."""
    try:
        view = sync_view(p, Path(scratch) / "check")
        probe = open_rdict(str(view), False, rd.AccessType.read_only(False))
    except Exception as exc:
        if is_rocksdb_error(exc) and ("Corruption" in str(exc) or "No such file" in str(exc)):
            raise storage_error(p, exc, f"reading {p}") from None
        return
    probe.close()


def check_live_files(p: Path, db: rd.Rdict) -> None:
    """Raise :class:`CorruptStoreError` if a table file RocksDB lists is missing from ``p``.

    A secondary opens without looking at the table files, so a deleted one would otherwise
    read as an empty store (or silently as fewer trades); the writer fails to open on it. Both
    now say the same thing."""
    try:
        present = {e.name for e in os.scandir(p)}
    except OSError:
        return
    for f in db.live_files():
        name = str(f.get("name", "")).lstrip("/")
        if name and name not in present:
            raise CorruptStoreError(corrupt_message(p, f"No such file or directory: {p / name}"))


def dir_size(path: Path) -> int:
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


class SecondaryFollower:
    """A reader's RocksDB secondary instance of the store at ``path``, kept exact.

    :meth:`refresh` catches up with the writer before a query. RocksDB secondaries keep
    entries replayed from a WAL the primary has since flushed in their memtable, where they
    shadow newer values (facebook/rocksdb#15051, #14444): ``get`` returns stale counters and,
    after a bottommost compaction, iterators can resurrect deleted blocks. So when the set of
    the writer's ``*.log`` files changed since the open (a flush — every ~64 MB of writes and
    when a writer closes — or a restart) it opens a fresh secondary (~2 ms) instead. The old
    instance is not closed explicitly: a query on another thread may still iterate it; it
    goes with its last reference.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._dir: str | None = None
        self._view = not store_writable(path)  # read-only media: read through a view
        remove_orphans()  # the scratch of readers killed before they could remove it
        self.db = self._open()

    def _open(self) -> rd.Rdict:
        """A secondary in a new scratch directory; note the writer's WALs seen at open."""
        self._wals = wal_files(self.path)  # before opening: a flush meanwhile shows as a change
        new_dir = new_scratch_dir()
        try:
            db = self._open_in(new_dir)
        except StorageError as exc:
            if self._view or isinstance(exc, NotADatabaseError | NoDataError):
                raise
            # the directory looked writable but rocksdict could not write its config file
            # there (a read-only mount seen through permissions, an immutable directory)
            self._view = True
            new_dir = new_scratch_dir()
            db = self._open_in(new_dir)
        old_dir, self._dir = self._dir, new_dir
        if old_dir:
            shutil.rmtree(old_dir, ignore_errors=True)
        return db

    def _open_in(self, scratch: str) -> rd.Rdict:
        data = None
        if self._view:
            try:
                data = sync_view(self.path, Path(scratch) / "view")
            except OSError as exc:
                shutil.rmtree(scratch, ignore_errors=True)
                raise StorageError(f"cannot read {self.path}: {exc}") from None
        return open_secondary(self.path, scratch, data)  # removes ``scratch`` on failure

    def refresh(self) -> rd.Rdict:
        """Catch up with the writer (or re-open, see the class docstring); the instance to
        query from now on."""
        with self._lock:
            if wal_files(self.path) != self._wals:
                self._reopen()
            else:
                try:
                    if self._view and self._dir:
                        sync_view(self.path, Path(self._dir) / "view")
                    self.db.try_catch_up_with_primary()
                except Exception as exc:  # e.g. a WAL deleted by a flush just now: re-open
                    log.debug("Catch-up failed (%s); re-opening the reader", exc)
                    self._reopen()
            return self.db

    def _reopen(self) -> None:
        try:
            self.db = self._open()
        except CorruptStoreError:
            raise
        except StorageError as exc:
            raise StorageError(f"cannot follow the writer of {self.path}: {exc}") from None

    def close(self) -> None:
        """Close the instance and remove its scratch directory (never raises)."""
        try:
            self.db.close()
        except Exception as exc:
            log.debug("Closing the reader of %s: %s", self.path, one_line(exc))
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
