"""The collector's reporting: the status document in the store, the periodic log lines, retention.

Every ``status_interval`` the report loop writes :meth:`~tradelab.collector.Collector.status`
to ``store.put_meta(STATUS_META, ...)`` (read by other processes through
:mod:`tradelab.collector.status_doc`) together with the gaps still open, logs the "Stored N
trades" line every ``log_interval`` and runs ``store.enforce_retention`` every
``retention_interval``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tradelab.collector.state import GAPS_META, CollectorCore, SymbolState, fmt_ms
from tradelab.collector.status_doc import STATUS_META
from tradelab.logs import get_logger

__all__ = ["ReportingMixin"]

log = get_logger("tradelab.collector")


class ReportingMixin(CollectorCore):
    """Status publishing and periodic log lines of :class:`~tradelab.collector.Collector`."""

    @staticmethod
    def _rate(s: SymbolState, now: float, elapsed: float) -> float:
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
                fmt_ms(s.last_stored_time),
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
