"""Unnarrowed blocks: a small append stores its columns as they are (``encode_raw_block``, no
deltas, counts or narrow types to compute), every decoder reads them exactly — alone, among
narrowed blocks, cut at a window's edge — and the roll-up stores them narrowed."""

from __future__ import annotations

import msgpack
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_store_fast_buffers import assert_decoded_together_as_apart

from tradelab.exceptions import InvalidTradesError
from tradelab.recordings import synthetic_trades
from tradelab.schema import TRADE_COLUMNS
from tradelab.store.blocks import (
    DTYPES,
    decode_block,
    decode_into,
    decode_rows_into,
    encode_block,
    encode_raw_block,
)
from tradelab.store.keys import HOUR_MS, RAW_BLOCK_ROWS, block_key

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
FAR = 10**13


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.int64) if a.dtype == np.float64 else a


def _cols(df: pl.DataFrame) -> dict[str, np.ndarray]:
    return {c: df[c].to_physical().to_numpy() for c in TRADE_COLUMNS}


def _kinds(value: bytes) -> set[str]:
    return {spec[0] for spec in msgpack.unpackb(value)["c"].values()}


def _block(rng: np.random.Generator, n: int, at: int, shape: str) -> dict[str, np.ndarray]:
    ids = at + np.cumsum(rng.integers(1, 3, n)).astype(np.int64)
    first = ids * 3
    price = np.round(60_000 + np.cumsum(rng.integers(-3, 4, n)) * 0.01, 2)
    qty = np.round(rng.integers(1, 10**6, n) * 1e-5, 5)
    if shape == "const":
        price[:] = price[0]
        qty[:] = 0.25
    elif shape == "float":
        price = price + 1e-11  # more than 8 decimals: float64 even when narrowed
    elif shape == "negzero":
        qty[::2] = -0.0
    return {
        "agg_id": ids,
        "price": price,
        "qty": qty,
        "first_id": first,
        "last_id": first + rng.integers(0, 4, n),
        "time": T0 + np.cumsum(rng.integers(0, 700, n)).astype(np.int64),
        "buyer_is_maker": rng.random(n) < (0.5 if shape != "const" else 2.0),
    }


def test_a_raw_block_holds_only_unnarrowed_kinds_and_decodes_bit_for_bit():
    rng = np.random.default_rng(1)
    for shape in ("walk", "const", "float", "negzero"):
        cols = _block(rng, 37, 10, shape)
        value = encode_raw_block(cols)
        assert _kinds(value) <= {"r", "f", "b"}
        header, back = decode_block(value)
        ids = cols["agg_id"]
        assert (header.n, header.id_min, header.id_max) == (37, ids[0], ids[-1])
        assert (header.t_min, header.t_max) == (cols["time"].min(), cols["time"].max())
        doc = msgpack.unpackb(value)
        for c in TRADE_COLUMNS:
            assert np.array_equal(_bits(back[c]), _bits(cols[c])), c
            out = {c: np.empty(37, dtype=DTYPES[c])}
            decode_into(doc, out, 0)
            assert np.array_equal(_bits(out[c]), _bits(cols[c])), c
            part = {c: np.empty(20, dtype=DTYPES[c])}
            decode_rows_into(doc, part, 0, 11, 31)
            assert np.array_equal(_bits(part[c]), _bits(cols[c][11:31])), c
    with pytest.raises(ValueError, match="at least one trade"):
        encode_raw_block({c: a[:0] for c, a in cols.items()})


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 40),
            st.booleans(),  # raw
            st.sampled_from(["walk", "const", "float", "negzero"]),
        ),
        min_size=1,
        max_size=14,
    ),
    st.integers(0, 2**32),
)
def test_raw_and_narrowed_small_blocks_decode_together_as_one_by_one(blocks, seed):
    """The open hour's minute blocks (narrowed) then its 1-second blocks (raw), and any other
    mix: decoded together, bit for bit what decoding them one by one gives."""
    rng = np.random.default_rng(seed)
    docs, at = [], 1
    for n, raw, shape in blocks:
        cols = _block(rng, n, at, shape)
        at = int(cols["agg_id"][-1]) + 5
        docs.append(msgpack.unpackb((encode_raw_block if raw else encode_block)(cols)))
    assert_decoded_together_as_apart(
        docs, (TRADE_COLUMNS, ("last_id",), ("price", "time"), ("qty", "agg_id"))
    )


def _seconds(df: pl.DataFrame):
    return df.group_by(pl.col("time").dt.epoch("ms") // 1000, maintain_order=True)


def test_small_appends_are_stored_raw_and_the_roll_up_narrows_them(store):
    df = synthetic_trades("BTCUSDT", T0 + HOUR_MS - 150_000, 3_000, rate_per_s=10.0)  # 5 min
    store._rollups.schedule = lambda sym: None  # roll up only when asked, below
    for _, batch in _seconds(df):
        store.append("BTCUSDT", batch)
    big = synthetic_trades("BTCUSDT", T0 + 3 * HOUR_MS, RAW_BLOCK_ROWS + 1, first_agg_id=10**6)
    store.append("BTCUSDT", big)  # larger than RAW_BLOCK_ROWS: narrowed at once
    st = store._states["BTCUSDT"]
    raw = {k for k in st.keys if _kinds(store._db.get(block_key("BTCUSDT", k))) <= {"r", "f", "b"}}
    assert raw == st.raw == set(st.keys) - {T0 + 3 * HOUR_MS}
    want = pl.concat([df, big])
    assert store.trades("BTCUSDT", 0, FAR).equals(want)
    lo, hi = T0 + HOUR_MS - 61_234, T0 + HOUR_MS + 30_500  # cuts raw blocks at both ends
    ms = want["time"].dt.epoch("ms")
    assert store.trades("BTCUSDT", lo, hi).equals(want.filter((ms >= lo) & (ms < hi)))
    store.roll_up("BTCUSDT")
    for k in st.keys:  # every closed minute and hour: one narrowed block
        assert not _kinds(store._db.get(block_key("BTCUSDT", k))) <= {"r", "f", "b"}, k
    assert not st.raw
    assert store.trades("BTCUSDT", 0, FAR).equals(want)


def test_a_closed_hour_left_with_one_raw_block_is_re_encoded_by_the_roll_up(store):
    """A lone small batch in an hour (an illiquid symbol, a backfill) is stored raw; once its
    hour is closed, the roll-up stores it narrowed (~5 times smaller) — once."""
    few = synthetic_trades("ETHUSDT", T0 + 600_000, 300, rate_per_s=2.0)
    store.append("ETHUSDT", few)
    key = T0 + 600_000
    size = len(store._db.get(block_key("ETHUSDT", key)))
    store.roll_up("ETHUSDT")  # its hour is still open: left as it is
    assert len(store._db.get(block_key("ETHUSDT", key))) == size
    later = synthetic_trades("ETHUSDT", T0 + 2 * HOUR_MS, 10, first_agg_id=1_000)
    store.append("ETHUSDT", later)
    assert store.wait_idle()  # the worker re-encodes the closed hour's block
    st = store._states["ETHUSDT"]
    assert key not in st.raw and st.keys_between(T0, T0 + HOUR_MS) == [key]
    narrowed = store._db.get(block_key("ETHUSDT", key))
    assert len(narrowed) * 3 < size and not _kinds(narrowed) <= {"r", "f", "b"}
    assert st.index[key][5] == len(narrowed)
    assert store.stats("ETHUSDT").trade_count == 310
    assert store.trades("ETHUSDT", 0, FAR).equals(pl.concat([few, later]))
    assert store.roll_up("ETHUSDT") == 0


def test_the_kept_rows_count_follows_the_kept_blocks(store):
    df = synthetic_trades("BTCUSDT", T0, 4_000, rate_per_s=20.0)  # 200 s
    store._rollups.schedule = lambda sym: None
    st = None
    for i, (_, batch) in enumerate(_seconds(df)):
        store.append("BTCUSDT", batch)
        st = store._states["BTCUSDT"]
        if i % 50 == 49:
            store.roll_up("BTCUSDT")
        assert st.small_rows == sum(len(c["agg_id"]) for c in st.small.values())
    store.delete_before(T0 + 70_000)
    assert st is not None and st.small_rows == sum(len(c["agg_id"]) for c in st.small.values())
    assert st.small_rows > 0


FEW_BAD = {
    "nan price": ("price", float("nan")),
    "inf price": ("price", float("inf")),
    "negative zero price": ("price", -0.0),
    "nan qty": ("qty", float("nan")),
    "inf qty": ("qty", float("inf")),
    "negative qty": ("qty", -1e-8),
    "time before 1970": ("time", -1),
    "time after 2286": ("time", 10**13),
    "negative agg_id": ("agg_id", -7),
    "negative first_id": ("first_id", -3),
    "negative last_id": ("last_id", -3),
    "inverted ids": ("last_id", None),
}


@pytest.mark.parametrize("kind", sorted(FEW_BAD))
def test_a_few_trades_are_checked_as_many_are(store, kind):
    """A 1-second batch is checked on Python lists (intake's few-rows path), a large one with
    numpy: each bad value is refused by both, with the same one line."""
    column, value = FEW_BAD[kind]
    messages = []
    for n in (5, 500):
        cols = {c: a.copy() for c, a in _cols(synthetic_trades("BTCUSDT", T0, n)).items()}
        if value is None:
            cols["last_id"][n // 2] = cols["first_id"][n // 2] - 1
        else:
            cols[column][n // 2] = value
        with pytest.raises(InvalidTradesError) as err:
            store.append("BTCUSDT", cols)
        messages.append(str(err.value))
        assert "\n" not in messages[-1]
    assert messages[0] == messages[1]
    assert store.stats("BTCUSDT").trade_count == 0
