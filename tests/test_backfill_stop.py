"""The backfill's stop phase runs whatever happened between the stop request and its start.

``Collector.stop()`` requests the stop, then closes the streams and waits for the writer's
last tick (up to a second), and only then starts the stop phase (``Backfiller.begin_stop``):
fetch every open hole and each symbol's tail up to the stop instant. A backfill round that
ran and ended in between — woken by a gap in the last frames — used to end the backfill task
("stopping: return"), so the stop phase never ran: the tails were left unfetched and a gap
revealed by the last frames stayed open, a repairable hole in the store, or ids REST never had
left unrecorded as unrepairable (seen once in CI, ``test_crash.py``).

Real parts: the simulator's REST server on 127.0.0.1 and the collector's REST client.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from helpers import fast

from tradelab.binance import GapTracker, RestClient
from tradelab.collector.backfill import Backfiller
from tradelab.collector.collector import Collector
from tradelab.collector.gate import IntakeGate
from tradelab.collector.runtime import LastErrors, StopSignal
from tradelab.simulator import Faults, Simulator
from tradelab.store import TradeStore

SYM = "BTCUSDT"


def _wait_published(sim: Simulator, n: int) -> None:
    for _ in range(200):
        if len(sim.published(SYM)) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"the simulator did not publish {n} trades")


def _history(sim: Simulator) -> tuple[list[int], dict[int, int]]:
    """The published ids, and each one's trade time (unix ms)."""
    frame = sim.published_frame(SYM)
    ids = frame["agg_id"].to_list()
    return ids, dict(zip(ids, frame["time"].dt.epoch("ms").to_list(), strict=True))


def _backfiller(rest: RestClient) -> tuple[Backfiller, GapTracker, IntakeGate, StopSignal]:
    tracker = GapTracker(SYM)
    gate = IntakeGate([SYM], 10_000)
    gate.begin()
    stop = StopSignal()
    stop.begin()
    bf = Backfiller({SYM: tracker}, rest, gate, stop, LastErrors([SYM]), rest_limit=1000)
    bf.begin()
    return bf, tracker, gate, stop


def _stream(bf: Backfiller, tracker: GapTracker, ids: list[int], times: dict[int, int]) -> None:
    """The stream delivered ``ids`` (a jump opens a gap)."""
    for a in ids:
        verdict = tracker.observe(a, times[a])
        if verdict is not True:
            bf.gap_detected(verdict)  # type: ignore[arg-type]


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == name]


def test_the_stop_phase_runs_after_a_round_that_ended_between_the_request_and_its_start() -> None:
    with Simulator((SYM,), source="synthetic", speed=50, max_trades=400, seed=5) as sim:
        _wait_published(sim, 400)
        ids, times = _history(sim)
        streamed, revealed = ids[:100], ids[106]  # ids[100:106] missed by the stream

        async def scenario() -> tuple[GapTracker, IntakeGate, bool]:
            bf, tracker, gate, stop = _backfiller(RestClient(sim.rest_url))
            for a in streamed:
                assert tracker.observe(a, times[a]) is True
            task = asyncio.ensure_future(bf.run())
            await asyncio.sleep(0.05)
            loop = asyncio.get_running_loop()
            stop.request(loop.time() + 10)  # Collector.stop(), step 0
            bf.wake()  # e.g. a frame read while the streams close: a round with nothing to do
            await asyncio.sleep(0.2)
            ended_early = task.done()
            gap = tracker.observe(revealed, times[revealed])  # the last frame: a gap below it
            assert gap is not True and gap is not False
            bf.gap_detected(gap)
            bf.begin_stop(int(time.time() * 1000) + 60_000)  # Collector.stop(), step 2
            await asyncio.wait_for(task, 10)
            return tracker, gate, ended_early

        tracker, gate, ended_early = asyncio.run(scenario())
    assert not ended_early, "the backfill task ended before the stop phase began"
    assert tracker.open_gaps == [], tracker.open_ranges()  # the gap revealed last: fetched
    got = sorted(gate.take(SYM).ids())
    assert got == [*ids[100:106], *ids[107:]]  # the hole, then the tail up to the last id
    assert tracker.high == ids[-1]


def _stop_during_a_retry_after(
    retry_after: int, fetch_for: float
) -> tuple[GapTracker, float, dict[str, int]]:
    """A gap ids[100:110]; its first REST request answers 429 with ``retry_after``; 0.15 s
    later the collector stops, allowing the stop phase ``fetch_for`` seconds. Returns the
    tracker, how long the stop phase took, and the simulator's counters."""
    faults = Faults(rest_fail_next=1, retry_after=retry_after)
    with Simulator(
        (SYM,), source="synthetic", speed=50, max_trades=300, seed=6, faults=faults
    ) as sim:
        _wait_published(sim, 300)
        ids, times = _history(sim)

        async def scenario() -> tuple[GapTracker, float]:
            bf, tracker, _gate, stop = _backfiller(RestClient(sim.rest_url))
            _stream(bf, tracker, [*ids[:100], ids[110]], times)  # a gap: ids[100:110]
            task = asyncio.ensure_future(bf.run())
            await asyncio.sleep(0.15)  # the first request: 429
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            stop.request(t0 + fetch_for)
            bf.begin_stop(int(time.time() * 1000))
            await asyncio.wait_for(task, 10)
            return tracker, loop.time() - t0

        tracker, took = asyncio.run(scenario())
        return tracker, took, sim.stats()


def test_a_stop_does_not_cut_short_a_retry_after(caplog) -> None:
    """Binance: "Always honour Retry-After" (a 418 ban follows). A stop requested during the
    wait used to end it, and the stop phase asked again at once."""
    caplog.set_level(logging.DEBUG, logger="tradelab.collector")
    tracker, took, stats = _stop_during_a_retry_after(1, fetch_for=10)
    assert stats["rest_429"] == 1 and took >= 0.8  # the stop waited the Retry-After out
    [limited] = events(caplog, "rest_rate_limited")
    [filled] = events(caplog, "gap_backfilled")
    assert filled.created - limited.created >= 0.95, filled.created - limited.created
    assert tracker.open_gaps == [] and tracker.gaps_backfilled == 1


def test_a_retry_after_past_the_stop_deadline_is_given_up_without_asking_again() -> None:
    tracker, took, stats = _stop_during_a_retry_after(5, fetch_for=1.0)
    assert took < 0.5, took  # given up at once, not after waiting out the deadline
    assert stats["rest_429"] == 1 and "rest_agg_trades" not in stats  # never asked again
    # the whole gap still open (nothing declared lost): a hole the next start repairs
    assert [(g.size, g.remaining, g.lost) for g in tracker.open_gaps] == [(10, 10, 0)]


def test_a_stop_does_not_cut_short_the_wait_for_rest_to_catch_up() -> None:
    """REST can trail the stream by a moment: a short page is asked again after 0.5 s before
    its missing ids are declared unrepairable. A stop during that wait used to make the second
    ask at once — REST still behind — and ids the exchange serves were recorded as lost."""
    faults = Faults(rest_lag=0.3)
    with Simulator(
        (SYM,), source="synthetic", speed=1, rate_per_s=200, seed=7, faults=faults
    ) as sim:
        _wait_published(sim, 100)

        async def scenario() -> tuple[GapTracker, list[int], list[int]]:
            bf, tracker, gate, stop = _backfiller(RestClient(sim.rest_url))
            ids, times = _history(sim)  # the last ids were published just now
            _stream(bf, tracker, [*ids[:-6], ids[-1]], times)  # a gap: ids[-6:-1], REST lags
            task = asyncio.ensure_future(bf.run())
            await asyncio.sleep(0.1)  # the first ask: a short page; ask again in 0.5 s
            stop.request(asyncio.get_running_loop().time() + 10)
            bf.begin_stop(int(time.time() * 1000))
            await asyncio.wait_for(task, 10)
            return tracker, ids[-6:-1], sorted(gate.take(SYM).ids())

        tracker, hole, got = asyncio.run(scenario())
    assert tracker.gaps_unrepairable == 0 and tracker.open_gaps == []
    assert set(hole) <= set(got)  # recovered, not declared lost


def test_the_simulators_rest_lag_hides_the_newest_trades_for_a_moment() -> None:
    with Simulator(
        (SYM,), source="synthetic", speed=1, rate_per_s=200, seed=7, faults=Faults(rest_lag=0.5)
    ) as sim:
        _wait_published(sim, 50)
        newest = sim.published(SYM)[-1]
        client = RestClient(sim.rest_url)
        assert [t.agg_id for t in client.fetch_agg_trades(SYM, newest, 10)] == []
        time.sleep(0.7)
        assert [t.agg_id for t in client.fetch_agg_trades(SYM, newest, 1)] == [newest]


def test_a_retry_after_met_by_the_start_check_holds_the_first_backfill(tmp_path, logs) -> None:
    """``Collector.start(check=True)`` (the CLI) checks REST is reachable; a 429 there proves
    it, but its Retry-After used to be forgotten: the backfill asked at once (the tail after
    the store's last id). Now the backfill waits it out."""

    with Simulator((SYM,), source="synthetic", speed=15, max_trades=600, seed=9) as sim:
        _wait_published(sim, 600)
        store = TradeStore(tmp_path / "db")
        store.append(SYM, sim.published_frame(SYM).head(200))  # an earlier run's trades
        sim.set_faults(Faults(rest_fail_next=1, retry_after=2))

        async def scenario() -> float:
            c = Collector((SYM,), store=store, ws_url=sim.ws_url, rest_url=sim.rest_url, **fast())
            t0 = time.time()
            await c.start(check=True)  # as the CLI does: is REST reachable?
            for _ in range(100):
                if logs.events("tail_fetched"):
                    break
                await asyncio.sleep(0.1)
            await c.stop()
            return t0

        t0 = asyncio.run(scenario())
        assert store.trades(SYM, 0, 2**42)["agg_id"].to_list() == sim.published(SYM)
        assert sim.stats()["rest_429"] == 1
        store.close()
    fetched = logs.events("tail_fetched")[0].created
    assert fetched - t0 >= 1.9, fetched - t0
    [limited] = logs.events("rest_rate_limited")  # said once, by the start's check
    assert limited.retry_after == 2 and "waits 2 s" in limited.getMessage()
