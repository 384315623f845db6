"""Collector settings validation, state errors and the status document (no network needed)."""

from __future__ import annotations

import asyncio

import pytest

from tradelab.collector.collector import Collector
from tradelab.exceptions import (
    CollectorStateError,
    ConfigurationError,
    EndpointUnreachableError,
    InvalidParameterError,
    InvalidSymbolError,
)
from tradelab.store.tradestore import TradeStore


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"symbols": "BTC-USD"}, InvalidSymbolError, "invalid symbol 'BTC-USD'"),
        ({"symbols": []}, InvalidSymbolError, "no symbols given"),
        ({"ws_url": "http://host"}, ConfigurationError, "expected ws or wss"),
        ({"rest_url": "ftp://host"}, ConfigurationError, "expected http or https"),
        ({"batch_interval": 0}, InvalidParameterError, "batch_interval must be a number > 0"),
        ({"max_buffered": 1.5}, InvalidParameterError, "max_buffered must be an integer > 0"),
        ({"rotate_after": -1}, InvalidParameterError, "rotate_after must be a number > 0"),
        ({"healthy_after": -1}, InvalidParameterError, "healthy_after must be >= 0"),
        ({"max_streams": 2000}, InvalidParameterError, "Binance's limit per connection"),
        ({"rest_limit": 1001}, InvalidParameterError, "rest_limit must be 1..1000"),
        ({"reconnect_initial": 5, "reconnect_max": 1}, InvalidParameterError, "reconnect_max"),
        ({"store": 42}, ConfigurationError, "store must be a TradeStore"),
    ],
)
def test_settings_are_validated(kwargs, error, message) -> None:
    with pytest.raises(error) as info:
        Collector(**kwargs)
    assert message in str(info.value)


def test_symbols_split_into_connections_of_1024() -> None:
    syms = [f"S{i:04d}USDT" for i in range(1500)]
    c = Collector(syms, ws_url="ws://127.0.0.1:9", rest_url="http://127.0.0.1:9")
    assert [len(g.symbols) for g in c.streams] == [1024, 476]
    assert c.streams[0].url.startswith("ws://127.0.0.1:9/stream?streams=s0000usdt@aggTrade/")


def test_stop_before_start_and_start_twice(tmp_path) -> None:
    async def scenario() -> None:
        store = TradeStore(tmp_path / "db")
        c = Collector(
            ["BTCUSDT"],
            store=store,
            ws_url="ws://127.0.0.1:9",
            rest_url="http://127.0.0.1:9",
            reconnect_initial=0.05,
            reconnect_max=0.1,
        )
        with pytest.raises(CollectorStateError, match="not running"):
            await c.stop()
        await c.start()  # no check: an unreachable endpoint is retried forever
        with pytest.raises(CollectorStateError, match="already running"):
            await c.start()
        await asyncio.sleep(0.3)
        doc = c.status()
        sym = doc["symbols"]["BTCUSDT"]
        assert doc["running"] is True and sym["connected"] is False
        assert "connect failed" in sym["last_error"]
        await c.stop()
        assert c.status()["running"] is False
        meta = store.get_meta("collector_status")
        assert meta is not None and meta["running"] is False
        assert set(meta["symbols"]["BTCUSDT"]) == {
            "connected",
            "trades_stored",
            "rate_per_min",
            "last_trade_time",
            "last_agg_id",
            "gaps_detected",
            "gaps_backfilled",
            "gaps_unrepairable",
            "missing",
            "history",
            "uptime_ratio",
            "buffered",
            "last_error",
        }
        assert meta["symbols"]["BTCUSDT"]["history"] is None  # no history fill asked
        store.close()

    asyncio.run(scenario())


def test_start_with_check_raises_clearly_for_an_unreachable_stream(tmp_path) -> None:
    async def scenario() -> None:
        store = TradeStore(tmp_path / "db")
        c = Collector(
            ["BTCUSDT"], store=store, ws_url="ws://127.0.0.1:9", rest_url="http://127.0.0.1:9"
        )
        with pytest.raises(EndpointUnreachableError, match="check --rest-url"):
            await c.start(check=True)
        assert not c.running
        store.close()

    asyncio.run(scenario())


def test_start_check_must_be_a_boolean(tmp_path) -> None:
    """``check="no"`` is truthy: refused in one line instead of running the checks."""

    async def scenario() -> None:
        c = Collector(["BTCUSDT"], ws_url="ws://127.0.0.1:9", rest_url="http://127.0.0.1:9")
        with pytest.raises(InvalidParameterError, match=r"^check must be True or False, got str"):
            await c.start(check="no")  # type: ignore[arg-type]
        assert not c.running and c.store is None

    asyncio.run(scenario())


def test_readonly_store_is_refused(tmp_path) -> None:
    TradeStore(tmp_path / "db").close()

    async def scenario() -> None:
        ro = TradeStore(tmp_path / "db", readonly=True)
        c = Collector(
            ["BTCUSDT"], store=ro, ws_url="ws://127.0.0.1:9", rest_url="http://127.0.0.1:9"
        )
        with pytest.raises(ConfigurationError, match="read-only"):
            await c.start()
        ro.close()

    asyncio.run(scenario())


def test_rate_per_minute_is_not_under_reported_in_the_first_minute() -> None:
    from tradelab.collector.writer import StoredCounts

    s = StoredCounts()
    s.record(100.0, 50)  # 100 trades in the first 10 s
    s.record(105.0, 50)
    assert s.rate_per_min(110.0, elapsed=10.0) == 600.0  # 100 per 10 s = 600 per minute
    s.record(150.0, 100)
    assert s.rate_per_min(166.0, elapsed=76.0) == 100.0  # only the last minute counts
