"""Give memory the allocator keeps back to the system after large writes (glibc only).

Measured under a 20 s flood (bench/bench_collector.py, ``--flood-seconds 20``): the collector's
process peaked at +548 MB RSS although the buffer held at most ~80,000 trades (4 MB) and
RocksDB's memtables at most 78 MB; ``malloc_trim(0)`` at the end brought it to +113 MB. The
435 MB were *free* memory glibc kept in its per-thread arenas: the write path allocates and
frees hundreds of MB a minute there (the batch's columns, the store's encoding, RocksDB's
memtable blocks, REST pages), and an arena's heap shrinks only from its top. Other runs of the
same flood kept 11–29 MB that way. Trimming after large write rounds keeps the process near
its live memory whatever the allocation pattern; on a non-glibc system this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

__all__ = ["TRIM_AFTER_TRADES", "release_free_memory"]

TRIM_AFTER_TRADES = 50_000
"""Trades written since the last trim after which the next write round trims (a normal feed
writes that many in about an hour: then one trim an hour, a few ms each)."""


def _find_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_TRIM = _find_trim()


def release_free_memory() -> bool:
    """Hand the free memory of every malloc arena back to the system (``malloc_trim(0)``);
    True if it was done (glibc), False where there is no such call."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
