"""The status publisher: the status document in the store, the periodic log lines, retention.

Every ``status_interval`` :class:`StatusPublisher` writes the collector's status document (the
``status`` callable: :meth:`~tradelab.collector.Collector.status`) to
``sink.put_meta(STATUS_META, ...)`` — read by other processes through
:mod:`tradelab.collector.status_doc`. (The holes still open need no document of their own: the
store knows its coverage, and the next start repairs what is missing.) Every ``log_interval`` it
logs one "Stored N trades" line per symbol from the same document, and every
``retention_interval`` it runs ``sink.enforce_retention``. With an ``export_to`` table it runs the
:class:`~tradelab.collector.exporting.HourlyExporter` beside (each closed hour into the table)
whose state the collector's status document carries (``"export"``).

It reads nothing but that callable and its settings, so a unit test drives it with a
dictionary and a fake sink.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tradelab.collector.exporting import HourlyExporter
from tradelab.collector.ports import StatusSink
from tradelab.collector.runtime import StopSignal, fmt_ms
from tradelab.collector.settings import CollectorSettings
from tradelab.collector.status_doc import STATUS_META
from tradelab.logs import get_logger

__all__ = ["StatusPublisher"]

log = get_logger("tradelab.collector")

StatusFn = Callable[[], dict[str, Any]]


class StatusPublisher:
    """Publishes ``status()`` to the store; logs; applies retention."""

    def __init__(self, settings: CollectorSettings, stop: StopSignal, status: StatusFn) -> None:
        self._settings = settings
        self._stop = stop
        self._status = status
        self._sink: StatusSink | None = None
        self._logged: dict[str, int] = {}  # trades_stored per symbol at the last "Stored" line
        self.exporter = HourlyExporter(settings, stop)
        """Exports closed hours to ``settings.export_to`` (does nothing without one)."""

    def begin(self, sink: StatusSink) -> None:
        """Publish to ``sink`` from now on (the store the collector opened)."""
        self._sink = sink

    def publish(self, doc: dict[str, Any]) -> None:
        """Worker thread: write the status document to the store."""
        assert self._sink is not None, "StatusPublisher.begin() was not called"
        self._sink.put_meta(STATUS_META, doc)

    async def run(self) -> None:
        """Publish, log and apply retention on their intervals until stop is requested (and
        export closed hours meanwhile, with ``export_to``)."""
        exporting = None
        if self.exporter.enabled:
            assert self._sink is not None, "StatusPublisher.begin() was not called"
            exporting = asyncio.ensure_future(self.exporter.run(self._sink))
        try:
            await self._run()
        finally:
            if exporting is not None:
                await self._finish_export(exporting)

    async def _finish_export(self, task: asyncio.Task[None]) -> None:
        """At stop: let an export in progress commit (its hour is one atomic transaction), for
        up to ``stop_fetch_timeout``; what is not committed is exported by the next start."""
        done, _ = await asyncio.wait([task], timeout=self._settings.stop_fetch_timeout)
        if not done:
            task.cancel()
            log.warning(
                "Export to %s still running at stop; the next start exports what it missed",
                self._settings.export_to,
                extra={"event": "export_interrupted"},
            )

    async def _run(self) -> None:
        st = self._settings
        loop = asyncio.get_running_loop()
        next_log = loop.time() + st.log_interval
        next_retention = loop.time() if st.retention_interval else None
        while True:
            try:
                await asyncio.to_thread(self.publish, self._status())
            except Exception as exc:
                log.warning(
                    "Could not publish the collector status: %s",
                    exc,
                    extra={"event": "status_failed", "error": str(exc)},
                )
            now = loop.time()
            if now >= next_log:
                next_log = now + st.log_interval
                self.log_stored(self._status())
            if next_retention is not None and now >= next_retention:
                assert st.retention_interval is not None
                next_retention = now + st.retention_interval
                await self._retention()
            if await self._stop.sleep(min(st.status_interval, max(0.05, next_log - now))):
                return

    async def _retention(self) -> None:
        assert self._sink is not None
        try:
            removed = await asyncio.to_thread(self._sink.enforce_retention)
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

    def log_stored(self, doc: dict[str, Any]) -> None:
        """One "Stored N trades" line per symbol of status document ``doc``: the trades stored
        since the previous line, the last stored trade, the gaps so far."""
        interval = self._settings.log_interval
        for name, s in doc["symbols"].items():
            total = s["trades_stored"]
            n = total - self._logged.get(name, 0)
            self._logged[name] = total
            per_min = n * 60.0 / interval
            log.info(
                "Stored %d trades for %s in the last %.0f s (%.0f/min), last trade %s (id %s); "
                "gaps so far: %d detected, %d backfilled, %d unrepairable",
                n,
                name,
                interval,
                per_min,
                fmt_ms(s["last_trade_time"]),
                s["last_agg_id"],
                s["gaps_detected"],
                s["gaps_backfilled"],
                s["gaps_unrepairable"],
                extra={
                    "event": "stored",
                    "symbol": name,
                    "trades": n,
                    "trades_per_min": per_min,
                    "last_trade_time": s["last_trade_time"],
                    "last_agg_id": s["last_agg_id"],
                    "gaps_detected": s["gaps_detected"],
                    "gaps_backfilled": s["gaps_backfilled"],
                    "gaps_unrepairable": s["gaps_unrepairable"],
                    "buffered": s["buffered"],
                    "total_stored": total,
                },
            )
