"""Settings, the trade schema, logging and the recordings loaders: the pieces all layers share."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging

import polars as pl
import pytest

from tradelab import config, recordings
from tradelab.exceptions import (
    ConfigurationError,
    InputError,
    InvalidSymbolError,
    InvalidTradesError,
    InvalidWindowError,
    TradelabError,
)
from tradelab.logs import configure_logging, get_logger
from tradelab.schema import TRADE_SCHEMA, empty_trades, to_ms, to_trade_frame

# --- symbols and settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,expected",
    [("BTCUSDT", "BTCUSDT"), (" ethusdt ", "ETHUSDT"), ("1000SATSUSDT", "1000SATSUSDT")],
)
def test_valid_symbols_are_normalised(raw: str, expected: str) -> None:
    assert config.validate_symbol(raw) == expected


@pytest.mark.parametrize("bad", ["", "B", "BTC-USDT", "btc/usdt", "trades:BTC", "A" * 21, 42, None])
def test_invalid_symbols_are_refused_with_the_rule(bad: object) -> None:
    with pytest.raises(InvalidSymbolError) as err:
        config.validate_symbol(bad)
    assert "BTCUSDT" in str(err.value)  # the message shows what a valid symbol looks like
    assert isinstance(err.value, InputError) and isinstance(err.value, ValueError)


def test_parse_symbols_splits_dedupes_and_uses_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.parse_symbols("btcusdt, ETHUSDT,BTCUSDT") == ("BTCUSDT", "ETHUSDT")
    monkeypatch.setenv("TRADELAB_SYMBOLS", "solusdt")
    assert config.parse_symbols(None) == ("SOLUSDT",)
    monkeypatch.delenv("TRADELAB_SYMBOLS")
    assert config.parse_symbols(None) == ("BTCUSDT", "ETHUSDT")
    with pytest.raises(InvalidSymbolError):
        config.parse_symbols([])


@pytest.mark.parametrize("hours", [1, 24, 168, 1.5])
def test_hours_in_range(hours: float) -> None:
    assert config.validate_hours(hours) == hours


@pytest.mark.parametrize("hours", [0, 0.5, 169, -1, "24", True, None, float("nan")])
def test_hours_out_of_range(hours: object) -> None:
    with pytest.raises(InvalidWindowError, match="1 to 168"):
        config.validate_hours(hours)


def test_settings_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("TRADELAB_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("TRADELAB_WS_URL", "ws://127.0.0.1:9")
    s = config.Settings.resolve()
    assert s.data_dir == tmp_path / "env" and s.ws_url == "ws://127.0.0.1:9"
    s = config.Settings.resolve(data_dir=tmp_path / "arg", ws_url="wss://x.example:443/")
    assert s.data_dir == tmp_path / "arg" and s.ws_url == "wss://x.example:443"
    monkeypatch.delenv("TRADELAB_DATA")
    assert config.resolve_data_dir() == config.Path.home() / ".tradelab" / "data"


@pytest.mark.parametrize("url", ["http://x", "ws://", "stream.binance.com", "ws://h:99999"])
def test_bad_ws_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="WebSocket URL"):
        config.Settings.resolve(ws_url=url)


def test_bad_retention_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADELAB_RETENTION_DAYS", "seven")
    with pytest.raises(ConfigurationError, match="TRADELAB_RETENTION_DAYS"):
        config.Settings.resolve()


def test_data_dir_that_is_a_file(tmp_path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigurationError, match="not a directory"):
        config.resolve_data_dir(f)


# --- trade schema -----------------------------------------------------------------------------


def test_records_in_binance_fields_become_the_schema() -> None:
    frame = to_trade_frame(
        [
            {
                "a": 7,
                "p": "61837.63000000",
                "q": "0.02000000",
                "f": 1,
                "l": 2,
                "T": 1723161255342,
                "m": True,
            }
        ]
    )
    assert frame.schema == pl.Schema(TRADE_SCHEMA)
    row = frame.row(0, named=True)
    assert row["price"] == 61837.63 and row["qty"] == 0.02 and row["buyer_is_maker"] is True
    assert row["time"] == dt.datetime(2024, 8, 8, 23, 54, 15, 342000, tzinfo=dt.UTC)


def test_frame_with_integer_time_and_extra_columns() -> None:
    frame = pl.DataFrame(
        {
            "agg_id": [1],
            "price": [1.5],
            "qty": [2],
            "first_id": [1],
            "last_id": [1],
            "time": [0],
            "buyer_is_maker": [False],
            "x": [9],
        }
    )
    out = to_trade_frame(frame)
    assert out.columns == list(TRADE_SCHEMA) and out["qty"].dtype == pl.Float64


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda f: f.drop("qty"), "lacks column"),
        (lambda f: f.with_columns(pl.lit("x").alias("agg_id")), "agg_id has type"),
        (lambda f: f.with_columns(pl.lit(None, pl.Float64).alias("price")), "null"),
        (lambda f: f.with_columns(pl.lit(float("nan")).alias("price")), "finite"),
        (lambda f: f.with_columns(pl.lit(-1.0).alias("qty")), "quantity"),
        (lambda f: f.with_columns(pl.lit(dt.datetime(2024, 1, 1)).alias("time")), "naive"),
    ],
)
def test_bad_frames_name_the_column(change, match: str) -> None:
    good = pl.DataFrame(
        {
            "agg_id": [1],
            "price": [1.5],
            "qty": [2.0],
            "first_id": [1],
            "last_id": [1],
            "time": [0],
            "buyer_is_maker": [False],
        }
    )
    with pytest.raises(InvalidTradesError, match=match):
        to_trade_frame(change(good))


def test_bad_records() -> None:
    with pytest.raises(InvalidTradesError, match="lacks"):
        to_trade_frame([{"a": 1}])
    with pytest.raises(InvalidTradesError, match="mapping"):
        to_trade_frame([1, 2])
    with pytest.raises(InvalidTradesError, match="DataFrame"):
        to_trade_frame("trades")
    assert to_trade_frame([]).equals(empty_trades())


def test_to_ms() -> None:
    assert to_ms(dt.datetime(2024, 1, 1, tzinfo=dt.UTC)) == 1704067200000
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert to_ms(dt.datetime(2024, 1, 1, 2, 0, 0, 1999, tzinfo=plus2)) == 1704067200001
    assert to_ms(1704067200000) == 1704067200000
    for bad in (dt.datetime(2024, 1, 1), "2024", True, float("nan")):
        with pytest.raises(InvalidWindowError):
            to_ms(bad)  # type: ignore[arg-type]


# --- logging ----------------------------------------------------------------------------------


def test_json_logging_carries_structured_fields() -> None:
    stream = io.StringIO()
    handler = configure_logging("INFO", "json", stream)
    try:
        get_logger("collector").info(
            "Stored %d trades for %s", 5, "BTCUSDT", extra={"symbol": "BTCUSDT", "trades": 5}
        )
        get_logger("collector").debug("hidden")
    finally:
        logging.getLogger("tradelab").removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["msg"] == "Stored 5 trades for BTCUSDT"
    assert record["symbol"] == "BTCUSDT" and record["trades"] == 5
    assert record["level"] == "INFO" and record["logger"] == "tradelab.collector"


def test_text_logging_and_bad_format() -> None:
    stream = io.StringIO()
    handler = configure_logging("WARNING", "text", stream)
    try:
        get_logger("x").warning("gap of %d trades", 3)
    finally:
        logging.getLogger("tradelab").removeHandler(handler)
    assert "WARNING" in stream.getvalue() and "gap of 3 trades" in stream.getvalue()
    with pytest.raises(ConfigurationError, match="text, json"):
        configure_logging("INFO", "xml")  # type: ignore[arg-type]


def test_every_error_has_one_root() -> None:
    from tradelab import exceptions

    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), TradelabError)


# --- recordings -------------------------------------------------------------------------------


def test_synthetic_trades_are_contiguous_and_realistic() -> None:
    frame = recordings.synthetic_trades("BTCUSDT", 1_700_000_000_000, 50_000, first_agg_id=100)
    assert frame.schema == pl.Schema(TRADE_SCHEMA)
    ids = frame["agg_id"].to_numpy()
    assert ids[0] == 100 and (ids[1:] - ids[:-1] == 1).all()
    assert frame["time"].is_sorted() and frame["time"].min() == dt.datetime(
        2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC
    )
    span_s = (frame["time"].max() - frame["time"].min()).total_seconds()
    assert 50_000 / span_s == pytest.approx(24.0, rel=0.25)  # the requested average rate
    prices = frame["price"].to_numpy()
    assert (abs(prices * 100 - (prices * 100).round()) < 1e-6).all()  # on the 0.01 tick grid
    assert (frame["last_id"] >= frame["first_id"]).all()
    assert (frame["first_id"][1:].to_numpy() == frame["last_id"][:-1].to_numpy() + 1).all()
    again = recordings.synthetic_trades("BTCUSDT", 1_700_000_000_000, 50_000, first_agg_id=100)
    assert again.equals(frame)  # deterministic for a seed


def test_recordings_load(shared_data) -> None:
    btc = recordings.load("spot_btcusdt_20240808-09.aggTrade.tsv.gz")["BTCUSDT"]
    assert btc.height == 11_349 and btc["agg_id"].is_sorted()
    assert btc["agg_id"][0] == 3105630001 and btc["price"][0] == 61837.63
    vision = recordings.load("BTCUSDT-aggTrades-2026-01-01.first5000.csv")["BTCUSDT"]
    assert vision.height == 5000
    assert vision["time"][0] == dt.datetime(2026, 1, 1, 0, 0, 0, 39000, tzinfo=dt.UTC)  # µs -> ms
    futures = recordings.load("usdm_btcusdt_20230404-05.trades.txt.gz")["BTCUSDT"]
    assert futures.height == 12_935 and futures["price"].max() == 28722.5
    multi = recordings.load("multi_symbol_20210405.native_aggTrade.tsv.gz")
    assert sum(f.height for f in multi.values()) == 1240 and "ZILUSDT" in multi
