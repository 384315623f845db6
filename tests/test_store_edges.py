"""Edge blocks: a window that starts or ends inside a block decodes only the rows it returns
(``blocks.decode_rows_into``), bit for bit what decoding the whole block and cutting gives."""

from __future__ import annotations

import msgpack
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelab.exceptions import NotADatabaseError
from tradelab.recordings import synthetic_trades
from tradelab.schema import TRADE_COLUMNS
from tradelab.store import TradeStore, reading
from tradelab.store.blocks import decode_block, decode_rows_into, encode_block

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
FAR = 10**13
PROJECTIONS = [
    TRADE_COLUMNS,
    ("price", "qty", "buyer_is_maker"),
    ("last_id",),  # stored relative to first_id: decoded without returning it
    ("time", "agg_id"),
    ("first_id", "last_id"),
]


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.int64) if a.dtype == np.float64 else a


def _columns(data: st.DataObject, n: int) -> dict[str, np.ndarray]:
    """Trades whose columns take every kind the codec has: deltas, raw, constant, 1e-8 counts
    with and without a tick, raw float64 (more than 8 decimals), packed and constant bits,
    and ids near the int64 limits (delta sums that wrap)."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    big = data.draw(st.booleans())
    start = 2**62 if big else 1_000
    ids = start + np.cumsum(rng.integers(1, 3 if big else 300, n)).astype(np.int64)
    first = ids * 2 - (2**62 if big else 0)
    price_kind = data.draw(st.sampled_from(["tick", "const", "float", "wide"]))
    ticks = rng.integers(1, 10**6, n)
    price = {
        "tick": ticks * 0.01,
        "const": np.full(n, 61_905.5),
        "float": ticks * 0.01 + 1e-11,
        "wide": rng.integers(1, 2**52, n) / 1e8,
    }[price_kind]
    qty = rng.integers(0, 10**5, n) / 1e5 if data.draw(st.booleans()) else np.full(n, 0.5)
    return {
        "agg_id": ids,
        "price": price.astype(np.float64),
        "qty": qty.astype(np.float64),
        "first_id": first,
        "last_id": first + (rng.integers(0, 5, n) if data.draw(st.booleans()) else 0),
        "time": T0 + np.cumsum(rng.integers(0, 40_000, n)).astype(np.int64),
        "buyer_is_maker": rng.integers(0, 2, n).astype(bool)
        if data.draw(st.booleans())
        else np.ones(n, dtype=bool),
    }


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_rows_of_a_block_decode_as_the_whole_block_cut(data):
    n = data.draw(st.integers(1, 300))
    cols = _columns(data, n)
    value = encode_block(cols)
    doc = msgpack.unpackb(value)
    whole = decode_block(value)[1]
    start = data.draw(st.integers(0, n - 1))
    stop = data.draw(st.integers(start + 1, n))
    k = stop - start
    for names in PROJECTIONS:
        out = {c: np.full(k + 3, 7, dtype=whole[c].dtype) for c in names}
        assert decode_rows_into(doc, out, 2, start, stop) == k
        for c in names:
            assert np.array_equal(_bits(out[c][2 : 2 + k]), _bits(whole[c][start:stop])), c
            assert np.array_equal(_bits(cols[c][start:stop]), _bits(whole[c][start:stop])), c
            # nothing written outside its rows
            assert np.array_equal(out[c][[0, 1, -1]], np.full(3, 7, dtype=out[c].dtype)), c


def test_rows_outside_the_block_or_a_damaged_column_are_refused():
    cols = {c: a[:50] for c, a in _fixed_block().items()}
    doc = msgpack.unpackb(encode_block(cols))
    out = {"price": np.empty(10)}
    for start, stop in [(-1, 5), (5, 5), (45, 51)]:
        with pytest.raises(ValueError, match="not inside a block of 50 rows"):
            decode_rows_into(doc, out, 0, start, stop)
    doc["c"]["price"][4] = doc["c"]["price"][4][:-3]  # a payload cut short
    with pytest.raises(NotADatabaseError, match="damaged"):
        decode_rows_into(doc, {"price": np.empty(50)}, 0, 0, 50)


def _fixed_block() -> dict[str, np.ndarray]:
    df = synthetic_trades("BTCUSDT", T0, 200, rate_per_s=1.0)
    return {c: df[c].to_physical().to_numpy() for c in TRADE_COLUMNS}


@pytest.fixture(scope="module")
def hours(tmp_path_factory):
    """~3.3 hours appended at once: one block per clock hour."""
    df = synthetic_trades("BTCUSDT", T0, 30_000, rate_per_s=2.5)
    path = tmp_path_factory.mktemp("edges") / "db"
    with TradeStore(path) as s:
        s.append("BTCUSDT", df)
        s.roll_up()
    return path, df


def test_windows_cutting_hour_blocks_read_exactly_what_the_whole_blocks_hold(hours):
    path, df = hours
    ms = df["time"].dt.epoch("ms")
    end = int(ms.max()) + 1
    windows = [
        (T0 + 3_599_000, T0 + 3_600_500),  # the last second of one hour, the first of the next
        (T0 + 1_234_567, end - 45_321),
        (end - 3_600_000, end),  # what the bench reads: part of a closed hour, then the rest
        (T0 + 600_000, T0 + 600_001),  # one millisecond, inside a block
        (T0 + 10_800_000 - 1, T0 + 10_800_000),
    ]
    with TradeStore(path, readonly=True) as s:
        for lo, hi in windows:
            for names in PROJECTIONS:
                out = s.trades("BTCUSDT", lo, hi, columns=list(names))
                assert out.equals(df.filter((ms >= lo) & (ms < hi)).select(names)), (lo, hi)


def test_a_window_decodes_only_the_rows_of_an_edge_block_it_returns(hours, monkeypatch):
    """Before, an hour block a window cut was decoded whole (all ~86 k rows of BTCUSDT for
    the few minutes a 1 h window takes of it); now only ``time`` is, and the other columns
    for the window's rows alone."""
    path, df = hours
    ms = df["time"].dt.epoch("ms")
    lo, hi = T0 + 3_600_000 - 120_000, T0 + 3_600_000  # the last 2 minutes of the first hour
    want = df.filter((ms >= lo) & (ms < hi))
    decoded: list[tuple[str, int]] = []
    real_rows, real_into = reading.decode_rows_into, reading.decode_into

    def rows_spy(doc, out, offset, start, stop):
        decoded.extend((c, stop - start) for c in out)
        return real_rows(doc, out, offset, start, stop)

    def into_spy(doc, out, offset):
        decoded.extend((c, doc["n"]) for c in out)
        return real_into(doc, out, offset)

    monkeypatch.setattr(reading, "decode_rows_into", rows_spy)
    monkeypatch.setattr(reading, "decode_into", into_spy)
    with TradeStore(path, readonly=True) as s:
        out = s.trades("BTCUSDT", lo, hi)
    assert out.equals(want)
    block_rows = int(((ms >= T0) & (ms < T0 + 3_600_000)).sum())
    assert block_rows > 10 * want.height
    assert ("time", block_rows) in decoded  # the column that finds the rows
    others = [(c, k) for c, k in decoded if c != "time"]
    assert sorted(c for c, _ in others) == sorted(set(TRADE_COLUMNS) - {"time"})
    assert all(k == want.height for _, k in others)


def test_times_out_of_id_order_inside_an_edge_block_are_picked_exactly(store):
    """A block whose times do not rise with its ids (a backfill of late prints): the window's
    rows are not one run; they are picked from the decoded span, in id order."""
    df = synthetic_trades("BTCUSDT", T0, 3_000, rate_per_s=1.0)  # < 1 h: one block
    rng = np.random.default_rng(5)
    jitter = pl.Series(rng.integers(-90_000, 90_000, df.height))
    t = (df["time"].dt.epoch("ms") + jitter).clip(T0, T0 + 3_599_999)
    df = df.with_columns(time=t.cast(pl.Datetime("ms", "UTC")))
    store.append("BTCUSDT", df)
    ms = df["time"].dt.epoch("ms")
    for lo, hi in [(T0 + 1_000_000, T0 + 2_000_000), (T0 + 5, T0 + 3_599_000), (0, T0 + 70_000)]:
        for names in PROJECTIONS:
            out = store.trades("BTCUSDT", lo, hi, columns=list(names))
            want = df.filter((ms >= lo) & (ms < hi)).select(names)
            assert want.height and out.equals(want), (lo, hi, names)
    assert store.trades("BTCUSDT", 0, FAR).equals(df)


def test_delta_sums_that_wrap_around_int64_decode_exactly():
    """The codec holds any int64 values: deltas between extremes wrap modulo 2**64 when
    encoded, and the sum of the rows skipped must wrap the same way."""
    top, bottom = 2**63 - 1, -(2**63)
    ids = np.array([0, top, 1, top - 2, bottom, 5, bottom + 1, top], dtype=np.int64)
    cols = {c: a[: len(ids)] for c, a in _fixed_block().items()}
    cols.update(agg_id=ids, first_id=ids[::-1].copy(), last_id=ids[::-1].copy())
    value = encode_block(cols)
    doc, whole = msgpack.unpackb(value), decode_block(value)[1]
    assert np.array_equal(whole["agg_id"], ids)
    for start in range(len(ids)):
        for stop in range(start + 1, len(ids) + 1):
            out = {c: np.empty(stop - start, dtype=np.int64) for c in ("agg_id", "last_id")}
            decode_rows_into(doc, out, 0, start, stop)
            assert np.array_equal(out["agg_id"], ids[start:stop])
            assert np.array_equal(out["last_id"], ids[::-1][start:stop])
