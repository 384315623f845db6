"""RocksDB's errors, read: every failure of the database becomes a one-line
:class:`~tradelab.exceptions.TradelabError` that names the file and says what to do.

rocksdict raises a bare ``Exception`` whose text is RocksDB's ``Status`` ("IO error: No space
left on device: While appending to file: …/000004.log", "Corruption: block checksum mismatch …
in …/000009.sst", "Read-only file system (os error 30)"). :func:`storage_error` and
:func:`write_error` turn that text into the error the caller sees; :func:`is_rocksdb_error`
tells a RocksDB failure (an exact ``Exception``) from a bug in our own code, which must keep
its traceback. Pure code: strings in, exceptions out (docs/storage-layout.md, "Failures").
"""

from __future__ import annotations

import re
from pathlib import Path

from tradelab.exceptions import NotADatabaseError, StorageError, StorageWriteError

__all__ = [
    "CorruptStoreError",
    "corrupt_message",
    "describe_cause",
    "is_rocksdb_error",
    "one_line",
    "storage_error",
    "write_error",
]


class CorruptStoreError(NotADatabaseError):
    """The store's files are damaged (a checksum mismatch, a table file missing): RocksDB
    cannot read part of it. The message names the file and what to do."""


_FILE = re.compile(r"(?:[\w./-]*/)?((?:\d{6,}\.(?:sst|log|blob))|MANIFEST-\d+|CURRENT|OPTIONS-\d+)")
_MAX_DETAIL = 300


def is_rocksdb_error(exc: BaseException) -> bool:
    """True for the errors rocksdict raises: exactly ``Exception`` (RocksDB's status text) or
    its ``DbClosedError``."""
    return type(exc) is Exception or type(exc).__name__ == "DbClosedError"


def one_line(text: object, limit: int = _MAX_DETAIL) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _file_in(msg: str) -> str | None:
    """The first store file RocksDB's message names (``000009.sst``, ``MANIFEST-000005``)."""
    found = _FILE.findall(msg)
    for name in found:  # a missing table file is named before the MANIFEST that lists it
        if name.endswith(".sst"):
            return str(name)
    return str(found[0]) if found else None


def corrupt_message(p: Path, detail: str) -> str:
    """The :class:`CorruptStoreError` text: which file is damaged, how, and what to do."""
    name = _file_in(detail)
    if "No such file" in detail and name and name.endswith((".sst", ".blob")):
        what = f"its table file {name} is missing (deleted or lost)"
    elif name:
        what = f"{name} is damaged ({one_line(detail, 160)})"
    else:
        what = f"RocksDB reports corruption ({one_line(detail, 160)})"
    return (
        f"the trade store at {p} is damaged: {what}; run `tradelab check --data {p}` to see "
        "what is still readable, then restore the directory from a backup (or move it aside "
        "and collect again: the collector backfills what the exchange still serves) — see "
        'docs/storage-layout.md, "Failures"'
    )


def describe_cause(p: Path, detail: str) -> str:
    """Why a write to the store at ``p`` failed and what to do, from RocksDB's text."""
    low = detail.lower()
    if "no space left" in low or "os error 28" in low:
        return (
            f"the disk holding {p} is full ({one_line(detail, 160)}); free space there — the "
            "store starts writing again by itself at the next write, nothing stored so far "
            "is lost"
        )
    if "file too large" in low or "os error 27" in low:
        return (
            f"a file of {p} reached the size limit of this process or file system "
            f"({one_line(detail, 160)}); raise the limit (ulimit -f) — the store starts "
            "writing again by itself at the next write"
        )
    if "read-only file system" in low or "os error 30" in low:
        return (
            f"{p} is on a read-only file system; write it from a writable mount, or open it "
            "with readonly=True to read"
        )
    if "permission denied" in low or "os error 13" in low or "operation not permitted" in low:
        return (
            f"this process may not write in {p} ({one_line(detail, 160)}); fix the directory's "
            "owner or permissions, or open it with readonly=True to read"
        )
    return f"RocksDB refused the write ({one_line(detail)})"


def storage_error(p: Path, exc: BaseException, doing: str) -> StorageError:
    """The error for RocksDB failing while ``doing`` something (reading, opening) on ``p``."""
    detail = one_line(exc)
    if "Corruption" in detail or "checksum" in detail.lower():
        return CorruptStoreError(corrupt_message(p, detail))
    if "No such file" in detail and re.search(r"\.(sst|blob)\b", detail):
        return CorruptStoreError(corrupt_message(p, detail))
    low = detail.lower()
    if any(
        s in low
        for s in ("no space left", "file too large", "read-only file system", "permission denied")
    ):
        return StorageError(f"{doing} failed: {describe_cause(p, detail)}")
    return StorageError(f"{doing} failed: RocksDB: {detail}")


def write_error(p: Path, exc: BaseException, what: str) -> StorageWriteError:
    """The :class:`StorageWriteError` for a batch RocksDB refused: nothing of it was stored."""
    detail = one_line(exc)
    cause = corrupt_message(p, detail) if "Corruption" in detail else describe_cause(p, detail)
    return StorageWriteError(
        f"{what} failed, nothing of it was stored (the store is unchanged): {cause}"
    )
