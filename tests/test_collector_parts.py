"""The collector's parts, one at a time, with small fakes of the store and the REST API.

Each part takes its collaborators as the protocols of :mod:`tradelab.collector.ports`, so these
tests hand it a list-backed sink or a REST source serving canned pages: no sockets, no RocksDB,
milliseconds each. The end-to-end tests (``test_collector_e2e.py``) remain the safety net.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import polars as pl
import pytest

from tradelab.binance import GapTracker, Trade, WeightBudget
from tradelab.collector.backfill import Backfiller
from tradelab.collector.collector import Collector
from tradelab.collector.gate import IntakeGate
from tradelab.collector.ports import AggTradesSource, ResumeSource, StatusSink, TradeSink
from tradelab.collector.publisher import StatusPublisher
from tradelab.collector.repair import Job, RoundRobin, subtract
from tradelab.collector.runtime import LastErrors, StopSignal
from tradelab.collector.settings import CollectorSettings
from tradelab.collector.status_doc import STATUS_META, format_status
from tradelab.collector.streams import Connection, StreamSupervisor
from tradelab.collector.writer import BatchWriter
from tradelab.exceptions import InputError, RateLimitedError, StorageWriteError

SYM = "BTCUSDT"


def trade(agg_id: int, symbol: str = SYM) -> Trade:
    return Trade(
        symbol, agg_id, 100.0 + agg_id, 0.5, agg_id, agg_id, 1_700_000_000_000 + agg_id, True
    )


def settings(**kw: Any) -> CollectorSettings:
    return CollectorSettings.from_arguments(
        [SYM], ws_url="ws://127.0.0.1:9", rest_url="http://127.0.0.1:9", **kw
    )


class FakeStore:
    """A TradeSink and StatusSink: records appended ids, unrepairable ranges and documents;
    fails on request."""

    def __init__(self) -> None:
        self.appended: list[tuple[str, list[int]]] = []
        self.unrepairable: list[tuple[str, list[int], list[tuple[int, int]]]] = []
        self.attempts = 0
        self.fail_with: Exception | None = None
        self.meta: dict[str, Any] = {}
        self.retention_runs = 0

    def append(
        self, symbol: str, trades: pl.DataFrame, *, unrepairable: list[tuple[int, int]] = ()
    ) -> int:
        self.attempts += 1
        if self.fail_with is not None:
            raise self.fail_with
        if trades.height:
            self.appended.append((symbol, trades["agg_id"].to_list()))
        if unrepairable:
            self.unrepairable.append((symbol, trades["agg_id"].to_list(), list(unrepairable)))
        return trades.height

    def put_meta(self, name: str, value: dict[str, Any]) -> None:
        self.meta[name] = value

    def enforce_retention(self) -> int:
        self.retention_runs += 1
        return 0


class FakeRest:
    """An AggTradesSource over a fixed history of ids; may answer 429 first."""

    def __init__(self, ids: list[int], *, rate_limited: int = 0) -> None:
        self.history = [trade(a) for a in ids]
        self.calls: list[tuple[str, int | None, int]] = []
        self.rate_limited = rate_limited
        self.budget = WeightBudget()

    def weight_delay(self) -> float:
        return 0.0

    async def agg_trades(
        self, symbol: str, from_id: int | None = None, limit: int = 1000
    ) -> list[Trade]:
        self.calls.append((symbol, from_id, limit))
        if self.rate_limited:
            self.rate_limited -= 1
            raise RateLimitedError("REST rate-limited (429)", retry_after=0.01, status=429)
        start = from_id or 0
        return [t for t in self.history if t.agg_id >= start][:limit]


def test_fakes_satisfy_the_protocols() -> None:
    store: TradeSink = FakeStore()
    meta: StatusSink = FakeStore()
    rest: AggTradesSource = FakeRest([1])
    assert store and meta and rest


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == name]


# --- intake gate ---------------------------------------------------------------------------


def test_gate_pauses_at_the_bound_and_resumes_at_half(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="tradelab.collector")

    async def scenario() -> None:
        gate = IntakeGate([SYM], max_buffered=4)
        gate.begin()
        paused_calls: list[int] = []
        gate.on_pause(lambda: paused_calls.append(gate.buffered))
        assert [gate.admit(SYM, trade(a)) for a in (1, 2, 3)] == [False, False, False]
        assert not gate.paused and gate.buffered == 3
        assert gate.admit(SYM, trade(4)) is True  # the bound: intake pauses
        assert gate.paused and paused_calls == [4]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(gate.wait_open(), 0.02)
        # the writer takes the trades: still buffered until settled
        assert [t.agg_id for t in gate.take(SYM)] == [1, 2, 3, 4]
        assert gate.buffered == gate.buffered_of(SYM) == 4 and not gate.has_pending(SYM)
        gate.settle({SYM: 1})
        assert gate.paused and gate.buffered == 3  # above half the bound: still paused
        gate.settle({SYM: 1})
        assert not gate.paused and gate.buffered == 2
        await asyncio.wait_for(gate.wait_open(), 0.5)  # open again

    asyncio.run(scenario())
    [full] = events(caplog, "buffer_full")
    assert full.levelno == logging.ERROR and full.getMessage().startswith("BUFFER FULL: 4 trades")
    [resumed] = events(caplog, "buffer_resumed")
    assert resumed.buffered == 2 and "resuming intake" in resumed.getMessage()


def test_gate_counts_rest_pages_and_pauses_once() -> None:
    gate = IntakeGate([SYM, "ETHUSDT"], max_buffered=5)
    calls: list[bool] = []
    gate.on_pause(lambda: calls.append(True))
    assert gate.admit_many(SYM, []) is False
    assert gate.admit_many(SYM, [trade(a) for a in range(3)]) is False
    assert gate.admit_many("ETHUSDT", [trade(a, "ETHUSDT") for a in range(3)]) is True
    assert gate.admit(SYM, trade(9)) is True  # still at the bound: no second pause
    assert calls == [True] and gate.buffered == 7
    assert (gate.buffered_of(SYM), gate.buffered_of("ETHUSDT")) == (4, 3)


def test_a_pause_closes_every_stream_connection() -> None:
    st = settings()
    gate = IntakeGate(st.symbols, max_buffered=2)
    trackers = {SYM: GapTracker(SYM)}
    sup = StreamSupervisor(
        st, trackers, gate, StopSignal(), LastErrors(st.symbols),
        on_gap=lambda gap: None, on_connected=lambda symbols: None,
    )  # fmt: skip
    [group] = sup.groups
    conn = Connection(ws=None, url=group.url, opened_at=0.0, n=1)  # type: ignore[arg-type]
    group.active = conn
    assert sup.link_state(0.0) == {SYM: (True, 0.0)}
    gate.admit(SYM, trade(1))
    assert not conn.closed.is_set()
    gate.admit(SYM, trade(2))  # the bound: the supervisor is told to close and wait
    assert conn.closed.is_set() and sup.link_state(0.0)[SYM][0] is False


# --- batch writer --------------------------------------------------------------------------


def make_writer(store: FakeStore, **kw: Any) -> tuple[BatchWriter, IntakeGate, LastErrors]:
    st = settings(write_retry_initial=0.05, write_retry_max=0.1, **kw)
    gate = IntakeGate(st.symbols, st.max_buffered)
    gate.begin()
    stop = StopSignal()
    stop.begin()
    errors = LastErrors(st.symbols)
    writer = BatchWriter(st, gate, stop, errors)
    writer.begin(store)
    return writer, gate, errors


def test_failed_write_is_retried_in_order_and_nothing_is_lost(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="tradelab.collector")

    async def scenario() -> None:
        store = FakeStore()
        writer, gate, errors = make_writer(store)
        for a in (1, 2, 3):
            gate.admit(SYM, trade(a))
        store.fail_with = StorageWriteError("injected: disk gone")
        await writer.flush_once()
        assert store.attempts == 1 and store.appended == []
        assert gate.buffered_of(SYM) == 3  # kept in memory
        assert errors.get(SYM) == "write failed: injected: disk gone"
        for a in (4, 5):
            gate.admit(SYM, trade(a))
        await writer.flush_once()  # the retry is not due yet (backoff): no attempt
        assert store.attempts == 1
        store.fail_with = None
        await asyncio.sleep(0.06)
        await writer.flush_once()  # due now: the kept batch first, then the newer trades
        assert store.appended == [(SYM, [1, 2, 3, 4, 5])]
        assert gate.buffered == 0 and errors.get(SYM) is None
        counts = writer.counts[SYM]
        assert (counts.trades_stored, counts.last_stored_id) == (5, 5)

    asyncio.run(scenario())
    [failed] = events(caplog, "write_failed")
    assert failed.levelno == logging.ERROR and failed.trades == 3 and failed.buffered == 3
    [recovered] = events(caplog, "write_recovered")
    assert recovered.trades == 5 and recovered.failures == 1


def test_refused_trades_leave_the_buffer_loudly(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="tradelab.collector")

    async def scenario() -> None:
        store = FakeStore()
        writer, gate, errors = make_writer(store)
        gate.admit(SYM, trade(1))
        store.fail_with = InputError("price is negative")
        await writer.flush_once()
        assert gate.buffered == 0 and writer.counts[SYM].trades_stored == 0
        assert errors.get(SYM) == "store refused trades: price is negative"
        store.fail_with = None
        await writer.flush_once()  # not retried
        assert store.attempts == 1

    asyncio.run(scenario())
    [refused] = events(caplog, "trades_refused")
    assert refused.levelno == logging.ERROR and refused.trades == 1


def test_writer_settles_with_the_gate_which_resumes_intake() -> None:
    async def scenario() -> None:
        store = FakeStore()
        writer, gate, _ = make_writer(store, max_buffered=3)
        for a in (1, 2, 3):
            gate.admit(SYM, trade(a))
        assert gate.paused
        await writer.flush_once()
        assert not gate.paused and store.appended == [(SYM, [1, 2, 3])]

    asyncio.run(scenario())


# --- backfiller ----------------------------------------------------------------------------


def make_backfiller(
    rest: FakeRest, max_buffered: int = 1000
) -> tuple[Backfiller, GapTracker, IntakeGate]:
    tracker = GapTracker(SYM)
    gate = IntakeGate([SYM], max_buffered)
    gate.begin()
    stop = StopSignal()
    stop.begin()
    bf = Backfiller({SYM: tracker}, rest, gate, stop, LastErrors([SYM]), rest_limit=1000)
    bf.begin()
    return bf, tracker, gate


def open_gap(tracker: GapTracker, bf: Backfiller) -> None:
    for a in (1, 2, 6):  # 3..5 missed by the stream
        verdict = tracker.observe(a, 1_700_000_000_000 + a)
        if verdict is not True:
            bf.gap_detected(verdict)  # type: ignore[arg-type]


def test_a_rest_page_is_applied_to_a_gap(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="tradelab.collector")
    bf, tracker, gate = make_backfiller(FakeRest([]))
    open_gap(tracker, bf)
    assert bf.open_gaps() == {SYM: [(3, 5)]} and bf.next_job() == Job(SYM, 3, False)
    again = bf.apply_page(SYM, 3, [trade(3), trade(4), trade(5), trade(6)], tail=False)
    assert again is False
    assert [t.agg_id for t in gate.take(SYM)] == [3, 4, 5]  # 6 is a duplicate
    assert bf.open_gaps() == {} and bf.next_job() is None
    assert (tracker.gaps_detected, tracker.gaps_backfilled) == (1, 1)
    [detected] = events(caplog, "gap_detected")
    assert (detected.first_id, detected.last_id, detected.missing) == (3, 5, 3)
    [closed] = events(caplog, "gap_backfilled")
    assert (
        closed.getMessage() == "Gap in BTCUSDT backfilled: 3 aggregate trades (ids 3–5) recovered"
    )


def test_the_backfill_round_closes_a_gap_through_rest_after_a_429(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="tradelab.collector")
    rest = FakeRest([1, 2, 3, 4, 5, 6], rate_limited=1)
    bf, tracker, gate = make_backfiller(rest)
    open_gap(tracker, bf)
    asyncio.run(asyncio.wait_for(bf.run_round(), 2.0))
    assert rest.calls == [(SYM, 3, 1000), (SYM, 3, 1000)]  # waited Retry-After, asked again
    assert [t.agg_id for t in gate.take(SYM)] == [3, 4, 5]
    assert tracker.open_gaps == [] and tracker.gaps_backfilled == 1
    assert [r.status for r in events(caplog, "rest_rate_limited")] == [429]


def test_ids_rest_lacks_close_the_gap_as_unrepairable(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="tradelab.collector")
    bf, tracker, gate = make_backfiller(FakeRest([1, 2, 3, 5, 6]))  # REST never had 4
    open_gap(tracker, bf)
    asyncio.run(asyncio.wait_for(bf.run_round(), 2.0))
    assert [t.agg_id for t in gate.take(SYM)] == [3, 5]
    assert tracker.open_gaps == [] and tracker.gaps_unrepairable == 1
    [lost] = events(caplog, "gap_unrepairable")
    assert lost.levelno == logging.ERROR and lost.lost == 1 and lost.lost_ranges == [(4, 4)]


def test_tail_probe_after_a_reconnect_fetches_what_came_meanwhile(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="tradelab.collector")
    bf, tracker, gate = make_backfiller(FakeRest([1, 2, 3, 4]))
    tracker.observe(1, 1)
    tracker.observe(2, 2)
    bf.request_tail((SYM,))
    asyncio.run(asyncio.wait_for(bf.run_round(), 2.0))
    assert [t.agg_id for t in gate.take(SYM)] == [3, 4] and bf.next_job() is None
    [tail] = events(caplog, "tail_fetched")
    assert (tail.first_id, tail.last_id) == (3, 4)


def test_ids_published_after_a_short_page_was_served_are_not_declared_lost() -> None:
    """A race seen in the crash test: the tail page comes back short (REST had nothing newer
    when it answered) while the stream, meanwhile, revealed a gap above it. Those ids were
    published after the answer: they are fetched, not declared unrepairable."""
    bf, tracker, gate = make_backfiller(FakeRest([]))
    for a in range(1, 11):
        tracker.observe(a, a)
    bf.request_tail((SYM,))
    sent_at = tracker.high  # the request leaves with 10 received
    for a in (13, 17):  # in flight: the stream delivers 13, skips 14..16, delivers 17
        verdict = tracker.observe(a, a)
        if verdict is not True:
            bf.gap_detected(verdict)  # type: ignore[arg-type]
    bf.apply_page(SYM, 11, [trade(11), trade(12)], tail=True, high_at_request=sent_at)
    assert tracker.gaps_unrepairable == 0 and bf.open_gaps() == {SYM: [(14, 16)]}
    assert gate.pending_unrepairable(SYM) == [] and bf.tails_pending() == []
    assert [t.agg_id for t in gate.take(SYM)] == [11, 12]
    assert bf.next_job() == Job(SYM, 14, False)


def test_a_rest_page_that_fills_the_buffer_pauses_intake() -> None:
    bf, tracker, gate = make_backfiller(FakeRest([]), max_buffered=2)
    open_gap(tracker, bf)
    bf.apply_page(SYM, 3, [trade(3), trade(4), trade(5)], tail=False)
    assert gate.paused and gate.buffered == 3


class Stats:
    last_time = None


class HoleyStore:
    """A ResumeSource: last id 41, and the holes given (``(first, last, unrepairable)``)."""

    def __init__(self, holes: list[tuple[int, int, bool]]) -> None:
        self.rows = holes
        self.asked = 0

    def last_agg_id(self, symbol: str) -> int | None:
        return 41

    def stats(self, symbol: str) -> Stats:
        return Stats()

    def holes(self, symbol: str) -> pl.DataFrame:
        self.asked += 1
        return pl.DataFrame(
            {
                "first_missing": [r[0] for r in self.rows],
                "last_missing": [r[1] for r in self.rows],
                "count": [r[1] - r[0] + 1 for r in self.rows],
                "after_time": [1_700_000_000_000 + r[0] - 1 for r in self.rows],
                "before_time": [1_700_000_000_000 + r[1] + 1 for r in self.rows],
                "unrepairable": [r[2] for r in self.rows],
            },
            schema_overrides={"after_time": pl.Int64, "before_time": pl.Int64},
        ).with_columns(pl.col("after_time", "before_time").cast(pl.Datetime("ms", "UTC")))


def test_holes_in_the_store_become_gaps_at_start_logged_as_left_by_an_earlier_run(
    caplog,
) -> None:
    caplog.set_level(logging.DEBUG, logger="tradelab.collector")
    bf, tracker, _ = make_backfiller(FakeRest([]))
    store: ResumeSource = HoleyStore([(10, 12, False), (20, 21, True), (30, 35, False)])
    assert bf.load_resume_points(store) == [(SYM, 41, None)]
    # the unrepairable hole is not fetched again; the others are, and the tail after 41
    assert tracker.high == 41 and bf.open_gaps() == {SYM: [(10, 12), (30, 35)]}
    assert {bf.next_job(), bf.next_job(), bf.next_job()} == {
        Job(SYM, 10, False),
        Job(SYM, 30, False),
        Job(SYM, 42, True),
    }
    found = events(caplog, "hole_found")
    assert [(r.first_id, r.last_id, r.levelno) for r in found] == [
        (10, 12, logging.WARNING),
        (30, 35, logging.WARNING),
    ]
    assert "left by an earlier run: 3 aggregate trades missing (ids 10–12)" in found[0].getMessage()


def test_after_a_reconnect_only_new_holes_are_added(caplog) -> None:
    """Holes already being repaired, ids waiting for a write and unrepairable ranges waiting
    for a write are not fetched twice; ids not received yet belong to the tail."""
    caplog.set_level(logging.DEBUG, logger="tradelab.collector")
    rest = FakeRest([])
    tracker = GapTracker(SYM)
    gate = IntakeGate([SYM], 1000)
    gate.begin()
    stop = StopSignal()
    stop.begin()
    flight = {SYM: ([50, 51], [(60, 61)])}
    bf = Backfiller(
        {SYM: tracker}, rest, gate, stop, LastErrors([SYM]), rest_limit=1000,
        in_flight=lambda s: flight[s],
    )  # fmt: skip
    bf.begin()
    store = HoleyStore([(10, 12, False)])
    bf.load_resume_points(store)
    store.rows = [(10, 12, False), (45, 65, False), (70, 90, False)]
    gate.admit(SYM, trade(52))
    gate.note_unrepairable(SYM, [(62, 62)])
    tracker.resume(80)  # received up to 80; 81.. is the tail's, not a hole
    bf.request_tail((SYM,))
    assert bf.check_holes() == 4
    assert bf.open_gaps() == {SYM: [(10, 12), (45, 49), (53, 59), (63, 65), (70, 80)]}
    assert bf.check_holes() == 0 and store.asked == 2  # asked once per reconnect


def test_small_holes_are_not_starved_behind_a_large_one() -> None:
    """Round robin: with a 100,000-id hole open first, a 3-id hole of another symbol and the
    tail still get their page within a few requests."""
    eth = "ETHUSDT"
    big = list(range(1, 100_001))
    history = {SYM: [trade(a) for a in big], eth: [trade(a, eth) for a in range(1, 21)]}

    class TwoSymbolRest(FakeRest):
        async def agg_trades(self, symbol, from_id=None, limit=1000):  # type: ignore[override]
            self.calls.append((symbol, from_id, limit))
            ids = history[symbol]
            i = next((k for k, t in enumerate(ids) if t.agg_id >= (from_id or 0)), len(ids))
            return ids[i : i + limit]

    rest = TwoSymbolRest([])
    trackers = {SYM: GapTracker(SYM), eth: GapTracker(eth)}
    gate = IntakeGate([SYM, eth], 10**7)
    gate.begin()
    stop = StopSignal()
    stop.begin()
    bf = Backfiller(trackers, rest, gate, stop, LastErrors([SYM, eth]), rest_limit=1000)
    bf.begin()
    trackers[SYM].observe(100_000, 1)
    trackers[SYM].add_gap(1, 99_999)  # the large hole, opened first
    trackers[eth].observe(10, 1)
    trackers[eth].add_gap(5, 7)  # a small one
    bf.request_tail((eth,))  # and the tail of ETHUSDT (11..20)

    async def scenario() -> None:
        task = asyncio.ensure_future(bf.run_round())
        for _ in range(2000):
            await asyncio.sleep(0)
            if len(rest.calls) >= 4:
                break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    # within the first 4 pages: ETHUSDT's hole is closed and its tail fetched (a short page)
    assert [c[:2] for c in rest.calls[:4]] == [(SYM, 1), (eth, 5), (eth, 21), (SYM, 1001)]
    assert not trackers[eth].open_gaps and bf.tails_pending() == []
    assert [t.agg_id for t in gate.take(eth)] == [5, 6, 7, *range(11, 21)]
    assert trackers[SYM].open_gaps  # the big one is still going
    rr = RoundRobin()
    jobs = [((SYM, 0, 1), Job(SYM, 1, False)), ((SYM, 1, 0), Job(SYM, 9, True))]
    assert [rr.pick(jobs), rr.pick(jobs), rr.pick(jobs)] == [
        Job(SYM, 1, False),
        Job(SYM, 9, True),
        Job(SYM, 1, False),
    ]
    assert rr.pick([]) is None


def test_subtract_removes_known_ranges_and_single_ids() -> None:
    assert subtract([(1, 10)], [(3, 4)], [7]) == [(1, 2), (5, 6), (8, 10)]
    assert subtract([(1, 10), (20, 22)], [(0, 100)]) == []
    assert subtract([(5, 5)], []) == [(5, 5)]
    assert subtract([(1, 10)], [(9, 30), (2, 2)], [1, 1]) == [(3, 8)]


def test_ids_rest_lacks_are_recorded_with_the_trades_of_that_round() -> None:
    async def scenario() -> FakeStore:
        bf, tracker, gate = make_backfiller(FakeRest([1, 2, 3, 5, 6]))  # REST never had 4
        open_gap(tracker, bf)
        await asyncio.wait_for(bf.run_round(), 2.0)
        store = FakeStore()
        st = settings()
        writer = BatchWriter(st, gate, StopSignal(), LastErrors(st.symbols))
        writer.begin(store)
        store.fail_with = StorageWriteError("injected")
        await writer.flush_once()  # failed: the ranges stay with the batch
        assert writer.in_flight(SYM) == ([3, 5], [(4, 4)])
        store.fail_with = None
        await writer.flush_once(force=True)
        return store

    store = asyncio.run(scenario())
    assert store.unrepairable == [(SYM, [3, 5], [(4, 4)])]  # one append: trades and record


# --- status publisher ----------------------------------------------------------------------


def status_doc(stored: int) -> dict[str, Any]:
    sym = {
        "connected": True,
        "trades_stored": stored,
        "rate_per_min": 1.0,
        "last_trade_time": 1_700_000_000_000,
        "last_agg_id": 7,
        "gaps_detected": 1,
        "gaps_backfilled": 1,
        "gaps_unrepairable": 0,
        "uptime_ratio": 1.0,
        "buffered": 0,
        "last_error": None,
    }
    return {"running": True, "symbols": {SYM: sym}}


def test_the_status_document_is_published() -> None:
    async def scenario() -> FakeStore:
        store = FakeStore()
        stop = StopSignal()
        stop.begin()
        pub = StatusPublisher(
            settings(status_interval=0.01),
            stop,
            status=lambda: status_doc(3),
        )
        pub.begin(store)
        task = asyncio.ensure_future(pub.run())
        for _ in range(100):
            await asyncio.sleep(0.01)
            if STATUS_META in store.meta:
                break
        stop.request(0.0)
        await asyncio.wait_for(task, 1.0)
        return store

    store = asyncio.run(scenario())
    assert store.meta[STATUS_META] == status_doc(3)
    assert list(store.meta) == [STATUS_META]  # no separate gap list: the store knows its holes
    assert store.retention_runs == 1  # retention runs at start, then every hour


def test_stored_lines_report_the_trades_since_the_previous_line(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="tradelab.collector")
    pub = StatusPublisher(settings(log_interval=30), StopSignal(), status=dict)
    pub.log_stored(status_doc(10))
    pub.log_stored(status_doc(25))
    lines = events(caplog, "stored")
    assert [(r.trades, r.total_stored, r.trades_per_min) for r in lines] == [
        (10, 10, 20.0),
        (15, 25, 30.0),
    ]
    assert (
        lines[1].getMessage().startswith("Stored 15 trades for BTCUSDT in the last 30 s (30/min)")
    )


# --- the assembly --------------------------------------------------------------------------


def test_collector_settings_are_one_frozen_object() -> None:
    c = Collector([SYM], ws_url="ws://127.0.0.1:9", rest_url="http://127.0.0.1:9", max_buffered=7)
    assert c.settings.max_buffered == 7 and c.symbols == (SYM,)
    with pytest.raises(AttributeError):
        c.settings.max_buffered = 8  # type: ignore[misc]
    with pytest.raises(TypeError, match="frobnicate"):
        Collector([SYM], frobnicate=1)
    assert [s.symbols for s in c.streams] == [(SYM,)] and c.open_gaps() == {}
    doc = c.status()  # before start: a complete document with zeros
    assert doc["running"] is False and doc["symbols"][SYM]["trades_stored"] == 0


def test_status_table_shows_missing_ids_and_history_progress() -> None:
    doc = {"running": True, "symbols": {SYM: dict(status_doc(3)["symbols"][SYM])}}
    sym = doc["symbols"][SYM]
    sym.update(missing=1234, history={"trades": 5000, "days_done": 0.4, "days_total": 1.0,
                                      "eta_s": 12.0, "done": False})  # fmt: skip
    table = format_status(doc)
    header, row = table.splitlines()[2:4]
    assert "missing" in header and "history" in header
    assert "1234" in row and "40% 5,000 eta 12 s" in row
    sym["history"] = {"trades": 90_000, "done": True}
    assert "done 90,000" in format_status(doc)
    sym["history"] = None
    assert format_status(doc).splitlines()[3].split()[8:10] == ["1234", "-"]
