"""Opening a trade store's RocksDB: the writer with its lock owner file, and secondary readers.

Plain functions of the store's path, used by :class:`tradelab.store.TradeStore` when it opens
(and, for readers, re-opens) its database. Why it is done this way: docs/storage-layout.md,
"Processes" and "Paths":

* one writer per path — RocksDB's ``LOCK`` plus the owner file ``TRADELAB-WRITER.json`` (pid,
  host, start), so a second writer gets :class:`StoreLockedError` naming the holder instead of
  RocksDB's raw ``IO error: While lock file``;
* readers are RocksDB *secondary* instances in a temporary directory of their own; the set of
  write-ahead logs seen at open (:func:`wal_files`) tells a reader when the writer flushed;
* a file, a non-empty directory without a RocksDB or a RocksDB without the marker key is
  :class:`NotADatabaseError`; a reader on a missing/empty path is :class:`NoDataError`.

:class:`SecondaryFollower` is a reader's secondary instance with its catch-up rule. Also the
store directory's files: :func:`wal_files` and :func:`dir_size` (its size on disk).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
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
from tradelab.store.keys import MARKER, OWNER_FILE, STORE_FORMAT, utc_datetime

__all__ = [
    "SecondaryFollower",
    "check_marker",
    "check_path",
    "dir_size",
    "locked_message",
    "open_secondary",
    "open_writer",
    "options",
    "read_owner",
    "wal_files",
    "write_owner",
]

log = get_logger("tradelab.store")  # one logger for the whole store

_BLOCK_CACHE_BYTES = 256 << 20  # a week of BTCUSDT is ~140 MB uncompressed
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
    """The RocksDB settings of every store (raw bytes, zstd, a 256 MiB block cache)."""
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


def open_writer(p: Path) -> rd.Rdict:
    """Open (creating if needed) the store at ``p`` for writing: lock, marker, owner file."""
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageWriteError(f"cannot create the store directory {p}: {exc}") from None
    try:
        db = rd.Rdict(str(p), options(create=True))
    except Exception as exc:
        msg = str(exc)
        if "lock" in msg.lower():
            raise StoreLockedError(locked_message(p)) from None
        if "Corruption" in msg or "Invalid argument" in msg or "CURRENT" in msg:
            raise NotADatabaseError(f"{p} is not a readable tradelab store: {msg}") from None
        raise StorageError(f"cannot open the store at {p} for writing: {msg}") from None
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
    except BaseException:
        db.close()
        raise
    log.debug("Opened trade store %s for writing", p, extra={"path": str(p)})
    return db


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


def open_secondary(p: Path, secondary_dir: str) -> rd.Rdict:
    """Open the store at ``p`` as a RocksDB secondary keeping its files in ``secondary_dir``.

    On failure ``secondary_dir`` is removed and the error says whether there is no store yet
    (:class:`NoDataError`) or something that is not one (:class:`NotADatabaseError`).
    """
    try:
        db = rd.Rdict(
            str(p),
            options(create=False),
            access_type=rd.AccessType.secondary(secondary_dir),
        )
    except Exception as exc:
        shutil.rmtree(secondary_dir, ignore_errors=True)
        msg = str(exc)
        if "No such file" in msg:
            raise NoDataError(f"no trade store at {p} yet: {_START_HINT}") from None
        raise NotADatabaseError(f"cannot read {p} as a tradelab store: {msg}") from None
    try:
        marker = db.get(MARKER)
        if marker is None:
            if next(iter(db.keys()), None) is None:  # a writer is creating it right now
                raise NoDataError(f"the trade store at {p} is empty: {_START_HINT}")
            raise NotADatabaseError(
                f"{p} is a RocksDB database but not a tradelab store (no marker key)"
            )
        check_marker(p, marker)
    except BaseException:
        db.close()
        shutil.rmtree(secondary_dir, ignore_errors=True)
        raise
    return db


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
        self.db = self._open()

    def _open(self) -> rd.Rdict:
        """A secondary in a new temporary directory; note the writer's WALs seen at open."""
        self._wals = wal_files(self.path)  # before opening: a flush meanwhile shows as a change
        new_dir = tempfile.mkdtemp(prefix="tradelab-reader-")
        db = open_secondary(self.path, new_dir)  # removes new_dir itself on failure
        old_dir, self._dir = self._dir, new_dir
        if old_dir:
            shutil.rmtree(old_dir, ignore_errors=True)
        return db

    def refresh(self) -> rd.Rdict:
        """Catch up with the writer (or re-open, see the class docstring); the instance to
        query from now on."""
        with self._lock:
            if wal_files(self.path) != self._wals:
                self._reopen()
            else:
                try:
                    self.db.try_catch_up_with_primary()
                except Exception as exc:  # e.g. a WAL deleted by a flush just now: re-open
                    log.debug("Catch-up failed (%s); re-opening the reader", exc)
                    self._reopen()
            return self.db

    def _reopen(self) -> None:
        try:
            self.db = self._open()
        except StorageError as exc:
            raise StorageError(f"cannot follow the writer of {self.path}: {exc}") from None

    def close(self) -> None:
        """Close the instance and remove its temporary directory."""
        self.db.close()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
