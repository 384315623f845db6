"""The run-time plumbing every part of the collector uses: stop signal, tasks, last errors.

None of these hold trades or counts; each is a small object with one job:

* :class:`StopSignal` — "the collector is stopping" as every loop sees it: a flag, an event to
  wake sleepers, the deadline ``stop()`` set, and an interruptible :meth:`StopSignal.sleep`;
* :class:`TaskSet` — spawns tasks with a crash logger and keeps their *handles* (never their
  names) so they can be awaited or cancelled;
* :class:`LastErrors` — the last error per symbol for the status document (the stream side,
  the backfill and the writer report here; a successful write clears it);
* :func:`fmt_ms` — a millisecond timestamp for log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any

from tradelab.formatting import utc_text
from tradelab.logs import get_logger

__all__ = ["LastErrors", "StopSignal", "TaskSet", "fmt_ms", "wait_tasks"]

log = get_logger("tradelab.collector")


def fmt_ms(ms: int | None) -> str:
    """A millisecond timestamp as UTC ``YYYY-mm-dd HH:MM:SS.fff`` for log lines ("unknown")."""
    return "unknown" if ms is None else utc_text(ms, millis=True)


class StopSignal:
    """Whether the collector is stopping, shared by every loop; the only place that says so.

    :meth:`begin` arms it for a run (fresh event on the running loop); :meth:`request` is
    called once by ``Collector.stop()``. Loops sleep through :meth:`sleep`, which returns early
    (True) when stop is requested.
    """

    def __init__(self) -> None:
        self.stopping = False
        self.deadline = 0.0  # loop time by which stop() wants to be done
        self._event: asyncio.Event | None = None

    def begin(self) -> None:
        """Arm for a new run (call on the loop the run uses)."""
        self._event = asyncio.Event()
        self.stopping = False
        self.deadline = 0.0

    def request(self, deadline: float) -> None:
        """Stop: set the flag and the deadline (loop time), wake every sleeper."""
        self.stopping = True
        self.deadline = deadline
        if self._event is not None:
            self._event.set()

    @property
    def is_set(self) -> bool:
        """True once stop was requested (the event's view; same as :attr:`stopping`)."""
        return self._event is not None and self._event.is_set()

    async def wait(self) -> None:
        """Return once stop is requested."""
        assert self._event is not None, "StopSignal.begin() was not called"
        await self._event.wait()

    async def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if the collector is stopping (woken early)."""
        assert self._event is not None, "StopSignal.begin() was not called"
        if seconds <= 0:
            return self._event.is_set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)
        return self._event.is_set()

    def time_left(self, now: float) -> float:
        """Seconds from loop time ``now`` to the stop deadline (0.0 once past it)."""
        return max(0.0, self.deadline - now)


class TaskSet:
    """Tasks of one owner, by handle; a task that dies of an exception is logged CRITICAL."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[Any]] = []

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as task ``tradelab-<name>`` (the name is for logs only); its handle."""
        self._tasks = [t for t in self._tasks if not t.done()]
        task = asyncio.ensure_future(coro)
        task.set_name(f"tradelab-{name}")
        task.add_done_callback(_task_done)
        self._tasks.append(task)
        return task

    def live(self) -> list[asyncio.Task[Any]]:
        """The tasks not finished yet."""
        return [t for t in self._tasks if not t.done()]

    def clear(self) -> None:
        """Forget every handle (after a stop)."""
        self._tasks = []


def _task_done(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        log.critical(
            "Collector task %s crashed: %r",
            task.get_name(),
            exc,
            exc_info=exc,
            extra={"event": "task_crashed", "task": task.get_name()},
        )


async def wait_tasks(tasks: Sequence[asyncio.Task[Any]], timeout: float) -> None:
    """Wait up to ``timeout`` for ``tasks``, cancel those still running, reap them all."""
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class LastErrors:
    """The last error seen for each symbol (connect, REST or store), for the status document."""

    def __init__(self, symbols: Iterable[str]) -> None:
        self._errors: dict[str, str | None] = dict.fromkeys(symbols)

    def report(self, symbol: str, text: str) -> None:
        """Remember ``text`` as the latest error of ``symbol``."""
        self._errors[symbol] = text

    def clear(self, symbol: str) -> None:
        """``symbol`` is healthy again (its store writes recovered)."""
        self._errors[symbol] = None

    def get(self, symbol: str) -> str | None:
        """The latest error of ``symbol``, or None."""
        return self._errors.get(symbol)
