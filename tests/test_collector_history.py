"""``tradelab collect --history 2``: the chart opens already populated.

A real ``tradelab collect`` process against the simulator seeded with 2.5 hours of history
(served through REST and daily archives): within the first live minute a 1-hour volume
profile is available from another process, with every trade the simulator published in that
hour; after a SIGTERM the store holds the whole 2-hour window plus the live part, exactly
once (no hole where history and live meet), and ``tradelab check`` exits 0.
"""

from __future__ import annotations

import signal
import time

import polars as pl
import pytest
from test_crash import Collect, event

import tradelab
from tradelab.cli import main
from tradelab.exceptions import TradelabError
from tradelab.simulator import Simulator
from tradelab.store import TradeStore, close_stores

pytestmark = pytest.mark.slow
SYMS = ("BTCUSDT", "ETHUSDT")
HOUR_MS = 3_600_000


def test_collect_with_history_has_a_profile_before_the_first_live_minute_ends(
    tmp_path, capsys
) -> None:
    data = tmp_path / "d"
    with Simulator(SYMS, source="synthetic", speed=1, seed=6, history_hours=2.5) as sim:
        run = Collect(data, sim, "--history", "2", "--archive-url", sim.archive_url)
        started = run.wait_for(event("collector_start"), 20)
        assert started is not None
        t0 = time.monotonic()
        profile = None
        while time.monotonic() - t0 < 60:
            run.wait_for(lambda e: False, 0.5)  # keep reading its log
            try:
                profile = tradelab.get_volume_profile("BTCUSDT", 1, data=str(data))
            except TradelabError:
                continue  # not there yet ("insufficient trades" / no store yet)
            if len(run.named("history_done")) == len(SYMS):
                break
        took = time.monotonic() - t0
        assert profile is not None and took < 60, f"no 1-hour profile after {took:.0f} s"
        # the profile holds the hour the simulator published (history + the first live
        # seconds), all but the last second or two the live collector has not written yet
        start_ms = int(profile.start.timestamp() * 1000)
        end_ms = int(profile.end.timestamp() * 1000)
        t = pl.col("time").dt.epoch("ms")
        pub = sim.published_frame("BTCUSDT").filter(t.is_between(start_ms, end_ms - 1))
        settled = pub.filter(t < end_ms - 2_000).height
        assert end_ms - start_ms == HOUR_MS
        assert settled <= profile.trade_count <= pub.height and settled > 50_000
        close_stores()
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(timeout=30) == 0
        run.drain()
        window = {e["symbol"]: int(e["start"]) for e in run.named("history_start")}
        with TradeStore(data, readonly=True) as r:
            for s in SYMS:
                window_start = window[s]  # each symbol's window ends at its own "now"
                got = r.trades(s, window_start, 2**42)
                last = got["agg_id"].max()
                pub = sim.published_frame(s).filter(
                    (pl.col("time").dt.epoch("ms") >= window_start) & (pl.col("agg_id") <= last)
                )
                assert got.select(pub.columns).equals(pub), s
                assert r.holes(s).height == 0, r.holes(s)
    assert {e["symbol"] for e in run.named("history_done")} == set(SYMS)
    assert main(["check", "--data", str(data)]) == 0
    assert "complete: no repairable hole" in capsys.readouterr().out
