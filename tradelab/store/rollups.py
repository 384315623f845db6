"""The trade store's roll-up worker: one background thread that merges blocks after appends.

An append writes one small block per clock hour it touches and stays ~1 ms; merging the
closed minutes and hours (:meth:`tradelab.store.TradeStore.roll_up`) is left to this worker,
which the store tells about each symbol that needs it. The worker owns its queue, its thread
and its idle state alone; the store hands it the function that rolls up one symbol.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["RollUpWorker"]


class RollUpWorker:
    """Runs ``roll_up(symbol)`` on a daemon thread for every symbol :meth:`schedule` names.

    The thread starts with the first :meth:`schedule`; requests arriving while a round runs are
    gathered into the next round (each symbol once, in sorted order). ``roll_up`` must not
    raise: it logs its own failures.
    """

    def __init__(self, roll_up: Callable[[str], None]) -> None:
        self._roll_up = roll_up
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._busy = False
        self._stopped = False

    def schedule(self, symbol: str) -> None:
        """Roll ``symbol`` up soon (ignored once :meth:`stop` was called)."""
        with self._cond:
            if self._stopped:
                return
            self._pending.add(symbol)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="tradelab-rollup", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._cond:
                if self._stopped:
                    return
                pending, self._pending = self._pending, set()
                self._busy = True
            try:
                for symbol in sorted(pending):
                    self._roll_up(symbol)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def stop(self) -> None:
        """Start no new round; the thread ends once the round it runs (if any) is done."""
        with self._cond:
            self._stopped = True
        self._wake.set()

    def join(self) -> None:
        """Wait for the thread to end (after :meth:`stop`); a no-op from the thread itself."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
