"""The collector's batch writing: buffered trades to the store, with retries and no silent loss.

Every ``batch_interval`` each symbol's pending trades go to ``store.append`` as one atomic
write, in a worker thread so the event loop never waits on the store. A write that fails with
:class:`~tradelab.exceptions.StorageError` keeps its batch in memory and is retried with
backoff; trades the store refuses as invalid are logged as an ERROR. After each round the
writer lets the stream side resume intake if it was paused for a full buffer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tradelab.binance.backoff import exponential_backoff
from tradelab.binance.protocol import Trade, trades_to_frame
from tradelab.collector.state import CollectorCore, SymbolState
from tradelab.exceptions import StorageError
from tradelab.logs import get_logger

__all__ = ["WriterMixin"]

log = get_logger("tradelab.collector")


class WriterMixin(CollectorCore):
    """Batch writes of :class:`~tradelab.collector.Collector` to its store (a part of it)."""

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

    def _write_failed(
        self, s: SymbolState, batch: list[Trade], exc: BaseException, now: float
    ) -> None:
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
