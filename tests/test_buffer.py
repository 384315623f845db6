"""tradelab.trades (the TradeBuffer) and open_store's process-wide cache."""

from __future__ import annotations

import datetime as dt
import time

import polars as pl
import pytest

import tradelab
from tradelab.exceptions import (
    InvalidParameterError,
    InvalidSymbolError,
    InvalidWindowError,
    NoDataError,
)
from tradelab.recordings import synthetic_trades
from tradelab.store import TradeStore, open_store, trades

T0 = 1_700_002_800_000


def test_trades_gives_the_last_hours_before_end(tmp_path):
    store = open_store(tmp_path / "db", write=True)
    df = synthetic_trades("BTCUSDT", T0, 300_000, rate_per_s=40)  # ~2 h
    store.append("BTCUSDT", df)
    end = T0 + 2 * 3_600_000
    got = trades("BTCUSDT", hours=1, end=end, store=store)
    ms = pl.col("time").dt.epoch("ms")
    assert got.equals(df.filter((ms >= end - 3_600_000) & (ms < end)))
    # a datetime end, fractional hours, and the package-level name are the same function
    end_dt = dt.datetime.fromtimestamp(end / 1000, dt.UTC)
    assert tradelab.trades("btcusdt", 1.5, end=end_dt, store=store).equals(
        df.filter((ms >= end - 5_400_000) & (ms < end))
    )


def test_trades_defaults_to_now_and_the_configured_store(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADELAB_DATA", str(tmp_path / "env-db"))
    store = open_store(write=True)
    assert store.path == (tmp_path / "env-db").absolute()
    now = int(time.time() * 1000)
    df = synthetic_trades("ETHUSDT", now - 1_800_000, 1_000, rate_per_s=1)
    store.append("ETHUSDT", df)
    assert trades("ETHUSDT").equals(df.filter(pl.col("time").dt.epoch("ms") <= now))


def test_open_store_reuses_this_processs_writer(tmp_path):
    w = open_store(tmp_path / "db", write=True)
    assert open_store(tmp_path / "db") is w
    assert open_store(str(tmp_path / "db"), write=True) is w
    w.close()
    # a closed writer is replaced, not handed out
    w2 = open_store(tmp_path / "db", write=True)
    assert w2 is not w and not w2.closed


def test_open_store_gives_a_shared_reader_when_this_process_does_not_write(tmp_path):
    with TradeStore(tmp_path / "db") as w:
        w.append("BTCUSDT", synthetic_trades("BTCUSDT", T0, 100))
    r = open_store(tmp_path / "db")
    assert r.readonly
    assert open_store(tmp_path / "db") is r
    assert r.last_agg_id("BTCUSDT") == 100
    # asking to write afterwards opens a writer, which open_store hands out from then on;
    # the reader handed out before keeps working and follows the writer
    w = open_store(tmp_path / "db", write=True)
    assert not w.readonly and open_store(tmp_path / "db") is w
    w.append("BTCUSDT", synthetic_trades("BTCUSDT", T0, 150))
    assert not r.closed and r.last_agg_id("BTCUSDT") == 150


def test_no_store_yet_says_how_to_start_collecting(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADELAB_DATA", str(tmp_path / "nothing"))
    with pytest.raises(NoDataError, match="tradelab start") as info:
        trades("BTCUSDT")
    assert "tradelab collect" in str(info.value)
    assert not (tmp_path / "nothing").exists()  # a reader creates nothing
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoDataError, match="start collection"):
        open_store(tmp_path / "empty")


@pytest.mark.parametrize("hours", [0, 0.5, 169, -1, "24", True, float("nan")])
def test_hours_outside_1_to_168_are_refused(tmp_path, hours):
    store = open_store(tmp_path / "db", write=True)
    with pytest.raises(InvalidWindowError, match="hours"):
        trades("BTCUSDT", hours, store=store)


def test_bad_symbol_store_and_end(tmp_path):
    store = open_store(tmp_path / "db", write=True)
    with pytest.raises(InvalidSymbolError):
        trades("BTC/USDT", store=store)
    with pytest.raises(InvalidParameterError, match="TradeStore"):
        trades("BTCUSDT", store="path")  # type: ignore[arg-type]
    with pytest.raises(InvalidWindowError, match="is not a time"):
        trades("BTCUSDT", end="yesterday", store=store)
    with pytest.raises(InvalidParameterError, match="write"):
        open_store(tmp_path / "db", write="yes")  # type: ignore[arg-type]


def test_trades_over_a_range_in_every_time_format(tmp_path):
    store = open_store(tmp_path / "db", write=True)
    df = synthetic_trades("BTCUSDT", T0, 20_000, rate_per_s=10)  # ~33 min
    store.append("BTCUSDT", df)
    lo, hi = T0 + 300_000, T0 + 900_000
    ms = pl.col("time").dt.epoch("ms")
    want = df.filter((ms >= lo) & (ms < hi))
    lo_dt = dt.datetime.fromtimestamp(lo / 1000, dt.UTC)
    hi_dt = dt.datetime.fromtimestamp(hi / 1000, dt.UTC)
    forms = [
        (lo, hi),
        (lo_dt, hi_dt),
        (lo_dt.replace(tzinfo=None), hi_dt.replace(tzinfo=None)),  # naive = UTC
        (lo_dt.isoformat(), hi_dt.isoformat()),
        (lo_dt.strftime("%Y-%m-%dT%H:%M:%S.%f"), hi_dt.strftime("%Y-%m-%d %H:%M:%S.%f")),
        (lo_dt.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat(), str(hi)),
    ]
    for start, end in forms:
        assert trades("BTCUSDT", start=start, end=end, store=store).equals(want), (start, end)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hours": 2, "start": T0}, "give either hours"),
        ({"start": T0 + 10, "end": T0}, "must be after start"),
        ({"start": T0, "end": T0}, "must be after start"),
        ({"start": T0, "end": T0 + 8 * 86_400_000}, "at most 168 h"),
        ({"start": "next tuesday"}, "is not a time"),
        ({"start": True}, "must be a timezone-aware datetime"),
    ],
)
def test_bad_ranges_are_refused_with_one_line(tmp_path, kwargs, message):
    store = open_store(tmp_path / "db", write=True)
    with pytest.raises(InvalidWindowError, match=message) as err:
        trades("BTCUSDT", store=store, **kwargs)
    assert "\n" not in str(err.value)
