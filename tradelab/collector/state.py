"""The state the collector's parts share: per-symbol and per-connection records, the base class.

:class:`~tradelab.collector.Collector` is assembled from one part per responsibility
(``collector_streams``, ``collector_backfill``, ``collector_writer``, ``collector_reporting``),
all working on the same state. That state lives here, so each part can be read on its own:

* :class:`SymbolState` — everything tracked for one symbol (gap tracker, buffered trades,
  write retries, counters);
* :class:`Connection` — one open WebSocket connection and its tasks;
* :class:`StreamGroup` — the symbols sharing one combined-stream connection;
* :class:`CollectorCore` — the base class of every part: it declares the attributes
  ``Collector.__init__`` sets and holds the task helpers (spawn, wait, interruptible sleep).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection

from tradelab.binance.backoff import TokenBucket
from tradelab.binance.gaps import Gap, GapTracker
from tradelab.binance.protocol import Trade
from tradelab.logs import get_logger

if TYPE_CHECKING:
    from tradelab.binance.rest import RestClient

__all__ = [
    "GAPS_META",
    "CollectorCore",
    "Connection",
    "StreamGroup",
    "SymbolState",
    "fmt_ms",
]

log = get_logger("tradelab.collector")

GAPS_META = "collector_open_gaps"  # store meta key: gaps still open, backfilled after a restart


def fmt_ms(ms: int | None) -> str:
    """A millisecond timestamp as UTC ``YYYY-mm-dd HH:MM:SS.fff`` for log lines ("unknown")."""
    if ms is None:
        return "unknown"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class SymbolState:
    """Everything the collector tracks for one symbol."""

    __slots__ = (
        "backoff",
        "inflight",
        "last_error",
        "last_stored_id",
        "last_stored_time",
        "minute_stored",
        "name",
        "pending",
        "probe",
        "recent",
        "retry_at",
        "short_retry",
        "tracker",
        "trades_stored",
        "unwritten",
        "write_failures",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.tracker = GapTracker(name)
        self.pending: list[Trade] = []  # accepted, not yet handed to the store
        self.unwritten: list[Trade] = []  # a batch whose write failed, to retry
        self.inflight = 0
        self.retry_at = 0.0
        self.backoff: Any = None
        self.write_failures = 0
        self.trades_stored = 0
        self.minute_stored = 0
        self.recent: deque[tuple[float, int]] = deque()
        self.last_stored_id: int | None = None
        self.last_stored_time: int | None = None
        self.last_error: str | None = None
        self.probe = False  # fetch the tail after the highest id through REST
        self.short_retry: int | None = None  # fromId already retried once after a short page

    @property
    def buffered(self) -> int:
        return len(self.pending) + len(self.unwritten) + self.inflight


class Connection:
    """One open WebSocket connection and its tasks."""

    def __init__(self, ws: ClientConnection, url: str, opened_at: float, n: int) -> None:
        self.ws = ws
        self.url = url
        self.opened_at = opened_at
        self.number = n
        self.delivered = 0
        self.first_data = asyncio.Event()
        self.closed = asyncio.Event()
        self.shutdown = asyncio.Event()
        self.retiring = False
        self.bucket = TokenBucket(4.0, 1.0, now=opened_at)  # <= 5 messages in any second
        self.tasks: list[asyncio.Task[Any]] = []


class StreamGroup:
    """The symbols sharing one combined-stream connection."""

    def __init__(self, symbols: tuple[str, ...], url: str) -> None:
        self.symbols = symbols
        self.url = url
        self.active: Connection | None = None
        self.connected_since: float | None = None
        self.connected_total = 0.0
        self.connects = 0
        self.first_result: asyncio.Future[None] | None = None

    def uptime(self, now: float) -> float:
        extra = now - self.connected_since if self.connected_since is not None else 0.0
        return self.connected_total + extra


class CollectorCore:
    """The base of :class:`~tradelab.collector.Collector` and of each of its parts.

    It declares (for readers and the type checker) the attributes ``Collector.__init__`` sets
    and the methods one part calls in another, and it holds the task helpers every part uses.
    It sets no state itself: one object, the collector, holds all of it.
    """

    # settings (validated by CollectorSettings, copied onto the collector)
    symbols: tuple[str, ...]
    ws_url: str
    rest_url: str
    batch_interval: float
    max_buffered: int
    rotate_after: float
    handover_timeout: float
    reconnect_initial: float
    reconnect_max: float
    healthy_after: float
    ping_interval: float
    ping_timeout: float
    open_timeout: float
    rest_limit: int
    write_retry_initial: float
    write_retry_max: float
    status_interval: float
    log_interval: float
    retention_interval: float | None
    stop_timeout: float
    read_coalesce: float | None
    # resources and run state
    store: Any
    rest: RestClient
    _syms: dict[str, SymbolState]
    _groups: list[StreamGroup]
    _running: bool
    _stopping: bool
    _tasks: list[asyncio.Task[Any]]
    _stop_event: asyncio.Event | None
    _backfill_wake: asyncio.Event | None
    _resume: asyncio.Event | None
    _paused: bool
    _buffered: int
    _malformed: int
    _malformed_logged: int
    _conn_counter: int
    _stop_deadline: float

    if TYPE_CHECKING:  # provided by the parts; declared here so each part type-checks alone

        def status(self) -> dict[str, Any]:  # collector.Collector
            raise NotImplementedError

        def _pause(self) -> None:  # collector_streams.StreamsMixin
            raise NotImplementedError

        def _maybe_resume(self) -> None:  # collector_streams.StreamsMixin
            raise NotImplementedError

        # collector_backfill.BackfillMixin
        def _gap_detected(self, gap: Gap, *, source: str = "stream") -> None:
            raise NotImplementedError

        def _gap_closed(self, gap: Gap) -> None:  # collector_backfill.BackfillMixin
            raise NotImplementedError

    # --- tasks -------------------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        self._tasks = [t for t in self._tasks if not t.done()]
        task = asyncio.ensure_future(coro)
        task.set_name(f"tradelab-{name}")
        task.add_done_callback(self._task_done)
        self._tasks.append(task)
        return task

    @staticmethod
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

    @staticmethod
    async def _wait_tasks(tasks: Sequence[asyncio.Task[Any]], timeout: float) -> None:
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=timeout)
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if the collector is stopping (woken early)."""
        assert self._stop_event is not None
        if seconds <= 0:
            return self._stop_event.is_set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), seconds)
        return self._stop_event.is_set()

    def _buffered_total(self) -> int:
        return sum(s.buffered for s in self._syms.values())
