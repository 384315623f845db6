"""The writer's way back from a failed write: reopen the database once space (or the file
system) returns.

After RocksDB fails to append to its write-ahead log (a full disk, ``ENOSPC``; a file size
limit, ``EFBIG``) it keeps that error: every later write repeats it, even after space was
freed, until the database is closed and opened again (facebook/rocksdb#919; rocksdict 0.3
exposes no ``Resume()``). So :class:`Recovery` remembers that the writer's handle is broken,
and before the next write :meth:`tradelab.store.TradeStore` asks it to reopen the store under
the same lock and owner file (:func:`reopen`): the write-ahead log holds every write RocksDB
acknowledged, and the failed batch was never acknowledged (nor applied), so nothing is lost or
doubled — the store then re-reads its counters from the database, and appends drop ids already
stored anyway. While the disk stays full the reopen fails too; the writer then answers queries
from a read-only instance and retries at the next write, at most once a second unless free
space grew meanwhile. Why: docs/storage-layout.md, "Failures".
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import rocksdict as rd

from tradelab.exceptions import StorageError, StorageWriteError
from tradelab.logs import get_logger
from tradelab.store.errors import describe_cause, one_line
from tradelab.store.keys import OWNER_FILE
from tradelab.store.opening import open_fallback_reader, open_writer, read_owner

__all__ = ["Recovery", "close_writer", "free_bytes", "reopen"]

log = get_logger("tradelab.store")


def free_bytes(p: Path) -> int:
    """Bytes available to this user on the file system holding ``p`` (-1 if unknown)."""
    try:
        st = os.statvfs(p)
    except OSError:
        return -1
    return st.f_bavail * st.f_frsize


class Recovery:
    """Whether the writer's RocksDB handle must be reopened, and when to try.

    :meth:`failed` records a write RocksDB refused; :meth:`due` says whether to attempt a
    reopen now (the first time at once; then when ``every_s`` passed or free space grew).
    """

    def __init__(self, path: Path, every_s: float = 1.0) -> None:
        self.path = path
        self.every_s = every_s
        self.cause: str | None = None  # RocksDB's text of the write that failed
        self.usable = True  # False: no handle at all (even the read-only fallback failed)
        self._next = 0.0
        self._free = -1

    @property
    def broken(self) -> bool:
        """True while the handle must be reopened before the next write."""
        return self.cause is not None

    def failed(self, exc: BaseException) -> None:
        """Note that RocksDB refused a write with ``exc``."""
        if self.cause is None:
            log.warning(
                "Writes to the trade store at %s fail: %s",
                self.path,
                describe_cause(self.path, one_line(exc)),
                extra={"path": str(self.path), "error": one_line(exc)},
            )
        self.cause = one_line(exc)

    def due(self) -> bool:
        """Whether to attempt a reopen now."""
        return time.monotonic() >= self._next or free_bytes(self.path) > self._free

    def not_yet(self) -> StorageWriteError:
        """The error for a write while the handle is broken and a reopen is not due."""
        return StorageWriteError(
            f"the trade store at {self.path} cannot write yet, nothing was stored (the store "
            f"is unchanged): {describe_cause(self.path, self.cause or '')}"
        )

    def still_failing(self, error: StorageError) -> StorageWriteError:
        """The error for a write whose reopen attempt failed with ``error``."""
        return StorageWriteError(
            f"the trade store at {self.path} cannot write yet, nothing was stored (the store "
            f"is unchanged): {error}"
        )

    def unusable_message(self) -> str:
        """Why queries fail while no handle is open at all."""
        return (
            f"the trade store at {self.path} cannot be read until it can be reopened (after: "
            f"{self.cause}); it retries at the next write"
        )

    def attempted(self, ok: bool, usable: bool) -> None:
        """Record the outcome of a reopen attempt."""
        self.usable = usable
        if ok:
            log.info(
                "The trade store at %s writes again", self.path, extra={"path": str(self.path)}
            )
            self.cause = None
            return
        self._next = time.monotonic() + self.every_s
        self._free = free_bytes(self.path)


def reopen(p: Path, old: rd.Rdict) -> tuple[rd.Rdict, StorageError | None, bool]:
    """Close ``old`` (whatever it says) and open the store at ``p`` for writing again.

    Returns ``(handle, None, True)``, or — when it cannot be opened for writing yet — a
    read-only instance, the error to raise and True (``old``, closed, and False if even the
    read-only open fails: queries fail too until a reopen succeeds).
    """
    with contextlib.suppress(Exception):  # "Writer has previous error": expected, say nothing
        old.close()
    try:
        return open_writer(p), None, True
    except StorageError as exc:
        fallback = open_fallback_reader(p)
        return (fallback, exc, True) if fallback is not None else (old, exc, False)


def close_writer(p: Path, db: rd.Rdict) -> None:
    """Close the writer's handle and remove this process's owner file; never raises. A
    database that cannot close cleanly (a full disk: RocksDB cannot flush) is logged in one
    line: every write it acknowledged is in its write-ahead log, replayed at the next open."""
    try:
        db.close()
    except Exception as exc:
        log.warning(
            "The trade store at %s did not close cleanly (%s); the writes it acknowledged are "
            "in its write-ahead log and come back at the next open",
            p,
            one_line(exc),
            extra={"path": str(p), "error": one_line(exc)},
        )
    owner = read_owner(p)
    if owner and owner.get("pid") == os.getpid():
        with contextlib.suppress(OSError):
            (p / OWNER_FILE).unlink()
