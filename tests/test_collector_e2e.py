"""End to end against the simulator on 127.0.0.1: every published trade stored exactly once.

These tests compare what the simulator published with what the store holds after ``stop()``:
same agg ids (each once) from the first trade the collector saw ("collect from now"), same
price/qty/time/maker. Holes the simulator made unrepairable (absent from REST too) are not
in ``published`` — they must be reported, not invented.
"""

from __future__ import annotations

import asyncio
import logging

import polars as pl
import pytest
from helpers import FailingStore, fast

from tradelab.collector.collector import Collector
from tradelab.recordings import shared_data_dir
from tradelab.simulator import Faults, Simulator
from tradelab.store.tradestore import TradeStore

pytestmark = pytest.mark.slow
SYMS = ("BTCUSDT", "ETHUSDT")


async def settle(sim: Simulator, store: TradeStore, c: Collector, *, rounds: int = 400) -> None:
    """Wait until production ended and the collector holds every published id (bounded)."""
    last = None  # the simulator's published count at the previous round
    for _ in range(rounds):
        await asyncio.sleep(0.1)
        done = True
        for s in SYMS:
            pub = sim.published(s)
            st = c.status()["symbols"][s]
            if not pub or st["last_agg_id"] != pub[-1] or st["buffered"]:
                done = False
        published = sim.stats().get("published")
        if done and published == last:
            return
        last = published


def assert_exact(sim: Simulator, store: TradeStore) -> dict[str, int]:
    """The store holds exactly the published ids from its first one on, with equal values."""
    counts = {}
    for s in SYMS:
        got = store.trades(s, 0, 2**42)
        ids = got["agg_id"].to_list()
        assert ids, f"nothing stored for {s}"
        assert len(ids) == len(set(ids)), "an agg id was stored twice"
        expected = [a for a in sim.published(s) if a >= ids[0]]
        missing = sorted(set(expected) - set(ids))
        extra = sorted(set(ids) - set(expected))
        assert not missing and not extra, (s, missing[:10], extra[:10])
        pub = sim.published_frame(s).filter(pl.col("agg_id") >= ids[0])
        assert got.select(pub.columns).equals(pub), f"values differ for {s}"
        counts[s] = len(ids)
    return counts


def source() -> str:
    return "recordings" if shared_data_dir() is not None else "synthetic"


def test_every_fault_on_store_holds_exactly_what_was_published(tmp_path, logs) -> None:
    asyncio.run(_test_every_fault_on_store_holds_exactly_what_was_published(tmp_path, logs))


async def _test_every_fault_on_store_holds_exactly_what_was_published(tmp_path, logs) -> None:
    faults = Faults(
        drop_probability=0.15,
        malformed_rate=0.01,
        stall_every=1.5,
        stall_seconds=3.0,
        skip_rate=0.004,
        skip_length=4,
        skip_unrepairable=0.3,
        ping_interval=0.5,
        ping_timeout=1.0,
    )
    async with Simulator(
        SYMS, source=source(), speed=40, faults=faults, max_trades=2500, seed=7
    ) as sim:
        store = TradeStore(tmp_path / "db")
        c = Collector(SYMS, store=store, ws_url=sim.ws_url, rest_url=sim.rest_url, **fast())
        await c.start()
        await settle(sim, store, c)
        # The run's length depends on the source (a synthetic feed can end in ~5 s), but the
        # faults do not need trades: stalls go on after the last one, so wait (bounded) until
        # two connections were lost, one of them to a stall past the pong deadline (a random
        # drop may end a connection before its stall does), whatever the source; then
        # everything must still be there.
        for _ in range(300):
            if len(logs.events("disconnected")) >= 2 and logs.events("ping_timeout"):
                break
            await asyncio.sleep(0.1)
        await settle(sim, store, c)
        status = c.status()["symbols"]
        await c.stop()
        counts = assert_exact(sim, store)
        stats = sim.stats()
        first_last = {s: (store.stats(s).first_agg_id, store.stats(s).last_agg_id) for s in SYMS}
    assert all(n > 1000 for n in counts.values())
    # the faults really happened, and the logs say so
    assert logs.events("malformed_frame") and all(
        r.levelno == logging.ERROR and r.excerpt for r in logs.events("malformed_frame")
    )
    assert len(logs.events("disconnected")) >= 2
    assert all(r.levelno == logging.ERROR and r.retry_in >= 0 for r in logs.events("disconnected"))
    assert logs.events("ping_timeout"), "a stall past the pong deadline must be detected"
    assert len(logs.events("connected")) >= 3
    assert all(r.levelno == logging.INFO for r in logs.events("connected"))
    [start] = logs.events("collector_start")
    assert start.symbols == list(SYMS) and start.ws_url == sim.ws_url and start.store_path
    stored = logs.events("stored")  # the per-interval "Stored N trades for X" lines
    assert {r.symbol for r in stored} == set(SYMS)
    assert all(
        r.levelno == logging.INFO
        and "trades_per_min" in r.__dict__
        and "gaps_detected" in r.__dict__
        and r.getMessage().startswith(f"Stored {r.trades} trades for {r.symbol}")
        for r in stored
    )
    assert any(r.trades > 0 and r.last_trade_time for r in stored)
    assert sum(s["gaps_detected"] for s in status.values()) >= 2
    assert sum(s["gaps_backfilled"] for s in status.values()) >= 1
    unrep = logs.events("gap_unrepairable")
    assert sum(s["gaps_unrepairable"] for s in status.values()) == len(unrep)
    assert unrep, "the simulator made unrepairable holes: they must be reported"
    for s in SYMS:  # each hole reported once, with size and span, exactly the ids REST lacks
        mine = [r for r in unrep if r.symbol == s]
        assert all(
            r.levelno == logging.ERROR and r.lost > 0 and r.span_ms is not None for r in mine
        )
        reported = [a for r in mine for lo, hi in r.lost_ranges for a in range(lo, hi + 1)]
        assert len(reported) == len(set(reported)) == sum(r.lost for r in mine)
        first, last = first_last[s]
        holes = {
            a for lo, hi in sim.unrepairable(s) for a in range(lo, hi + 1) if first <= a <= last
        }
        assert set(reported) == holes
    # the simulator enforces Binance's 5 incoming messages/s: it never had to close on us
    assert stats.get("closed_rate_limit", 0) == 0
    assert stats["stalls"] >= 1 and stats["malformed_frames"] >= 1
    store.close()


@pytest.mark.parametrize("max_buffered", [500_000, 150])
def test_store_failing_for_a_while_loses_nothing(tmp_path, logs, max_buffered) -> None:
    asyncio.run(_test_store_failing_for_a_while_loses_nothing(tmp_path, logs, max_buffered))


async def _test_store_failing_for_a_while_loses_nothing(tmp_path, logs, max_buffered) -> None:
    async with Simulator(SYMS, source="synthetic", speed=15, max_trades=1200, seed=3) as sim:
        store = FailingStore(tmp_path / "db")
        c = Collector(
            SYMS,
            store=store,
            ws_url=sim.ws_url,
            rest_url=sim.rest_url,
            **fast(max_buffered=max_buffered),
        )
        await c.start()
        await asyncio.sleep(0.6)
        store.failing = True
        buffered = 0
        for _ in range(20):
            await asyncio.sleep(0.1)
            buffered = max(buffered, sum(s["buffered"] for s in c.status()["symbols"].values()))
        store.failing = False
        await settle(sim, store, c)
        await c.stop()
        assert_exact(sim, store)
    assert store.failures >= 2 and buffered > 0
    failed = logs.events("write_failed")
    assert failed and all(r.levelno == logging.ERROR for r in failed)
    assert logs.events("write_recovered")
    if max_buffered == 150:
        # the bound was hit: logged loudly, intake paused, the gap backfilled through REST
        assert logs.events("buffer_full") and logs.events("buffer_resumed")
        assert logs.events("buffer_full")[0].levelno == logging.ERROR
        assert buffered <= 150 + 2 * 1000  # bounded: at most one REST page per symbol on top
        # what was published during the pause came back through REST: as a gap the stream
        # showed, or — when the reconnect's REST catch-up from the last id got there before
        # the stream showed a jump (usual on a loaded machine) — as the fetched tail
        assert logs.events("gap_backfilled") or logs.events("tail_fetched")
    store.close()


@pytest.mark.parametrize("how", ["rotation", "server_shutdown"])
def test_rotation_and_server_shutdown_cause_no_gap(tmp_path, logs, how) -> None:
    asyncio.run(_test_rotation_and_server_shutdown_cause_no_gap(tmp_path, logs, how))


async def _test_rotation_and_server_shutdown_cause_no_gap(tmp_path, logs, how) -> None:
    # REST is always rate-limited here: the store can only be complete if the connection
    # hand-over itself lost nothing (the new connection is open before the old one closes).
    kw = dict(rest_fail_rate=1.0, rest_fail_status=429, retry_after=1)
    if how == "rotation":
        faults = Faults(lifetime=2.0, **kw)  # the server's "24 h" limit, shortened
        settings = fast(rotate_after=0.8, stop_fetch_timeout=1.0)
    else:
        faults = Faults(shutdown_after=0.8, shutdown_grace=2.0, **kw)
        settings = fast(stop_fetch_timeout=1.0)
    async with Simulator(
        SYMS, source="synthetic", speed=12, faults=faults, max_trades=1000, seed=5
    ) as sim:
        store = TradeStore(tmp_path / "db")
        c = Collector(SYMS, store=store, ws_url=sim.ws_url, rest_url=sim.rest_url, **settings)
        await c.start()
        await settle(sim, store, c)
        status = c.status()["symbols"]
        await c.stop()
        assert_exact(sim, store)
    assert len(logs.events("rotate")) >= 2
    assert not logs.events("disconnected"), "the server never had to close on us"
    if how == "server_shutdown":
        assert logs.events("server_shutdown")
    assert all(s["gaps_unrepairable"] == 0 for s in status.values())
    store.close()


def test_restart_resumes_from_the_last_stored_id(tmp_path, logs) -> None:
    asyncio.run(_test_restart_resumes_from_the_last_stored_id(tmp_path, logs))


async def _test_restart_resumes_from_the_last_stored_id(tmp_path, logs) -> None:
    async with Simulator(SYMS, source="synthetic", speed=15, max_trades=1000, seed=11) as sim:
        store = TradeStore(tmp_path / "db")
        c = Collector(SYMS, store=store, ws_url=sim.ws_url, rest_url=sim.rest_url, **fast())
        await c.start()
        await asyncio.sleep(0.8)
        await c.stop()
        first = {s: store.last_agg_id(s) for s in SYMS}
        await asyncio.sleep(0.7)  # trades published while no collector runs
        c2 = Collector(SYMS, store=store, ws_url=sim.ws_url, rest_url=sim.rest_url, **fast())
        await c2.start()
        await settle(sim, store, c2)
        await c2.stop()
        assert_exact(sim, store)
    assert logs.events("resume") and all(first.values())
    # what was published while no collector ran came back through REST
    assert logs.events("tail_fetched") or logs.events("gap_backfilled")
    store.close()


def test_rest_ban_is_honoured_and_gaps_survive_a_restart(tmp_path, logs) -> None:
    asyncio.run(_test_rest_ban_is_honoured_and_gaps_survive_a_restart(tmp_path, logs))


async def _test_rest_ban_is_honoured_and_gaps_survive_a_restart(tmp_path, logs) -> None:
    # 1. REST answers 418 + Retry-After 1 twice: the collector waits, then backfills.
    faults = Faults(skip_rate=0.01, rest_fail_next=2, rest_fail_status=418, retry_after=1)
    async with Simulator(
        SYMS, source="synthetic", speed=15, faults=faults, max_trades=900, seed=21
    ) as sim:
        store = TradeStore(tmp_path / "db")
        c = Collector(SYMS, store=store, ws_url=sim.ws_url, rest_url=sim.rest_url, **fast())
        await c.start()
        await settle(sim, store, c)
        await c.stop()
        assert_exact(sim, store)
        limited = logs.events("rest_rate_limited")
        assert [r.status for r in limited[:2]] == [418, 418]
        assert all(r.levelno == logging.WARNING and r.retry_after == 1 for r in limited)
        first_fill = min(r.created for r in logs.events("gap_backfilled"))
        assert first_fill - limited[0].created >= 1.9  # waited Retry-After, twice

    store.close()
    # 2. REST down when we stop: the holes stay in the store, and the next start fills them.
    faults = Faults(skip_rate=0.02, rest_fail_rate=1.0, retry_after=30)
    async with Simulator(
        SYMS, source="synthetic", speed=15, faults=faults, max_trades=900, seed=22
    ) as sim:
        store = TradeStore(tmp_path / "db2")
        c = Collector(
            SYMS, store=store, ws_url=sim.ws_url, rest_url=sim.rest_url, **fast(stop_timeout=1.0)
        )
        await c.start()
        for _ in range(100):
            await asyncio.sleep(0.1)
            if c.open_gaps():
                break
        await asyncio.sleep(0.3)
        await c.stop()
        assert logs.events("gap_open_at_stop")
        left = {
            (s, r["first_missing"], r["last_missing"])
            for s in SYMS
            for r in store.holes(s).filter(~pl.col("unrepairable")).iter_rows(named=True)
        }
        assert left  # the store itself knows what is missing: no separate list is saved
        sim.set_faults(Faults(skip_rate=0.02))
        c = Collector(SYMS, store=store, ws_url=sim.ws_url, rest_url=sim.rest_url, **fast())
        await c.start()
        found = logs.events("hole_found")
        assert {(r.symbol, r.first_id, r.last_id) for r in found} == left
        assert all(
            r.levelno == logging.WARNING and "left by an earlier run" in r.getMessage()
            for r in found
        )
        await settle(sim, store, c)
        await c.stop()
        assert_exact(sim, store)
        assert all(store.holes(s).filter(~pl.col("unrepairable")).height == 0 for s in SYMS)
    store.close()
