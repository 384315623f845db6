"""The batch writer: buffered trades to the store once a second, with retries and no silent loss.

Every ``batch_interval`` :class:`BatchWriter` takes each symbol's pending trades from the
:class:`~tradelab.collector.gate.IntakeGate` and hands them to ``sink.append`` as one atomic
write per symbol, in a worker thread so the event loop never waits on the store. A write that
fails with :class:`~tradelab.exceptions.StorageError` keeps its batch (in order, ahead of newer
trades) and is retried with backoff; trades the store refuses as invalid are logged as an
ERROR. Each round ends by settling what left the buffer with the gate, which may resume intake.

The writer owns the per-symbol write state (the batch kept for a retry, its backoff) and the
per-symbol :class:`StoredCounts` the status document reports.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Generator, Iterable
from typing import Any

from tradelab.binance.backoff import exponential_backoff
from tradelab.collector.columns import TradeColumns
from tradelab.collector.gate import IntakeGate
from tradelab.collector.memory import TRIM_AFTER_TRADES, release_free_memory
from tradelab.collector.ports import TradeSink
from tradelab.collector.runtime import LastErrors, StopSignal
from tradelab.collector.settings import CollectorSettings
from tradelab.exceptions import StorageError
from tradelab.logs import get_logger

__all__ = ["BatchWriter", "StoredCounts"]

log = get_logger("tradelab.collector")


class StoredCounts:
    """What was stored for one symbol: totals, the last stored trade, the recent rate."""

    __slots__ = ("last_stored_id", "last_stored_time", "recent", "trades_stored")

    def __init__(self) -> None:
        self.trades_stored = 0
        self.last_stored_id: int | None = None
        self.last_stored_time: int | None = None
        self.recent: deque[tuple[float, int]] = deque()  # (loop time, trades stored then)

    def record(self, now: float, stored: int) -> None:
        """``stored`` new trades went to the store at loop time ``now``."""
        self.trades_stored += stored
        self.recent.append((now, stored))

    def advance(self, agg_id: int, time_ms: int | None) -> None:
        """The highest stored id is now at least ``agg_id`` (trade time ``time_ms``)."""
        if self.last_stored_id is None or agg_id > self.last_stored_id:
            self.last_stored_id, self.last_stored_time = agg_id, time_ms

    def rate_per_min(self, now: float, elapsed: float) -> float:
        """Trades stored per minute over the last minute — or over the time collection has
        run (``elapsed``) when that is shorter, so the first minute is not under-reported."""
        while self.recent and self.recent[0][0] < now - 60.0:
            self.recent.popleft()
        window = min(60.0, max(elapsed, 1.0))
        return round(sum(n for _t, n in self.recent) * 60.0 / window, 1)


class _Retry:
    """A symbol's batch kept after a failed write (trades and unrepairable ranges), and when to
    try again."""

    __slots__ = ("backoff", "failures", "lost", "retry_at", "unwritten")

    def __init__(self, symbol: str) -> None:
        self.unwritten = TradeColumns(symbol)
        self.lost: list[tuple[int, int]] = []
        self.retry_at = 0.0
        self.backoff: Generator[float, None, None] | None = None
        self.failures = 0


class BatchWriter:
    """One atomic write per symbol per ``batch_interval``; failed writes retried in order.

    ``on_round`` is called at the start of every round (the collector reports gaps closed by
    late live frames there). The sink arrives with :meth:`begin`, since the store opens when
    the collector starts.
    """

    def __init__(
        self,
        settings: CollectorSettings,
        gate: IntakeGate,
        stop: StopSignal,
        errors: LastErrors,
        *,
        on_round: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._gate = gate
        self._stop = stop
        self._errors = errors
        self._on_round = on_round
        self._sink: TradeSink | None = None
        self._retry = {s: _Retry(s) for s in settings.symbols}
        self._in_flight: dict[str, tuple[TradeColumns, list[tuple[int, int]]]] = {}
        self._since_trim = 0  # trades written since the allocator last gave memory back
        self.counts: dict[str, StoredCounts] = {s: StoredCounts() for s in settings.symbols}

    def begin(self, sink: TradeSink) -> None:
        """Write to ``sink`` from now on (the store the collector opened)."""
        self._sink = sink

    def resume(self, points: Iterable[tuple[str, int, int | None]]) -> None:
        """The store already holds each ``(symbol, last id, last time)``: report it as stored."""
        for symbol, last_id, last_time in points:
            counts = self.counts[symbol]
            counts.last_stored_id, counts.last_stored_time = last_id, last_time

    async def run(self) -> None:
        """Flush at a fixed cadence until stop is requested (never cancelled: it may be writing)."""
        loop = asyncio.get_running_loop()
        tick = loop.time()
        while True:
            # a fixed cadence: one batch per symbol per batch_interval, however long writes take
            tick = max(tick + self._settings.batch_interval, loop.time())
            if await self._stop.sleep(tick - loop.time()):
                return
            try:
                await self.flush_once()
            except Exception as exc:  # pragma: no cover - a bug; keep collecting, say it loudly
                log.critical(
                    "Flushing failed unexpectedly: %r",
                    exc,
                    exc_info=exc,
                    extra={"event": "flush_crashed"},
                )

    def in_flight(self, symbol: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and unrepairable ranges of ``symbol`` taken from the gate and not yet stored
        (being written now, or kept for a retry): received, though the store lacks them."""
        r = self._retry[symbol]
        flying = self._in_flight.get(symbol)
        ids = r.unwritten.ids()
        if flying is None:
            return ids, list(r.lost)
        return [*flying[0].ids(), *ids], [*flying[1], *r.lost]

    def unwritten(self, symbol: str) -> tuple[list[int], list[tuple[int, int]]]:
        """What of ``symbol`` is received and not stored: the agg ids (kept for a retry, or
        waiting in the gate) and the unrepairable ranges not yet recorded — what a stop
        reports when the store would not take it."""
        ids, lost = self.in_flight(symbol)
        return (
            [*ids, *self._gate.pending_ids(symbol)],
            [*lost, *self._gate.pending_unrepairable(symbol)],
        )

    async def flush_once(self, *, force: bool = False) -> None:
        """One round: every symbol with trades to write (and no retry pending, unless
        ``force``) gets one ``append`` (with its unrepairable ranges); then settle with the
        gate."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._on_round is not None:
            self._on_round()
        gate = self._gate
        batches: dict[str, TradeColumns] = {}
        lost: dict[str, list[tuple[int, int]]] = {}
        for name, r in self._retry.items():
            if not (r.unwritten or r.lost or gate.has_pending(name)) or (
                r.retry_at > now and not force
            ):
                continue
            taken = gate.take(name)
            if r.unwritten:  # the retried batch first, then what came since
                r.unwritten.extend_columns(taken)
                taken = r.unwritten
            batches[name] = taken
            lost[name] = r.lost + gate.take_unrepairable(name)
            r.unwritten, r.lost = TradeColumns(name), []
            self._in_flight[name] = (batches[name], lost[name])
        if not batches:
            return
        try:
            results = await asyncio.to_thread(self.write_batches, batches, lost)
        finally:
            self._in_flight.clear()
        now = loop.time()
        settled: dict[str, int] = {}
        for name, batch in batches.items():
            result = results[name]
            if isinstance(result, BaseException):
                if self._write_failed(name, batch, lost[name], result, now):
                    settled[name] = len(batch)
                continue
            settled[name] = len(batch)
            if batch:
                self._stored(name, batch, result, now)
        gate.settle(settled)

    def write_batches(
        self,
        batches: dict[str, TradeColumns],
        lost: dict[str, list[tuple[int, int]]] | None = None,
    ) -> dict[str, Any]:
        """Worker thread: one atomic ``sink.append`` per symbol, with the symbol's unrepairable
        ranges (``lost``) in the same write; an exception is returned (as that symbol's
        result), not raised, so one failing symbol does not hide another."""
        sink = self._sink
        assert sink is not None, "BatchWriter.begin() was not called"
        out: dict[str, Any] = {}
        for name, batch in batches.items():
            ranges = (lost or {}).get(name)
            try:
                frame = batch.to_frame()  # from the packed columns: no pass per trade
                if ranges:
                    out[name] = sink.append(name, frame, unrepairable=ranges)
                else:
                    out[name] = sink.append(name, frame)
            except Exception as exc:  # a failed write keeps the batch; see _write_failed
                out[name] = exc
            self._since_trim += len(batch)
        if self._since_trim >= TRIM_AFTER_TRADES:  # large writes: give back what malloc keeps
            self._since_trim = 0
            release_free_memory()
        return out

    def _stored(self, name: str, batch: TradeColumns, stored: int, now: float) -> None:
        counts = self.counts[name]
        counts.record(now, stored)
        top = batch.last()
        if top is not None:
            counts.advance(*top)
        r = self._retry[name]
        if r.failures:
            log.warning(
                "Store recovered: wrote %d buffered trades of %s after %d failed attempts",
                len(batch),
                name,
                r.failures,
                extra={
                    "event": "write_recovered",
                    "symbol": name,
                    "trades": len(batch),
                    "failures": r.failures,
                },
            )
            r.failures = 0
            r.backoff = None
            r.retry_at = 0.0
            self._errors.clear(name)

    def _write_failed(
        self,
        name: str,
        batch: TradeColumns,
        lost: list[tuple[int, int]],
        exc: BaseException,
        now: float,
    ) -> bool:
        """Handle a failed write; True if the batch leaves the buffer (refused, not retried)."""
        if not isinstance(exc, StorageError):
            # not the disk: the store refused the trades themselves (InputError) or a bug;
            # retrying the same batch cannot help and would block the symbol: say so loudly
            self._errors.report(name, f"store refused trades: {exc}")
            log.error(
                "The store refused %d trades of %s as invalid (%s); they are NOT stored",
                len(batch),
                name,
                exc,
                extra={
                    "event": "trades_refused",
                    "symbol": name,
                    "trades": len(batch),
                    "error": str(exc),
                },
            )
            return True
        r = self._retry[name]
        batch.extend_columns(r.unwritten)  # kept in order, ahead of newer trades
        r.unwritten = batch
        r.lost = lost + r.lost
        r.failures += 1
        if r.backoff is None:
            r.backoff = exponential_backoff(
                self._settings.write_retry_initial, 2.0, self._settings.write_retry_max, 0.2
            )
        delay = next(r.backoff)
        r.retry_at = now + delay
        self._errors.report(name, f"write failed: {exc}")
        buffered = self._gate.buffered_of(name)
        log.error(
            "Writing %d trades of %s failed: %s; keeping them in memory (%d buffered, "
            "max %d) and retrying in %.1f s",
            len(batch),
            name,
            exc,
            buffered,
            self._settings.max_buffered,
            delay,
            extra={
                "event": "write_failed",
                "symbol": name,
                "trades": len(batch),
                "buffered": buffered,
                "retry_in": round(delay, 3),
                "error": str(exc),
            },
        )
        return False
