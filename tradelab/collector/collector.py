"""The collector: a thin asyncio shell around the pure protocol, gap and backoff code.

``Collector(symbols).start()`` runs on the current event loop (a Jupyter kernel's or the CLI's):

* **streams** — one combined-stream connection per 1024 symbols
  (:func:`~tradelab.binance.protocol.build_stream_urls`); each frame goes through
  :func:`~tradelab.binance.parse_frame` and the symbol's :class:`~tradelab.binance.GapTracker`
  (new / duplicate / gap). Reconnects forever with :class:`~tradelab.binance.ReconnectPolicy`
  (exponential, jittered, reset after a healthy period). Before ``rotate_after`` (Binance closes
  connections after 24 h) and on ``serverShutdown`` it opens the new connection first and closes
  the old one once the new one delivers; overlapping trades are duplicates to the tracker and
  to the store. Outgoing messages stay far below Binance's 5 per second: the only messages the
  collector sends itself are keepalive pings (only when a connection has been silent for
  ``ping_interval``; a missing pong within ``ping_timeout`` means a dead connection), paced
  by a :class:`~tradelab.binance.backoff.TokenBucket` of 4/s with burst 1; websockets answers the
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

Settings are constructor keywords with defaults, validated with messages naming the setting
(:class:`~tradelab.collector.settings.CollectorSettings`).

Where each part lives — ``Collector`` is this module's lifecycle (start, stop, status, start-up)
combined with one part per responsibility, all sharing the state in
:mod:`~tradelab.collector.state`:

* :mod:`~tradelab.collector.settings` — the settings and their validation;
* :mod:`~tradelab.collector.streams` — connections, supervision, rotation, keepalive, reading;
* :mod:`~tradelab.collector.backfill` — gap reporting and REST backfill;
* :mod:`~tradelab.collector.writer` — batch writes to the store and their retries;
* :mod:`~tradelab.collector.reporting` — the status document, periodic log lines, retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tradelab.binance.protocol import (
    MAX_REST_LIMIT,
    MAX_STREAMS_PER_CONNECTION,
    build_stream_urls,
    split_streams,
)
from tradelab.binance.rest import RestClient
from tradelab.collector.backfill import BackfillMixin
from tradelab.collector.reporting import ReportingMixin
from tradelab.collector.settings import CollectorSettings
from tradelab.collector.state import GAPS_META, StreamGroup, SymbolState, fmt_ms
from tradelab.collector.status_doc import STATUS_META
from tradelab.collector.streams import StreamsMixin
from tradelab.collector.writer import WriterMixin
from tradelab.exceptions import (
    CollectorStateError,
    ConfigurationError,
    ExchangeError,
    InvalidSymbolError,
    RateLimitedError,
    TradelabError,
)
from tradelab.logs import get_logger

__all__ = ["STATUS_META", "Collector"]

log = get_logger("tradelab.collector")


def _now_ms() -> int:
    return int(time.time() * 1000)


class Collector(StreamsMixin, BackfillMixin, WriterMixin, ReportingMixin):
    """Collect aggTrades of ``symbols`` into a :class:`~tradelab.store.TradeStore`.

    ``store`` is an open writable TradeStore, a directory, or None (the configured data
    directory, via :func:`tradelab.store.registry.open_store`). ``ws_url``/``rest_url`` default to
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
        # every check lives in CollectorSettings (same order, same messages); the attributes
        # below are its normalised values, under the names the rest of the collector uses
        settings = CollectorSettings.from_arguments(
            symbols,
            ws_url=ws_url,
            rest_url=rest_url,
            batch_interval=batch_interval,
            max_buffered=max_buffered,
            rotate_after=rotate_after,
            handover_timeout=handover_timeout,
            reconnect_initial=reconnect_initial,
            reconnect_max=reconnect_max,
            healthy_after=healthy_after,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            open_timeout=open_timeout,
            rest_timeout=rest_timeout,
            rest_limit=rest_limit,
            write_retry_initial=write_retry_initial,
            write_retry_max=write_retry_max,
            status_interval=status_interval,
            log_interval=log_interval,
            retention_interval=retention_interval,
            stop_timeout=stop_timeout,
            max_streams=max_streams,
            read_coalesce=read_coalesce,
        )
        self.settings = settings
        self.symbols: tuple[str, ...] = settings.symbols
        self.ws_url = settings.ws_url
        self.rest_url = settings.rest_url
        self.batch_interval = settings.batch_interval
        self.max_buffered = settings.max_buffered
        self.rotate_after = settings.rotate_after
        self.handover_timeout = settings.handover_timeout
        self.reconnect_initial = settings.reconnect_initial
        self.reconnect_max = settings.reconnect_max
        self.healthy_after = settings.healthy_after
        self.ping_interval = settings.ping_interval
        self.ping_timeout = settings.ping_timeout
        self.open_timeout = settings.open_timeout
        self.rest_limit = settings.rest_limit
        self.write_retry_initial = settings.write_retry_initial
        self.write_retry_max = settings.write_retry_max
        self.status_interval = settings.status_interval
        self.log_interval = settings.log_interval
        self.retention_interval = settings.retention_interval
        self.stop_timeout = settings.stop_timeout
        self.read_coalesce = settings.read_coalesce
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
        self.rest = RestClient(self.rest_url, timeout=settings.rest_timeout)
        self._syms = {s: SymbolState(s) for s in self.symbols}
        urls = build_stream_urls(self.ws_url, self.symbols, max_streams=settings.max_streams)
        self._groups = [
            StreamGroup(g, u)
            for g, u in zip(split_streams(self.symbols, settings.max_streams), urls, strict=True)
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
            from tradelab.store.registry import open_store

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
                    fmt_ms(last_time),
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
