"""Fast reads: column projection, the decoding threads, the header-ordered skip of the sort, the
float64 decoding of prices and quantities (bit-exact), and the block cache on reopened stores."""

from __future__ import annotations

import itertools

import msgpack
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelab.exceptions import InvalidParameterError, TradelabError
from tradelab.recordings import synthetic_trades
from tradelab.schema import TRADE_COLUMNS
from tradelab.store import TradeStore, reading
from tradelab.store.blocks import decode_block, decode_into, encode_block
from tradelab.store.keys import HOUR_MS

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
FAR = 10**13


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.int64) if a.dtype == np.float64 else a


def _same_bits(out: pl.DataFrame, want: pl.DataFrame) -> None:
    assert out.columns == want.columns
    assert out.schema == want.schema
    for c in out.columns:
        a, b = out[c].to_physical().to_numpy(), want[c].to_physical().to_numpy()
        assert np.array_equal(_bits(a), _bits(b)), c


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    """Three hours in closed hour blocks, plus a streamed open hour of 1-second blocks and
    minute roll-ups: every kind of block a query meets."""
    df = synthetic_trades("BTCUSDT", T0, 40_000, rate_per_s=3.0)  # ~3.7 h
    ms = df["time"].dt.epoch("ms")
    live_from = int(ms.max()) - 20 * 60_000
    path = tmp_path_factory.mktemp("fast") / "db"
    with TradeStore(path) as s:
        s.append("BTCUSDT", df.filter(ms < live_from))
        live = df.filter(ms >= live_from)
        second = pl.col("time").dt.epoch("ms") // 1000
        for _, batch in live.group_by(second, maintain_order=True):
            s.append("BTCUSDT", batch)
        s.wait_idle()
        s.roll_up()
    return path, df


PROJECTIONS = [
    ("price", "qty", "buyer_is_maker"),  # what the profile reads
    ("time",),
    ("last_id",),  # stored relative to first_id: decoded without returning it
    ("last_id", "first_id"),
    ("buyer_is_maker", "agg_id", "time", "price"),
    TRADE_COLUMNS[::-1],
]


@pytest.mark.parametrize("columns", PROJECTIONS)
def test_projection_equals_the_full_frame_selected(week, columns):
    path, df = week
    ms = df["time"].dt.epoch("ms")
    end = int(ms.max()) + 1
    with TradeStore(path, readonly=True) as s:
        # windows cutting hour blocks, the minute blocks and the 1-second blocks at both ends
        for lo, hi in [(0, FAR), (T0 + 1_234_567, end - 45_321), (end - 90_000, end - 1_000)]:
            out = s.trades("BTCUSDT", lo, hi, columns=list(columns))
            want = df.filter((ms >= lo) & (ms < hi)).select(columns)
            assert out.height > 0
            _same_bits(out, want)
        # an empty window keeps the asked columns and their types
        empty = s.trades("BTCUSDT", T0 - HOUR_MS, T0 - 1, columns=columns)
        assert empty.height == 0 and empty.columns == list(columns)
        assert empty.schema == df.select(columns).schema


def test_all_columns_by_default_and_with_none(week):
    path, df = week
    with TradeStore(path, readonly=True) as s:
        assert s.trades("BTCUSDT", 0, FAR).equals(df)
        assert s.trades("BTCUSDT", 0, FAR, columns=None).equals(df)


@pytest.mark.parametrize(
    ("columns", "says"),
    [
        (["price", "volume"], "unknown column(s) 'volume'"),
        (["Price"], "unknown column(s) 'Price'"),
        ([1], "unknown column(s) 1"),
        ("price", "a list of trade column names"),
        (42, "a list of trade column names"),
        ([], "names no column"),
        (["qty", "qty"], "qty more than once"),
    ],
)
def test_bad_columns_are_refused_in_one_line_listing_the_allowed(store, columns, says):
    store.append("BTCUSDT", synthetic_trades("BTCUSDT", T0, 10))
    with pytest.raises(InvalidParameterError) as err:
        store.trades("BTCUSDT", 0, FAR, columns=columns)
    msg = str(err.value)
    assert says in msg and "\n" not in msg
    if "unknown" in says or "list" in says:
        assert "agg_id, price, qty, first_id, last_id, time, buyer_is_maker" in msg
    assert isinstance(err.value, TradelabError)


def test_interleaved_blocks_are_sorted_and_deduplicated_under_projection(store):
    """Blocks of one hour whose id ranges overlap (a backfill beside live blocks) make the
    header check fail: the read then sorts by agg_id even when agg_id is not returned."""
    df = synthetic_trades("BTCUSDT", T0, 4_000, rate_per_s=2.0)
    # live trades of 1-second batches with every 7th id missing, then the backfill of them
    missing = pl.Series(np.arange(df.height) % 7 == 3)
    second = pl.col("time").dt.epoch("ms") // 1000
    for _, batch in df.filter(~missing).group_by(second, maintain_order=True):
        store.append("BTCUSDT", batch)
    store.append("BTCUSDT", df.filter(missing))
    for columns in (["price", "time"], ["agg_id"], None):
        out = store.trades("BTCUSDT", 0, FAR, columns=columns)
        want = df if columns is None else df.select(columns)
        assert out.equals(want)
    store.roll_up()
    assert store.trades("BTCUSDT", 0, FAR, columns=["qty"]).equals(df.select("qty"))


def test_large_windows_decode_on_threads_exactly(tmp_path, monkeypatch):
    """Above the threshold the blocks are split over the decoding threads; the frame is the
    same, bit for bit, as a single-threaded decode of the same blocks."""
    df = synthetic_trades("BTCUSDT", T0, 200_000, rate_per_s=20.0)  # ~2.8 h: 3 hour blocks
    calls = []
    real = reading._decode_all

    def spy(work, out, rows):
        calls.append((len(work), rows))
        return real(work, out, rows)

    monkeypatch.setattr(reading, "_decode_all", spy)
    monkeypatch.setattr(reading, "_PARALLEL_ROWS", 1_000)
    with TradeStore(tmp_path / "db") as s:
        s.append("BTCUSDT", df)
        if reading._pool() is None:
            pytest.skip("one core: no decoding threads")
        threaded = s.trades("BTCUSDT", 0, FAR)
        monkeypatch.setattr(reading, "_PARALLEL_ROWS", 10**12)
        single = s.trades("BTCUSDT", 0, FAR)
    assert calls[0] == (3, 200_000)
    _same_bits(threaded, df)
    _same_bits(single, df)


def test_block_cache_is_used_after_reopening(tmp_path):
    """rocksdict takes a reopened database's column family options from its OPTIONS file,
    which cannot name our cache: without passing them again a store read through RocksDB's
    8 MiB default and decompressed every block on every read."""
    df = synthetic_trades("BTCUSDT", T0, 50_000, rate_per_s=20.0)
    with TradeStore(tmp_path / "db") as s:
        s.append("BTCUSDT", df)
        s.compact()
    with TradeStore(tmp_path / "db") as s:
        assert s._db.property_int_value("rocksdb.block-cache-capacity") >= 512 << 20
        s.trades("BTCUSDT", 0, FAR)
        assert s._db.property_int_value("rocksdb.block-cache-usage") > 200_000
    with TradeStore(tmp_path / "db", readonly=True) as r:
        assert r._db.property_int_value("rocksdb.block-cache-capacity") >= 512 << 20


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.integers(1, 2**53 - 1), min_size=1, max_size=60),
    st.sampled_from([1, 10, 1_000_000, 7]),
    st.integers(0, 3),
)
def test_decode_into_is_bit_exact_with_decode_block(counts, lot, which):
    """The float64 decoding of counts (cumsum in float64, times the scale, over 1e8) gives the
    bits of the integer decoding, for any counts the encoder stores as counts (< 2**53)."""
    vals = np.array([c // lot * lot or lot for c in counts], dtype=np.int64)
    n = len(vals)
    x = vals.astype(np.float64) / 1e8
    cols = {
        "agg_id": np.arange(n, dtype=np.int64) + 1,
        "price": x if which != 1 else x[::-1].copy(),
        "qty": x[::-1].copy() if which != 2 else np.zeros(n),
        "first_id": np.arange(n, dtype=np.int64) * 3,
        "last_id": np.arange(n, dtype=np.int64) * 3 + which,
        "time": T0 + np.arange(n, dtype=np.int64),
        "buyer_is_maker": np.arange(n) % 2 == 0,
    }
    value = encode_block(cols)
    doc = msgpack.unpackb(value)
    back = decode_block(value)[1]
    for names in (TRADE_COLUMNS, ("qty",), ("last_id", "price"), ("buyer_is_maker",)):
        out = {c: np.full(n + 2, 9, dtype=back[c].dtype) for c in names}
        assert decode_into(doc, out, 1) == n
        for c in names:
            assert np.array_equal(_bits(out[c][1:-1]), _bits(cols[c])), c
            assert np.array_equal(_bits(out[c][1:-1]), _bits(back[c])), c
            # nothing written outside its rows
            assert np.array_equal(out[c][[0, -1]], np.full(2, 9, dtype=out[c].dtype))


def test_ordered_check_uses_headers_only(week):
    """Blocks read in key order have increasing, disjoint id ranges in a stored week."""
    path, _df = week
    with TradeStore(path, readonly=True) as s:
        docs = list(reading.iter_docs(s._db, "BTCUSDT", 0, FAR))
    assert len(docs) > 3
    assert all(a["i1"] < b["i0"] for a, b in itertools.pairwise(docs))


@pytest.mark.parametrize("scale", [1, 2, 5, 10, 16, 25, 1_000, 1_000_000, 100_000_000, 3, 7, 12])
def test_scaled_to_float_gives_the_bits_of_product_then_division(scale):
    """One division by 1e8 / scale (when scale divides 1e8) is the same correctly rounded
    double as (count * scale) / 1e8: both round the same rational. Checked on a million
    counts across the whole exact range, with ``out`` as the counts' own memory."""
    from tradelab.store.blocks import scaled_to_float

    rng = np.random.default_rng(scale)
    top = (2**53 - 1) // scale
    counts = np.concatenate(
        [
            rng.integers(0, top, 500_000, dtype=np.int64),
            rng.integers(0, 10**6, 500_000, dtype=np.int64),
            np.array([0, 1, top, top - 1], dtype=np.int64),
        ]
    )
    want = (counts * scale).astype(np.float64) / 1e8
    out = np.empty(len(counts))
    scaled_to_float(counts, scale, out)
    assert np.array_equal(out.view(np.int64), want.view(np.int64))
    inplace = counts.copy().view(np.float64)
    scaled_to_float(inplace.view(np.int64), scale, inplace)
    assert np.array_equal(inplace.view(np.int64), want.view(np.int64))


def test_a_forked_child_decodes_on_threads_of_its_own(tmp_path, monkeypatch):
    """After a fork the parent's decoding threads do not exist in the child: a pool inherited
    as it was would take the child's blocks and never run them (the read would hang)."""
    import multiprocessing

    monkeypatch.setattr(reading, "_PARALLEL_ROWS", 1_000)
    df = synthetic_trades("BTCUSDT", T0, 30_000, rate_per_s=5.0)  # ~1.7 h: 2 hour blocks
    with TradeStore(tmp_path / "db") as s:
        s.append("BTCUSDT", df)
        assert s.trades("BTCUSDT", 0, FAR).equals(df)  # the parent's pool now runs
    if reading._pool() is None:
        pytest.skip("one core: no decoding threads")

    def child(q):
        with TradeStore(tmp_path / "db", readonly=True) as r:
            q.put(r.trades("BTCUSDT", 0, FAR).height)

    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    p.start()
    p.join(30)
    if p.is_alive():
        p.kill()
        pytest.fail("the forked child's read hung")
    assert p.exitcode == 0 and q.get(timeout=5) == df.height
