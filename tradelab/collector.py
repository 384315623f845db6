"""The collector: a thin asyncio shell around the pure protocol, gap and backoff code.

``Collector(symbols).start()`` runs on the current event loop (a Jupyter kernel's or the CLI's):

* **streams** — one combined-stream connection per 1024 symbols
  (:func:`~tradelab.protocol.build_stream_urls`); each frame goes through
  :func:`~tradelab.protocol.parse_frame` and the symbol's :class:`~tradelab.gaps.GapTracker`
  (new / duplicate / gap). Reconnects forever with :class:`~tradelab.backoff.ReconnectPolicy`
  (exponential, jittered, reset after a healthy period). Before ``rotate_after`` (Binance closes
  connections after 24 h) and on ``serverShutdown`` it opens the new connection first and closes
  the old one once the new one delivers; overlapping trades are duplicates to the tracker and
  to the store. Outgoing messages stay far below Binance's 5 per second: the only messages the
  collector sends itself are keepalive pings (only when a connection has been silent for
  ``ping_interval``; a missing pong within ``ping_timeout`` means a dead connection), paced
  by a :class:`~tradelab.backoff.TokenBucket` of 4/s with burst 1; websockets answers the
  server's pings (Binance: one per 20 s) with pongs.
* **batches** — every ``batch_interval`` (1 s) each symbol's new trades go to
  ``store.append`` as one atomic write, in a worker thread (``asyncio.to_thread``) so the loop
  never waits on RocksDB.
* **backfill** — gaps (and, after every (re)connect or restart, the tail after the last id) are
  fetched through REST ``aggTrades?fromId=..&limit=1000`` until closed, honouring the weight
  header and 429/418 ``Retry-After``; ids REST does not have are logged once as unrepairable.
* **no silent loss** — a failed write keeps its batch in memory and retries with backoff. The
  buffer is bounded (``max_buffered`` trades): at the bound the collector *pauses intake* — it
  closes its stream connections, logs an ERROR, and reconnects once the store has accepted the
  backlog; the trades published meanwhile are then a gap, backfilled through REST. Memory stays
  bounded and nothing is dropped without an ERROR line saying so.
* **status** — :meth:`Collector.status` and, every ``status_interval`` seconds, the same
  document in ``store.put_meta("collector_status", ...)`` for other processes.

Settings are constructor keywords with defaults, validated with messages naming the setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import time
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .backoff import ReconnectPolicy, TokenBucket, exponential_backoff
from .collection_status import STATUS_META
from .config import DEFAULT_REST_URL, DEFAULT_WS_URL, parse_symbols, validate_url
from .exceptions import (
    CollectorStateError,
    ConfigurationError,
    EndpointUnreachableError,
    ExchangeError,
    InvalidParameterError,
    InvalidSymbolError,
    RateLimitedError,
    StorageError,
    TradelabError,
)
from .gaps import Gap, GapTracker
from .logs import get_logger
from .protocol import (
    MAX_REST_LIMIT,
    MAX_STREAMS_PER_CONNECTION,
    ControlResponse,
    Rejection,
    ServerShutdown,
    Trade,
    build_stream_urls,
    parse_frame,
    split_streams,
    trades_to_frame,
)
from .rest import RestClient

__all__ = ["STATUS_META", "Collector"]

log = get_logger("tradelab.collector")

GAPS_META = "collector_open_gaps"
_COALESCE_BELOW = 200  # frames per coalescing window (800/s at 0.25 s); busier feeds never pause
_MALFORMED_LOG_CAP = 50  # malformed-frame ERROR lines per minute; the rest are counted


def _now_ms() -> int:
    return int(time.time() * 1000)


def _fmt_ms(ms: int | None) -> str:
    if ms is None:
        return "unknown"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _positive(name: str, value: Any, *, allow_none: bool = False, integer: bool = False) -> Any:
    if value is None and allow_none:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not value > 0 or value != value:
        kind = "an integer" if integer else "a number"
        extra = " or None" if allow_none else ""
        raise InvalidParameterError(f"{name} must be {kind} > 0{extra}, got {value!r}")
    return value


class _Symbol:
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


class _Conn:
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


class _Group:
    """The symbols sharing one combined-stream connection."""

    def __init__(self, symbols: tuple[str, ...], url: str) -> None:
        self.symbols = symbols
        self.url = url
        self.active: _Conn | None = None
        self.connected_since: float | None = None
        self.connected_total = 0.0
        self.connects = 0
        self.first_result: asyncio.Future[None] | None = None

    def uptime(self, now: float) -> float:
        extra = now - self.connected_since if self.connected_since is not None else 0.0
        return self.connected_total + extra


class Collector:
    """Collect aggTrades of ``symbols`` into a :class:`~tradelab.store.TradeStore`.

    ``store`` is an open writable TradeStore, a directory, or None (the configured data
    directory, via :func:`tradelab.buffer.open_store`). ``ws_url``/``rest_url`` default to
    ``$TRADELAB_WS_URL``/``$TRADELAB_REST_URL``, then Binance. Every other keyword is a setting
    (seconds unless said otherwise), validated at construction:

    ``batch_interval`` (1) one atomic write per symbol this often · ``max_buffered`` (500,000
    trades) bound of the in-memory buffer; at the bound intake pauses (module docstring) ·
    ``rotate_after`` (23.5 h) open a replacement connection before Binance's 24 h limit ·
    ``handover_timeout`` (30) how long the old connection stays open waiting for the new one's
    first frame · ``reconnect_initial``/``reconnect_max`` (0.5/60) backoff bounds ·
    ``healthy_after`` (60) uptime that resets the backoff · ``ping_interval``/``ping_timeout``
    (20/20) keepalive on a silent connection · ``open_timeout`` (10) WebSocket handshake ·
    ``rest_timeout`` (10) one REST request · ``rest_limit`` (1000) page size ·
    ``write_retry_initial``/``write_retry_max`` (0.2/10) backoff of failed writes ·
    ``status_interval`` (5) status document to the store · ``log_interval`` (60) the
    "Stored N trades" lines · ``retention_interval`` (3600, None = off) ``enforce_retention`` ·
    ``stop_timeout`` (15) how long ``stop()`` may spend on backfills and a failing store ·
    ``max_streams`` (1024) symbols per connection · ``read_coalesce`` (0.25, None = off) on a
    quiet feed, read the socket in bursts this far apart (CPU; busy feeds are never paused).
    """

    def __init__(
        self,
        symbols: str | Iterable[str] | None = ("BTCUSDT", "ETHUSDT"),
        *,
        store: Any = None,
        ws_url: str | None = None,
        rest_url: str | None = None,
        batch_interval: float = 1.0,
        max_buffered: int = 500_000,
        rotate_after: float = 23.5 * 3600,
        handover_timeout: float = 30.0,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 60.0,
        healthy_after: float = 60.0,
        ping_interval: float = 20.0,
        ping_timeout: float = 20.0,
        open_timeout: float = 10.0,
        rest_timeout: float = 10.0,
        rest_limit: int = MAX_REST_LIMIT,
        write_retry_initial: float = 0.2,
        write_retry_max: float = 10.0,
        status_interval: float = 5.0,
        log_interval: float = 60.0,
        retention_interval: float | None = 3600.0,
        stop_timeout: float = 15.0,
        max_streams: int = MAX_STREAMS_PER_CONNECTION,
        read_coalesce: float | None = 0.25,
    ) -> None:
        self.symbols: tuple[str, ...] = parse_symbols(symbols)
        self.ws_url = validate_url(
            ws_url or os.environ.get("TRADELAB_WS_URL") or DEFAULT_WS_URL,
            schemes=("ws", "wss"),
            name="WebSocket URL",
        )
        self.rest_url = validate_url(
            rest_url or os.environ.get("TRADELAB_REST_URL") or DEFAULT_REST_URL,
            schemes=("http", "https"),
            name="REST URL",
        )
        for name, value in (
            ("batch_interval", batch_interval),
            ("rotate_after", rotate_after),
            ("handover_timeout", handover_timeout),
            ("reconnect_initial", reconnect_initial),
            ("reconnect_max", reconnect_max),
            ("ping_interval", ping_interval),
            ("ping_timeout", ping_timeout),
            ("open_timeout", open_timeout),
            ("rest_timeout", rest_timeout),
            ("write_retry_initial", write_retry_initial),
            ("write_retry_max", write_retry_max),
            ("status_interval", status_interval),
            ("log_interval", log_interval),
            ("stop_timeout", stop_timeout),
        ):
            _positive(name, value)
        if (
            isinstance(healthy_after, bool)
            or not isinstance(healthy_after, int | float)
            or healthy_after < 0
        ):
            raise InvalidParameterError(
                f"healthy_after must be >= 0 seconds, got {healthy_after!r}"
            )
        _positive("retention_interval", retention_interval, allow_none=True)
        _positive("read_coalesce", read_coalesce, allow_none=True)
        if read_coalesce is not None and read_coalesce > 1.0:
            raise InvalidParameterError(
                f"read_coalesce must be <= 1 second (pongs wait for it), got {read_coalesce!r}"
            )
        _positive("max_buffered", max_buffered, integer=True)
        _positive("max_streams", max_streams, integer=True)
        if not 1 <= rest_limit <= MAX_REST_LIMIT or isinstance(rest_limit, bool):
            raise InvalidParameterError(
                f"rest_limit must be 1..{MAX_REST_LIMIT}, got {rest_limit!r}"
            )
        if max_streams > MAX_STREAMS_PER_CONNECTION:
            raise InvalidParameterError(
                f"max_streams must be <= {MAX_STREAMS_PER_CONNECTION} (Binance's limit per "
                f"connection), got {max_streams}"
            )
        if reconnect_max < reconnect_initial:
            raise InvalidParameterError(
                f"reconnect_max ({reconnect_max}) must be >= reconnect_initial "
                f"({reconnect_initial})"
            )
        self.batch_interval = float(batch_interval)
        self.max_buffered = int(max_buffered)
        self.rotate_after = float(rotate_after)
        self.handover_timeout = float(handover_timeout)
        self.reconnect_initial = float(reconnect_initial)
        self.reconnect_max = float(reconnect_max)
        self.healthy_after = float(healthy_after)
        self.ping_interval = float(ping_interval)
        self.ping_timeout = float(ping_timeout)
        self.open_timeout = float(open_timeout)
        self.rest_limit = int(rest_limit)
        self.write_retry_initial = float(write_retry_initial)
        self.write_retry_max = float(write_retry_max)
        self.status_interval = float(status_interval)
        self.log_interval = float(log_interval)
        self.retention_interval = retention_interval
        self.stop_timeout = float(stop_timeout)
        self.read_coalesce = None if read_coalesce is None else float(read_coalesce)
        self._store_arg = store
        if (
            store is not None
            and not isinstance(store, str | os.PathLike)
            and not (hasattr(store, "append") and hasattr(store, "last_agg_id"))
        ):
            raise ConfigurationError(
                f"store must be a TradeStore, a directory path or None, got {type(store).__name__}"
            )
        self.store: Any = None
        self.rest = RestClient(self.rest_url, timeout=rest_timeout)
        self._syms = {s: _Symbol(s) for s in self.symbols}
        urls = build_stream_urls(self.ws_url, self.symbols, max_streams=max_streams)
        self._groups = [
            _Group(g, u)
            for g, u in zip(split_streams(self.symbols, max_streams), urls, strict=True)
        ]
        self._running = False
        self._stopping = False
        self._started_at_ms: int | None = None
        self._started_mono = 0.0
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop_event: asyncio.Event | None = None
        self._backfill_wake: asyncio.Event | None = None
        self._resume: asyncio.Event | None = None
        self._paused = False
        self._buffered = 0
        self._malformed = 0
        self._malformed_logged = 0
        self._conn_counter = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_deadline = 0.0

    # --- public API --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and the end of :meth:`stop`."""
        return self._running

    async def start(self, *, check: bool = False) -> None:
        """Open the store, resume each symbol after its last stored id, and start collecting.

        Returns once the background tasks run. With ``check=True`` (the CLI) it first asks the
        REST API for one trade of each symbol and then waits for every stream connection's first
        attempt: an unknown symbol raises :class:`InvalidSymbolError`, an unreachable endpoint
        :class:`EndpointUnreachableError` — a clear message at start instead of retrying forever.
        Without it the collector retries forever, logging each failure.
        """
        if self._running:
            raise CollectorStateError("the collector is already running; call stop() first")
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._backfill_wake = asyncio.Event()
        self._resume = asyncio.Event()
        self._resume.set()
        self._stopping = False
        if check:
            await self._check_rest()
        self.store = await asyncio.to_thread(self._open_store)
        await asyncio.to_thread(self._load_resume_points)
        self._started_at_ms = _now_ms()
        self._started_mono = self._loop.time()
        self._running = True
        log.info(
            "Collector starting: symbols %s, stream %s, REST %s, store %s",
            ",".join(self.symbols),
            self.ws_url,
            self.rest_url,
            self._store_path(),
            extra={
                "event": "collector_start",
                "symbols": list(self.symbols),
                "ws_url": self.ws_url,
                "rest_url": self.rest_url,
                "store_path": self._store_path(),
                "connections": len(self._groups),
            },
        )
        for group in self._groups:
            group.first_result = self._loop.create_future() if check else None
            self._spawn(self._supervise(group), f"stream-{group.symbols[0]}")
        self._spawn(self._flush_loop(), "flush")
        self._spawn(self._backfill_loop(), "backfill")
        self._spawn(self._report_loop(), "report")
        self._backfill_wake.set()
        if check:
            try:
                for group in self._groups:
                    assert group.first_result is not None
                    await group.first_result
            except TradelabError:
                await self.stop()
                raise

    async def stop(self) -> None:
        """Stop collecting and store everything received, then return.

        Order: close the streams (no new trades), finish the backfills that can finish within
        ``stop_timeout``, write every buffered trade (retrying a failing store until the same
        deadline), publish a final status. Anything that could not be stored is logged as an
        ERROR with its count — never dropped silently.
        """
        if not self._running:
            raise CollectorStateError("the collector is not running; call start() first")
        assert self._loop is not None and self._stop_event is not None
        loop = self._loop
        deadline = loop.time() + self.stop_timeout
        self._stop_deadline = deadline
        self._stopping = True
        self._stop_event.set()
        assert self._resume is not None
        self._resume.set()
        log.info(
            "Collector stopping: closing streams, finishing backfills, flushing",
            extra={"event": "collector_stopping"},
        )
        # 1. no new frames: close every connection (supervisors exit on the stop event)
        supervisors = [t for t in self._tasks if t.get_name().startswith("tradelab-stream")]
        conns = [g.active for g in self._groups if g.active is not None]
        await asyncio.gather(
            *(self._close_conn(c, "collector stopping") for c in conns), return_exceptions=True
        )
        await self._wait_tasks(supervisors, 3.0)
        # 2. backfills that can finish promptly
        backfill = [t for t in self._tasks if t.get_name() == "tradelab-backfill"]
        assert self._backfill_wake is not None
        self._backfill_wake.set()
        await self._wait_tasks(backfill, max(0.1, deadline - loop.time() - 1.0))
        open_gaps = {
            s.name: s.tracker.open_ranges() for s in self._syms.values() if s.tracker.open_gaps
        }
        for name, ranges in open_gaps.items():
            n = sum(hi - lo + 1 for lo, hi in ranges)
            log.error(
                "Stopping with %d trades of %s still missing in %d gap(s) %s: REST did not "
                "answer in time; saved so the next start backfills them",
                n,
                name,
                len(ranges),
                ranges[:5],
                extra={
                    "event": "gap_open_at_stop",
                    "symbol": name,
                    "missing": n,
                    "ranges": ranges[:20],
                },
            )
        # 3. flush everything, retrying until the deadline. The flush task is never cancelled
        #    (it may be inside a write); it returns by itself once the stop event is set.
        await asyncio.gather(
            *[t for t in self._tasks if t.get_name() == "tradelab-flush"], return_exceptions=True
        )
        report = [t for t in self._tasks if t.get_name() == "tradelab-report"]
        await self._wait_tasks(report, max(0.1, deadline - loop.time()))
        await self._wait_tasks([t for t in self._tasks if not t.done()], 1.0)
        while self._buffered_total() and loop.time() < deadline:
            await self._flush_once(force=True)
            if self._buffered_total():
                await asyncio.sleep(min(0.2, max(0.0, deadline - loop.time())))
        lost = {s.name: s.buffered for s in self._syms.values() if s.buffered}
        for name, n in lost.items():
            log.error(
                "%d received trades of %s could NOT be stored before stop (the store "
                "kept failing for %.0f s); they are lost",
                n,
                name,
                self.stop_timeout,
                extra={"event": "trades_lost_at_stop", "symbol": name, "trades": n},
            )
        # 4. final status
        self._running = False
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._publish, self.status(), open_gaps)
        total = sum(s.trades_stored for s in self._syms.values())
        log.info(
            "Collector stopped: %d trades stored this run; highest agg id received: %s",
            total,
            ", ".join(f"{s.name} {s.tracker.high}" for s in self._syms.values()),
            extra={
                "event": "collector_stop",
                "trades": total,
                "unstored": sum(lost.values()),
                "last_received": {s.name: s.tracker.high for s in self._syms.values()},
                "stored": {s.name: s.trades_stored for s in self._syms.values()},
            },
        )
        self._tasks = []

    def status(self) -> dict[str, Any]:
        """The collector-status document (also published to the store every few seconds)."""
        now = self._loop.time() if self._loop is not None else 0.0
        elapsed = max(now - self._started_mono, 1e-9) if self._started_at_ms else 0.0
        symbols: dict[str, Any] = {}
        for group in self._groups:
            up = group.uptime(now) if elapsed else 0.0
            for name in group.symbols:
                s = self._syms[name]
                tr = s.tracker
                symbols[name] = {
                    "connected": bool(
                        self._running
                        and group.active is not None
                        and not group.active.closed.is_set()
                    ),
                    "trades_stored": s.trades_stored,
                    "rate_per_min": self._rate(s, now, elapsed),
                    "last_trade_time": s.last_stored_time,
                    "last_agg_id": s.last_stored_id,
                    "gaps_detected": tr.gaps_detected,
                    "gaps_backfilled": tr.gaps_backfilled,
                    "gaps_unrepairable": tr.gaps_unrepairable,
                    "uptime_ratio": round(min(1.0, up / elapsed), 4) if elapsed else 0.0,
                    "buffered": s.buffered,
                    "last_error": s.last_error,
                }
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "running": self._running,
            "started_at": self._started_at_ms,
            "updated_at": _now_ms(),
            "ws_url": self.ws_url,
            "rest_url": self.rest_url,
            "store_path": self._store_path(),
            "symbols": symbols,
        }

    # --- start-up ----------------------------------------------------------------------------

    def _open_store(self) -> Any:
        arg = self._store_arg
        if arg is None or isinstance(arg, str | os.PathLike):
            from .buffer import open_store

            return open_store(arg, write=True)
        if getattr(arg, "readonly", False):
            raise ConfigurationError(
                "the store passed to Collector is read-only; pass a writable TradeStore or a path"
            )
        return arg

    def _store_path(self) -> str:
        path = getattr(self.store, "path", None) or self._store_arg
        return str(Path(path)) if isinstance(path, str | os.PathLike) else str(path)

    def _load_resume_points(self) -> None:
        saved = None
        with contextlib.suppress(Exception):
            saved = self.store.get_meta(GAPS_META)
        for s in self._syms.values():
            last = self.store.last_agg_id(s.name)
            if last is not None:
                last_time = None
                with contextlib.suppress(Exception):
                    st = self.store.stats(s.name)
                    if st.last_time is not None:
                        last_time = int(st.last_time.timestamp() * 1000)
                s.tracker.resume(last, last_time)
                s.last_stored_id, s.last_stored_time = last, last_time
                s.probe = True  # resume from last+1 through REST
                log.info(
                    "Resuming %s after stored agg id %d (last trade %s)",
                    s.name,
                    last,
                    _fmt_ms(last_time),
                    extra={"event": "resume", "symbol": s.name, "last_agg_id": last},
                )
            for lo, hi in (saved or {}).get(s.name, []):
                s.tracker.add_gap(int(lo), int(hi))
                log.warning(
                    "Gap of %s left open by the previous run (ids %d–%d): backfilling",
                    s.name,
                    lo,
                    hi,
                    extra={
                        "event": "gap_restored",
                        "symbol": s.name,
                        "first_id": lo,
                        "last_id": hi,
                    },
                )

    async def _check_rest(self) -> None:
        for sym in self.symbols:
            try:
                await self.rest.agg_trades(sym, None, 1)
            except RateLimitedError:
                return  # reachable; the limit will be honoured by the backfill loop
            except ExchangeError as exc:
                if "-1121" in str(exc) or "Invalid symbol" in str(exc):
                    raise InvalidSymbolError(
                        f"the exchange at {self.rest_url} does not know symbol {sym!r}: {exc}"
                    ) from None
                raise

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

    # --- streams -----------------------------------------------------------------------------

    async def _supervise(self, group: _Group) -> None:
        """Keep one connection open for ``group`` until stop; survives its own bugs loudly."""
        while not self._stopping:
            try:
                await self._supervise_once(group)
                return
            except Exception as exc:
                log.critical(
                    "Stream supervisor for %s failed unexpectedly: %r; restarting it",
                    group.url,
                    exc,
                    exc_info=exc,
                    extra={"event": "supervisor_crashed", "url": group.url},
                )
                if group.first_result is not None and not group.first_result.done():
                    group.first_result.set_exception(
                        EndpointUnreachableError(f"cannot collect from {self.ws_url}: {exc!r}")
                    )
                await self._sleep(1.0)

    async def _supervise_once(self, group: _Group) -> None:
        loop = asyncio.get_running_loop()
        policy = ReconnectPolicy(
            initial=self.reconnect_initial,
            max_delay=self.reconnect_max,
            healthy_after=self.healthy_after,
        )
        first = True
        delay = 0.0
        try:
            while not self._stopping:
                if self._paused:
                    if group.active is not None:
                        await self._close_conn(group.active, "buffer full, intake paused")
                        self._mark_down(group, loop.time())
                        group.active = None
                    assert self._resume is not None
                    await self._resume.wait()
                    delay = 0.0
                    continue
                if group.active is None:
                    if delay and await self._sleep(delay):
                        return
                    try:
                        conn = await self._open(group)
                    except Exception as exc:
                        delay = policy.next_delay(loop.time())
                        reason = self._describe(exc)
                        for s in group.symbols:
                            self._syms[s].last_error = f"connect failed: {reason}"
                        log.error(
                            "Connection to %s failed: %s; retrying in %.1f s",
                            group.url,
                            reason,
                            delay,
                            extra={
                                "event": "connect_failed",
                                "url": group.url,
                                "error": reason,
                                "retry_in": round(delay, 3),
                                "attempt": policy.failures,
                            },
                        )
                        if first and group.first_result is not None:
                            group.first_result.set_exception(
                                EndpointUnreachableError(
                                    f"cannot open the stream at {self.ws_url}: {reason}; check "
                                    "--ws-url (the collector retries forever once it has started)"
                                )
                            )
                            group.first_result.exception()  # mark retrieved
                            return
                        continue
                    first = False
                    if group.first_result is not None and not group.first_result.done():
                        group.first_result.set_result(None)
                    policy.connected(loop.time())
                    self._attach(group, conn, reconnect=group.connects > 1)
                    continue
                conn = group.active
                reason = await self._wait_for_trouble(conn)
                if self._stopping:
                    return
                if reason == "closed" and self._paused:
                    continue  # the top of the loop closes it and waits for the store
                if reason == "closed":
                    self._mark_down(group, loop.time())
                    group.active = None
                    delay = policy.next_delay(loop.time())
                    code, why = conn.ws.close_code, conn.ws.close_reason
                    msg = f"code {code}" + (f" ({why})" if why else "")
                    for s in group.symbols:
                        self._syms[s].last_error = f"disconnected: {msg}"
                    log.error(
                        "Connection #%d to %s lost: %s; reconnecting in %.1f s",
                        conn.number,
                        group.url,
                        msg,
                        delay,
                        extra={
                            "event": "disconnected",
                            "url": group.url,
                            "close_code": code,
                            "retry_in": round(delay, 3),
                        },
                    )
                elif reason in ("rotate", "shutdown"):
                    await self._rotate(group, conn, reason, policy)
                    if group.active is conn and not conn.closed.is_set():
                        # rotation failed: retry after a backoff delay, keep the old one
                        conn.opened_at = (
                            loop.time() - self.rotate_after + policy.next_delay(loop.time())
                        )
                        conn.shutdown.clear()
        finally:
            if group.active is not None:
                await self._close_conn(group.active, "collector stopping")
                self._mark_down(group, loop.time())
                group.active = None

    async def _wait_for_trouble(self, conn: _Conn) -> str:
        loop = asyncio.get_running_loop()
        assert self._stop_event is not None
        rotate_in = conn.opened_at + self.rotate_after - loop.time()
        waits = {
            asyncio.ensure_future(conn.closed.wait()): "closed",
            asyncio.ensure_future(conn.shutdown.wait()): "shutdown",
            asyncio.ensure_future(self._stop_event.wait()): "stop",
            asyncio.ensure_future(asyncio.sleep(max(0.0, rotate_in))): "rotate",
        }
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in waits:
                f.cancel()
        for key in ("stop", "closed", "shutdown", "rotate"):
            if any(waits[f] == key for f in done):
                return key
        return "closed"  # pragma: no cover

    async def _open(self, group: _Group) -> _Conn:
        loop = asyncio.get_running_loop()
        ws = await websockets.connect(
            group.url,
            open_timeout=self.open_timeout,
            ping_interval=None,  # our own keepalive, through the token bucket
            ping_timeout=None,
            close_timeout=2.0,
            compression=None,
            max_size=2**20,
            max_queue=1024,
            user_agent_header="tradelab/0.1",
        )
        self._conn_counter += 1
        group.connects += 1
        return _Conn(ws, group.url, loop.time(), self._conn_counter)

    def _attach(self, group: _Group, conn: _Conn, *, reconnect: bool, reason: str = "") -> None:
        loop = asyncio.get_running_loop()
        group.active = conn
        if group.connected_since is None:
            group.connected_since = loop.time()
        conn.tasks.append(self._spawn(self._read(conn), f"read-{conn.number}"))
        conn.tasks.append(self._spawn(self._keepalive(conn), f"ping-{conn.number}"))
        what = "Reconnected" if reconnect else "Connected"
        if reason:
            what = f"Connected ({reason})"
        log.info(
            "%s to %s (connection #%d, %d symbols)",
            what,
            group.url,
            conn.number,
            len(group.symbols),
            extra={
                "event": "connected",
                "url": group.url,
                "connection": conn.number,
                "symbols": list(group.symbols),
                "reconnect": reconnect,
            },
        )
        for s in group.symbols:
            sym = self._syms[s]
            if sym.tracker.high is not None:
                sym.probe = True  # whatever was published while we were away: fetch via REST
        assert self._backfill_wake is not None
        self._backfill_wake.set()

    def _mark_down(self, group: _Group, now: float) -> None:
        if group.connected_since is not None:
            group.connected_total += now - group.connected_since
            group.connected_since = None

    async def _rotate(
        self, group: _Group, old: _Conn, reason: str, policy: ReconnectPolicy
    ) -> None:
        loop = asyncio.get_running_loop()
        why = (
            "the server announced a shutdown"
            if reason == "shutdown"
            else f"connection #{old.number} is {loop.time() - old.opened_at:.0f} s old"
        )
        log.info(
            "Rotating the stream connection: %s; opening the new one first",
            why,
            extra={"event": "rotate", "reason": reason, "connection": old.number},
        )
        try:
            new = await self._open(group)
        except Exception as exc:
            log.error(
                "Opening the replacement connection failed: %s; keeping #%d for now",
                self._describe(exc),
                old.number,
                extra={"event": "rotate_failed", "error": self._describe(exc)},
            )
            return
        policy.connected(loop.time())
        old.retiring = True
        self._attach(group, new, reconnect=True, reason=f"replacing #{old.number}")
        waits = [
            asyncio.ensure_future(new.first_data.wait()),
            asyncio.ensure_future(new.closed.wait()),
            asyncio.ensure_future(old.closed.wait()),
        ]
        try:
            await asyncio.wait(
                waits, timeout=self.handover_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for w in waits:
                w.cancel()
        await self._close_conn(old, "rotated")
        log.info(
            "Connection #%d closed after #%d delivered %d frames",
            old.number,
            new.number,
            new.delivered,
            extra={"event": "rotated", "old": old.number, "new": new.number},
        )

    async def _close_conn(self, conn: _Conn, why: str) -> None:
        conn.retiring = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(1000, why[:100]), 3.0)
        for t in conn.tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*conn.tasks, return_exceptions=True)
        conn.closed.set()

    async def _keepalive(self, conn: _Conn) -> None:
        loop = asyncio.get_running_loop()
        seen = -1
        while True:
            await asyncio.sleep(self.ping_interval)
            if conn.delivered != seen:  # frames arrive: the connection is alive, no ping needed
                seen = conn.delivered
                continue
            while (d := conn.bucket.acquire_delay(loop.time())) > 0:
                await asyncio.sleep(d)
            try:
                pong = await conn.ws.ping()
            except ConnectionClosed:
                return
            try:
                await asyncio.wait_for(pong, self.ping_timeout)
            except TimeoutError:
                log.error(
                    "No pong on connection #%d within %.1f s: the connection is dead, closing it",
                    conn.number,
                    self.ping_timeout,
                    extra={"event": "ping_timeout", "connection": conn.number},
                )
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.ws.close(1011, "ping timeout"), 2.0)
                conn.ws.transport.abort()
                return
            except ConnectionClosed:
                return

    async def _read(self, conn: _Conn) -> None:
        """The hot path: every frame of one connection.

        Read coalescing: at low rates each frame would wake the event loop on its own (most of
        the CPU a quiet feed costs). So when a window of ``read_coalesce`` seconds brought fewer
        than ``_COALESCE_BELOW`` frames, reading pauses for one window and the kernel buffers
        the frames meanwhile; they are then parsed in one go. Busy feeds never pause.
        """
        syms = self._syms
        ws = conn.ws
        pace = self.read_coalesce
        transport = ws.transport
        # websockets' queue of received frames (to know whether recv() would wait)
        queue = getattr(getattr(ws, "recv_messages", None), "frames", None)
        if queue is None or not hasattr(queue, "__len__"):
            pace = None
        clock = asyncio.get_running_loop().time
        window_end = clock() + (pace or 0.0)
        in_window = 0
        try:
            while True:
                raw = await ws.recv()
                if pace is not None:
                    in_window += 1
                    if not len(queue) and (now := clock()) >= window_end:  # type: ignore[arg-type]
                        quiet = in_window < _COALESCE_BELOW
                        in_window = 0
                        window_end = now + pace
                        if quiet and transport.is_reading():
                            transport.pause_reading()
                            try:
                                await asyncio.sleep(pace)
                            finally:
                                if not transport.is_closing():
                                    transport.resume_reading()
                ev = parse_frame(raw)
                if type(ev) is Trade:
                    st = syms.get(ev.symbol)
                    if st is None:
                        self._bad_frame(
                            Rejection(
                                f"trade for unsubscribed symbol {ev.symbol!r}", str(raw)[:120]
                            ),
                            conn,
                        )
                        continue
                    verdict = st.tracker.observe(ev.agg_id, ev.time)
                    if verdict is False:
                        continue
                    st.pending.append(ev)
                    self._buffered += 1
                    if verdict is not True:
                        self._gap_detected(verdict)
                    if not conn.delivered:
                        conn.first_data.set()
                    conn.delivered += 1
                    if self._buffered >= self.max_buffered:
                        self._pause()
                        return
                elif type(ev) is Rejection:
                    self._bad_frame(ev, conn)
                elif type(ev) is ServerShutdown:
                    log.warning(
                        "Server announced shutdown on connection #%d: reconnecting now",
                        conn.number,
                        extra={"event": "server_shutdown", "connection": conn.number},
                    )
                    conn.shutdown.set()
                elif type(ev) is ControlResponse:
                    log.debug("Control response %r", ev)
        except ConnectionClosed:
            pass
        finally:
            conn.closed.set()

    def _bad_frame(self, ev: Rejection, conn: _Conn) -> None:
        self._malformed += 1
        if self._malformed_logged < _MALFORMED_LOG_CAP:
            self._malformed_logged += 1
            log.error(
                "Skipped a malformed frame on connection #%d: %s; frame starts %r",
                conn.number,
                ev.reason,
                ev.excerpt,
                extra={
                    "event": "malformed_frame",
                    "reason": ev.reason,
                    "excerpt": ev.excerpt,
                    "connection": conn.number,
                },
            )

    def _pause(self) -> None:
        if self._paused:
            return
        self._paused = True
        assert self._resume is not None
        self._resume.clear()
        log.error(
            "BUFFER FULL: %d trades are waiting for the store (max_buffered=%d). Pausing intake: "
            "closing the stream until the store accepts writes; trades published meanwhile "
            "will be backfilled through REST. Nothing buffered is dropped.",
            self._buffered_total(),
            self.max_buffered,
            extra={
                "event": "buffer_full",
                "buffered": self._buffered_total(),
                "max_buffered": self.max_buffered,
            },
        )
        for g in self._groups:
            if g.active is not None:
                g.active.closed.set()  # wakes the supervisor, which closes and waits

    def _maybe_resume(self) -> None:
        if self._paused and self._buffered_total() <= self.max_buffered // 2:
            self._paused = False
            assert self._resume is not None
            self._resume.set()
            log.warning(
                "The store caught up (%d trades buffered): resuming intake",
                self._buffered_total(),
                extra={"event": "buffer_resumed", "buffered": self._buffered_total()},
            )

    @staticmethod
    def _describe(exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
            return f"{type(exc).__name__}: {text}"
        if isinstance(exc, TimeoutError):
            return "timed out"
        return text

    # --- gaps and backfill -------------------------------------------------------------------

    def _gap_detected(self, gap: Gap, *, source: str = "stream") -> None:
        span = gap.span_ms
        log.warning(
            "Gap in %s: %d aggregate trades missing (ids %d–%d) between %s and %s%s; "
            "backfilling through REST",
            gap.symbol,
            gap.size,
            gap.first_id,
            gap.last_id,
            _fmt_ms(gap.time_before),
            _fmt_ms(gap.time_after),
            f" ({span / 1000:.3f} s)" if span is not None else "",
            extra={
                "event": "gap_detected",
                "symbol": gap.symbol,
                "missing": gap.size,
                "first_id": gap.first_id,
                "last_id": gap.last_id,
                "span_ms": span,
                "source": source,
            },
        )
        assert self._backfill_wake is not None
        self._backfill_wake.set()

    def _gap_closed(self, gap: Gap) -> None:
        span = gap.span_ms
        fields = {
            "symbol": gap.symbol,
            "first_id": gap.first_id,
            "last_id": gap.last_id,
            "span_ms": span,
            "recovered": gap.recovered,
            "lost": gap.lost,
        }
        if gap.lost:
            log.error(
                "Unrepairable gap in %s: %d of %d aggregate trades (ids %s) do not exist in the "
                "REST history; between %s and %s%s. Logged once; not retried",
                gap.symbol,
                gap.lost,
                gap.size,
                ", ".join(f"{a}–{b}" if a != b else str(a) for a, b in gap.lost_ranges[:5]),
                _fmt_ms(gap.time_before),
                _fmt_ms(gap.time_after),
                f" ({span / 1000:.3f} s)" if span is not None else "",
                extra={"event": "gap_unrepairable", "lost_ranges": gap.lost_ranges[:100], **fields},
            )
        else:
            log.warning(
                "Gap in %s backfilled: %d aggregate trades (ids %d–%d) recovered",
                gap.symbol,
                gap.recovered,
                gap.first_id,
                gap.last_id,
                extra={"event": "gap_backfilled", **fields},
            )

    def _next_job(self) -> tuple[_Symbol, int, bool] | None:
        for s in self._syms.values():
            start = s.tracker.next_missing()
            if start is not None:
                return s, start, False
        if self._stopping:
            return None
        for s in self._syms.values():
            if s.probe and s.tracker.high is not None:
                return s, s.tracker.high + 1, True
        return None

    async def _backfill_loop(self) -> None:
        assert self._backfill_wake is not None
        while True:
            if not self._stopping:
                await self._backfill_wake.wait()
            self._backfill_wake.clear()
            try:
                await self._backfill_round()
            except Exception as exc:  # a bug: say it loudly, keep the collector alive
                log.critical(
                    "Backfill failed unexpectedly: %r",
                    exc,
                    exc_info=exc,
                    extra={"event": "backfill_crashed"},
                )
                if not self._stopping:
                    await self._sleep(1.0)
                    self._backfill_wake.set()
            if self._stopping:
                return

    async def _backfill_round(self) -> None:
        """Fetch REST pages until no gap is open and no tail probe is pending."""
        assert self._resume is not None
        loop = asyncio.get_running_loop()
        errors = exponential_backoff(0.5, 2.0, 30.0)
        while (job := self._next_job()) is not None:
            if self._paused and not self._stopping:
                await self._resume.wait()
                continue
            st, from_id, tail = job
            wait = self.rest.weight_delay()
            if wait > 0:
                log.warning(
                    "REST weight budget used up (%d): waiting %.1f s",
                    self.rest.budget.used,
                    wait,
                    extra={"event": "rest_weight_wait", "wait": wait},
                )
                if await self._sleep(wait) and self._stopping and wait > 1:
                    return
            try:
                page = await self.rest.agg_trades(st.name, from_id, self.rest_limit)
            except RateLimitedError as exc:
                st.last_error = str(exc)
                log.warning(
                    "%s; waiting %g s before the next REST request",
                    exc,
                    exc.retry_after,
                    extra={
                        "event": "rest_rate_limited",
                        "status": exc.status,
                        "retry_after": exc.retry_after,
                        "symbol": st.name,
                    },
                )
                if self._stopping:
                    remaining = self._stop_deadline_left(loop)
                    if exc.retry_after > remaining:
                        return
                    await asyncio.sleep(exc.retry_after)
                else:
                    await self._sleep(exc.retry_after)
                continue
            except (ExchangeError, EndpointUnreachableError, OSError) as exc:
                delay = next(errors)
                st.last_error = str(exc)
                log.error(
                    "REST backfill of %s from id %d failed: %s; retrying in %.1f s",
                    st.name,
                    from_id,
                    exc,
                    delay,
                    extra={
                        "event": "rest_failed",
                        "symbol": st.name,
                        "from_id": from_id,
                        "error": str(exc),
                        "retry_in": delay,
                    },
                )
                if self._stopping:
                    return
                await self._sleep(delay)
                continue
            errors = exponential_backoff(0.5, 2.0, 30.0)
            if self._apply_page(st, from_id, page, tail):
                await self._sleep(0.5)  # REST may lag the stream: ask again shortly
            elif not self._stopping:
                await asyncio.sleep(0)  # let the stream breathe between pages

    def _stop_deadline_left(self, loop: asyncio.AbstractEventLoop) -> float:
        return max(0.0, self._stop_deadline - loop.time())

    def _apply_page(self, st: _Symbol, from_id: int, page: list[Trade], tail: bool) -> bool:
        """Apply one REST page; True if it should be asked again shortly before losing ids."""
        tr = st.tracker
        short = len(page) < self.rest_limit
        declare = True
        if not tail and short and tr.tail_lost_pending(from_id, page) and st.short_retry != from_id:
            declare = False  # REST may lag the stream by a moment: ask once more first
            st.short_retry = from_id
        out = tr.apply_rest(from_id, page, limit=self.rest_limit, declare_tail_lost=declare)
        if out.accepted:
            st.pending.extend(out.accepted)
            self._buffered += len(out.accepted)
        for gap in out.opened:
            self._gap_detected(gap, source="rest")
        for gap in out.closed:
            self._gap_closed(gap)
        if tail and out.accepted:
            log.info(
                "Fetched %d trades of %s through REST (ids %d–%d): published after the last "
                "id received, while (re)connecting or before start",
                len(out.accepted),
                st.name,
                out.accepted[0].agg_id,
                out.accepted[-1].agg_id,
                extra={
                    "event": "tail_fetched",
                    "symbol": st.name,
                    "trades": len(out.accepted),
                    "first_id": out.accepted[0].agg_id,
                    "last_id": out.accepted[-1].agg_id,
                },
            )
        if tail and short:
            st.probe = False
        if out.accepted and self._buffered >= self.max_buffered:
            self._pause()
        return not declare

    # --- writing -----------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        tick = loop.time()
        while True:
            # a fixed cadence: one batch per symbol per batch_interval, however long writes take
            tick = max(tick + self.batch_interval, loop.time())
            if await self._sleep(tick - loop.time()):
                return
            try:
                await self._flush_once()
            except Exception as exc:  # pragma: no cover - a bug; keep collecting, say it loudly
                log.critical(
                    "Flushing failed unexpectedly: %r",
                    exc,
                    exc_info=exc,
                    extra={"event": "flush_crashed"},
                )

    async def _flush_once(self, *, force: bool = False) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        batches: dict[str, list[Trade]] = {}
        for s in self._syms.values():
            for gap in s.tracker.pop_closed():  # closed by late live frames (rotation overlap)
                self._gap_closed(gap)
            if not (s.pending or s.unwritten) or (s.retry_at > now and not force):
                continue
            batch = s.unwritten + s.pending if s.unwritten else s.pending
            s.unwritten, s.pending = [], []
            s.inflight = len(batch)
            batches[s.name] = batch
        if not batches:
            return
        results = await asyncio.to_thread(self._write_batches, batches)
        now = loop.time()
        for name, batch in batches.items():
            s = self._syms[name]
            s.inflight = 0
            result = results[name]
            if isinstance(result, BaseException):
                self._write_failed(s, batch, result, now)
                continue
            self._buffered -= len(batch)
            s.trades_stored += result
            s.minute_stored += result
            s.recent.append((now, result))
            top = max(batch, key=lambda t: t.agg_id)
            if s.last_stored_id is None or top.agg_id > s.last_stored_id:
                s.last_stored_id, s.last_stored_time = top.agg_id, top.time
            if s.write_failures:
                log.warning(
                    "Store recovered: wrote %d buffered trades of %s after %d failed attempts",
                    len(batch),
                    name,
                    s.write_failures,
                    extra={
                        "event": "write_recovered",
                        "symbol": name,
                        "trades": len(batch),
                        "failures": s.write_failures,
                    },
                )
                s.write_failures = 0
                s.backoff = None
                s.retry_at = 0.0
                s.last_error = None
        self._maybe_resume()

    def _write_batches(self, batches: dict[str, list[Trade]]) -> dict[str, Any]:
        """Worker thread: one atomic ``store.append`` per symbol."""
        out: dict[str, Any] = {}
        for name, batch in batches.items():
            try:
                out[name] = self.store.append(name, trades_to_frame(batch))
            except Exception as exc:  # a failed write keeps the batch; see _write_failed
                out[name] = exc
        return out

    def _write_failed(self, s: _Symbol, batch: list[Trade], exc: BaseException, now: float) -> None:
        if not isinstance(exc, StorageError):
            # not the disk: the store refused the trades themselves (InputError) or a bug;
            # retrying the same batch cannot help and would block the symbol: say so loudly
            self._buffered -= len(batch)
            s.last_error = f"store refused trades: {exc}"
            log.error(
                "The store refused %d trades of %s as invalid (%s); they are NOT stored",
                len(batch),
                s.name,
                exc,
                extra={
                    "event": "trades_refused",
                    "symbol": s.name,
                    "trades": len(batch),
                    "error": str(exc),
                },
            )
            return
        s.unwritten = batch + s.unwritten
        s.write_failures += 1
        if s.backoff is None:
            s.backoff = exponential_backoff(
                self.write_retry_initial, 2.0, self.write_retry_max, 0.2
            )
        delay = next(s.backoff)
        s.retry_at = now + delay
        s.last_error = f"write failed: {exc}"
        log.error(
            "Writing %d trades of %s failed: %s; keeping them in memory (%d buffered, "
            "max %d) and retrying in %.1f s",
            len(batch),
            s.name,
            exc,
            s.buffered,
            self.max_buffered,
            delay,
            extra={
                "event": "write_failed",
                "symbol": s.name,
                "trades": len(batch),
                "buffered": s.buffered,
                "retry_in": round(delay, 3),
                "error": str(exc),
            },
        )

    # --- reporting ---------------------------------------------------------------------------

    @staticmethod
    def _rate(s: _Symbol, now: float, elapsed: float) -> float:
        """Trades stored per minute over the last minute — or over the time collection has
        run when that is shorter, so the first minute is not under-reported."""
        while s.recent and s.recent[0][0] < now - 60.0:
            s.recent.popleft()
        window = min(60.0, max(elapsed, 1.0))
        return round(sum(n for _t, n in s.recent) * 60.0 / window, 1)

    def _open_gaps(self) -> dict[str, list[tuple[int, int]]]:
        return {s.name: s.tracker.open_ranges() for s in self._syms.values() if s.tracker.open_gaps}

    def _publish(self, doc: dict[str, Any], gaps: dict[str, list[tuple[int, int]]]) -> None:
        """Worker thread: write the status document and the open gaps to the store."""
        self.store.put_meta(STATUS_META, doc)
        self.store.put_meta(GAPS_META, {k: [list(r) for r in v[:1000]] for k, v in gaps.items()})

    async def _report_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_log = loop.time() + self.log_interval
        next_retention = loop.time() if self.retention_interval else None
        while True:
            try:
                await asyncio.to_thread(self._publish, self.status(), self._open_gaps())
            except Exception as exc:
                log.warning(
                    "Could not publish the collector status: %s",
                    exc,
                    extra={"event": "status_failed", "error": str(exc)},
                )
            now = loop.time()
            if now >= next_log:
                next_log = now + self.log_interval
                self._log_minute(now)
            if next_retention is not None and now >= next_retention:
                assert self.retention_interval is not None
                next_retention = now + self.retention_interval
                try:
                    removed = await asyncio.to_thread(self.store.enforce_retention)
                    log.info(
                        "Retention: removed %d trades older than the retention period",
                        removed,
                        extra={"event": "retention", "trades": removed},
                    )
                except Exception as exc:
                    log.warning(
                        "Retention failed: %s",
                        exc,
                        extra={"event": "retention_failed", "error": str(exc)},
                    )
            if await self._sleep(min(self.status_interval, max(0.05, next_log - now))):
                return

    def _log_minute(self, now: float) -> None:
        for s in self._syms.values():
            tr = s.tracker
            n, s.minute_stored = s.minute_stored, 0
            per_min = n * 60.0 / self.log_interval
            log.info(
                "Stored %d trades for %s in the last %.0f s (%.0f/min), last trade %s (id %s); "
                "gaps so far: %d detected, %d backfilled, %d unrepairable",
                n,
                s.name,
                self.log_interval,
                per_min,
                _fmt_ms(s.last_stored_time),
                s.last_stored_id,
                tr.gaps_detected,
                tr.gaps_backfilled,
                tr.gaps_unrepairable,
                extra={
                    "event": "stored",
                    "symbol": s.name,
                    "trades": n,
                    "trades_per_min": per_min,
                    "last_trade_time": s.last_stored_time,
                    "last_agg_id": s.last_stored_id,
                    "gaps_detected": tr.gaps_detected,
                    "gaps_backfilled": tr.gaps_backfilled,
                    "gaps_unrepairable": tr.gaps_unrepairable,
                    "buffered": s.buffered,
                    "total_stored": s.trades_stored,
                },
            )
