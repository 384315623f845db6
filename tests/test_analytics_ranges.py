"""Analytics over any range (issue 13): fixed ranges, session profiles, the developing value
area and naked POCs — each against a brute-force reference (hypothesis and hand cases) and on
the real recordings; time parsing and every bad input at the API."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tradelab
from tradelab.analytics import (
    developing_levels,
    naked_pocs,
    parse_session,
    session_profiles_from_trades,
    volume_profile,
)
from tradelab.analytics.sessions import migration, session_windows
from tradelab.exceptions import (
    InsufficientTradesError,
    InvalidParameterError,
    InvalidTradesError,
    InvalidWindowError,
)
from tradelab.recordings import load, synthetic_trades
from tradelab.schema import to_trade_frame
from tradelab.store import TradeStore
from tradelab.timerange import parse_duration, parse_time, resolve_window

DAY = 86_400_000
D0 = 1_723_075_200_000  # 2024-08-08 00:00 UTC
UTC = dt.UTC


def same_levels(a, b) -> None:
    assert (a.poc, a.vah, a.val, a.trade_count) == (b.poc, b.vah, b.val, b.trade_count)
    assert a.rows.equals(b.rows)
    assert a.total_volume == b.total_volume and a.buy_volume == b.buy_volume


def frame(times, prices, qtys, sells) -> pl.DataFrame:
    n = len(times)
    return to_trade_frame(
        pl.DataFrame(
            {
                "agg_id": list(range(1, n + 1)),
                "price": prices,
                "qty": qtys,
                "first_id": list(range(1, n + 1)),
                "last_id": list(range(1, n + 1)),
                "time": times,
                "buyer_is_maker": sells,
            }
        )
    )


@st.composite
def trade_frames(draw, max_span_ms=3 * DAY, min_qty=0):
    n = draw(st.integers(1, 120))
    base = draw(st.integers(D0 - DAY, D0 + DAY))
    times = sorted(draw(st.lists(st.integers(0, max_span_ms), min_size=n, max_size=n)))
    ticks = draw(st.lists(st.integers(99_000, 101_000), min_size=n, max_size=n))
    qtys = draw(st.lists(st.integers(min_qty, 5_000), min_size=n, max_size=n))
    if not any(qtys):
        qtys[0] = 1
    sells = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return frame(
        [base + t for t in times],
        [t / 100 for t in ticks],
        [q / 1000 for q in qtys],
        sells,
    )


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- time parsing and windows: one place ----------------------------------------------------


def test_every_time_format_means_the_same_moment() -> None:
    ms = D0 + 23 * 3_600_000 + 54 * 60_000
    aware = dt.datetime(2024, 8, 8, 23, 54, tzinfo=UTC)
    assert parse_time(aware) == (ms, False)
    assert parse_time(aware.replace(tzinfo=None)) == (ms, True)  # naive = UTC, said so
    assert parse_time("2024-08-08T23:54:00Z") == (ms, False)
    assert parse_time("2024-08-09T01:54+02:00") == (ms, False)
    assert parse_time("2024-08-08 23:54") == (ms, True)
    assert parse_time(str(ms)) == (ms, False)
    assert parse_time(np.int64(ms)) == (ms, False)
    assert parse_time(dt.date(2024, 8, 8)) == (D0, True)
    assert parse_duration("5m") == 300_000 and parse_duration(30) == 30_000
    assert parse_duration(dt.timedelta(hours=1)) == 3_600_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hours": 2, "start": D0}, "give either hours"),
        ({"start": D0 + 1, "end": D0}, "must be after start"),
        ({"start": D0, "end": D0 + 8 * DAY}, "at most 168 h"),
        ({"start": "soon"}, "is not a time"),
        ({"start": None, "hours": 0}, "outside the allowed window"),
        ({"start": -5}, "outside 1970"),
    ],
)
def test_bad_windows_are_one_clear_error(kwargs, message) -> None:
    with pytest.raises(InvalidWindowError, match=message) as err:
        resolve_window(now_ms=D0 + 10 * DAY, **kwargs)
    assert "\n" not in str(err.value)


def test_a_window_says_when_it_read_a_time_as_utc() -> None:
    w = resolve_window(start="2024-08-08", end="2024-08-09T00:00Z", now_ms=D0 + 10 * DAY)
    assert (w.start_ms, w.end_ms, w.is_range) == (D0, D0 + DAY, True)
    assert w.note == "start had no time zone: read as UTC"
    assert resolve_window(hours=2, now_ms=D0).note is None
    assert parse_duration("5m") == 300_000
    for bad in ("0s", "soon", -1, True):
        with pytest.raises(InvalidParameterError, match="is not a step"):
            parse_duration(bad)


# --- a fixed range over the store -------------------------------------------------------------


@pytest.fixture
def imported(tmp_path, shared_data):
    """The BTCUSDT and ETHUSDT recordings imported with TradeStore.append (not the CLI)."""
    store = TradeStore(tmp_path / "rec", retention_days=36500)
    frames = {}
    for name in (
        "spot_btcusdt_20240808-09.aggTrade.tsv.gz",
        "spot_ethusdt_20240808-09.aggTrade.tsv.gz",
    ):
        for sym, f in load(name).items():
            store.append(sym, f)
            frames[sym] = f
    yield store, frames
    store.close()


def test_a_range_over_the_recordings_equals_the_profile_of_the_same_trades(imported) -> None:
    store, frames = imported
    lo = dt.datetime(2024, 8, 8, 23, 58, tzinfo=UTC)
    hi = "2024-08-09T00:04:30Z"
    vp = tradelab.get_volume_profile("BTCUSDT", start=lo, end=hi, store=store)
    t = pl.col("time")
    direct = frames["BTCUSDT"].filter(
        (t >= lo) & (t < dt.datetime(2024, 8, 9, 0, 4, 30, tzinfo=UTC))
    )
    same_levels(vp, volume_profile(direct, tick_size=0.01, symbol="BTCUSDT", start=lo))
    assert vp.end == dt.datetime(2024, 8, 9, 0, 4, 30, tzinfo=UTC) and vp.window_note is None
    # the whole recording, zone-less strings: read as UTC and the answer says so
    whole = tradelab.get_volume_profile(
        "BTCUSDT", start="2024-08-08 23:50", end="2024-08-09 00:10", store=store
    )
    same_levels(whole, volume_profile(frames["BTCUSDT"], tick_size=0.01))
    assert whole.window_note == "start and end had no time zone: read as UTC"
    assert "read as UTC" in repr(whole)
    zones = tradelab.get_liquidity_vacuums("BTCUSDT", start=lo, end=hi, store=store)
    assert zones == tradelab.liquidity_vacuums(vp)
    got = tradelab.trades("BTCUSDT", start=lo, end=hi, store=store)
    assert got.equals(direct)


def test_a_range_without_trades_says_where_the_data_is(imported) -> None:
    store, _ = imported
    with pytest.raises(InsufficientTradesError) as err:
        tradelab.get_volume_profile("BTCUSDT", start="2024-08-01", end="2024-08-02", store=store)
    assert str(err.value) == (
        "BTCUSDT: 0 of the 1,000 trades needed from 2024-08-01 00:00 to 2024-08-02 00:00 UTC; "
        "BTCUSDT has trades from 2024-08-08 23:54 to 2024-08-09 00:05 UTC"
    )
    with pytest.raises(InsufficientTradesError, match="the store holds no SOLUSDT trades"):
        tradelab.session_profiles("SOLUSDT", start="2024-08-08", end="2024-08-09", store=store)
    # the last 24 h hold nothing: the message adds where the data is
    with pytest.raises(InsufficientTradesError, match=r"BTCUSDT has trades from 2024-08-08 23:54"):
        tradelab.get_volume_profile("BTCUSDT", 24, store=store)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"duration_hours": 2, "start": D0}, InvalidWindowError, "give either duration_hours"),
        ({"start": D0 + 5, "end": D0}, InvalidWindowError, "must be after start"),
        ({"start": D0, "end": D0 + 9 * DAY}, InvalidWindowError, "the store's retention"),
        ({"start": "2024-13-40"}, InvalidWindowError, "is not a time"),
    ],
)
def test_bad_ranges_at_the_api(store, kwargs, error, message) -> None:
    for fn in (tradelab.get_volume_profile, tradelab.get_liquidity_vacuums, tradelab.vacuum_report):
        with pytest.raises(error, match=message):
            fn("BTCUSDT", store=store, **kwargs)


# --- sessions ---------------------------------------------------------------------------------


def test_session_specs_and_presets() -> None:
    assert parse_session("utc-day").length_min == 1440
    assert parse_session("London") == parse_session("07:00-16:00").__class__("london", 420, 540)
    night = parse_session("22:00-06:00")
    assert (night.start_min, night.length_min, night.hours_text) == (1320, 480, "22:00-06:00 UTC")
    for bad in ("tokyo", "25:00-26:00", "8-16", 7, "08:00-24:30"):
        with pytest.raises(InvalidParameterError, match="session"):
            parse_session(bad)


def test_session_boundaries_are_exact_to_the_millisecond() -> None:
    # trades at the last and first millisecond of each day
    times = [D0 - 1, D0, D0 + DAY - 1, D0 + DAY, D0 + DAY + 1]
    df = frame(times, [100.0, 101.0, 102.0, 103.0, 104.0], [1.0] * 5, [False] * 5)
    sp = session_profiles_from_trades(df)
    assert [p.trade_count for p in sp] == [1, 2, 2]
    assert sp.summary["session"].to_list() == [
        dt.date(2024, 8, 7),
        dt.date(2024, 8, 8),
        dt.date(2024, 8, 9),
    ]
    assert [p.price_min for p in sp] == [100.0, 101.0, 103.0]
    assert sp.summary["end"][1] == dt.datetime(2024, 8, 9, tzinfo=UTC)
    # london 07:00-16:00: a trade at 16:00:00.000 is outside, 15:59:59.999 inside
    lon = [D0 + 7 * 3_600_000 - 1, D0 + 7 * 3_600_000, D0 + 16 * 3_600_000 - 1, D0 + 16 * 3_600_000]
    sp = session_profiles_from_trades(
        frame(lon, [1.0, 2.0, 3.0, 4.0], [1.0] * 4, [True] * 4), session="london"
    )
    assert len(sp) == 1 and sp[0].trade_count == 2 and sp[0].price_max == 3.0
    # overnight sessions are labelled by the day they start
    wins = session_windows(parse_session("22:00-06:00"), D0, D0 + DAY)
    assert [(d, s - D0, e - D0) for d, s, e in wins] == [
        (dt.date(2024, 8, 7), 0, 6 * 3_600_000),
        (dt.date(2024, 8, 8), 22 * 3_600_000, DAY),
    ]


@SETTINGS
@given(trade_frames(), st.sampled_from(["utc-day", "london", "22:00-06:00", "10:30-11:45"]))
def test_sessions_equal_a_brute_force_split(df, session) -> None:
    spec = parse_session(session)
    times = df["time"].dt.epoch("ms").to_list()
    expected = []
    for day in range(min(times) // DAY - 1, max(times) // DAY + 1):
        s = day * DAY + spec.start_min * 60_000
        e = s + spec.length_min * 60_000
        part = df.filter([s <= t < e for t in times])
        if part.height and part["qty"].sum() > 0:
            expected.append(volume_profile(part, row_size=0.5, tick_size=0.01))
    if not expected:
        with pytest.raises(InvalidTradesError, match="no session to profile"):
            session_profiles_from_trades(df, session=spec, row_size=0.5, tick_size=0.01)
        return
    sp = session_profiles_from_trades(df, session=spec, row_size=0.5, tick_size=0.01)
    assert len(sp) == len(expected)
    for got, want in zip(sp, expected, strict=True):
        same_levels(got, want)
    # migration against the previous session's value area, by its definition
    moves = sp.summary["va_migration"].to_list()
    assert moves[0] is None
    for i in range(1, len(sp)):
        prev, cur = sp[i - 1], sp[i]
        want = (
            "higher" if cur.val >= prev.vah else "lower" if cur.vah <= prev.val else "overlapping"
        )
        assert moves[i] == want == migration(prev.val, prev.vah, cur.val, cur.vah)
    if session == "utc-day":  # whole days cover every trade
        assert sp.summary["volume"].sum() == pytest.approx(volume_profile(df).total_volume)


def test_sessions_share_one_aligned_row_size() -> None:
    df = synthetic_trades("BTCUSDT", D0 - 3_600_000, 40_000, rate_per_s=0.25, seed=4)
    sp = session_profiles_from_trades(df, tick_size=0.01)
    sizes = {p.row_size for p in sp}
    assert len(sizes) == 1
    for p in sp:  # every row edge is a multiple of the shared row size
        lows = p.rows["price_low"].to_numpy() / sp.row_size
        assert np.allclose(lows, np.round(lows))
        assert p.row_count <= 150


# --- developing profile -----------------------------------------------------------------------


@SETTINGS
@given(trade_frames(max_span_ms=6 * 3_600_000), st.sampled_from(["30m", "1h", "7m", "13m"]))
def test_developing_levels_equal_the_profile_of_each_prefix(df, every) -> None:
    dev = developing_levels(df, every)
    whole = volume_profile(df)
    times = df["time"].dt.epoch("ms").to_numpy()
    for row in dev.iter_rows(named=True):
        end = int(row["time"].timestamp() * 1000)
        prefix = df.filter(times < end)
        assert row["trades"] == prefix.height
        if prefix["qty"].sum() == 0:
            assert row["poc"] is None
            continue
        want = volume_profile(prefix, row_size=whole.row_size, tick_size=whole.tick_size)
        assert (row["poc"], row["vah"], row["val"]) == (want.poc, want.vah, want.val)
        assert row["value_area_pct"] == pytest.approx(want.value_area_volume_pct)
    last = dev.row(-1, named=True)
    assert (last["poc"], last["vah"], last["val"]) == (whole.poc, whole.vah, whole.val)
    assert last["trades"] == df.height


def test_developing_steps_and_bounds() -> None:
    df = synthetic_trades("BTCUSDT", D0 + 60_000, 3_000, rate_per_s=1.0, seed=2)  # ~50 min
    dev = developing_levels(df, "5m", start=D0, end=D0 + 3_600_000)
    steps = [int(t.timestamp() * 1000) - D0 for t in dev["time"].to_list()]
    assert steps == [k * 300_000 for k in range(1, 13)]  # 00:05 ... 01:00, none before a trade
    assert dev["trades"].is_sorted() and dev["trades"][-1] == df.height
    for bad, match in (("0m", "not a step"), ("soon", "not a step")):
        with pytest.raises(InvalidParameterError, match=match):
            developing_levels(df, bad)
    with pytest.raises(InvalidParameterError, match="at most 100,000"):
        developing_levels(df, "1ms")
    with pytest.raises(InvalidParameterError, match="no trades between"):
        developing_levels(df, "5m", start=D0 - DAY, end=D0 - 1)
    with pytest.raises(InvalidTradesError, match="time"):
        developing_levels(df.drop("time"))
    with pytest.raises(InvalidParameterError, match="hours, store and data"):
        tradelab.developing_profile(df, "5m", hours=1)


# --- naked POCs -------------------------------------------------------------------------------


def summary(*sessions) -> pl.DataFrame:
    """(poc, low, high, close) per session, one day apart."""
    return pl.DataFrame(
        {
            "session": [dt.date(2024, 8, 1 + i) for i in range(len(sessions))],
            "start": [D0 + i * DAY for i in range(len(sessions))],
            "end": [D0 + (i + 1) * DAY for i in range(len(sessions))],
            "poc": [s[0] for s in sessions],
            "low": [s[1] for s in sessions],
            "high": [s[2] for s in sessions],
            "close": [s[3] for s in sessions],
        }
    )


def test_naked_poc_hand_cases() -> None:
    # day 1 POC 100, later trading stays in 105..120 and day 1 closed at 104: naked
    # day 2 POC 110 inside day 3's range: revisited. day 3 is last: still developing.
    out = naked_pocs(summary((100, 95, 106, 104), (110, 105, 115, 112), (116, 108, 120, 118)))
    assert out["poc"].to_list() == [100]
    row = out.row(0, named=True)
    assert row["distance"] == 100 - 118 and row["side"] == "below"
    assert row["age_hours"] == 48.0 and row["age"] == dt.timedelta(days=2)
    # the path from the close counts: closed at 99 below a POC of 100, next day above it
    assert naked_pocs(summary((100, 95, 106, 99), (103, 101, 104, 103))).height == 0
    # touching the POC exactly is revisiting it
    assert naked_pocs(summary((100, 95, 106, 104), (102, 100, 103, 101))).height == 0
    # a POC above the price that nobody went back to
    out = naked_pocs(summary((120, 110, 125, 111), (105, 100, 110, 101)), last_price=100.0)
    assert out.row(0, named=True)["side"] == "above" and out["distance_pct"][0] == 20.0
    # trades after the last session count as later trades
    two = summary((120, 110, 125, 111), (105, 100, 110, 101))
    out = naked_pocs(two, after=frame([D0 + 5 * DAY], [103.0], [1.0], [False]))
    assert out["poc"].to_list() == [120, 105]  # the last session now has a later trade
    assert out["age_hours"].to_list() == [4 * 24.0, 3 * 24.0]
    assert out["distance"].to_list() == [17.0, 2.0]
    out = naked_pocs(two, after=frame([D0 + 5 * DAY], [130.0], [1.0], [False]))
    assert out.height == 0  # 101 -> 130 crosses 105, and 120
    assert naked_pocs(summary((100, 95, 106, 104))).height == 0  # nothing later
    with pytest.raises(InvalidParameterError, match="SessionProfiles"):
        naked_pocs([1, 2, 3])


@SETTINGS
@given(trade_frames(max_span_ms=4 * DAY, min_qty=1))
def test_naked_pocs_against_the_price_path(df) -> None:
    sp = session_profiles_from_trades(df, tick_size=0.01)
    got = set(naked_pocs(sp)["session"].to_list())
    t = df["time"].dt.epoch("ms").to_list()
    p = df["price"].to_list()
    want = set()
    for r in sp.summary.iter_rows(named=True):
        end = int(r["end"].timestamp() * 1000)
        path = [r["close"]] + [price for time, price in zip(t, p, strict=True) if time >= end]
        if len(path) == 1:
            continue
        crossed = any(min(a, b) <= r["poc"] <= max(a, b) for a, b in itertools.pairwise(path))
        if not crossed:
            want.add(r["session"])
    assert got == want


# --- on the recordings ------------------------------------------------------------------------


def test_sessions_developing_and_naked_on_the_recordings(imported) -> None:
    store, frames = imported
    btc = frames["BTCUSDT"]
    sp = tradelab.session_profiles("BTCUSDT", start="2024-08-08", end="2024-08-10", store=store)
    assert [p.trade_count for p in sp] == [
        btc.filter(pl.col("time") < dt.datetime(2024, 8, 9, tzinfo=UTC)).height,
        btc.filter(pl.col("time") >= dt.datetime(2024, 8, 9, tzinfo=UTC)).height,
    ]
    midnight = dt.datetime(2024, 8, 9, tzinfo=UTC)
    for part, p in zip(
        (btc.filter(pl.col("time") < midnight), btc.filter(pl.col("time") >= midnight)),
        sp,
        strict=True,
    ):
        same_levels(p, volume_profile(part, row_size=sp.row_size, tick_size=0.01))
    assert sp.window_note == "start and end had no time zone: read as UTC"
    dev = tradelab.developing_profile(
        "BTCUSDT", "1m", start="2024-08-08T23:54Z", end="2024-08-09T00:06Z", store=store
    )
    whole = tradelab.get_volume_profile(
        "BTCUSDT", start="2024-08-08T23:54Z", end="2024-08-09T00:06Z", store=store
    )
    last = dev.row(-1, named=True)
    assert (last["poc"], last["vah"], last["val"]) == (whole.poc, whole.vah, whole.val)
    assert len(dev) == 12 and dev["trades"][-1] == btc.height
    assert tradelab.developing_profile(btc, "1m").equals(
        developing_levels(btc, "1m", tick_size=None)
    )
    # the 2024-08-08 POC is naked iff the path after midnight never reached it
    naked = sp.naked_pocs()
    after = btc.filter(pl.col("time") >= midnight)["price"]
    first = sp.summary.row(0, named=True)
    reached = min(first["close"], after.min()) <= first["poc"] <= max(first["close"], after.max())
    assert naked.height == (0 if reached else 1)


def test_session_profiles_bad_input(store) -> None:
    with pytest.raises(InvalidWindowError, match="give either days"):
        tradelab.session_profiles("BTCUSDT", days=2, start=D0, store=store)
    for days in (0, 8, 1.5, True):
        with pytest.raises(InvalidWindowError, match="whole number of UTC days"):
            tradelab.session_profiles("BTCUSDT", days=days, store=store)
    with pytest.raises(InvalidParameterError, match="not a session"):
        tradelab.session_profiles("BTCUSDT", session="tokyo", store=store)
    with pytest.raises(InvalidParameterError, match="value_area"):
        tradelab.session_profiles("BTCUSDT", value_area=2, store=store)
    with pytest.raises(InvalidParameterError, match="frame_or_symbol"):
        tradelab.developing_profile(42)  # type: ignore[arg-type]
