"""The backfiller: gap reporting and the loop that closes gaps through REST.

Gaps come from the stream (a jump in agg ids, seen by the symbol's
:class:`~tradelab.binance.GapTracker`), from REST pages themselves, and from the previous run
(saved in the store under :data:`GAPS_META`). After every (re)connect or restart the *tail*
after the highest id received is fetched too (a "probe", :meth:`Backfiller.request_tail`).
:meth:`Backfiller.run` pages through ``aggTrades?fromId=..&limit=..`` until no gap is open and
no probe is pending, honouring the REST weight budget and 429/418 ``Retry-After``; ids REST does
not have are logged once as unrepairable (:meth:`Backfiller.gap_closed`). Fetched trades enter
the :class:`~tradelab.collector.gate.IntakeGate` like streamed ones.

The trackers themselves are pure (:mod:`tradelab.binance.gaps`); this part owns the REST
conversation, the probe flags and the wake-up event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from tradelab.binance.backoff import exponential_backoff
from tradelab.binance.gaps import Gap, GapTracker
from tradelab.binance.protocol import Trade
from tradelab.collector.gate import IntakeGate
from tradelab.collector.ports import AggTradesSource, ResumeSource
from tradelab.collector.runtime import LastErrors, StopSignal, fmt_ms
from tradelab.exceptions import EndpointUnreachableError, ExchangeError, RateLimitedError
from tradelab.logs import get_logger

__all__ = ["GAPS_META", "Backfiller"]

log = get_logger("tradelab.collector")

GAPS_META = "collector_open_gaps"  # store meta key: gaps still open, backfilled after a restart


class Backfiller:
    """Closes the gaps of ``trackers`` through ``rest``, feeding the trades into ``gate``."""

    def __init__(
        self,
        trackers: Mapping[str, GapTracker],
        rest: AggTradesSource,
        gate: IntakeGate,
        stop: StopSignal,
        errors: LastErrors,
        *,
        rest_limit: int,
    ) -> None:
        self._trackers = trackers
        self._rest = rest
        self._gate = gate
        self._stop = stop
        self._errors = errors
        self._limit = rest_limit
        self._probe: dict[str, bool] = dict.fromkeys(trackers, False)
        self._short_retry: dict[str, int | None] = dict.fromkeys(trackers)
        self._wake: asyncio.Event | None = None

    # --- run --------------------------------------------------------------------------------

    def begin(self) -> None:
        """Arm for a new run (call on the loop the run uses)."""
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for work now (a gap, a probe, or stop)."""
        if self._wake is not None:
            self._wake.set()

    def request_tail(self, symbols: tuple[str, ...] | list[str]) -> None:
        """Fetch what was published after the highest id received, for each of ``symbols``
        that has received any (after a (re)connect: whatever came while we were away)."""
        for s in symbols:
            if self._trackers[s].high is not None:
                self._probe[s] = True
        self.wake()

    def open_gaps(self) -> dict[str, list[tuple[int, int]]]:
        """The ids still missing, per symbol with any: ``{symbol: [(first, last), ...]}``."""
        return {s: t.open_ranges() for s, t in self._trackers.items() if t.open_gaps}

    def load_resume_points(self, store: ResumeSource) -> list[tuple[str, int, int | None]]:
        """Worker thread, at start: continue each symbol after its last stored id (tail probe
        through REST) and restore the gaps the previous run left open. Returns
        ``(symbol, last id, last time)`` of each symbol the store already holds."""
        saved = None
        with contextlib.suppress(Exception):
            saved = store.get_meta(GAPS_META)
        points: list[tuple[str, int, int | None]] = []
        for name, tracker in self._trackers.items():
            last = store.last_agg_id(name)
            if last is not None:
                last_time = None
                with contextlib.suppress(Exception):
                    st = store.stats(name)
                    if st.last_time is not None:
                        last_time = int(st.last_time.timestamp() * 1000)
                tracker.resume(last, last_time)
                points.append((name, last, last_time))
                self._probe[name] = True  # resume from last+1 through REST
                log.info(
                    "Resuming %s after stored agg id %d (last trade %s)",
                    name,
                    last,
                    fmt_ms(last_time),
                    extra={"event": "resume", "symbol": name, "last_agg_id": last},
                )
            for lo, hi in (saved or {}).get(name, []):
                tracker.add_gap(int(lo), int(hi))
                log.warning(
                    "Gap of %s left open by the previous run (ids %d–%d): backfilling",
                    name,
                    lo,
                    hi,
                    extra={"event": "gap_restored", "symbol": name, "first_id": lo, "last_id": hi},
                )
        return points

    # --- gap reports ------------------------------------------------------------------------

    def gap_detected(self, gap: Gap, *, source: str = "stream") -> None:
        """Log a new gap and wake the loop to backfill it."""
        span = gap.span_ms
        log.warning(
            "Gap in %s: %d aggregate trades missing (ids %d–%d) between %s and %s%s; "
            "backfilling through REST",
            gap.symbol,
            gap.size,
            gap.first_id,
            gap.last_id,
            fmt_ms(gap.time_before),
            fmt_ms(gap.time_after),
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
        self.wake()

    def gap_closed(self, gap: Gap) -> None:
        """Log a closed gap: backfilled (WARNING), or with ids REST lacks (ERROR, once)."""
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
                fmt_ms(gap.time_before),
                fmt_ms(gap.time_after),
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

    def report_closed_gaps(self) -> None:
        """Log the gaps closed by late live frames (a rotation's overlap) since the last call."""
        for tracker in self._trackers.values():
            for gap in tracker.pop_closed():
                self.gap_closed(gap)

    # --- the loop ---------------------------------------------------------------------------

    def next_job(self) -> tuple[str, int, bool] | None:
        """``(symbol, fromId, is a tail probe)`` of the next page to fetch, or None."""
        for name, tracker in self._trackers.items():
            start = tracker.next_missing()
            if start is not None:
                return name, start, False
        if self._stop.stopping:
            return None
        for name, tracker in self._trackers.items():
            if self._probe[name] and tracker.high is not None:
                return name, tracker.high + 1, True
        return None

    async def run(self) -> None:
        """Backfill whenever woken, until stop (then finish what can finish in time)."""
        assert self._wake is not None, "Backfiller.begin() was not called"
        while True:
            if not self._stop.stopping:
                await self._wake.wait()
            self._wake.clear()
            try:
                await self.run_round()
            except Exception as exc:  # a bug: say it loudly, keep the collector alive
                log.critical(
                    "Backfill failed unexpectedly: %r",
                    exc,
                    exc_info=exc,
                    extra={"event": "backfill_crashed"},
                )
                if not self._stop.stopping:
                    await self._stop.sleep(1.0)
                    self._wake.set()
            if self._stop.stopping:
                return

    async def run_round(self) -> None:
        """Fetch REST pages until no gap is open and no tail probe is pending."""
        loop = asyncio.get_running_loop()
        stop = self._stop
        errors = exponential_backoff(0.5, 2.0, 30.0)
        while (job := self.next_job()) is not None:
            if self._gate.paused and not stop.stopping:
                await self._gate.wait_open()
                continue
            name, from_id, tail = job
            wait = self._rest.weight_delay()
            if wait > 0:
                log.warning(
                    "REST weight budget used up (%d): waiting %.1f s",
                    self._rest.budget.used,
                    wait,
                    extra={"event": "rest_weight_wait", "wait": wait},
                )
                if await stop.sleep(wait) and stop.stopping and wait > 1:
                    return
            try:
                page = await self._rest.agg_trades(name, from_id, self._limit)
            except RateLimitedError as exc:
                self._errors.report(name, str(exc))
                log.warning(
                    "%s; waiting %g s before the next REST request",
                    exc,
                    exc.retry_after,
                    extra={
                        "event": "rest_rate_limited",
                        "status": exc.status,
                        "retry_after": exc.retry_after,
                        "symbol": name,
                    },
                )
                if stop.stopping:
                    if exc.retry_after > stop.time_left(loop.time()):
                        return
                    await asyncio.sleep(exc.retry_after)
                else:
                    await stop.sleep(exc.retry_after)
                continue
            except (ExchangeError, EndpointUnreachableError, OSError) as exc:
                delay = next(errors)
                self._errors.report(name, str(exc))
                log.error(
                    "REST backfill of %s from id %d failed: %s; retrying in %.1f s",
                    name,
                    from_id,
                    exc,
                    delay,
                    extra={
                        "event": "rest_failed",
                        "symbol": name,
                        "from_id": from_id,
                        "error": str(exc),
                        "retry_in": delay,
                    },
                )
                if stop.stopping:
                    return
                await stop.sleep(delay)
                continue
            errors = exponential_backoff(0.5, 2.0, 30.0)
            if self.apply_page(name, from_id, page, tail):
                await stop.sleep(0.5)  # REST may lag the stream: ask again shortly
            elif not stop.stopping:
                await asyncio.sleep(0)  # let the stream breathe between pages

    def apply_page(self, name: str, from_id: int, page: list[Trade], tail: bool) -> bool:
        """Apply one REST page asked with ``fromId=from_id``; True if it should be asked again
        shortly before declaring ids lost (a short page while a gap above it is open)."""
        tr = self._trackers[name]
        limit = self._limit
        short = len(page) < limit
        declare = True
        if (
            not tail
            and short
            and tr.tail_lost_pending(from_id, page)
            and self._short_retry[name] != from_id
        ):
            declare = False  # REST may lag the stream by a moment: ask once more first
            self._short_retry[name] = from_id
        out = tr.apply_rest(from_id, page, limit=limit, declare_tail_lost=declare)
        for gap in out.opened:
            self.gap_detected(gap, source="rest")
        for gap in out.closed:
            self.gap_closed(gap)
        if tail and out.accepted:
            log.info(
                "Fetched %d trades of %s through REST (ids %d–%d): published after the last "
                "id received, while (re)connecting or before start",
                len(out.accepted),
                name,
                out.accepted[0].agg_id,
                out.accepted[-1].agg_id,
                extra={
                    "event": "tail_fetched",
                    "symbol": name,
                    "trades": len(out.accepted),
                    "first_id": out.accepted[0].agg_id,
                    "last_id": out.accepted[-1].agg_id,
                },
            )
        if tail and short:
            self._probe[name] = False
        self._gate.admit_many(name, out.accepted)  # may pause intake at the bound
        return not declare
