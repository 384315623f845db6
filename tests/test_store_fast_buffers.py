"""The read path's parts: many small blocks decoded at once (bit for bit what decoding them one
by one gives), and the reused output buffers (never handed out while anything still uses them,
released when idle)."""

from __future__ import annotations

import gc

import msgpack
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelab.exceptions import NotADatabaseError
from tradelab.recordings import synthetic_trades
from tradelab.schema import TRADE_COLUMNS
from tradelab.store import TradeStore, buffers
from tradelab.store.blocks import DTYPES, decode_into, encode_block
from tradelab.store.smallblocks import decode_small_into

T0 = 1_767_225_600_000
FAR = 10**13


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.int64) if a.dtype == np.float64 else a


block_rows = st.tuples(
    st.integers(1, 40),  # rows
    st.sampled_from(["walk", "const", "float", "negzero", "bigids", "lastconst"]),
    st.integers(0, 2**32),  # seed
)


def _block(n: int, shape: str, seed: int, first_id: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = first_id + np.cumsum(rng.integers(1, 3, n))
    first = ids * 3
    price = np.round(60000 + np.cumsum(rng.integers(-3, 4, n)) * 0.01, 2)
    qty = np.round(rng.integers(1, 10**6, n) * 1e-5, 5)
    last = first + rng.integers(0, 4, n)
    if shape == "const":
        price[:] = price[0]
        qty[:] = 0.25
    elif shape == "float":
        price = price + 1e-11  # not counts of 1e-8: stored as float64
    elif shape == "negzero":
        qty[::2] = -0.0
    elif shape == "bigids":
        ids = ids + 2**62  # the segmented sums wrap through 2**64 and still come out exact
        first = first + 2**61
        last = first + 1
    elif shape == "lastconst":
        last = first + 7
    return {
        "agg_id": ids.astype(np.int64),
        "price": price,
        "qty": qty,
        "first_id": first.astype(np.int64),
        "last_id": last.astype(np.int64),
        "time": T0 + np.cumsum(rng.integers(0, 500, n)).astype(np.int64),
        "buyer_is_maker": rng.random(n) < (0.5 if shape != "const" else 2.0),
    }


@settings(max_examples=60, deadline=None)
@given(st.lists(block_rows, min_size=1, max_size=12))
def test_small_blocks_decode_together_as_one_by_one(blocks):
    docs, at = [], 1
    for n, shape, seed in blocks:
        cols = _block(n, shape, seed, at)
        at = int(cols["agg_id"][-1]) % 2**40 + 10
        docs.append(msgpack.unpackb(encode_block(cols)))
    assert_decoded_together_as_apart(
        docs, (TRADE_COLUMNS, ("last_id",), ("qty", "buyer_is_maker"), ("price", "time"))
    )


def assert_decoded_together_as_apart(docs: list, column_sets: tuple) -> None:
    """``decode_small_into`` over ``docs`` gives, for each set of columns asked for, bit for
    bit what ``decode_into`` gives block by block (also used by test_store_raw)."""
    total = sum(d["n"] for d in docs)
    for names in column_sets:
        together = {c: np.full(total + 2, 7, dtype=DTYPES[c]) for c in names}
        apart = {c: np.full(total + 2, 7, dtype=DTYPES[c]) for c in names}
        assert decode_small_into(docs, together, 1) == total
        off = 1
        for d in docs:
            off += decode_into(d, apart, off)
        for c in names:
            assert np.array_equal(_bits(together[c]), _bits(apart[c])), c


def test_a_damaged_small_block_is_refused():
    docs = [msgpack.unpackb(encode_block(_block(5, "walk", i, 100 * i + 1))) for i in range(3)]
    docs[1]["c"]["time"][4] = docs[1]["c"]["time"][4][:-1]  # one delta short
    out = {c: np.empty(15, dtype=DTYPES[c]) for c in TRADE_COLUMNS}
    with pytest.raises(NotADatabaseError, match="damaged"):
        decode_small_into(docs, out, 0)


@pytest.fixture
def small_pool(monkeypatch):
    """The buffer pool with a 64 KiB threshold, empty before and after."""
    monkeypatch.setattr(buffers, "MIN_BYTES", 64 << 10)
    buffers.release_free()
    yield buffers
    gc.collect()
    buffers.release_free()


def _pool_ids() -> set[int]:
    return {id(b) for b in buffers._buffers}


def test_a_buffer_is_reused_only_once_nothing_uses_it(small_pool):
    n = 20_000  # 160 kB of int64
    for make in (
        lambda a: pl.Series("x", a),
        lambda a: pl.Series("x", a).to_numpy(),
        lambda a: pl.DataFrame([pl.Series("x", a)]).slice(100, 10),
        lambda a: pl.Series("x", a).cast(pl.Datetime("ms", "UTC")),
        lambda a: pl.Series("x", a).to_arrow(),
    ):
        a = buffers.empty(n, np.dtype(np.int64))
        a[:] = 11
        holder = make(a)
        del a
        gc.collect()
        b = buffers.empty(n, np.dtype(np.int64))
        b[:] = -1  # a reused buffer would overwrite what the holder sees
        values = holder.to_numpy() if hasattr(holder, "to_numpy") else np.asarray(holder)
        if isinstance(holder, pl.DataFrame):
            values = holder["x"].to_numpy()
        if values.dtype.kind == "M":
            values = values.view(np.int64)
        assert (values == 11).all()
        del holder, values, b
    gc.collect()
    before = _pool_ids()
    c = buffers.empty(n, np.dtype(np.int64))  # now everything is gone: reused, not allocated
    assert _pool_ids() == before
    del c


def test_free_buffers_are_released_when_idle(small_pool, monkeypatch):
    a = buffers.empty(50_000, np.dtype(np.float64))
    held, free = buffers.pool_stats()
    del a
    assert buffers.pool_stats() == (held, free + buffers._size_class(400_000))
    kept = buffers.empty(10_000, np.dtype(np.int64))  # in use: stays
    monkeypatch.setattr(buffers, "IDLE_S", 0.0)
    buffers._tick()
    held, free = buffers.pool_stats()
    assert free == 0 and held >= kept.nbytes
    del kept


def test_frames_kept_by_the_caller_are_never_overwritten_by_later_reads(tmp_path, small_pool):
    df = synthetic_trades("BTCUSDT", T0, 60_000, rate_per_s=20.0)
    ms = df["time"].dt.epoch("ms")
    with TradeStore(tmp_path / "db") as s:
        s.append("BTCUSDT", df)
        first = s.trades("BTCUSDT", 0, FAR)
        prices = s.trades("BTCUSDT", 0, FAR, columns=["price"])["price"]
        for lo in (T0 + 100_000, T0, T0 + 50_000):  # other windows, other sizes
            s.trades("BTCUSDT", lo, FAR)
            s.trades("BTCUSDT", lo, FAR, columns=["price", "time"])
        assert first.equals(df)
        assert prices.equals(df["price"])
        again = s.trades("BTCUSDT", T0 + 1_000, FAR)
        assert again.equals(df.filter(ms >= T0 + 1_000))
        assert buffers.pool_stats()[0] > 0  # the reads did use the pool
