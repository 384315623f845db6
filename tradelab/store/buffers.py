"""The output arrays of large reads, reused once the frame that held them is gone.

A week of BTCUSDT comes back as ~820 MB of columns. numpy returns arrays that large to the
operating system when they are freed (they are separate ``mmap`` s), so the next large read
gets fresh pages again, and the kernel zeroes and maps each one on first touch (or, for huge
pages, first compacts memory to find them): measured 130–800 ms per 820 MB on the shared
machine, more than decoding the week takes. Allocators such as jemalloc (Polars, DuckDB) keep
freed pages for a while for this reason; this module does the same for the store's reads:

- :func:`empty` hands out arrays of at least :data:`MIN_BYTES` as views of buffers it keeps;
- a buffer is free again once nothing but the pool refers to it — the frame built on it (the
  columns are handed to Polars without a copy, and Polars keeps a reference to the array for
  as long as any frame, series or exported view uses it) and every view of it are gone. A
  reference count proves it: a buffer still reachable from anywhere is never handed out again;
- free buffers are released after :data:`IDLE_S` seconds without use (a timer thread checks
  while the pool holds any), and at most :data:`MAX_FREE_BYTES` of free buffers are kept.

Smaller arrays come from ``np.empty``. The threshold is low on purpose: an hour of BTCUSDT is
seven ~0.7 MB columns, and faulting those in fresh cost ~4 of a 1 h read's ~8 ms.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import numpy as np

__all__ = ["IDLE_S", "MAX_FREE_BYTES", "MIN_BYTES", "empty", "pool_stats", "release_free"]

MIN_BYTES = 256 << 10
IDLE_S = 30.0
MAX_FREE_BYTES = 2 << 30

_lock = threading.Lock()
_buffers: list[np.ndarray] = []  # uint8 buffers, each one allocation
_last_use: dict[int, float] = {}  # id(buffer) -> when it was last handed out
_timer: threading.Timer | None = None


def _after_fork_in_child() -> None:
    """A forked child has no timer thread, and the lock may have been held by a parent thread."""
    global _lock, _timer
    _lock = threading.Lock()
    _timer = None
    _buffers.clear()
    _last_use.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _free_list() -> list[np.ndarray]:
    """The buffers nothing but the pool refers to (the one place that counts references)."""
    return [b for b in _buffers if sys.getrefcount(b) <= _FREE_REFS]


_FREE_REFS = 1 << 30
_buffers.append(np.empty(1, dtype=np.uint8))
# what an unreferenced buffer counts, measured with the comprehension _free_list uses
_FREE_REFS = max([sys.getrefcount(b) for b in _buffers])
_buffers.clear()
assert len(_free_list()) == 0


def _size_class(nbytes: int) -> int:
    """``nbytes`` rounded up to 1/8 of its power of two, so near sizes share buffers."""
    step = 1 << max(nbytes.bit_length() - 4, 12)
    return -(-nbytes // step) * step


def empty(n: int, dtype: np.dtype[Any]) -> np.ndarray:
    """An uninitialised array of ``n`` items of ``dtype`` (a reused buffer if it is large)."""
    nbytes = n * dtype.itemsize
    if nbytes < MIN_BYTES:
        return np.empty(n, dtype=dtype)
    with _lock:
        fits = [b for b in _free_list() if nbytes <= b.nbytes <= 2 * nbytes]
        best = min(fits, key=lambda b: b.nbytes) if fits else None
        del fits
        if best is None:
            best = np.empty(_size_class(nbytes), dtype=np.uint8)
            _buffers.append(best)
        _last_use[id(best)] = time.monotonic()
        out = best[:nbytes].view(dtype)
        _trim(time.monotonic(), keep=best)
        _schedule()
    return out


def _trim(now: float, keep: np.ndarray | None = None) -> None:
    """Release free buffers idle for IDLE_S, and the oldest free ones beyond MAX_FREE_BYTES."""
    free = [b for b in _free_list() if b is not keep]
    free.sort(key=lambda b: _last_use[id(b)], reverse=True)
    kept = 0
    for b in free:
        if now - _last_use[id(b)] >= IDLE_S or kept + b.nbytes > MAX_FREE_BYTES:
            _drop(b)
        else:
            kept += b.nbytes


def _drop(b: np.ndarray) -> None:
    """Forget buffer ``b`` (by identity: ``list.remove`` would compare arrays elementwise)."""
    _buffers[:] = [x for x in _buffers if x is not b]
    del _last_use[id(b)]


def _tick() -> None:
    global _timer
    with _lock:
        _timer = None
        _trim(time.monotonic())
        _schedule()


def _schedule() -> None:
    """Check again in IDLE_S / 2 while the pool holds buffers (one timer at a time)."""
    global _timer
    if _buffers and _timer is None:
        _timer = threading.Timer(IDLE_S / 2, _tick)
        _timer.daemon = True
        _timer.name = "tradelab-buffers"
        _timer.start()


def release_free() -> int:
    """Release every free buffer now; returns how many bytes went (tests, memory-tight jobs)."""
    with _lock:
        free = _free_list()
        for b in free:
            _drop(b)
        return sum(b.nbytes for b in free)


def pool_stats() -> tuple[int, int]:
    """``(bytes held, bytes of them free)``."""
    with _lock:
        total = sum(b.nbytes for b in _buffers)
        free = sum(b.nbytes for b in _free_list())
    return total, free
