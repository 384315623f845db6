"""History on start: fill the last ``history_hours`` of each symbol while the collector goes live.

:class:`HistoryRunner` waits for each symbol's first live trade (or a few seconds on a quiet
feed), then runs :func:`tradelab.history.fill_window` over ``[now - hours, now)`` in a worker
thread — whole past days from the daily archives, the rest from REST, within
``history_weight_share`` of the weight budget — one symbol after the other, so the live
collector's repairs always keep their share. The window ends after the first live trade, so it
overlaps the live data (the store keeps each id once); when a fill ends, the backfiller is asked
to look at the store's holes again (``on_filled``), which repairs any id between the window and
the live stream. Nothing here has to survive a crash: what a killed fill did not store is
either outside the window or a hole the next start repairs.

Progress (trades, days, ETA) comes from the fill's callback and is shown per symbol in
:meth:`~tradelab.collector.Collector.status` (``history``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from tradelab.binance.gaps import GapTracker
from tradelab.collector.runtime import StopSignal, fmt_ms
from tradelab.collector.settings import CollectorSettings
from tradelab.logs import get_logger

__all__ = ["HistoryRunner"]

log = get_logger("tradelab.collector")

FIRST_TRADE_WAIT = 5.0
"""Seconds to wait for a symbol's first live trade before its window ends at "now" anyway."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class HistoryRunner:
    """Fills the last ``settings.history_hours`` of every symbol once per run (see module)."""

    def __init__(
        self,
        settings: CollectorSettings,
        trackers: Mapping[str, GapTracker],
        stop: StopSignal,
        *,
        on_filled: Callable[[str], None],
    ) -> None:
        self._settings = settings
        self._trackers = trackers
        self._stop = stop
        self._on_filled = on_filled
        self._halt = threading.Event()
        self.progress: dict[str, dict[str, Any]] = {}
        """Per symbol: the latest progress report (``trades``, ``days_done``, ``days_total``,
        ``eta_s``, ``done``; ``error`` if the fill failed), for the status document."""

    @property
    def enabled(self) -> bool:
        """True when ``history_hours`` asks for a fill."""
        return bool(self._settings.history_hours)

    def halt(self) -> None:
        """Stop: the fill running in the worker thread ends between pages."""
        self._halt.set()

    async def run(self, store: Any) -> None:
        """Fill each symbol's window in turn (a worker thread each), until done or stopped."""
        from tradelab.history import fill_window  # the history engine (archives + REST)

        self._halt.clear()
        hours = self._settings.history_hours
        assert hours
        for name in self._settings.symbols:
            self.progress[name] = {"trades": 0, "days_done": 0.0, "done": False, "eta_s": None}
        loop = asyncio.get_running_loop()
        for name in self._settings.symbols:
            deadline = loop.time() + FIRST_TRADE_WAIT
            while self._trackers[name].high is None and loop.time() < deadline:
                if await self._stop.sleep(0.05):
                    return
            if self._stop.stopping:
                return
            end = _now_ms() + 1
            start = end - round(hours * 3_600_000)
            log.info(
                "History: filling the last %g h of %s (%s to %s) from the archives and REST",
                hours,
                name,
                fmt_ms(start),
                fmt_ms(end),
                extra={"event": "history_start", "symbol": name, "start": start, "end": end},
            )
            try:
                report = await asyncio.to_thread(
                    fill_window,
                    store,
                    name,
                    start,
                    end,
                    rest_url=self._settings.rest_url,
                    archive_url=self._settings.archive_url,
                    weight_share=self._settings.history_weight_share,
                    progress=self._note,
                    stop=self._halt,
                )
            except Exception as exc:  # the exchange or the store failed: say so, go on live
                self.progress[name].update(done=True, error=str(exc))
                log.error(
                    "History of %s could not be filled: %s (live collection goes on; run "
                    "`tradelab backfill` later to fill it)",
                    name,
                    exc,
                    extra={"event": "history_failed", "symbol": name, "error": str(exc)},
                )
                continue
            self.progress[name].update(done=True, trades=report.trades)
            log.info(
                "History of %s filled: %d trades in %.1f s (%d archive days, %d REST calls)%s",
                name,
                report.trades,
                report.elapsed_s,
                len(report.archive_days),
                report.rest_calls,
                "" if report.complete else f"; NOT complete: {report.unfetched[:3]}",
                extra={
                    "event": "history_done",
                    "symbol": name,
                    "trades": report.trades,
                    "complete": report.complete,
                },
            )
            self._on_filled(name)

    def _note(self, p: Any) -> None:
        """The fill's progress callback (worker thread)."""
        self.progress[p.symbol] = {
            "trades": p.trades,
            "days_done": round(p.days_done, 3),
            "days_total": round(p.days_total, 3),
            "eta_s": None if p.eta_s is None else round(p.eta_s, 1),
            "done": p.done,
        }
