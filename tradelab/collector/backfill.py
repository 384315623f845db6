"""The collector's REST backfill: gap reporting and the loop that closes gaps through REST.

Gaps come from the stream (a jump in agg ids), from REST pages themselves, and from the
previous run (saved in the store). After every (re)connect or restart the *tail* after the
highest id received is fetched too (a "probe"). The backfill loop pages through
``aggTrades?fromId=..&limit=..`` until no gap is open and no probe is pending, honouring the
REST weight budget and 429/418 ``Retry-After``; ids REST does not have are logged once as
unrepairable by :meth:`BackfillMixin._gap_closed`. Fetched trades join the symbol's pending
buffer like streamed ones.
"""

from __future__ import annotations

import asyncio

from tradelab.binance.backoff import exponential_backoff
from tradelab.binance.gaps import Gap
from tradelab.binance.protocol import Trade
from tradelab.collector.state import CollectorCore, SymbolState, fmt_ms
from tradelab.exceptions import EndpointUnreachableError, ExchangeError, RateLimitedError
from tradelab.logs import get_logger

__all__ = ["BackfillMixin"]

log = get_logger("tradelab.collector")


class BackfillMixin(CollectorCore):
    """Gap logging and REST backfill of :class:`~tradelab.collector.Collector` (a part of it)."""

    def _gap_detected(self, gap: Gap, *, source: str = "stream") -> None:
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

    def _next_job(self) -> tuple[SymbolState, int, bool] | None:
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

    def _apply_page(self, st: SymbolState, from_id: int, page: list[Trade], tail: bool) -> bool:
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
