"""The operations running on a store's database, counted: close and a writer's reopen wait for
them, and keep new ones out meanwhile.

Every query and write of :class:`tradelab.store.TradeStore` runs inside :meth:`Gate.op`. It
refuses to start on a closed store, waits while the writer reopens its database
(:mod:`.recovery`) and turns RocksDB's bare ``Exception`` into a one-line
:class:`~tradelab.exceptions.StorageError` (:mod:`.errors`) — our own bugs keep their
traceback. :meth:`Gate.exclusive` is the reopen's side: no operation runs while it holds it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from tradelab.exceptions import StorageError
from tradelab.store.errors import is_rocksdb_error, storage_error
from tradelab.store.recovery import Recovery

__all__ = ["Gate"]


class Gate:
    """Counts the running operations of the store at ``path``; see the module docstring.

    ``recovery``: the writer's :class:`~tradelab.store.recovery.Recovery`, which says whether
    the database can be used at all (not while a writer whose reopen failed has no handle).
    """

    def __init__(self, path: Path, recovery: Recovery) -> None:
        self.path = path
        self.closed = False
        self._recovery = recovery
        self._cond = threading.Condition()
        self._active = 0
        self._exclusive = False

    @contextlib.contextmanager
    def op(self) -> Iterator[None]:
        """Run one operation (raises :class:`StorageError` if the store is closed)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            if self.closed:
                raise StorageError(f"the trade store at {self.path} is closed")
            if not self._recovery.usable:
                raise StorageError(self._recovery.unusable_message())
            self._active += 1
        try:
            yield
        except Exception as exc:
            if is_rocksdb_error(exc):
                raise storage_error(self.path, exc, f"reading the store at {self.path}") from None
            raise
        finally:
            with self._cond:
                self._active -= 1
                if not self._active:
                    self._cond.notify_all()

    def close(self) -> bool:
        """Refuse operations from now on; False if it was closed already."""
        with self._cond:
            if self.closed:
                return False
            self.closed = True
            return True

    def wait_idle(self) -> None:
        """Wait until no operation (and no reopen) runs."""
        with self._cond:
            self._cond.wait_for(lambda: self._active == 0 and not self._exclusive)

    @contextlib.contextmanager
    def exclusive(self, needed: Callable[[], bool]) -> Iterator[bool]:
        """Hold the database alone (no operation runs) if the store is open and ``needed()``
        is still true once the previous holder is done; yields whether it holds it. Must not
        be entered from inside :meth:`op` (it would wait for itself)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            go = not self.closed and needed()
            if go:
                self._exclusive = True
                self._cond.wait_for(lambda: self._active == 0)
        try:
            yield go
        finally:
            if go:
                with self._cond:
                    self._exclusive = False
                    self._cond.notify_all()
