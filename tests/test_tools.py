"""get_volume_profile / get_liquidity_vacuums against a real RocksDB TradeStore in tmp_path."""

from __future__ import annotations

import os
import time

import polars as pl
import pytest

import tradelab
from tradelab.analytics import VacuumReport, liquidity_vacuums, vacuum_report, volume_profile
from tradelab.analytics import api as tools
from tradelab.exceptions import (
    InsufficientTradesError,
    InvalidParameterError,
    InvalidSymbolError,
    InvalidWindowError,
    NoDataError,
)
from tradelab.recordings import synthetic_trades
from tradelab.store import TradeStore, close_stores, open_store

HOUR = 3_600_000


def now_ms() -> int:
    return int(time.time() * 1000)


def add(store, symbol, start_ms, n, *, rate_per_s=1.0, first=1, **kw) -> pl.DataFrame:
    df = synthetic_trades(symbol, start_ms, n, rate_per_s=rate_per_s, first_agg_id=first, **kw)
    store.append(symbol, df)
    return df


def status_doc(*, running=True, age_s=2.0, symbols=None, pid=None) -> dict:
    now = now_ms()
    return {
        "pid": os.getpid() + 1 if pid is None else pid,
        "host": "analyst-box",
        "running": running,
        "started_at": now - 600_000,
        "updated_at": now - int(age_s * 1000),
        "ws_url": "ws://127.0.0.1:1",
        "rest_url": "http://127.0.0.1:1",
        "store_path": "x",
        "symbols": symbols if symbols is not None else {},
    }


def btc_status(rate: float) -> dict:
    return {
        "BTCUSDT": {
            "connected": True,
            "trades_stored": 212,
            "rate_per_min": rate,
            "last_trade_time": now_ms(),
            "last_agg_id": 212,
            "gaps_detected": 0,
            "gaps_backfilled": 0,
            "gaps_unrepairable": 0,
            "uptime_ratio": 1.0,
            "buffered": 0,
            "last_error": None,
        }
    }


# --- the computation reads exactly the window ---


def test_profile_of_the_last_hours_matches_the_pure_function(store) -> None:
    now = now_ms()
    # an old burst far away in price (must be outside the 1 h window) and 2,400 recent trades
    add(store, "BTCUSDT", now - 3 * HOUR, 500, price=90_000.0, first=1)
    recent = add(store, "BTCUSDT", now - 50 * 60_000, 2_400, rate_per_s=1.0, first=1_000)
    vp = tradelab.get_volume_profile("BTCUSDT", 1, store=store)
    assert vp.symbol == "BTCUSDT" and vp.trade_count == 2_400
    assert vp.price_max < 90_000 and vp.tick_size == 0.01
    assert (vp.end - vp.start).total_seconds() == 3600
    assert abs(vp.end.timestamp() * 1000 - now) < 60_000
    direct = volume_profile(recent, tick_size=0.01)
    assert vp.rows.equals(direct.rows)
    assert (vp.poc, vp.vah, vp.val) == (direct.poc, direct.vah, direct.val)
    # 4 h includes the old burst
    wide = tradelab.get_volume_profile("btcusdt", 4, store=store)
    assert wide.trade_count == 2_900 and wide.price_max >= 89_000


def test_tick_size_from_table_argument_and_override(store) -> None:
    now = now_ms()
    add(store, "ZILUSDT", now - 30 * 60_000, 1_500, price=0.02345, tick=0.00001)
    vp = tradelab.get_volume_profile("ZILUSDT", 1, store=store)
    assert vp.tick_size == 0.00001  # unknown symbol: inferred from the prices' decimals
    assert round(vp.row_size / 0.00001, 6) == round(vp.row_size / 0.00001)
    vp = tradelab.get_volume_profile("ZILUSDT", 1, 0.0001, store=store)
    assert vp.tick_size == 0.0001 and vp.row_size >= 0.0001
    try:
        tools.set_tick_size("zilusdt", 0.001)
        assert tools.tick_size_for("ZILUSDT") == 0.001
        assert tradelab.get_volume_profile("ZILUSDT", 1, store=store).tick_size == 0.001
    finally:
        tools.set_tick_size("ZILUSDT", None)
    assert tools.tick_size_for("ZILUSDT") is None
    assert tools.tick_size_for("ETHUSDT") == 0.01


def test_profile_and_vacuum_options_pass_through(store) -> None:
    recent = add(store, "BTCUSDT", now_ms() - 30 * 60_000, 3_000, rate_per_s=2.0)
    vp = tradelab.get_volume_profile(
        "BTCUSDT", 1, store=store, row_size=0.5, value_area=0.9, method="single"
    )
    direct = volume_profile(recent, row_size=0.5, value_area=0.9, method="single")
    assert vp.row_size == 0.5 and vp.method == "single" and vp.value_area == 0.9
    assert (vp.val, vp.vah, vp.poc) == (direct.val, direct.vah, direct.poc)
    vac = tradelab.get_liquidity_vacuums("BTCUSDT", 1, store=store, threshold=0.6, min_rows=2)
    assert vac == liquidity_vacuums(
        tradelab.get_volume_profile("BTCUSDT", 1, store=store), threshold=0.6, min_rows=2
    )


def test_bad_options_fail_before_reading(store) -> None:
    # the store holds nothing: a read would raise InsufficientTradesError
    for kwargs, match in [
        ({"row_size": 0.015}, "whole number of ticks"),
        ({"value_area": 0}, "0 < value_area <= 1"),
        ({"method": "tpo"}, "allowed: 'cbot'"),
        ({"row_size": -1}, "row_size=-1"),
    ]:
        with pytest.raises(InvalidParameterError, match=match):
            tradelab.get_volume_profile("BTCUSDT", 1, store=store, **kwargs)
    for kwargs, match in [({"threshold": 0}, "threshold=0"), ({"min_rows": 0}, "min_rows=0")]:
        with pytest.raises(InvalidParameterError, match=match):
            tradelab.get_liquidity_vacuums("BTCUSDT", 1, store=store, **kwargs)


def test_vacuums_are_those_of_the_profile(store) -> None:
    add(store, "ETHUSDT", now_ms() - 40 * 60_000, 2_000, price=2500.0)
    vac = tradelab.get_liquidity_vacuums("ETHUSDT", 1, store=store)
    vp = tradelab.get_volume_profile("ETHUSDT", 1, store=store)
    assert vac == liquidity_vacuums(vp)
    assert all(isinstance(v, tradelab.Vacuum) for v in vac)


def test_default_store_is_the_configured_data_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TRADELAB_DATA", str(tmp_path / "env"))
    with TradeStore(tmp_path / "env") as w:
        add(w, "BTCUSDT", now_ms() - 20 * 60_000, 1_200)
    try:
        assert tradelab.get_volume_profile("BTCUSDT", 1).trade_count == 1_200
    finally:
        close_stores()


# --- too few trades: what the analyst is told ---


def test_too_few_trades_and_nothing_collects(store) -> None:
    add(store, "BTCUSDT", now_ms() - 30 * 60_000, 212)
    with pytest.raises(InsufficientTradesError) as err:
        tradelab.get_volume_profile("BTCUSDT", 1, store=store)
    assert err.value.found == 212 and err.value.needed == 1_000
    assert str(err.value) == (
        "BTCUSDT: 212 of the 1,000 trades needed in the last 1 h; no collector is running — "
        "start collection with `%tradelab start BTCUSDT` in a notebook or "
        "`tradelab collect --symbols BTCUSDT` in a terminal"
    )


def test_empty_store_window(store) -> None:
    with pytest.raises(InsufficientTradesError, match=r"^ETHUSDT: 0 of the 1,000 trades") as err:
        tradelab.get_liquidity_vacuums("ETHUSDT", 24, store=store)
    assert err.value.found == 0


def test_too_few_trades_while_another_process_collects(store) -> None:
    add(store, "BTCUSDT", now_ms() - 5 * 60_000, 212)
    store.put_meta("collector_status", status_doc(symbols=btc_status(41.0)))
    with pytest.raises(InsufficientTradesError) as err:
        tradelab.get_volume_profile("BTCUSDT", 1, store=store)
    # (1000 - 212) / 41 = 19.2 minutes
    assert str(err.value) == (
        "BTCUSDT: 212 of the 1,000 trades needed in the last 1 h; collection is running at "
        "~41 trades/min (another process), ready in ~19 min"
    )


def test_collector_in_this_process_is_named_so(store) -> None:
    add(store, "BTCUSDT", now_ms() - 5 * 60_000, 900, rate_per_s=10)
    store.put_meta("collector_status", status_doc(symbols=btc_status(400.0), pid=os.getpid()))
    with pytest.raises(
        InsufficientTradesError,
        match=r"~400 trades/min \(this process\), "
        r"ready in under a minute",
    ):
        tradelab.get_volume_profile("BTCUSDT", 1, store=store)


def test_stale_status_means_not_running(store) -> None:
    add(store, "BTCUSDT", now_ms() - 5 * 60_000, 10)
    store.put_meta("collector_status", status_doc(age_s=300, symbols=btc_status(41.0)))
    with pytest.raises(
        InsufficientTradesError,
        match=r"no collector is running \(the last "
        r"collector status is 5 min old",
    ):
        tradelab.get_volume_profile("BTCUSDT", 1, store=store)
    store.put_meta("collector_status", status_doc(running=False, symbols=btc_status(41.0)))
    with pytest.raises(InsufficientTradesError, match="no collector is running — start"):
        tradelab.get_volume_profile("BTCUSDT", 1, store=store)


def test_a_silent_collector_that_is_alive_is_not_called_dead(store) -> None:
    """The store's writer (this process, by its owner file) said "running" 5 minutes ago and
    is still alive: stuck or unable to write, not "stopped or died"."""
    add(store, "BTCUSDT", now_ms() - 5 * 60_000, 10)
    doc = status_doc(age_s=300, symbols=btc_status(41.0), pid=os.getpid())
    store.put_meta("collector_status", doc)
    with pytest.raises(InsufficientTradesError) as err:
        tradelab.get_volume_profile("BTCUSDT", 1, store=store)
    text = str(err.value)
    assert f"collector pid {os.getpid()} is alive but has not published its status" in text
    assert "see the collector's log" in text and "died" not in text


def test_collector_running_for_other_symbols(store) -> None:
    store.put_meta("collector_status", status_doc(symbols=btc_status(41.0)))
    with pytest.raises(
        InsufficientTradesError,
        match="running \\(another process\\) but does "
        "not collect ETHUSDT — start collection of "
        "ETHUSDT with `%tradelab start ETHUSDT`",
    ):
        tradelab.get_volume_profile("ETHUSDT", 2, store=store)


def test_rate_observed_in_the_window_when_the_collector_reports_none(store) -> None:
    add(store, "BTCUSDT", now_ms() - 10 * 60_000, 300, rate_per_s=0.5)  # ~30 per minute
    store.put_meta("collector_status", status_doc(symbols=btc_status(0.0)))
    with pytest.raises(InsufficientTradesError) as err:
        tradelab.get_volume_profile("BTCUSDT", 1, store=store)
    text = str(err.value)
    assert "collection is running at ~" in text and "ready in ~" in text
    rate = float(text.split("at ~")[1].split(" trades/min")[0])
    assert 20 < rate < 45


def test_rate_too_low_for_the_window(store) -> None:
    add(store, "BTCUSDT", now_ms() - 5 * 60_000, 20)
    store.put_meta("collector_status", status_doc(symbols=btc_status(4.0)))
    with pytest.raises(
        InsufficientTradesError,
        match="at that rate 1 h never holds 1,000 trades — ask for at least 5 h",
    ):
        tradelab.get_volume_profile("BTCUSDT", 1, store=store)


def test_message_wording_for_no_trades_yet_and_long_waits() -> None:
    state = {
        "running": True,
        "where": "this process",
        "collects_symbol": True,
        "rate_per_min": None,
        "stale_s": None,
    }
    assert tools.insufficient_message("BTCUSDT", 0, 1000, 24, state).endswith(
        "collection is running (this process) but no BTCUSDT trades have arrived yet, so no "
        "wait can be estimated"
    )
    state["rate_per_min"] = 5.0
    assert tools.insufficient_message("BTCUSDT", 100, 1000, 24, state).endswith(
        "~5.0 trades/min (this process), ready in ~3.0 h"
    )
    state["rate_per_min"] = 0.05
    assert tools.insufficient_message("BTCUSDT", 1, 1000, 24, state).endswith(
        "no window up to 168 h holds 1,000 trades"
    )


# --- bad input ---


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (("BTC-USDT", 1), {}, InvalidSymbolError, "BTC-USDT"),
        (("BTCUSDT", 0), {}, InvalidWindowError, "duration_hours=0 is outside"),
        (("BTCUSDT", 169), {}, InvalidWindowError, "1 to 168 hours"),
        (("BTCUSDT", "24"), {}, InvalidWindowError, "duration_hours must be a number"),
        (("BTCUSDT", 1, -0.01), {}, InvalidParameterError, "tick_size=-0.01 is not allowed"),
        (("BTCUSDT", 1, float("nan")), {}, InvalidParameterError, "tick_size=nan"),
        (("BTCUSDT", 1), {"store": "/tmp/x"}, InvalidParameterError, "must be a tradelab"),
    ],
)
def test_bad_input(store, args, kwargs, error, match) -> None:
    kwargs.setdefault("store", store)
    with pytest.raises(error, match=match):
        tradelab.get_volume_profile(*args, **kwargs)
    if len(args) == 2:
        with pytest.raises(error, match=match):
            tradelab.get_liquidity_vacuums(*args, **kwargs)


def test_set_tick_size_validates() -> None:
    with pytest.raises(InvalidParameterError, match="tick_size=0"):
        tools.set_tick_size("BTCUSDT", 0)
    with pytest.raises(InvalidSymbolError):
        tools.set_tick_size("no such", 0.1)
    assert tools.tick_size_for("BTCUSDT") == 0.01


@pytest.mark.slow
def test_collector_running_in_this_process_end_to_end(tmp_path) -> None:
    """A real session (collector -> store) fed by the simulator, stopped short of 1,000 trades:
    the error names this process's collection and its rate."""
    from tradelab.jupyter import session
    from tradelab.simulator import Simulator

    path = tmp_path / "data"
    with Simulator(("BTCUSDT",), speed=20, seed=3, max_trades=400) as sim:
        tradelab.start(["BTCUSDT"], data=path, ws_url=sim.ws_url, rest_url=sim.rest_url)
        try:
            store = open_store(path)
            deadline = time.monotonic() + 30
            while store.trades("BTCUSDT", 0, 10**13).height < 50:
                assert time.monotonic() < deadline, "the collector stored too little in 30 s"
                time.sleep(0.05)
            with pytest.raises(InsufficientTradesError) as err:
                tradelab.get_volume_profile("BTCUSDT", 1, store=store)
            text, found = str(err.value), err.value.found
            assert 50 <= found <= 400  # the simulator stops at 400 trades
            assert text.startswith(
                f"BTCUSDT: {found:,} of the 1,000 trades needed in the last 1 h"
                "; collection is running at ~"
            )
            assert "trades/min (this process)" in text
            # another symbol is not collected by this session
            with pytest.raises(InsufficientTradesError, match="does not collect ETHUSDT"):
                tradelab.get_volume_profile("ETHUSDT", 1, store=store)
        finally:
            session.stop()
            close_stores()


# --- the vacuum report: the vacuums with their profile, one call -------------------------------


def test_vacuum_report_is_the_profile_and_its_vacuums(recent_store) -> None:
    report = vacuum_report("btcusdt", 1, data=recent_store.data, threshold=0.6, min_rows=2)
    assert isinstance(report, VacuumReport)
    vp = tradelab.get_volume_profile("BTCUSDT", 1, data=recent_store.data)
    assert report.symbol == "BTCUSDT" and report.profile.trade_count == vp.trade_count == 6000
    assert report.profile.rows.equals(vp.rows) and report.profile.poc == vp.poc
    assert report.vacuums == liquidity_vacuums(report.profile, threshold=0.6, min_rows=2)
    assert report.vacuums and all(v.rows >= 2 for v in report.vacuums)
    assert (report.threshold, report.min_rows) == (0.6, 2)
    assert (
        tradelab.get_liquidity_vacuums(
            "BTCUSDT", 1, data=recent_store.data, threshold=0.6, min_rows=2
        )
        == report.vacuums
    )
    doc = report.to_dict()
    assert doc["symbol"] == "BTCUSDT" and doc["trade_count"] == 6000
    assert doc["start"] == report.profile.start.isoformat() and doc["poc"] == vp.poc
    assert doc["row_size"] == vp.row_size
    assert doc["vacuums"] == [v.to_dict() for v in report.vacuums]


def test_the_api_validates_everything_before_opening_the_store(tmp_path) -> None:
    missing = tmp_path / "nothing-here"
    for call, error, match in [
        (lambda: vacuum_report("BTC-USDT", 1, data=missing), InvalidSymbolError, "BTC-USDT"),
        (lambda: vacuum_report("BTCUSDT", 0, data=missing), InvalidWindowError, "duration_hours"),
        (
            lambda: vacuum_report("BTCUSDT", 1, data=missing, threshold=2),
            InvalidParameterError,
            "threshold=2",
        ),
        (
            lambda: vacuum_report("BTCUSDT", 1, data=missing, min_rows=0),
            InvalidParameterError,
            "min_rows=0",
        ),
        (
            lambda: tradelab.get_volume_profile("BTCUSDT", 1, -1, data=missing),
            InvalidParameterError,
            "tick_size=-1",
        ),
        (
            lambda: tradelab.get_volume_profile("BTCUSDT", 1, data=missing, method="tpo"),
            InvalidParameterError,
            "method='tpo'",
        ),
    ]:
        with pytest.raises(error, match=match):
            call()
    assert not missing.exists()  # nothing was opened, nothing created
    with pytest.raises(NoDataError, match="no trade store at"):
        vacuum_report("BTCUSDT", 1, data=missing)  # valid arguments: now the store is opened
    # symbol before window before parameters, whatever the front-end
    with pytest.raises(InvalidSymbolError):
        tradelab.get_volume_profile("BTC-USDT", 0, -1, data=missing)
    with pytest.raises(InvalidWindowError):
        tradelab.get_volume_profile("BTCUSDT", 0, -1, data=missing)


def test_store_or_data_not_both(store, recent_store) -> None:
    with pytest.raises(InvalidParameterError, match="not both"):
        tradelab.get_volume_profile("BTCUSDT", 1, store=store, data=recent_store.data)
    assert open_store(recent_store.data) is open_store(recent_store.path)  # one store per path


def test_a_profile_reads_only_the_columns_it_needs(tmp_path) -> None:
    """get_volume_profile asks the store for its hour histograms (which decode price, qty and
    buyer_is_maker only where no histogram serves), and the answer equals the profile of the full
    frame; a window too thin for a profile goes the plain way: three columns, then a small
    re-read with the times for the message."""
    asked: list[object] = []

    class Spy(TradeStore):
        def trades(self, symbol, start, end, *, columns=None):  # type: ignore[override]
            asked.append(columns)
            return super().trades(symbol, start, end, columns=columns)

        def price_histograms(self, symbol, start, end):  # type: ignore[override]
            asked.append("histograms")
            return super().price_histograms(symbol, start, end)

    with Spy(tmp_path / "d") as store:
        frame = add(store, "BTCUSDT", now_ms() - 30 * 60_000, 1500)
        vp = tradelab.get_volume_profile("BTCUSDT", 1, store=store)
        assert asked == ["histograms"]
        full = volume_profile(frame, tick_size=0.01, start=vp.start, end=vp.end)
        assert vp.rows.equals(full.rows) and (vp.poc, vp.vah, vp.val) == (
            full.poc,
            full.vah,
            full.val,
        )
        # too few trades: the message is built from a small re-read that includes the times
        add(store, "ETHUSDT", now_ms() - 30 * 60_000, 300, rate_per_s=0.5)
        asked.clear()
        with pytest.raises(InsufficientTradesError, match="ETHUSDT: 300 of the 1,000"):
            tradelab.get_volume_profile("ETHUSDT", 1, store=store)
        assert asked == ["histograms", tools.PROFILE_COLUMNS, None]
