"""Volume profile and vacuums against an independent brute-force computation, hand-computed
cases for both value-area methods and the tie rules, and every bad input."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from decimal import Decimal

import numpy as np
import polars as pl
import pytest

from tradelab import recordings
from tradelab.analytics import (
    Vacuum,
    VolumeProfile,
    auto_row_size,
    infer_tick_size,
    liquidity_vacuums,
    vacuums_frame,
    volume_profile,
)
from tradelab.analytics.profile import MAX_ROWS
from tradelab.analytics.rows import AUTO_MAX_ROWS
from tradelab.exceptions import InvalidParameterError, InvalidTradesError

# --- an independent brute force, written plainly ---


def brute_force(prices, qtys, makers, row_size, value_area=0.7, method="cbot"):
    """Everything in exact decimals, one trade at a time, no numpy."""
    size = Decimal(repr(row_size))
    per_row = {}
    for p, q, m in zip(prices, qtys, makers, strict=True):
        price = Decimal(repr(float(p)))
        qty = Decimal(repr(float(q)))
        row = int(price // size)  # prices are > 0, so // is floor
        vol, sell, count = per_row.get(row, (Decimal(0), Decimal(0), 0))
        per_row[row] = (vol + qty, sell + (qty if m else Decimal(0)), count + 1)
    first, last = min(per_row), max(per_row)
    rows = []
    for r in range(first, last + 1):
        vol, sell, count = per_row.get(r, (Decimal(0), Decimal(0), 0))
        rows.append(
            {
                "low": r * size,
                "high": (r + 1) * size,
                "volume": vol,
                "sell": sell,
                "buy": vol - sell,
                "trades": count,
            }
        )
    total = sum(r["volume"] for r in rows)
    pmin = min(Decimal(repr(float(p))) for p in prices)
    pmax = max(Decimal(repr(float(p))) for p in prices)
    middle = (pmin + pmax) / 2
    best = max(r["volume"] for r in rows)
    poc = None
    for i, r in enumerate(rows):  # ascending, so the first of equal distances is the lower
        if r["volume"] != best:
            continue
        dist = abs((r["low"] + r["high"]) / 2 - middle)
        if poc is None or dist < poc[1]:
            poc = (i, dist)
    poc = poc[0]
    target = Decimal(repr(value_area)) * total
    lo = hi = poc
    included = rows[poc]["volume"]
    step = 2 if method == "cbot" else 1
    while included < target:
        up = [rows[j]["volume"] for j in range(hi + 1, hi + 1 + step) if j < len(rows)]
        down = [rows[j]["volume"] for j in range(lo - 1, lo - 1 - step, -1) if j >= 0]
        if up and (not down or sum(up) >= sum(down)):
            hi += len(up)
            included += sum(up)
        elif down:
            lo -= len(down)
            included += sum(down)
    return {"rows": rows, "total": total, "poc": poc, "lo": lo, "hi": hi, "included": included}


def assert_matches(vp: VolumeProfile, bf: dict) -> None:
    rows = vp.rows.to_dicts()
    assert len(rows) == len(bf["rows"])
    for got, want in zip(rows, bf["rows"], strict=True):
        assert got["price_low"] == float(want["low"])
        assert got["price_high"] == float(want["high"])
        assert got["volume"] == float(want["volume"])  # exact, not approximately
        assert got["sell_volume"] == float(want["sell"])
        assert got["buy_volume"] == float(want["buy"])
        assert got["delta"] == float(want["buy"] - want["sell"])
        assert got["trades"] == want["trades"]
    assert vp.total_volume == float(bf["total"])
    assert vp.poc_index == bf["poc"]
    assert (vp.va_low_index, vp.va_high_index) == (bf["lo"], bf["hi"])
    assert vp.val == float(bf["rows"][bf["lo"]]["low"])
    assert vp.vah == float(bf["rows"][bf["hi"]]["high"])
    poc_row = bf["rows"][bf["poc"]]
    assert vp.poc == float((poc_row["low"] + poc_row["high"]) / 2)
    assert vp.value_area_volume_pct == pytest.approx(float(bf["included"] / bf["total"] * 100))


def frame(prices, qtys, makers=None, times=None) -> pl.DataFrame:
    n = len(prices)
    makers = [False] * n if makers is None else makers
    times = list(range(1_700_000_000_000, 1_700_000_000_000 + n)) if times is None else times
    return pl.DataFrame(
        {
            "price": [float(p) for p in prices],
            "qty": [float(q) for q in qtys],
            "buyer_is_maker": makers,
            "time": pl.Series(times, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC")),
        }
    )


def random_trades(seed: int, n: int, tick: float = 0.01, decimals: int = 2):
    rng = random.Random(seed)
    base = rng.randint(1_000, 6_000_000)
    span = rng.choice([5, 50, 500, 5_000, 50_000])
    prices = [round((base + rng.randint(0, span)) * tick, decimals) for _ in range(n)]
    # clustered around a few levels too, so POCs and ties are realistic
    levels = [rng.choice(prices) for _ in range(3)]
    prices = [rng.choice(levels) if rng.random() < 0.3 else p for p in prices]
    qtys = [
        rng.randint(1, 10 ** rng.choice([3, 5, 8])) / 10 ** rng.choice([3, 5, 8]) for _ in range(n)
    ]
    makers = [rng.random() < 0.5 for _ in range(n)]
    return prices, qtys, makers


# --- brute force on random data ---


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("method", ["cbot", "single"])
def test_matches_brute_force_on_random_data(seed: int, method: str) -> None:
    prices, qtys, makers = random_trades(seed, 1_500)
    rng = random.Random(seed + 100)
    row_size = rng.choice([0.01, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0, 50.0])
    va = rng.choice([0.7, 0.5, 0.68, 0.9, 1.0])
    vp = volume_profile(
        frame(prices, qtys, makers), row_size=row_size, value_area=va, method=method, tick_size=0.01
    )
    assert_matches(vp, brute_force(prices, qtys, makers, row_size, va, method))


@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_with_automatic_row_size(seed: int) -> None:
    prices, qtys, makers = random_trades(seed, 800)
    vp = volume_profile(frame(prices, qtys, makers), tick_size=0.01)
    assert_matches(vp, brute_force(prices, qtys, makers, vp.row_size))


# --- brute force on the real recordings ---


def _recording(name: str) -> dict[str, pl.DataFrame]:
    if recordings.shared_data_dir() is None:
        pytest.skip("the shared recordings (../shared/data/binance) are absent")
    return recordings.load(name)


@pytest.mark.parametrize("name", recordings.RECORDINGS)
def test_matches_brute_force_on_recordings(name: str) -> None:
    for symbol, df in _recording(name).items():
        p, q, m = df["price"].to_list(), df["qty"].to_list(), df["buyer_is_maker"].to_list()
        vp = volume_profile(df, symbol=symbol)
        assert vp.trade_count == df.height
        assert_matches(vp, brute_force(p, q, m, vp.row_size))
        assert vp.start == df["time"].min() and vp.end == df["time"].max()


def test_vision_csv_microsecond_export() -> None:
    df = _recording("BTCUSDT-aggTrades-2026-01-01.first5000.csv")["BTCUSDT"]
    vp = volume_profile(df, symbol="BTCUSDT", tick_size=0.01, method="single")
    assert vp.trade_count == 5_000
    # µs timestamps were converted: the window is the 12 minutes the README gives, not year 58k.
    assert vp.start == dt.datetime(2026, 1, 1, 0, 0, 0, 39_000, tzinfo=dt.UTC)
    assert vp.end == dt.datetime(2026, 1, 1, 0, 12, 19, 347_000, tzinfo=dt.UTC)
    bf = brute_force(
        df["price"].to_list(),
        df["qty"].to_list(),
        df["buyer_is_maker"].to_list(),
        vp.row_size,
        method="single",
    )
    assert_matches(vp, bf)
    assert 60 <= vp.row_count <= AUTO_MAX_ROWS


def test_futures_outlier_print_lands_in_the_top_row() -> None:
    df = _recording("usdm_btcusdt_20230404-05.trades.txt.gz")["BTCUSDT"]
    vp = volume_profile(df, symbol="BTCUSDT", tick_size=0.1, row_size=1.0)
    assert vp.price_max == 28722.5
    top = vp.rows.row(-1, named=True)
    assert top["price_low"] <= 28722.5 < top["price_high"]
    assert top["trades"] >= 1 and top["volume"] > 0
    # Between the market (~28140) and the outlier the rows are empty, and the outlier's own row
    # is thin: one wide vacuum up to the top edge.
    vac = liquidity_vacuums(vp)
    widest = max(vac, key=lambda v: v.rows)
    assert widest.price_low < 28300 and widest.price_high == 28723.0 == top["price_high"]
    assert widest.rows > 400 and widest.impact == "fast"
    # The value area stays where the market traded.
    assert 28000 < vp.val < vp.poc < vp.vah < 28300
    bf = brute_force(
        df["price"].to_list(), df["qty"].to_list(), df["buyer_is_maker"].to_list(), 1.0
    )
    assert_matches(vp, bf)


# --- hand-computed cases ---


def rows_frame(volumes, row_size=1.0, base=100.0):
    """One trade per row at the row's low price with the given volume (0 -> no trade)."""
    prices, qtys = [], []
    for i, v in enumerate(volumes):
        if v:
            prices.append(base + i * row_size)
            qtys.append(v)
    return frame(prices, qtys)


def test_cbot_takes_the_larger_pair() -> None:
    # rows:      0  1   2   3(POC) 4   5   6      total 100, target 70
    vols = [4, 6, 20, 30, 12, 12, 16]
    vp = volume_profile(rows_frame(vols), row_size=1.0, method="cbot")
    # 30 -> down pair (20+6=26 > 12+12=24) = 56 -> up pair (24 > 4) = 80 >= 70: rows 1..5
    assert vp.poc == 103.5
    assert (vp.va_low_index, vp.va_high_index) == (1, 5)
    assert (vp.val, vp.vah) == (101.0, 106.0)
    assert vp.value_area_volume_pct == 80.0


def test_single_takes_the_larger_row() -> None:
    vols = [4, 6, 20, 30, 12, 12, 16]
    vp = volume_profile(rows_frame(vols), row_size=1.0, method="single")
    # 30 -> down 20 (50) -> up 12 vs 6 (62) -> up 12 vs 6 (74 >= 70): rows 2..5
    assert (vp.va_low_index, vp.va_high_index) == (2, 5)
    assert (vp.val, vp.vah) == (102.0, 106.0)
    assert vp.value_area_volume_pct == 74.0


def test_cbot_equal_pairs_go_up() -> None:
    vols = [10, 10, 40, 15, 5, 20]
    vp = volume_profile(rows_frame(vols), row_size=1.0, method="cbot")
    # 40 -> up (15+5) == down (10+10) -> up: 60 -> up (20) == down (20) -> up: 80
    assert (vp.va_low_index, vp.va_high_index) == (2, 5)
    assert vp.value_area_volume_pct == 80.0


def test_single_equal_rows_go_up() -> None:
    vols = [5, 15, 40, 15, 25]
    vp = volume_profile(rows_frame(vols), row_size=1.0, method="single")
    # 40 -> 15 == 15 -> up (55) -> 25 > 15 -> up (80)
    assert (vp.va_low_index, vp.va_high_index) == (2, 4)


@pytest.mark.parametrize("method", ["cbot", "single"])
def test_exhausted_side_takes_from_the_other_and_stops_exactly_at_target(method: str) -> None:
    vols = [50, 10, 10, 10, 10, 10]
    vp = volume_profile(rows_frame(vols), row_size=1.0, method=method)
    # Nothing below the POC: only upward; 50 + 10 + 10 = 70 reaches 70% exactly -> stop.
    assert (vp.va_low_index, vp.va_high_index) == (0, 2)
    assert vp.value_area_volume_pct == 70.0
    assert (vp.val, vp.vah) == (100.0, 103.0)


def test_cbot_pair_at_the_edge_is_one_row() -> None:
    # POC at row 1: below it only one row is left.
    vols = [30, 40, 5, 5, 20]
    vp = volume_profile(rows_frame(vols), row_size=1.0, method="cbot")
    # 40 -> down (30) vs up (5+5=10) -> down: 70 >= 70 stop
    assert (vp.va_low_index, vp.va_high_index) == (0, 1)


def test_zero_rows_are_rows_and_count_in_pairs() -> None:
    vols = [20, 0, 0, 45, 0, 35]
    vp = volume_profile(rows_frame(vols), row_size=1.0, method="cbot")
    assert vp.rows["volume"].to_list() == [20.0, 0.0, 0.0, 45.0, 0.0, 35.0]
    assert vp.rows["trades"].to_list() == [1, 0, 0, 1, 0, 1]
    # 45 -> up (0+35) vs down (0+0) -> up: 80
    assert (vp.va_low_index, vp.va_high_index) == (3, 5)


def test_poc_tie_goes_to_the_row_nearest_the_middle() -> None:
    df = frame([100.0, 101.5, 102.0, 103.0, 104.0], [30, 5, 30, 5, 5])
    vp = volume_profile(df, row_size=1.0)
    # rows 0 and 2 both hold 30; the range's middle is 102.0: row 2 (middle 102.5) is nearer.
    assert vp.poc_index == 2 and vp.poc == 102.5


def test_poc_tie_at_equal_distance_goes_to_the_lower_row() -> None:
    df = frame([100.0, 101.3, 102.0], [10, 10, 1])
    vp = volume_profile(df, row_size=1.0)
    # middle 101.0; row 0 (100.5) and row 1 (101.5) are both 0.5 away: the lower wins.
    assert vp.poc_index == 0 and vp.poc == 100.5


def test_poc_tie_among_three() -> None:
    df = frame([10.0, 11.0, 12.0, 13.0, 14.9], [7, 7, 1, 7, 1])
    vp = volume_profile(df, row_size=1.0)
    # middle 12.45: rows 0 (10.5), 1 (11.5), 3 (13.5) tie on volume; row 1 is 0.95, row 3 1.05
    assert vp.poc_index == 1


def test_buyer_is_maker_is_sell_volume() -> None:
    df = frame([10.0, 10.0, 10.5], [1.5, 0.25, 2.0], makers=[True, False, False])
    vp = volume_profile(df, row_size=1.0)
    row = vp.rows.row(0, named=True)
    assert row["sell_volume"] == 1.5 and row["buy_volume"] == 2.25
    assert row["delta"] == 0.75 and row["volume"] == 3.75 and row["trades"] == 3
    assert vp.buy_volume == 2.25 and vp.sell_volume == 1.5 and vp.delta == 0.75


def test_prices_on_edges_land_in_the_row_they_start() -> None:
    # 0.3 / 0.1 is 2.9999999999999996 in binary floating point; the row is still [0.3, 0.4).
    prices = [0.1, 0.2, 0.3, 0.7, 0.69999999]
    vp = volume_profile(frame(prices, [1, 2, 3, 4, 5]), row_size=0.1)
    assert vp.rows["price_low"].to_list() == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert vp.rows["volume"].to_list() == [1.0, 2.0, 3.0, 0.0, 0.0, 5.0, 4.0]
    # The maximum price is included (its own row), and big prices behave the same.
    big = [60000.01, 60000.02, 60000.03, 60000.04]
    vp = volume_profile(frame(big, [1, 1, 1, 1]), row_size=0.01, tick_size=0.01)
    assert vp.rows["trades"].to_list() == [1, 1, 1, 1]
    assert vp.rows["price_low"].to_list() == big


def test_rows_are_aligned_to_multiples_of_the_row_size() -> None:
    a = volume_profile(frame([101.3, 117.9], [1, 1]), row_size=2.5)
    b = volume_profile(frame([96.1, 113.0], [1, 1]), row_size=2.5)
    assert a.rows["price_low"][0] == 100.0 and b.rows["price_low"][0] == 95.0
    assert set(a.rows["price_low"]) <= set(b.rows["price_low"]) | {115.0, 117.5}
    assert all(x / 2.5 == round(x / 2.5) for x in a.rows["price_low"])


def test_volumes_are_exact_decimal_sums() -> None:
    qtys = [0.1, 0.2] * 500 + [0.00000001] * 3
    vp = volume_profile(frame([50.0] * len(qtys), qtys), row_size=1.0)
    assert vp.total_volume == 150.00000003  # float sum would give 150.00000002999...
    assert vp.rows["volume"][0] == 150.00000003


# --- edge cases with well-defined answers ---


def test_one_trade() -> None:
    vp = volume_profile(frame([61234.56], [0.5]), tick_size=0.01)
    assert vp.row_count == 1 and vp.trade_count == 1
    assert vp.row_size == 0.01 and vp.poc == 61234.565
    assert (vp.val, vp.vah) == (61234.56, 61234.57)
    assert vp.value_area_volume_pct == 100.0


def test_all_trades_at_one_price() -> None:
    vp = volume_profile(frame([2500.0] * 50, [0.1] * 50, makers=[True, False] * 25), row_size=5.0)
    assert vp.row_count == 1 and vp.rows["trades"][0] == 50
    assert vp.poc == 2502.5 and (vp.val, vp.vah) == (2500.0, 2505.0)
    assert vp.buy_volume == vp.sell_volume == 2.5


def test_value_area_one_covers_everything() -> None:
    prices, qtys, makers = random_trades(3, 300)
    vp = volume_profile(frame(prices, qtys, makers), value_area=1.0, tick_size=0.01)
    assert (vp.va_low_index, vp.va_high_index) == (0, vp.row_count - 1)
    assert vp.value_area_volume_pct == pytest.approx(100.0)


def test_zero_quantity_trades_count_but_add_no_volume() -> None:
    vp = volume_profile(frame([10.0, 11.0, 12.0], [1.0, 0.0, 2.0]), row_size=1.0)
    assert vp.rows["trades"].to_list() == [1, 1, 1]
    assert vp.rows["volume"].to_list() == [1.0, 0.0, 2.0]


def test_window_given_overrides_trade_times_and_frame_without_time() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    df = frame([1.0, 2.0], [1, 1]).drop("time")
    vp = volume_profile(df, row_size=1.0)
    assert vp.start is None and vp.end is None and "window unknown" in repr(vp)
    vp = volume_profile(
        df, row_size=1.0, start=start, end=start + dt.timedelta(hours=1), symbol="ETHUSDT"
    )
    assert vp.start == start and vp.end == start + dt.timedelta(hours=1)
    assert vp.to_dict(rows=False)["start"] == "2026-01-01T00:00:00+00:00"


# --- automatic and counted row sizes ---


def test_auto_row_size_is_nice_and_readable() -> None:
    # 10.00 .. 40.00 with tick 0.01: 20 ticks gives 151 rows, 25 ticks (0.25) gives 121.
    assert auto_row_size(10.0, 40.0, 0.01) == 0.25
    # With tick 1, 2.5 ticks is not a whole number of ticks: 2 -> 151 rows, then 5.
    assert auto_row_size(100.0, 400.0, 1.0) == 5.0
    # A narrow range never goes finer than one tick.
    assert auto_row_size(100.0, 100.05, 0.01) == 0.01
    rng = random.Random(7)
    nice = {1, 2, 5}
    for _ in range(200):
        tick = rng.choice([0.01, 0.1, 1.0, 0.00001, 0.5])
        lo = rng.uniform(1, 1e5)
        hi = lo + rng.uniform(200, 1e5) * tick
        size = auto_row_size(lo, hi, tick)
        ticks = round(size / tick)
        assert abs(size / tick - ticks) < 1e-6, (size, tick)
        mantissa = ticks / 10 ** math.floor(math.log10(ticks))
        assert mantissa in nice or mantissa == 2.5
        n = volume_profile(frame([lo, hi], [1, 1]), row_size=size).row_count
        assert 60 <= n <= AUTO_MAX_ROWS, (lo, hi, tick, size, n)


@pytest.mark.parametrize("wanted", [1, 2, 7, 24, 100])
@pytest.mark.parametrize("seed", [11, 12])
def test_rows_gives_at_most_that_many_rows(wanted: int, seed: int) -> None:
    prices, qtys, makers = random_trades(seed, 500)
    vp = volume_profile(frame(prices, qtys, makers), rows=wanted, tick_size=0.01)
    assert vp.row_count <= wanted or (wanted == 1 and vp.row_count == 2)  # documented
    assert abs(vp.row_size / 0.01 - round(vp.row_size / 0.01)) < 1e-9
    # the smallest such whole number of ticks (searched exactly up to 1,000 ticks, then in
    # steps of 0.1%), never more than twice the unaligned size
    ticks = round(vp.row_size / 0.01)
    span = (max(prices) - min(prices)) / 0.01
    assert ticks <= 2 * max(1, math.ceil(span / wanted))
    if 1 < ticks <= 1000:
        smaller = volume_profile(
            frame(prices, qtys, makers), row_size=(ticks - 1) * 0.01, tick_size=0.01
        )
        assert smaller.row_count > wanted


def test_infer_tick_size() -> None:
    assert infer_tick_size(np.array([61234.56, 61234.5, 61234.0])) == 0.01
    assert infer_tick_size(np.array([28140.1, 28722.5])) == 0.1
    assert infer_tick_size(np.array([0.02345, 0.0234])) == 0.00001
    assert infer_tick_size(np.array([100.0, 200.0])) == 1.0


# --- bad input ---


GOOD = frame([100.0, 101.0], [1.0, 2.0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"row_size": 0}, "row_size=0 is not allowed"),
        ({"row_size": -1.0}, "row_size=-1.0 is not allowed"),
        ({"row_size": float("nan")}, "row_size=nan"),
        ({"row_size": "1"}, "row_size must be a number"),
        ({"rows": 0}, "rows=0 is not allowed"),
        ({"rows": -3}, "rows=-3"),
        ({"rows": 2.5}, "whole number"),
        ({"rows": 10, "row_size": 1.0}, "not both"),
        ({"value_area": 0}, "0 < value_area <= 1"),
        ({"value_area": 1.2}, "0 < value_area <= 1"),
        ({"value_area": -0.7}, "0 < value_area <= 1"),
        ({"value_area": 70}, "e.g. 0.70 for 70%"),
        ({"value_area": float("nan")}, "value_area=nan"),
        ({"method": "tpo"}, "allowed: 'cbot'"),
        ({"tick_size": 0}, "tick_size=0"),
        ({"row_size": 0.015, "tick_size": 0.01}, "not a whole number of ticks.*0.01 or 0.02"),
        ({"row_size": 1e-6}, "would need 1,000,001 rows.*at most 1,000,000"),
    ],
)
def test_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        volume_profile(GOOD, **kwargs)


def test_max_rows_is_allowed_exactly() -> None:
    vp = volume_profile(frame([1.0, 1.0 + (MAX_ROWS - 1) * 1e-6], [1, 1]), row_size=1e-6)
    assert vp.row_count == MAX_ROWS


@pytest.mark.parametrize(
    ("trades", "match"),
    [
        (GOOD.head(0), "no trades"),
        (GOOD.drop("qty"), "lacks column.*qty"),
        ([{"price": 1.0}], "must be a Polars DataFrame"),
        (GOOD.with_columns(pl.lit("x").alias("price")), "column price has type String"),
        (GOOD.with_columns(pl.lit(1).alias("buyer_is_maker")), "buyer_is_maker has type"),
        (frame([100.0, float("nan")], [1, 1]), r"invalid prices \(1 NaN\)"),
        (frame([100.0, float("inf")], [1, 1]), "1 infinite"),
        (frame([100.0, -5.0, 0.0], [1, 1, 1]), "2 zero or negative"),
        (frame([100.0, 101.0], [1, float("nan")]), "invalid quantities.*1 NaN"),
        (frame([100.0, 101.0], [1, -2]), "invalid quantities"),
        (frame([100.0, 101.0], [0, 0]), "quantity 0"),
        (GOOD.with_columns(pl.Series("price", [1.0, None])), "null"),
    ],
)
def test_bad_trades(trades, match: str) -> None:
    with pytest.raises(InvalidTradesError, match=match):
        volume_profile(trades, row_size=1.0)


# --- vacuums ---


def test_vacuums_hand_computed() -> None:
    # median of traded rows: sorted [1, 10, 10, 10, 12, 20] -> 10; threshold 2.0
    vols = [10, 1, 0, 0, 12, 10, 20, 10]
    vp = volume_profile(rows_frame(vols), row_size=1.0)
    vac = liquidity_vacuums(vp)
    assert vac == [
        Vacuum(
            price_low=101.0,
            price_high=104.0,
            rows=3,
            volume=1.0,
            median_row_volume=10.0,
            deficit_pct=pytest.approx(100 - 100 / 3 / 10),
            impact="fast",
        )
    ]
    assert liquidity_vacuums(vp, min_rows=4) == []
    # A looser threshold also admits milder zones, with a milder impact.
    loose = liquidity_vacuums(vp, threshold=1.0)  # rows below 10: only the run 101..104 again
    assert [(v.price_low, v.price_high) for v in loose] == [(101.0, 104.0)]
    vp2 = volume_profile(rows_frame([10, 4, 10, 10, 10]), row_size=1.0)
    (mild,) = liquidity_vacuums(vp2, threshold=0.5)
    assert mild.deficit_pct == pytest.approx(60.0) and mild.impact == "moderate"
    (weak,) = liquidity_vacuums(
        volume_profile(rows_frame([10, 8, 10, 10]), row_size=1.0), threshold=1.0
    )
    assert weak.deficit_pct == pytest.approx(20.0) and weak.impact == "negligible"


def test_vacuums_brute_force_on_random_profiles() -> None:
    for seed in range(6):
        prices, qtys, makers = random_trades(seed, 400)
        vp = volume_profile(frame(prices, qtys, makers), tick_size=0.01)
        vols = [Decimal(repr(v)) for v in vp.rows["volume"].to_list()]
        median = sorted(v for v in vols if v > 0)
        k = len(median)
        med = median[k // 2] if k % 2 else (median[k // 2 - 1] + median[k // 2]) / 2
        want, run = [], []
        for i, v in enumerate([*vols, None]):
            if v is not None and v < Decimal("0.2") * med:
                run.append(i)
            elif run:
                want.append((run[0], run[-1]))
                run = []
        got = liquidity_vacuums(vp)
        assert [(v.price_low, v.price_high) for v in got] == [
            (vp.rows["price_low"][a], vp.rows["price_high"][b]) for a, b in want
        ]
        for v, (a, b) in zip(got, want, strict=True):
            assert v.rows == b - a + 1
            assert v.volume == float(sum(vols[a : b + 1]))
            assert v.median_row_volume == float(med)


def test_vacuums_bad_input_and_frame() -> None:
    vp = volume_profile(rows_frame([10, 1, 10]), row_size=1.0)
    for kwargs, match in [
        ({"threshold": 0}, "threshold=0"),
        ({"threshold": 1.5}, "<= 1"),
        ({"min_rows": 0}, "min_rows=0"),
        ({"min_rows": 1.5}, "min_rows"),
    ]:
        with pytest.raises(InvalidParameterError, match=match):
            liquidity_vacuums(vp, **kwargs)
    with pytest.raises(InvalidParameterError, match="must be a VolumeProfile"):
        liquidity_vacuums(GOOD)
    vf = vacuums_frame(vp.vacuums())
    assert vf.columns == [
        "price_low",
        "price_high",
        "rows",
        "volume",
        "median_row_volume",
        "deficit_pct",
        "impact",
    ]
    assert vf.row(0) == (101.0, 102.0, 1, 1.0, 10.0, 90.0, "fast")
    assert vacuums_frame([]).height == 0


# --- presentation ---


def test_to_dict_is_json_ready_and_repr_is_useful() -> None:
    vp = volume_profile(rows_frame([4, 6, 20, 30, 12, 12, 16]), row_size=1.0, symbol="BTCUSDT")
    d = json.loads(json.dumps(vp.to_dict()))
    assert d["poc"] == 103.5 and d["vah"] == 106.0 and d["val"] == 101.0
    assert d["value_area_volume_pct"] == 80.0 and d["total_volume"] == 100.0
    assert d["symbol"] == "BTCUSDT" and d["trade_count"] == 7 and len(d["rows"]) == 7
    assert d["rows"][3] == {
        "price_low": 103.0,
        "price_high": 104.0,
        "volume": 30.0,
        "buy_volume": 30.0,
        "sell_volume": 0.0,
        "delta": 30.0,
        "trades": 1,
    }
    assert "rows" not in vp.to_dict(rows=False)
    text = repr(vp)
    assert "BTCUSDT" in text and "POC 103.5," in text and "VA 101–106 (80.0%, cbot)" in text
    page = vp._repr_html_()
    assert "<table>" in page and "103.5" in page and "<svg" in page and "BTCUSDT" in page
