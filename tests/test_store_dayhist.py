"""Day histograms (issue 14, bytes per trade ≤ 5): a closed UTC day older than a 24-hour window
keeps one histogram instead of its hours', with the very same profiles.

Profiles are compared field by field with ``volume_profile`` on the trades read from the same
store (``check`` of test_store_hist); each test also checks which histograms were used or kept,
so an equal answer cannot come from the decoding path alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_store_hist import DAY, START, H, check, days_used, hours_used, stored_hours

from tradelab.recordings import synthetic_trades
from tradelab.store import TradeStore, dayhists, hourhists
from tradelab.store.dayhists import hday_key
from tradelab.store.histograms import build_histogram, decode_histogram, merge_window
from tradelab.store.keys import block_key, hist_key, index_key

RATE = 2.0


@pytest.fixture(autouse=True)
def keep_hours_24(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests pin the layout with hour histograms kept for 24 h before the open hour (the
    mechanism, on few days); the default keep (48 h) is tested in test_store_keephours.py."""
    monkeypatch.setattr(dayhists, "KEEP_HOURS_MS", 24 * 3_600_000)


def _fill(path: Path, days: int, seed: int) -> pl.DataFrame:
    """``days`` days of BTCUSDT appended an hour at a time, rolled up; the last hour is open
    (its last half-hour left out, so the last day never closes)."""
    df = synthetic_trades("BTCUSDT", START, int(RATE * 86_400 * days), rate_per_s=RATE, seed=seed)
    df = df.filter(pl.col("time").dt.epoch("ms") < START + days * DAY - H // 2)
    with TradeStore(path) as s:
        for _, part in df.group_by(pl.col("time").dt.epoch("ms") // H, maintain_order=True):
            s.append("BTCUSDT", part)
        s.roll_up()
        assert s.wait_idle()
    return df


def test_a_store_with_hour_histograms_only_gets_day_histograms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store written before day histograms existed (every closed hour has its histogram,
    no day has one) reads the same; its next writer adds the day histogram from the hours'
    histograms, deletes the aged hours' in the same batch and never builds them again."""
    path = tmp_path / "old"
    with monkeypatch.context() as m:  # the previous version: no day pass
        m.setattr(hourhists, "add_day_histograms", lambda *a, **k: 0)
        _fill(path, 2, seed=11)
    reader = TradeStore(path, readonly=True)
    try:
        assert days_used(reader, START, START + 2 * DAY) == set()
        assert hours_used(reader, START, START + 2 * DAY) == set(range(START, START + 47 * H, H))
        hour_bytes = sum(len(reader._db.get(hist_key("BTCUSDT", START + i * H))) for i in range(24))
        check(reader, START + 5, START + 30 * H)
    finally:
        reader.close()
    with TradeStore(path) as s:
        s.roll_up()
        assert days_used(s, START, START + 2 * DAY) == {START}
        assert stored_hours(s, START, START + DAY) == {START + 23 * H}  # a 24 h window's hour
        day_bytes = len(s._db.get(hday_key("BTCUSDT", START)))
        assert day_bytes < hour_bytes, (day_bytes, hour_bytes)  # 2 trades/s: ~20% smaller
        s.roll_up()  # the hour pass builds no histogram a day histogram stands for
        assert stored_hours(s, START, START + DAY) == {START + 23 * H}
        check(s, START + 5, START + 30 * H)
        check(s, START, START + 2 * DAY)
    reader = TradeStore(path, readonly=True)
    try:  # a reader of the new layout
        assert days_used(reader, START + 5, START + 30 * H) == {START}
        check(reader, START + 5, START + 30 * H)
    finally:
        reader.close()


def test_a_store_without_any_histogram_gets_them_and_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "older"
    _fill(path, 2, seed=12)
    with TradeStore(path) as s:
        for prefix in (b"hist:", b"hday:"):
            s._db.delete_range(prefix, prefix[:-1] + b";")
    reader = TradeStore(path, readonly=True)
    try:
        assert days_used(reader, START, START + 2 * DAY) == set()
        assert hours_used(reader, START, START + 2 * DAY) == set()
        check(reader, START + 5, START + 40 * H)
    finally:
        reader.close()
    with TradeStore(path) as s:  # built from the decoded blocks (no hour histogram to use)
        s.roll_up()
        assert days_used(s, START, START + 2 * DAY) == {START}
        assert stored_hours(s, START, START + DAY) == {START + 23 * H}
        check(s, START + 5, START + 40 * H)


def test_as_time_moves_on_each_closed_day_gets_its_histogram(tmp_path: Path) -> None:
    """Three days, then trades on day 5: days 1 and 2 close and age (their hours' histograms
    go), empty days have none, and windows across all of it are exact."""
    path = tmp_path / "moving"
    df = _fill(path, 3, seed=13)
    later = synthetic_trades(
        "BTCUSDT", START + 5 * DAY + 3 * H, 3000, rate_per_s=RATE, seed=14, first_agg_id=10**7
    )
    with TradeStore(path) as s:
        assert days_used(s, START, START + 3 * DAY) == {START, START + DAY}
        assert stored_hours(s, START, START + 3 * DAY) == set(
            range(START + DAY + 23 * H, START + 3 * DAY - H, H)  # from open hour - 24 h
        )
        s.append("BTCUSDT", later)
        s.roll_up()
        assert days_used(s, START, START + 6 * DAY) == {START, START + DAY, START + 2 * DAY}
        assert stored_hours(s, START, START + 6 * DAY) == set()  # all aged; none since
        assert all(s._db.get(hday_key("BTCUSDT", START + d * DAY)) is None for d in (3, 4, 5))
        for lo, hi in (
            (START, START + 6 * DAY),
            (START + 7, START + 5 * DAY + 4 * H),
            (START + DAY + 3 * H, START + 3 * DAY - 5 * H),
            (START + 2 * DAY - 3 * H, START + 2 * DAY + 3 * H + 5),
        ):
            check(s, lo, hi)
        got = s.price_histograms("BTCUSDT", START + 7, START + 5 * DAY + 4 * H)
        assert len(got.days) == 3 and got.trades == df.height + later.height - int(
            (df["time"].dt.epoch("ms") < START + 7).sum()
        )


def test_merge_less_trades_is_exact() -> None:
    rng = np.random.default_rng(3)
    price = np.round(60_000 + rng.integers(0, 800, 9000) * 0.01, 8)
    qty = np.round(rng.lognormal(-5, 1.5, 9000), 5)
    maker = rng.random(9000) < 0.5
    cols = {"price": price, "qty": qty, "buyer_is_maker": maker}
    whole = decode_histogram(build_histogram(cols, (1, 9000, 1, 9000, 9)) or b"")
    assert whole is not None
    part = {c: a[:2500] for c, a in cols.items()}
    rest = {c: a[2500:] for c, a in cols.items()}
    less = merge_window([whole], [], [part])
    want = merge_window([], [rest])
    assert less is not None and want is not None and less.trades == 6500
    for f in ("units", "buy", "sell", "counts"):
        assert np.array_equal(getattr(less, f), getattr(want, f)), f
    foreign = dict(part, qty=part["qty"] * 3)  # more than the histogram holds at a price
    assert merge_window([whole], [], [foreign]) is None
    assert merge_window([whole], [], [rest, rest]) is None  # taken away twice


def test_a_day_histogram_needs_every_block_of_its_day(tmp_path: Path) -> None:
    """A block lost from a closed day (deleted by hand with its header, not through the
    writer) makes the day's histogram stale for every reader."""
    path = tmp_path / "cut"
    _fill(path, 2, seed=15)
    with TradeStore(path) as s:
        st = s._state("BTCUSDT")
        key = st.keys_between(START + 7 * H, START + 8 * H)[0]
        s._db.delete(index_key("BTCUSDT", key))
        s._db.delete(block_key("BTCUSDT", key))
    reader = TradeStore(path, readonly=True)
    try:
        assert days_used(reader, START, START + 2 * DAY) == set()
        check(reader, START, START + 2 * DAY)
    finally:
        reader.close()


def test_a_window_ending_in_2286_reads_every_block(tmp_path: Path) -> None:
    """The last window ``price_histograms`` accepts ends at 10^13 ms, whose index key would
    have 14 digits (profiles are at most 168 h long; the store's method is not)."""
    path = tmp_path / "far"
    df = _fill(path, 2, seed=16)
    with TradeStore(path) as s:
        got = s.price_histograms("BTCUSDT", START, 10**13)
        assert got.trades == df.height and days_used(s, START, 10**13) == {START}
        assert len(got.hours) == 23 and len(got.rest) == 1


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("price", float("nan")),
        ("price", float("inf")),
        ("price", 60_000.000000001),  # 9 decimals: not a count of 1e-8
        ("price", 2.0**53 / 1e8 * 2),  # beyond exact counts
        ("qty", float("nan")),
        ("qty", float("-inf")),
        ("qty", -0.001),
    ],
)
def test_the_dense_merge_refuses_trades_it_cannot_add_exactly(column: str, value: float) -> None:
    cols = {
        "price": np.full(50, 60_000.5),
        "qty": np.full(50, 0.25),
        "buyer_is_maker": np.arange(50) % 2 == 0,
    }
    assert merge_window([], [cols]) is not None
    cols[column] = cols[column].copy()
    cols[column][17] = value
    assert merge_window([], [cols]) is None
    assert merge_window([], [], [cols]) is None
