"""The hourly exporter: each closed hour of the collected symbols into a Delta table as it closes.

With the ``export_to`` setting (or ``$TRADELAB_EXPORT_TO``) the collector runs
:class:`HourlyExporter` beside its other loops: right after start (what closed while it was
down), then a few seconds after every hour boundary, it calls :func:`tradelab.scale.export`
on a worker thread for its own symbols. The export commits each closed, complete hour in one
Delta transaction carrying an application id, so a retry, a crash or a second collector never
commits an hour twice. An hour that still has a repairable hole waits: the exporter checks again
every ``export_check_interval`` until the repair lands (or the ids are declared unrepairable),
then exports it. A failing export (the table's storage is down, credentials expired) is logged
as a WARNING and retried on the same interval; it never stops collection.

The scheduling rule is :func:`next_export_in` (pure); the loop is :meth:`HourlyExporter.run`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tradelab.collector.runtime import StopSignal
from tradelab.collector.settings import CollectorSettings
from tradelab.formatting import utc_text
from tradelab.logs import get_logger

__all__ = ["EXPORT_GRACE_S", "HourlyExporter", "next_export_in"]

log = get_logger("tradelab.collector")

HOUR_MS = 3_600_000
EXPORT_GRACE_S = 5.0
"""Seconds after an hour boundary before exporting the hour that closed: by then the first
trade of the new hour is stored (the writer stores every second), which is what marks the hour
closed."""


def next_export_in(
    through_ms: list[int | None], now_ms: int, *, check_interval: float, failed: bool
) -> float:
    """Seconds until the next export attempt.

    ``through_ms``: per symbol, the start of the last hour the table has (None when it has none
    of the symbol). When every symbol has its last closed hour in the table, the next attempt is
    :data:`EXPORT_GRACE_S` after the next hour boundary; when one lags (an hour held by a hole,
    a symbol whose first hour has not closed or whose trades are still being fetched) or the
    attempt ``failed``, it is ``check_interval`` from now — an export with nothing to do reads
    only the table's log.
    """
    last_closed = now_ms // HOUR_MS * HOUR_MS - HOUR_MS
    behind = any(t is None or t < last_closed for t in through_ms)
    if failed or behind:
        return check_interval
    next_boundary = (now_ms // HOUR_MS + 1) * HOUR_MS
    return (next_boundary - now_ms) / 1000.0 + EXPORT_GRACE_S


class HourlyExporter:
    """Exports the collector's closed hours to ``settings.export_to`` while it runs."""

    def __init__(self, settings: CollectorSettings, stop: StopSignal) -> None:
        self._settings = settings
        self._stop = stop
        self.state: dict[str, Any] = {"uri": settings.export_to, "exports": 0, "last_error": None}
        """For the status document: the table, the exports run, the hour each symbol's table
        holds through (UTC text), the last error (None after a success)."""

    @property
    def enabled(self) -> bool:
        """True when the collector has a table to export to."""
        return self._settings.export_to is not None

    def export_once(self, store: Any) -> list[int | None]:
        """Worker thread: one export of the collector's symbols; the hour each symbol's table
        holds through (unix ms of its start, None if none). Raises what the export raises."""
        from tradelab.scale import export  # the scale extra: checked when the settings were made

        assert self._settings.export_to is not None
        report = export(store, self._settings.export_to, symbols=self._settings.symbols)
        self.state["exports"] += 1
        self.state["through"] = {
            s.symbol: None if s.through_ms is None else utc_text(s.through_ms)
            for s in report.symbols
        }
        for s in report.symbols:
            if s.hours or s.waiting or s.note:
                log.info(
                    "Export to %s: %s",
                    report.uri,
                    s.line(),
                    extra={
                        "event": "export",
                        "symbol": s.symbol,
                        "hours": s.hours,
                        "trades": s.trades,
                        "waiting": s.waiting,
                    },
                )
        return [s.through_ms for s in report.symbols]

    async def run(self, store: Any) -> None:
        """Export now, then after every hour boundary (and on ``export_check_interval`` while
        an hour waits or the export fails) until the collector stops."""
        if not self.enabled:
            return
        while True:
            failed = False
            through: list[int | None] = []
            try:
                through = await asyncio.to_thread(self.export_once, store)
                self.state["last_error"] = None
            except Exception as exc:  # storage down, credentials, a conflict storm: retry
                failed = True
                self.state["last_error"] = str(exc)
                log.warning(
                    "Export to %s failed (retried in %g s): %s",
                    self._settings.export_to,
                    self._settings.export_check_interval,
                    exc,
                    extra={"event": "export_failed", "error": str(exc)},
                )
            delay = next_export_in(
                through,
                int(time.time() * 1000),
                check_interval=self._settings.export_check_interval,
                failed=failed,
            )
            if await self._stop.sleep(delay):
                return
