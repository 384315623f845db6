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
* **repair** — every hole is fetched through REST ``aggTrades?fromId=..&limit=1000`` until
  closed, in turn so none starves: the store's holes (asked at start and after every
  reconnect: the store knows its coverage, so a kill at any instant loses nothing the exchange
  still serves), gaps the stream reveals, and the tail after the last id after every
  (re)connect or restart; honouring the weight header and 429/418 ``Retry-After``. Ids REST
  does not have are logged once and recorded as unrepairable in the store, in the same write
  as the trades of that round.
* **history** — with ``history_hours`` the last hours are filled from the daily archives and
  REST while going live (:mod:`~tradelab.collector.history_fill`).
* **stop** — everything published before the stop instant is stored: what was received, then
  (within ``stop_fetch_timeout``) what REST still has of the holes and of the tail.
* **no silent loss** — a failed write keeps its batch in memory and retries with backoff. The
  buffer is bounded (``max_buffered`` trades): at the bound the collector *pauses intake* — it
  closes its stream connections, logs an ERROR, and reconnects once the store has accepted the
  backlog; the trades published meanwhile are then a gap, backfilled through REST. Memory stays
  bounded and nothing is dropped without an ERROR line saying so.
* **status** — :meth:`Collector.status` and, every ``status_interval`` seconds, the same
  document in ``store.put_meta("collector_status", ...)`` for other processes.

How it is assembled — ``Collector`` owns the lifecycle (start, stop, status, start-up checks)
and wires one object per responsibility; each owns its state and talks to the others through a
narrow interface (the store and the REST client reach them as the protocols of
:mod:`~tradelab.collector.ports`):

* :class:`~tradelab.collector.settings.CollectorSettings` — every setting, frozen, validated;
* :class:`~tradelab.collector.gate.IntakeGate` — the buffered trades, their count, the pause;
* :class:`~tradelab.collector.streams.StreamSupervisor` — connections, rotation, the read path;
* :class:`~tradelab.collector.backfill.Backfiller` — gap reports and REST backfill;
* :class:`~tradelab.collector.writer.BatchWriter` — batch writes, retries, stored counts;
* :class:`~tradelab.collector.history_fill.HistoryRunner` — the history fill on start;
* :class:`~tradelab.collector.publisher.StatusPublisher` — status document, log lines,
  retention;
* :mod:`~tradelab.collector.runtime` — the stop signal, task handles, last errors.
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

from tradelab.binance.gaps import GapTracker
from tradelab.binance.protocol import Plausibility
from tradelab.binance.rest import RestClient
from tradelab.collector import reports
from tradelab.collector.backfill import Backfiller
from tradelab.collector.gate import IntakeGate
from tradelab.collector.history_fill import HistoryRunner
from tradelab.collector.publisher import StatusPublisher
from tradelab.collector.repair import id_ranges
from tradelab.collector.runtime import LastErrors, StopSignal, TaskSet, wait_tasks
from tradelab.collector.settings import CollectorSettings
from tradelab.collector.status_doc import STATUS_META
from tradelab.collector.streams import StreamSpec, StreamSupervisor
from tradelab.collector.writer import BatchWriter
from tradelab.config import retention_days_from_env, validate_bool
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


class Collector:
    """Collect aggTrades of ``symbols`` into a :class:`~tradelab.store.TradeStore`.

    ``symbols`` is a comma/space-separated string, an iterable or None (``$TRADELAB_SYMBOLS``,
    then BTCUSDT,ETHUSDT). ``store`` is an open writable TradeStore, a directory, or None (the
    configured data directory, via :func:`tradelab.store.registry.open_store`), opened by
    :meth:`start`. ``ws_url``/``rest_url`` default to ``$TRADELAB_WS_URL``/
    ``$TRADELAB_REST_URL``, then Binance. Every other keyword is a field of
    :class:`~tradelab.collector.settings.CollectorSettings` (``batch_interval``,
    ``max_buffered``, ``rotate_after``, ``handover_timeout``, ``reconnect_initial``,
    ``reconnect_max``, ``healthy_after``, ``ping_interval``, ``ping_timeout``,
    ``open_timeout``, ``rest_timeout``, ``rest_limit``, ``write_retry_initial``,
    ``write_retry_max``, ``status_interval``, ``log_interval``, ``retention_interval``,
    ``stop_timeout``, ``stop_fetch_timeout``, ``max_streams``, ``read_coalesce``,
    ``history_hours``, ``archive_url``, ``history_weight_share``), documented and defaulted there;
    every value is validated here, at construction, with a message naming the setting. An
    unknown keyword raises :class:`TypeError`.
    """

    def __init__(
        self,
        symbols: str | Iterable[str] | None = ("BTCUSDT", "ETHUSDT"),
        *,
        store: Any = None,
        ws_url: str | None = None,
        rest_url: str | None = None,
        **settings: Any,
    ) -> None:
        self.settings: CollectorSettings = CollectorSettings.from_arguments(
            symbols, ws_url=ws_url, rest_url=rest_url, **settings
        )
        """The validated settings (frozen): the parts read theirs from here."""
        if (
            store is not None
            and not isinstance(store, str | os.PathLike)
            and not (hasattr(store, "append") and hasattr(store, "last_agg_id"))
        ):
            raise ConfigurationError(
                f"store must be a TradeStore, a directory path or None, got {type(store).__name__}"
            )
        self._store_arg = store
        self._store: Any = None
        st = self.settings
        self.rest = RestClient(st.rest_url, timeout=st.rest_timeout)
        # the parts, wired once; each run arms them with begin()
        self._stop = StopSignal()
        self._errors = LastErrors(st.symbols)
        self._trackers = {s: GapTracker(s) for s in st.symbols}
        self._gate = IntakeGate(st.symbols, st.max_buffered)
        self._backfiller = Backfiller(
            self._trackers,
            self.rest,
            self._gate,
            self._stop,
            self._errors,
            rest_limit=st.rest_limit,
            in_flight=self._in_flight,
            item_retries=st.rest_item_retries,
        )
        self._streams = StreamSupervisor(
            st,
            self._trackers,
            self._gate,
            self._stop,
            self._errors,
            on_gap=self._backfiller.gap_detected,
            on_connected=self._backfiller.request_tail,
            on_suspect=self._backfiller.suspect,
        )
        self.writer = BatchWriter(
            st, self._gate, self._stop, self._errors, on_round=self._backfiller.report_closed_gaps
        )
        """The batch writer (``write_batches`` runs in the worker thread; benchmarks time it)."""
        self._publisher = StatusPublisher(st, self._stop, self.status)
        self._history = HistoryRunner(
            st, self._trackers, self._stop, on_filled=self._backfiller.recheck
        )
        # run state
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started_at_ms: int | None = None
        self._started_mono = 0.0
        self._flusher: asyncio.Task[Any] | None = None
        self._backfill_task: asyncio.Task[Any] | None = None
        self._report_task: asyncio.Task[Any] | None = None
        self._history_task: asyncio.Task[Any] | None = None
        self._supervisors: list[asyncio.Task[Any]] = []
        self._tasks = TaskSet()

    # --- public API --------------------------------------------------------------------------

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols collected (normalised, upper case)."""
        return self.settings.symbols

    @property
    def ws_url(self) -> str:
        """The WebSocket base URL."""
        return self.settings.ws_url

    @property
    def rest_url(self) -> str:
        """The REST base URL."""
        return self.settings.rest_url

    @property
    def store(self) -> Any:
        """The store written to: None before :meth:`start` opened it."""
        return self._store

    @property
    def streams(self) -> tuple[StreamSpec, ...]:
        """The combined-stream connections, one per ``max_streams`` symbols: each a
        :class:`~tradelab.collector.streams.StreamSpec` ``(symbols, url)``."""
        return self._streams.specs

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and the end of :meth:`stop`."""
        return self._running

    def open_gaps(self) -> dict[str, list[tuple[int, int]]]:
        """The agg ids still missing (not yet backfilled), per symbol that has any."""
        return self._backfiller.open_gaps()

    def _in_flight(self, symbol: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Received but not yet stored (the writer's batch and retries): not a hole to fetch."""
        return self.writer.in_flight(symbol)

    async def start(self, *, check: bool = False) -> None:
        """Open the store, resume each symbol after its last stored id, queue every hole the
        store reports for repair (logged at WARNING), and start collecting.

        Returns once the background tasks run. With ``check=True`` (the CLI) it first asks the
        REST API for one trade of each symbol and then waits for every stream connection's first
        attempt: an unknown symbol raises :class:`InvalidSymbolError`, an unreachable endpoint
        :class:`EndpointUnreachableError` — a clear message at start instead of retrying forever.
        Without it the collector retries forever, logging each failure.
        """
        check = validate_bool(check, "check")
        if self._running:
            raise CollectorStateError("the collector is already running; call stop() first")
        self._loop = loop = asyncio.get_running_loop()
        self._stop.begin()
        self._gate.begin()
        self._backfiller.begin()
        if check:
            await self._check_rest()
        store = self._store = await asyncio.to_thread(self._open_store)
        self._streams.plausibility = self._backfiller.plausibility = self._plausibility(store)
        points = await asyncio.to_thread(self._backfiller.load_resume_points, store)
        self.writer.resume(points)
        self.writer.begin(store)
        self._publisher.begin(store)
        self._started_at_ms = _now_ms()
        self._started_mono = loop.time()
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
                "connections": len(self._streams.groups),
            },
        )
        self._supervisors = self._streams.launch(check=check)
        self._flusher = self._tasks.spawn(self.writer.run(), "flush")
        self._backfill_task = self._tasks.spawn(self._backfiller.run(), "backfill")
        self._report_task = self._tasks.spawn(self._publisher.run(), "report")
        self._history_task = (
            self._tasks.spawn(self._history.run(store), "history")
            if self._history.enabled
            else None
        )
        self._backfiller.wake()
        if check:
            try:
                await self._streams.first_attempts()
            except TradelabError:
                await self.stop()
                raise

    async def stop(self) -> None:
        """Stop collecting; store everything published before the stop; then return.

        The stop instant is taken first. Then: close the streams (no new frames) and write what
        was received; fetch through REST, for up to ``stop_fetch_timeout``, every open hole and
        each symbol's tail up to the stop instant — what was published before the stop but not
        received, e.g. while waiting to reconnect — writing it as it comes; write everything
        left (retrying a failing store for up to ``stop_timeout``); publish a final status.
        What could not be fetched is a hole the next start repairs: the stop log line says how
        many ids. Received trades the store would not take are logged as an ERROR with their
        count — never dropped silently.
        """
        if not self._running:
            raise CollectorStateError("the collector is not running; call start() first")
        assert self._loop is not None
        assert self._flusher is not None and self._backfill_task is not None
        assert self._report_task is not None
        loop = self._loop
        st = self.settings
        until_ms = _now_ms()
        fetch_deadline = loop.time() + st.stop_fetch_timeout
        self._stop.request(fetch_deadline)
        self._history.halt()
        self._gate.release_waiters()
        log.info(
            "Collector stopping: closing streams, writing what was received, fetching what was "
            "published before the stop",
            extra={"event": "collector_stopping", "until_ms": until_ms},
        )
        # 1. no new frames: close every connection (supervisors exit on the stop signal); the
        #    writer's loop ends by itself at its next tick (never cancelled: it may be writing)
        await self._streams.close_all()
        await wait_tasks(self._supervisors, 3.0)
        await asyncio.gather(self._flusher, return_exceptions=True)
        await self.writer.flush_once(force=True)
        # 2. the stop phase of the backfill: holes and tails up to the stop instant
        self._backfiller.begin_stop(until_ms)
        bf = self._backfill_task
        while not bf.done() and loop.time() < fetch_deadline:
            left = max(0.01, min(st.batch_interval, fetch_deadline - loop.time()))
            await asyncio.wait([bf], timeout=left)
            await self.writer.flush_once(force=True)
        await wait_tasks([bf], 0.0)
        live = [t for t in (self._history_task, self._report_task) if t is not None]
        await wait_tasks(live, max(0.5, fetch_deadline - loop.time()))
        await wait_tasks([*self._tasks.live(), *self._streams.live_tasks()], 1.0)
        # 3. write everything, retrying a failing store until its deadline
        store_deadline = loop.time() + st.stop_timeout
        while self._gate.buffered and loop.time() < store_deadline:
            await self.writer.flush_once(force=True)
            if self._gate.buffered:
                await asyncio.sleep(min(0.2, max(0.0, store_deadline - loop.time())))
        lost = {s: n for s in self.symbols if (n := self._gate.buffered_of(s))}
        unwritten: dict[str, list[tuple[int, int]]] = {}
        for name, n in lost.items():
            ids, ranges_lost = self.writer.unwritten(name)
            runs = unwritten[name] = id_ranges(ids)
            log.error(
                "%d received trades of %s could NOT be stored before stop (the store kept "
                "failing for %.0f s): agg ids %s%s; they are a hole the next start fetches "
                "again through REST (while the exchange serves them)",
                n,
                name,
                st.stop_timeout,
                ", ".join(f"{lo}–{hi}" if lo != hi else str(lo) for lo, hi in runs[:10]),
                f" and {len(runs) - 10} more runs" if len(runs) > 10 else "",
                extra={
                    "event": "trades_lost_at_stop",
                    "symbol": name,
                    "trades": n,
                    "ranges": runs[:1000],
                    "unrepairable_unrecorded": ranges_lost[:1000],
                },
            )
        # 4. what is still missing: a hole (or tail) the next start repairs
        open_gaps = self._backfiller.open_gaps()
        tails = self._backfiller.tails_pending()
        for name, ranges in open_gaps.items():
            n = sum(hi - lo + 1 for lo, hi in ranges)
            log.warning(
                "Stopping with %d trades of %s still missing in %d hole(s) %s: REST did not "
                "serve them in time; the next start repairs them",
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
        holes_left = sum(hi - lo + 1 for r in open_gaps.values() for lo, hi in r)
        self._running = False
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._publisher.publish, self.status())
        counts = self.writer.counts
        total = sum(c.trades_stored for c in counts.values())
        log.info(
            "Collector stopped: %d trades stored this run; highest agg id received: %s; "
            "%d ids not fetched in %d hole(s)%s (the next start repairs them)",
            total,
            ", ".join(f"{s} {t.high}" for s, t in self._trackers.items()),
            holes_left,
            sum(len(r) for r in open_gaps.values()),
            f"; tail up to the stop instant not fetched for {', '.join(tails)}" if tails else "",
            extra={
                "event": "collector_stop",
                "trades": total,
                "unstored": sum(lost.values()),
                "unwritten": {k: v[:100] for k, v in unwritten.items()},
                "holes_left": holes_left,
                "tails_unfetched": tails,
                "last_received": {s: t.high for s, t in self._trackers.items()},
                "stored": {s: c.trades_stored for s, c in counts.items()},
            },
        )
        self._tasks.clear()
        self._supervisors = []

    def status(self) -> dict[str, Any]:
        """The collector-status document (also published to the store every few seconds)."""
        now = self._loop.time() if self._loop is not None else 0.0
        elapsed = max(now - self._started_mono, 1e-9) if self._started_at_ms else 0.0
        links = self._streams.link_state(now)
        symbols: dict[str, Any] = {}
        for name, (connected, uptime) in links.items():
            counts = self.writer.counts[name]
            tr = self._trackers[name]
            up = uptime if elapsed else 0.0
            symbols[name] = {
                "connected": bool(self._running and connected),
                "trades_stored": counts.trades_stored,
                "rate_per_min": counts.rate_per_min(now, elapsed),
                "last_trade_time": counts.last_stored_time,
                "last_agg_id": counts.last_stored_id,
                "gaps_detected": tr.gaps_detected,
                "gaps_backfilled": tr.gaps_backfilled,
                "gaps_unrepairable": tr.gaps_unrepairable,
                "missing": tr.missing_count,
                "history": dict(h) if (h := self._history.progress.get(name)) else None,
                "uptime_ratio": round(min(1.0, up / elapsed), 4) if elapsed else 0.0,
                "buffered": self._gate.buffered_of(name),
                "last_error": self._errors.get(name),
            }
        doc: dict[str, Any] = {
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
        exporter = self._publisher.exporter
        if exporter.enabled:
            doc["export"] = dict(exporter.state)
        return doc

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

    def _plausibility(self, store: Any) -> Plausibility:
        """The plausibility rules of this run: ``max_id_jump``, and trade times within the
        store's retention (``TRADELAB_RETENTION_DAYS`` if the store does not say) plus
        ``time_slack`` either side of now."""
        st = self.settings
        days = getattr(store, "retention_days", None)
        if isinstance(days, bool) or not isinstance(days, int | float) or days <= 0:
            days = retention_days_from_env()
        slack_ms = int(st.time_slack * 1000)
        return Plausibility(st.max_id_jump, int(days * 86_400_000) + slack_ms, slack_ms)

    def _store_path(self) -> str:
        path = getattr(self._store, "path", None) or self._store_arg
        return str(Path(path)) if isinstance(path, str | os.PathLike) else str(path)

    async def _check_rest(self) -> None:
        for sym in self.symbols:
            try:
                await self.rest.agg_trades(sym, None, 1)
            except RateLimitedError as exc:  # reachable; the backfill waits Retry-After out
                then = f"the backfill waits {exc.retry_after:g} s before its first REST request"
                reports.rest_rate_limited(sym, exc, then)
                self._backfiller.defer(exc.retry_after)
                return
            except ExchangeError as exc:
                if "-1121" in str(exc) or "Invalid symbol" in str(exc):
                    raise InvalidSymbolError(
                        f"the exchange at {self.rest_url} does not know symbol {sym!r}: {exc}"
                    ) from None
                raise
