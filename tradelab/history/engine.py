"""The history filler: fetch what the store lacks in a time window, archives first, then REST.

:func:`fill_window` reads which aggregate ids the store already holds in ``[start, end)``
(day by day, so memory stays bounded by one day of one symbol), plans the rest
(:func:`tradelab.history.plan.plan_fill`), takes whole past days from the daily archives
(:class:`~tradelab.history.archive.ArchiveClient`) and every other span from REST
``aggTrades`` pages: one ``startTime``/``endTime`` query (at most an hour apart) finds the first
id of a span whose ids are unknown, then ``fromId`` pages of 1,000 follow. Every page waits for
the weight budget (``weight_share`` of the per-minute limit, read from
``X-MBX-USED-WEIGHT-1m``: the rest stays free for the live collector) and honours
``Retry-After`` on 429/418.

Exactly once and resumable for free: ``TradeStore.append`` drops ids already stored, and a
second run only fetches what is still missing. Blocking (network and disk); the collector runs
it with :func:`asyncio.to_thread`, and ``stop`` (a :class:`threading.Event`) ends it between
pages or days — what was not fetched is listed in :attr:`FillReport.unfetched`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from tradelab.binance import (
    AGG_TRADES_WEIGHT,
    DEFAULT_WEIGHT_LIMIT,
    MAX_REST_LIMIT,
    RestClient,
    Trade,
    trades_to_frame,
)
from tradelab.config import validate_symbol
from tradelab.exceptions import (
    EndpointUnreachableError,
    ExchangeError,
    InvalidParameterError,
    RateLimitedError,
)
from tradelab.formatting import utc_text
from tradelab.history.archive import ArchiveClient
from tradelab.history.plan import (
    DAY_MS,
    HOUR_MS,
    FillPlan,
    Run,
    Span,
    day_text,
    id_jumps,
    merge_runs,
    plan_fill,
    rest_spans_of_day,
    runs_from_ids,
)
from tradelab.logs import get_logger
from tradelab.store import TradeStore

__all__ = ["FillReport", "HistoryProgress", "fill_window", "stored_runs"]

log = get_logger("tradelab.history")

_FLUSH_TRADES = 50_000  # REST trades buffered before one store append
_MAX_FAILURES = 6  # consecutive network/exchange failures before a span is given up


@dataclass(frozen=True, slots=True)
class HistoryProgress:
    """Where a fill stands: ``trades`` fetched so far (new ones; stored in batches of up to
    50,000, and all of them before the final report); ``days_done`` of ``days_total`` days of
    missing time covered (fractions: a 30-hour window is 1.25 days); ``eta_s`` the estimated
    seconds left (None until measurable); ``done`` on the last report."""

    symbol: str
    trades: int
    days_done: float
    days_total: float
    eta_s: float | None
    done: bool


@dataclass(frozen=True)
class FillReport:
    """What a fill did. ``unrepairable``: id ranges the exchange does not serve (holes in its
    own history); ``unfetched``: ``(start_ms, end_ms, reason)`` time spans not fetched (stopped,
    or the exchange kept failing) — the next fill retries them; ``archive_refused``:
    ``(date, reason)`` for archive days fetched through REST instead."""

    symbol: str
    start_ms: int
    end_ms: int
    trades: int
    archive_days: tuple[str, ...]
    rest_calls: int
    weight_used: int
    archive_refused: tuple[tuple[str, str], ...] = ()
    unrepairable: tuple[tuple[int, int], ...] = ()
    unfetched: tuple[tuple[int, int, str], ...] = ()
    elapsed_s: float = 0.0

    @property
    def complete(self) -> bool:
        """True when nothing in the window was left unfetched."""
        return not self.unfetched

    def summary(self) -> str:
        """One line for people: what was stored, from where, and what is missing."""
        parts = [
            f"{self.symbol}: {self.trades:,} trades stored for "
            f"{utc_text(self.start_ms)} → {utc_text(self.end_ms)}",
            f"{len(self.archive_days)} day(s) from archives",
            f"{self.rest_calls:,} REST calls (weight {self.weight_used:,})",
            f"{self.elapsed_s:.1f} s",
        ]
        if self.archive_refused:
            parts.append(
                "archive refused: "
                + "; ".join(f"{day} ({why})" for day, why in self.archive_refused)
            )
        if self.unrepairable:
            n = sum(b - a + 1 for a, b in self.unrepairable)
            parts.append(f"{n:,} ids not served by the exchange (unrepairable)")
        if self.unfetched:
            ms = sum(b - a for a, b, _ in self.unfetched)
            parts.append(f"NOT fetched: {ms / HOUR_MS:.2f} h ({self.unfetched[0][2]})")
        return "; ".join(parts)


def stored_runs(store: TradeStore, symbol: str, start_ms: int, end_ms: int) -> list[Run]:
    """The runs of contiguous ids the store holds in ``[start_ms, end_ms)``, read one UTC day
    at a time (memory: one day of one symbol)."""
    runs: list[Run] = []
    lo = start_ms
    while lo < end_ms:
        hi = min(end_ms, lo - lo % DAY_MS + DAY_MS)
        frame = store.trades(symbol, lo, hi)
        if frame.height:
            runs.extend(
                runs_from_ids(frame["agg_id"].to_numpy(), frame["time"].dt.epoch("ms").to_numpy())
            )
        lo = hi
    return merge_runs(runs)


@dataclass
class _Tally:
    trades: int = 0
    done_ms: float = 0.0
    archive_days: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    unrepairable: list[tuple[int, int]] = field(default_factory=list)
    unfetched: list[tuple[int, int, str]] = field(default_factory=list)


class _Filler:
    """One fill's state: the clients, the tally, progress and the buffered REST trades."""

    def __init__(
        self,
        store: TradeStore,
        symbol: str,
        plan: FillPlan,
        rest: RestClient,
        archives: ArchiveClient | None,
        *,
        progress: Callable[[HistoryProgress], None] | None,
        stop: threading.Event,
        sleep: Callable[[float], object],
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.symbol = symbol
        self.plan = plan
        self.rest = rest
        self.archives = archives
        self.progress = progress
        self.stop = stop
        self.sleep = sleep
        self.clock = clock
        self.t0 = clock()
        self.tally = _Tally()
        self.buffer: list[Trade] = []
        self.lost: list[tuple[int, int]] = []  # unrepairable ranges not yet written
        self.total_ms = max(plan.missing_ms, 1)
        self.calls = 0

    # --- progress --------------------------------------------------------------------------

    def report(self, *, done: bool = False) -> None:
        if self.progress is None:
            return
        frac = min(1.0, self.tally.done_ms / self.total_ms)
        elapsed = self.clock() - self.t0
        eta = 0.0 if done else (elapsed * (1 - frac) / frac if frac > 0.001 else None)
        self.progress(
            HistoryProgress(
                self.symbol,
                self.tally.trades + len(self.buffer),
                round(
                    (1.0 if done and not self.tally.unfetched else frac) * self.total_ms / DAY_MS, 6
                ),
                round(self.total_ms / DAY_MS, 6),
                eta,
                done,
            )
        )

    # --- storing ---------------------------------------------------------------------------

    def lose(self, first: int, last: int) -> None:
        """Ids ``first..last`` the exchange does not serve: reported, and recorded as
        unrepairable in the store with the next trades stored (the same atomic write)."""
        self.tally.unrepairable.append((first, last))
        self.lost.append((first, last))

    def store_frame(self, frame: pl.DataFrame, lo: int, hi: int) -> pl.DataFrame:
        """Store the trades of ``frame`` with ``lo <= time < hi``, with the unrepairable ranges
        found since the last write; returns the trades kept."""
        ms = frame["time"].dt.epoch("ms")
        frame = frame.filter((ms >= lo) & (ms < hi))
        if frame.height or self.lost:
            lost, self.lost = self.lost, []
            self.tally.trades += self.store.append(self.symbol, frame, unrepairable=lost)
        return frame

    def flush(self) -> None:
        if self.buffer or self.lost:
            frame, self.buffer = trades_to_frame(self.buffer), []
            self.store_frame(frame, self.plan.start, self.plan.end)

    # --- archives --------------------------------------------------------------------------

    def archive_day(self, day: int, keep: tuple[int, int], missing_ms: int) -> bool:
        """Store one archive day; False (with the reason recorded) when it cannot be used."""
        assert self.archives is not None
        date = day_text(day)
        try:
            frame = self.archives.fetch_day(self.symbol, day)
        except (ExchangeError, EndpointUnreachableError) as exc:
            reason = str(exc)
            frame = None
        else:
            reason = "not published yet (404)"
        if frame is None:
            self.tally.refused.append((date, reason))
            log.warning(
                "%s: archive of %s not used (%s); fetching that day through REST",
                self.symbol,
                date,
                reason,
                extra={"symbol": self.symbol, "day": date},
            )
            return False
        ms = frame["time"].dt.epoch("ms")
        kept = frame.filter((ms >= keep[0]) & (ms < keep[1]))
        for first, last in id_jumps(kept["agg_id"].to_numpy()):
            self.lose(first, last)
        self.store_frame(kept, *keep)
        self.tally.archive_days.append(date)
        self.tally.done_ms += missing_ms
        self.report()
        return True

    # --- REST ------------------------------------------------------------------------------

    def call(
        self,
        *,
        from_id: int | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
    ) -> list[Trade] | str:
        """One aggTrades page, after the weight budget allows it; a string says why not."""
        failures = 0
        while True:
            if self.stop.is_set():
                return "stopped"
            wait = self.rest.weight_delay()
            if wait > 0:
                self.sleep(wait)
                continue
            try:
                self.calls += 1
                return self.rest.fetch_agg_trades(
                    self.symbol,
                    from_id,
                    MAX_REST_LIMIT,
                    start_time=start_time,
                    end_time=end_time,
                )
            except RateLimitedError as exc:
                log.warning(
                    "%s: REST answered %d; waiting Retry-After %.0f s",
                    self.symbol,
                    exc.status,
                    exc.retry_after,
                    extra={"symbol": self.symbol, "retry_in": exc.retry_after},
                )
                self.sleep(max(exc.retry_after, 0.05))
            except (EndpointUnreachableError, ExchangeError) as exc:
                failures += 1
                if failures >= _MAX_FAILURES:
                    return f"REST kept failing: {exc}"
                self.sleep(min(30.0, 0.25 * 2**failures))

    def note_jumps(self, ids: list[int], expected: int | None, stop_id: int | None) -> None:
        """Record ids the exchange skipped (from ``expected`` and between ``ids``)."""
        prev = None if expected is None else expected - 1
        for a in ids:
            if prev is not None and a > prev + 1:
                hi = a - 1 if stop_id is None else min(a - 1, stop_id)
                if hi >= prev + 1:
                    self.lose(prev + 1, hi)
            prev = a

    def rest_span(self, span: Span, base_ms: float) -> None:
        """Fetch one span through REST pages."""
        page: list[Trade] | str
        expected = span.from_id
        if span.from_id is None:
            t = span.start
            page = []
            while t < span.end:
                page = self.call(start_time=t, end_time=min(t + HOUR_MS - 1, span.end - 1))
                if isinstance(page, str) or page:
                    break
                t += HOUR_MS
                self.tally.done_ms = base_ms + min(t, span.end) - span.start
            if isinstance(page, str):
                self.tally.unfetched.append((t, span.end, page))
                return
            if not page:
                return
        else:
            page = self.call(from_id=span.from_id)
            if isinstance(page, str):
                self.tally.unfetched.append((span.start, span.end, page))
                return
        by_id = span.from_id is not None
        while True:
            keep = [
                tr
                for tr in page
                if tr.time < span.end and (span.stop_id is None or tr.agg_id <= span.stop_id)
            ]
            self.note_jumps([tr.agg_id for tr in keep], expected, span.stop_id)
            if keep:
                expected = keep[-1].agg_id + 1
            self.buffer.extend(keep)
            if len(self.buffer) >= _FLUSH_TRADES:
                self.flush()
            last = page[-1] if page else None
            if last is not None:
                self.tally.done_ms = base_ms + max(0, min(last.time, span.end) - span.start)
            self.report()
            if (
                last is None
                or last.time >= span.end
                or (span.stop_id is not None and last.agg_id >= span.stop_id)
                or (by_id and len(page) < MAX_REST_LIMIT)
            ):
                if span.stop_id is not None and expected is not None and expected <= span.stop_id:
                    self.lose(expected, span.stop_id)
                return
            by_id = True
            nxt = self.call(from_id=last.agg_id + 1)
            if isinstance(nxt, str):
                self.tally.unfetched.append((max(span.start, last.time), span.end, nxt))
                return
            page = nxt

    # --- the whole plan --------------------------------------------------------------------

    def run(self) -> None:
        spans = list(self.plan.rest_spans)
        for d in self.plan.archive_days:
            if self.stop.is_set():
                self.tally.unfetched.append((d.keep_start, d.keep_end, "stopped"))
                continue
            if not self.archive_day(d.day, (d.keep_start, d.keep_end), d.missing_ms):
                spans.extend(rest_spans_of_day(self.plan.missing, d.day))
        spans.sort(key=lambda s: s.start)
        base = self.tally.done_ms
        for span in spans:
            if self.stop.is_set():
                self.tally.unfetched.append((span.start, span.end, "stopped"))
                continue
            self.rest_span(span, base)
            base += span.ms
            self.tally.done_ms = base
        self.flush()
        self.report(done=True)


def fill_window(
    store: TradeStore,
    symbol: str,
    start_ms: int,
    end_ms: int,
    *,
    rest_url: str,
    archive_url: str | None = None,
    weight_share: float = 0.5,
    progress: Callable[[HistoryProgress], None] | None = None,
    stop: threading.Event | None = None,
    weight_limit: int = DEFAULT_WEIGHT_LIMIT,
    use_archives: bool = True,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], object] | None = None,
) -> FillReport:
    """Fill ``[start_ms, end_ms)`` of ``symbol`` into ``store`` with what it lacks.

    Whole past UTC days with at least an hour missing come from the daily archives at
    ``archive_url`` (default ``$TRADELAB_ARCHIVE_URL`` or data.binance.vision; checksum
    verified, a refused or unpublished day falls back to REST); the rest from REST
    ``aggTrades`` at ``rest_url``, spending at most ``weight_share`` (0 < share ≤ 1) of the
    per-minute ``weight_limit``. ``progress`` receives a :class:`HistoryProgress` after every
    page and day; ``stop`` ends the fill between pages. ``clock``/``sleep`` exist for tests.
    Blocking: run it in a thread from asyncio code.
    """
    sym = validate_symbol(symbol)
    for name, value in (("start_ms", start_ms), ("end_ms", end_ms)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidParameterError(f"{name} must be unix milliseconds >= 0, got {value!r}")
    if end_ms <= start_ms:
        raise InvalidParameterError(
            f"end_ms ({end_ms}) must be after start_ms ({start_ms}): the window is [start, end)"
        )
    if (
        isinstance(weight_share, bool)
        or not isinstance(weight_share, int | float)
        or not 0 < weight_share <= 1
    ):
        raise InvalidParameterError(
            f"weight_share must be a share of the weight budget, 0 < share <= 1, "
            f"got {weight_share!r}"
        )
    if progress is not None and not callable(progress):
        raise InvalidParameterError(f"progress must be a callable or None, got {progress!r}")
    stop_event = stop if stop is not None else threading.Event()
    rest = RestClient(
        rest_url, weight_limit=weight_limit, weight_share=float(weight_share), clock=clock
    )
    archives = ArchiveClient(archive_url) if use_archives else None
    t0 = clock()
    runs = stored_runs(store, sym, start_ms, end_ms)
    plan = plan_fill(start_ms, end_ms, runs, now=int(clock() * 1000), use_archives=use_archives)
    filler = _Filler(
        store,
        sym,
        plan,
        rest,
        archives,
        progress=progress,
        stop=stop_event,
        sleep=sleep if sleep is not None else stop_event.wait,
        clock=clock,
    )
    filler.report()
    filler.run()
    t = filler.tally
    report = FillReport(
        symbol=sym,
        start_ms=start_ms,
        end_ms=end_ms,
        trades=t.trades,
        archive_days=tuple(t.archive_days),
        rest_calls=rest.requests,
        weight_used=rest.requests * AGG_TRADES_WEIGHT,
        archive_refused=tuple(t.refused),
        unrepairable=tuple(t.unrepairable),
        unfetched=tuple(t.unfetched),
        elapsed_s=round(clock() - t0, 3),
    )
    log.info(report.summary(), extra={"symbol": sym, "trades": t.trades})
    return report
