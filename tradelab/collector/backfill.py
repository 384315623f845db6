"""The backfiller: every hole the store or the stream reveals is repaired through REST.

Where the missing ids come from:

* the **store** — at start :meth:`Backfiller.load_resume_points` asks it for its holes
  (``store.holes``: runs of ids missing between the first and last stored, from the block
  headers) and logs each at WARNING as "left by an earlier run"; after every reconnect
  (:meth:`Backfiller.request_tail`) and after a history fill (:meth:`Backfiller.recheck`) it asks
  again, so nothing a crash, a refused write or a join between history and live left behind is
  forgotten. No separate list of open gaps is persisted: the store's coverage *is* the list, so
  a kill at any instant loses nothing the exchange still serves;
* the **stream** — a jump in agg ids, seen by the symbol's
  :class:`~tradelab.binance.GapTracker` (and REST pages that skip ids);
* the **tail** — after every (re)connect or restart, what was published after the highest id
  received (a "probe"); on stop, up to the stop instant (:meth:`Backfiller.begin_stop`).

:meth:`Backfiller.run` pages through ``aggTrades?fromId=..&limit=..`` in turn over every open hole
and tail (:class:`~tradelab.collector.repair.RoundRobin`: a small hole never starves behind a
large one), honouring the REST weight budget and 429/418 ``Retry-After``. Fetched trades enter
the :class:`~tradelab.collector.gate.IntakeGate` like streamed ones; ids REST does not have are
logged once as unrepairable and handed to the gate too, so the writer records them in the store
in the same atomic write as the trades of that round.

Two kinds of bad input never stop the repairs:

* a REST page with items the collector rejects keeps its valid items; the bad id is asked for
  again (``rest_item_retries`` times, in turn with every other job) and then recorded in the
  store as unrepairable (:class:`~tradelab.collector.suspects.BadItems`);
* an *implausible* streamed trade (:class:`~tradelab.binance.protocol.Plausibility`) is
  skipped by the stream reader and handed here (:meth:`Backfiller.suspect`); before anything
  else, REST is asked for that id: the trade is stored only if REST has it with the same values
  (then the ids before it are an ordinary gap), else it is discarded — the store never resumes
  past a trade it cannot vouch for (:class:`~tradelab.collector.suspects.Suspects`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence

import polars as pl

from tradelab.binance.backoff import exponential_backoff
from tradelab.binance.gaps import Gap, GapTracker
from tradelab.binance.protocol import MalformedPageError, Plausibility, Trade
from tradelab.collector import reports
from tradelab.collector.gate import IntakeGate
from tradelab.collector.ports import AggTradesSource, HoleSource, ResumeSource
from tradelab.collector.repair import Job, JobKey, RoundRobin, subtract
from tradelab.collector.runtime import LastErrors, StopSignal, fmt_ms
from tradelab.collector.suspects import BadItems, Suspects, confirms
from tradelab.exceptions import EndpointUnreachableError, ExchangeError, RateLimitedError
from tradelab.logs import get_logger

__all__ = ["Backfiller", "InFlight"]

log = get_logger("tradelab.collector")

InFlight = Callable[[str], tuple[list[int], list[tuple[int, int]]]]
"""Ids and unrepairable ranges of a symbol received but not yet in the store (the writer's
and the gate's), so a store hole that is only waiting for a write is not fetched again."""


def _no_flight(_symbol: str) -> tuple[list[int], list[tuple[int, int]]]:
    return [], []


class Backfiller:
    """Closes the holes of ``trackers`` through ``rest``, feeding the trades into ``gate``."""

    def __init__(
        self,
        trackers: Mapping[str, GapTracker],
        rest: AggTradesSource,
        gate: IntakeGate,
        stop: StopSignal,
        errors: LastErrors,
        *,
        rest_limit: int,
        in_flight: InFlight = _no_flight,
        item_retries: int = 3,
        plausibility: Plausibility | None = None,
    ) -> None:
        self._trackers = trackers
        self._rest = rest
        self._gate = gate
        self._stop = stop
        self._errors = errors
        self._limit = rest_limit
        self._in_flight = in_flight
        self._store: HoleSource | None = None
        self._probe: dict[str, bool] = dict.fromkeys(trackers, False)
        self._recheck: dict[str, bool] = dict.fromkeys(trackers, False)
        self._short_retry: dict[str, int | None] = dict.fromkeys(trackers)
        self._turns = RoundRobin()
        self._until_ms: int | None = None  # the stop instant, during stop()
        self._not_before = 0.0  # loop time before which no REST request goes (see _pause)
        self._wake: asyncio.Event | None = None
        self.suspects = Suspects(trackers)
        """Implausible streamed trades waiting for REST's word."""
        self.plausibility = plausibility or Plausibility()
        """The rules a streamed trade must meet to be taken without asking REST."""
        self._bad = BadItems(item_retries)

    # --- run --------------------------------------------------------------------------------

    def begin(self) -> None:
        """Arm for a new run (call on the loop the run uses)."""
        self._wake = asyncio.Event()
        self._until_ms = None
        self._not_before = 0.0
        self._turns.reset()
        self.suspects.clear()

    def wake(self) -> None:
        """Look for work now (a hole, a probe, or stop)."""
        if self._wake is not None:
            self._wake.set()

    def request_tail(self, symbols: tuple[str, ...] | list[str]) -> None:
        """After a (re)connect: fetch what was published after the highest id received, for
        each of ``symbols`` that has received any, and ask the store for its holes again."""
        for s in symbols:
            if self._trackers[s].high is not None:
                self._probe[s] = True
            self._recheck[s] = True
        self.wake()

    def recheck(self, symbol: str) -> None:
        """Ask the store for ``symbol``'s holes again (e.g. after a history fill joined)."""
        self._recheck[symbol] = True
        self.wake()

    def begin_stop(self, until_ms: int) -> None:
        """Stop phase: fetch every open hole and each symbol's tail up to ``until_ms`` (the stop
        instant, unix ms): what was published before the stop but not received."""
        self._until_ms = until_ms
        for s, t in self._trackers.items():
            if t.high is not None:
                self._probe[s] = True
        self.wake()

    def open_gaps(self) -> dict[str, list[tuple[int, int]]]:
        """The ids still missing, per symbol with any: ``{symbol: [(first, last), ...]}``."""
        return {s: t.open_ranges() for s, t in self._trackers.items() if t.open_gaps}

    def tails_pending(self) -> list[str]:
        """Symbols whose tail (after the highest id received) is not fetched yet."""
        return [s for s, p in self._probe.items() if p and self._trackers[s].high is not None]

    def load_resume_points(self, store: ResumeSource) -> list[tuple[str, int, int | None]]:
        """Worker thread, at start: continue each symbol after its last stored id (tail probe
        through REST) and turn every repairable hole of the store into a gap to backfill.
        Returns ``(symbol, last id, last time)`` of each symbol the store already holds."""
        self._store = store
        points: list[tuple[str, int, int | None]] = []
        for name, tracker in self._trackers.items():
            last = store.last_agg_id(name)
            if last is None:
                continue
            last_time = None
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
            self._add_holes(name, store.holes(name), "left by an earlier run")
        return points

    def check_holes(self) -> int:
        """On the loop: for each symbol with a recheck pending, add the store's holes that are
        not already being repaired nor waiting for a write; returns how many were added."""
        added = 0
        for name, pending in self._recheck.items():
            if not pending or self._store is None:
                continue
            self._recheck[name] = False
            try:
                holes = self._store.holes(name)
            except Exception as exc:  # the store is failing: the next check will tell
                log.warning(
                    "Could not read the holes of %s from the store: %s",
                    name,
                    exc,
                    extra={"event": "holes_unreadable", "symbol": name, "error": str(exc)},
                )
                continue
            added += self._add_holes(name, holes, "found in the store")
        return added

    def _add_holes(self, name: str, holes: pl.DataFrame, why: str) -> int:
        tracker = self._trackers[name]
        if tracker.high is None or not holes.height:
            return 0
        rows = holes.filter(~pl.col("unrepairable")).with_columns(
            pl.col("after_time").dt.epoch("ms"), pl.col("before_time").dt.epoch("ms")
        )
        ids, lost = self._in_flight(name)
        known = [*tracker.open_ranges(), *lost, *self._gate.pending_unrepairable(name)]
        known.append((tracker.high + 1, 2**62))  # not received yet: the tail's, not a hole
        added = 0
        for r in rows.iter_rows(named=True):
            span = (r["first_missing"], r["last_missing"])
            for lo, hi in subtract([span], known, [*ids, *self._gate.pending_ids(name)]):
                gap = tracker.add_gap(
                    lo, hi, time_before=r["after_time"], time_after=r["before_time"]
                )
                added += 1
                reports.hole_found(name, why, gap, r["after_time"], r["before_time"])
        if added:
            self.wake()
        return added

    # --- implausible trades -----------------------------------------------------------------

    def suspect(self, trade: Trade, reason: str) -> None:
        """The stream reader skipped ``trade`` as implausible (``reason``): ask REST about it
        before anything else; it is stored only if REST confirms it."""
        if self.suspects.add(trade, reason):
            self.wake()

    def _moot(self, trade: Trade) -> bool:
        """True if ``trade``'s id was received meanwhile (a plausible copy is kept)."""
        return not self._trackers[trade.symbol].is_missing(trade.agg_id)

    def settle_suspect(self, trade: Trade, reason: str, page: list[Trade]) -> bool:
        """Apply REST's answer (``fromId=trade.agg_id&limit=1``) about a suspect: store it if
        REST confirms it, else discard it (logged). True if it was confirmed."""
        self.suspects.remove(trade)
        name, a = trade.symbol, trade.agg_id
        tr = self._trackers[name]
        if not confirms(trade, page) or self._moot(trade):
            reports.implausible_discarded(trade, reason, page)
            return False
        verdict = tr.observe(a, trade.time)
        reports.implausible_confirmed(trade, reason)
        if isinstance(verdict, Gap):
            self.gap_detected(verdict, source="verified")
        self._gate.admit(name, page[0])
        # the others waiting may be plausible now (after the new highest id): take them
        now_ms = int(time.time() * 1000)
        for other, _why in self.suspects.of(name):
            if self._moot(other):
                self.suspects.remove(other)
            elif self.plausibility.check(other.agg_id, other.time, tr.high, now_ms) is None:
                self.suspects.remove(other)
                v = tr.observe(other.agg_id, other.time)
                if isinstance(v, Gap):
                    self.gap_detected(v, source="stream")
                self._gate.admit(name, other)
        return True

    # --- gap reports ------------------------------------------------------------------------

    def gap_detected(self, gap: Gap, *, source: str = "stream") -> None:
        """Log a new gap and wake the loop to backfill it."""
        reports.gap_detected(gap, source)
        self.wake()

    def gap_closed(self, gap: Gap) -> None:
        """Log a closed gap: backfilled (WARNING), or with ids REST lacks (ERROR, once)."""
        reports.gap_closed(gap)

    def report_closed_gaps(self) -> None:
        """Log the gaps closed by late live frames (a rotation's overlap) since the last call."""
        for tracker in self._trackers.values():
            for gap in tracker.pop_closed():
                self.gap_closed(gap)

    # --- the loop ---------------------------------------------------------------------------

    def next_job(self) -> Job | None:
        """The next page to fetch — ``(symbol, fromId, is a tail probe)`` — in turn over every
        open hole and pending tail (see :class:`~tradelab.collector.repair.RoundRobin`)."""
        jobs: list[tuple[JobKey, Job]] = []
        for name, tracker in self._trackers.items():
            for g in tracker.open_gaps:
                if g.missing:
                    jobs.append(((name, 0, g.first_id), Job(name, g.missing[0][0], False)))
            if self._probe[name] and tracker.high is not None:
                jobs.append(((name, 1, 0), Job(name, tracker.high + 1, True)))
        return self._turns.pick(jobs)

    async def run(self) -> None:
        """Backfill whenever woken, until the stop phase (:meth:`begin_stop`) has run its one
        round, bounded by the stop deadline; only then return.

        Between the stop request and :meth:`begin_stop` (while the streams close and the
        writer flushes, up to a second) a round may still run and end — e.g. a gap detected
        in the last frames. Returning after it would leave the stop phase to nobody: the tails
        unfetched, and a gap the last frames revealed open (a hole REST could have filled, or
        could have declared unrepairable). So the task waits for :meth:`begin_stop`'s wake.
        """
        assert self._wake is not None, "Backfiller.begin() was not called"
        while True:
            final = self._until_ms is not None  # begin_stop() was called: the last round
            if not final:
                await self._wake.wait()
                final = self._until_ms is not None
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
            if final:
                return

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` before the next request; False if that passes the stop deadline
        (give up: what is left is a hole the next start repairs).

        A stop arriving meanwhile does not shorten the wait: it is a ``Retry-After`` (which
        Binance bans for ignoring), or REST's moment of lag behind the stream before ids are
        declared unrepairable (asking again at once would declare ids lost that REST serves a
        moment later). Given up, the wait still holds for the stop phase's round.
        """
        self.defer(seconds)
        return await self._hold()

    def defer(self, seconds: float) -> None:
        """Send no REST request for ``seconds`` from now (on the loop): a ``Retry-After``
        the collector was given elsewhere, e.g. by its reachability check at start."""
        now = asyncio.get_running_loop().time()
        self._not_before = max(self._not_before, now + seconds)

    async def _hold(self) -> bool:
        """Sleep until :attr:`_not_before`; False (at once) if that passes the stop deadline."""
        loop = asyncio.get_running_loop()
        stop = self._stop
        if not stop.stopping and self._not_before > loop.time():
            await stop.sleep(self._not_before - loop.time())  # wakes early on a stop
        left = self._not_before - loop.time()
        if left <= 0:
            return True
        if stop.stopping and stop.time_left(loop.time()) < left:
            return False
        await asyncio.sleep(left)
        return True

    async def run_round(self) -> None:
        """Verify the suspects, then fetch REST pages until no hole is open and no tail probe
        is pending (while stopping: until the stop deadline)."""
        loop = asyncio.get_running_loop()
        stop = self._stop
        errors = exponential_backoff(0.5, 2.0, 30.0)
        while True:
            self.check_holes()
            if stop.stopping and loop.time() >= stop.deadline:
                return
            suspect = self.suspects.next()
            if suspect is not None and self._moot(suspect[0]):
                self.suspects.remove(suspect[0])
                continue
            job = self.next_job() if suspect is None else None
            if suspect is None and job is None:
                return
            if self._gate.paused and not stop.stopping:
                await self._gate.wait_open()
                continue
            if suspect is None and not self._gate.backfill_room:
                await asyncio.sleep(0.05)  # half the buffer is the backfill's: let it drain
                continue
            if suspect is not None:
                name, from_id, limit, tail = suspect[0].symbol, suspect[0].agg_id, 1, False
            else:
                assert job is not None
                (name, from_id, tail), limit = job, self._limit
            if not await self._hold():  # a wait given up earlier still holds
                return
            high = self._trackers[name].high
            wait = self._rest.weight_delay()
            if wait > 0:
                log.warning(
                    "REST weight budget used up (%d): waiting %.1f s",
                    self._rest.budget.used,
                    wait,
                    extra={"event": "rest_weight_wait", "wait": wait},
                )
                if not await self._pause(wait):
                    return
            bad: MalformedPageError | None = None
            try:
                page = await self._rest.agg_trades(name, from_id, limit)
            except MalformedPageError as exc:
                page, bad = exc.trades, exc
            except RateLimitedError as exc:
                self._errors.report(name, str(exc))
                then = f"waiting {exc.retry_after:g} s before the next REST request"
                reports.rest_rate_limited(name, exc, then)
                if not await self._pause(exc.retry_after):
                    return
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
                if not await self._pause(delay):
                    return
                continue
            errors = exponential_backoff(0.5, 2.0, 30.0)
            if suspect is not None:
                self.settle_suspect(*suspect, page)
                again = False
            elif bad is not None:
                # ask for a bad id again after the other jobs' turn, a moment later
                if self.apply_bad_page(name, from_id, bad, tail, high) and not await self._pause(
                    0.2
                ):
                    return
                continue
            else:
                again = self.apply_page(name, from_id, page, tail, high)
            if again:
                if not await self._pause(0.5):  # REST may lag the stream: ask again shortly
                    return
            elif not stop.stopping:
                await asyncio.sleep(0)  # let the stream breathe between pages

    def apply_bad_page(
        self,
        name: str,
        from_id: int,
        err: MalformedPageError,
        tail: bool,
        high_at_request: int | None = None,
    ) -> bool:
        """Apply a REST page that had items the collector rejects (``err``): keep the valid
        items before the first bad id that is still missing and ask for it again shortly;
        once an id has been served bad more than ``rest_item_retries`` times it is declared
        unrepairable (recorded in the store with the round's trades) and the whole rest of
        the page is applied. Bad items of ids already held are ignored. True: ask again
        shortly (after the other jobs' turn)."""
        tr = self._trackers[name]
        ids = sorted({from_id if a < 0 else a for a, _why in err.rejected})
        bad = [a for a in ids if a >= from_id and tr.is_missing(a)]
        reasons = dict(err.rejected)
        if not bad:  # only ids already held were bad: the page is as good as whole
            return self.apply_page(name, from_id, err.trades, tail, high_at_request, size=err.size)
        given_up = self._bad.fail(name, bad)
        retry = [a for a in bad if a not in given_up]
        first = retry[0] if retry else None
        lost = [a for a in given_up if first is None or a < first]  # beyond: next time
        if lost:
            self._bad.forget(name, lost)
            reports.item_given_up(name, lost, reasons.get(lost[0], str(err)), self._bad)
        if first is not None:
            reports.item_retry(name, first, reasons.get(first, str(err)), self._bad, err.trades)
            keep = [t for t in err.trades if t.agg_id < first]
            self.apply_page(
                name, from_id, keep, tail, high_at_request, size=self._limit, unrepairable=lost
            )
            return True
        return self.apply_page(
            name,
            from_id,
            err.trades,
            tail,
            high_at_request,
            size=max(err.size, len(err.trades)),
            unrepairable=lost,
        )

    def apply_page(
        self,
        name: str,
        from_id: int,
        page: list[Trade],
        tail: bool,
        high_at_request: int | None = None,
        *,
        size: int | None = None,
        unrepairable: Sequence[int] = (),
    ) -> bool:
        """Apply one REST page asked with ``fromId=from_id``; True if it should be asked again
        shortly before declaring ids lost (a short page while a hole above it is open).

        ``size``: how many items the answer had (default ``len(page)``; a page cut short on
        purpose passes the limit, so it is not taken for "REST has nothing newer");
        ``unrepairable``: ids to declare lost with this page (bad items given up).

        ``high_at_request``: the highest id received when the request was sent (default: now).
        A short page says REST had nothing newer *then*, so only missing ids up to that bound
        can be declared unrepairable — a stream gap opened while the request was in flight
        (ids published after REST answered) is not, whatever the page looked like.
        """
        tr = self._trackers[name]
        limit = self._limit
        short = (len(page) if size is None else size) < limit
        upper = page[-1].agg_id if page else from_id - 1
        bound = tr.high if high_at_request is None else high_at_request
        doubt = (
            not tail
            and short
            and bound is not None
            and any(lo <= bound and hi > upper and hi >= from_id for lo, hi in tr.open_ranges())
        )
        declare = True
        if doubt and self._short_retry[name] != from_id:
            declare = False  # REST may lag the stream by a moment: ask once more first
            self._short_retry[name] = from_id
        out = tr.apply_rest(from_id, page, limit=limit, declare_tail_lost=False)
        for a in unrepairable:
            tr.give_up(a, a)
        if unrepairable:
            out.closed += tr.pop_closed()
        if short and declare and bound is not None and bound > upper:
            tr.lose(max(from_id, upper + 1), bound)
            out.closed += tr.pop_closed()
        lost: list[tuple[int, int]] = []
        for gap in [*tr.open_gaps, *out.closed]:
            if len(gap.lost_ranges) > gap.lost_noted:
                lost += gap.lost_ranges[gap.lost_noted :]
                gap.lost_noted = len(gap.lost_ranges)
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
        until = self._until_ms
        if tail and (short or (until is not None and page and page[-1].time >= until)):
            self._probe[name] = False
        if lost:
            self._gate.note_unrepairable(name, lost)  # stored with this round's trades
        self._gate.admit_many(name, out.accepted)  # may pause intake at the bound
        return not declare
