"""The block codec: exact round trips, narrow encodings, fallbacks, damaged values."""

from __future__ import annotations

import msgpack
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelab.exceptions import NotADatabaseError
from tradelab.recordings import synthetic_trades
from tradelab.schema import TRADE_SCHEMA
from tradelab.store.blocks import (
    block_header,
    columns_to_frame,
    concat_columns,
    decode_block,
    empty_columns,
    encode_block,
    frame_to_columns,
    sort_dedupe,
)


def _cols(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = 1_000_000 + np.arange(n, dtype=np.int64)
    first = 5_000_000 + np.cumsum(rng.integers(1, 4, n))
    return {
        "agg_id": ids,
        "price": np.round(60000 + np.cumsum(rng.integers(-3, 4, n)) * 0.01, 2),
        "qty": np.round(rng.integers(1, 500_000, n) * 1e-5, 5),
        "first_id": first.astype(np.int64),
        "last_id": (first + rng.integers(0, 3, n)).astype(np.int64),
        "time": 1_700_000_000_000 + np.cumsum(rng.integers(0, 90, n)).astype(np.int64),
        "buyer_is_maker": rng.random(n) < 0.5,
    }


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    for c in a:
        assert a[c].dtype == b[c].dtype, c
        # bit-for-bit, not approximately: view floats as integers
        if a[c].dtype == np.float64:
            assert np.array_equal(a[c].view(np.int64), b[c].view(np.int64)), c
        else:
            assert np.array_equal(a[c], b[c]), c


def test_round_trip_is_bit_exact_and_small():
    cols = _cols(86_000)
    value = encode_block(cols)
    header, back = decode_block(value)
    _same(cols, back)
    assert header.n == 86_000
    assert header.t_min == cols["time"].min() and header.t_max == cols["time"].max()
    assert (header.id_min, header.id_max) == (1_000_000, 1_085_999)
    # narrow integer columns: far below the 8 bytes x 7 columns of a raw layout (before zstd)
    assert len(value) / 86_000 < 10
    assert block_header(value) == header


def test_price_and_qty_use_exact_counts_not_floats():
    doc = msgpack.unpackb(encode_block(_cols(1000)))
    assert doc["c"]["price"][0] == "s" and doc["c"]["price"][3] == 1_000_000  # tick 0.01
    assert doc["c"]["qty"][0] == "q" and doc["c"]["qty"][3] == 1_000  # lot 1e-5
    assert doc["c"]["agg_id"][1] == "<i1"  # deltas of contiguous ids fit one byte


def test_values_beyond_eight_decimals_fall_back_to_float64_exactly():
    cols = _cols(50)
    cols["price"] = cols["price"] + 1e-11  # not representable as counts of 1e-8
    cols["qty"][3] = 2.0**60  # beyond 2**53 / 1e8
    value = encode_block(cols)
    doc = msgpack.unpackb(value)
    assert doc["c"]["price"][0] == "f" and doc["c"]["qty"][0] == "f"
    _same(cols, decode_block(value)[1])


def test_constant_columns_and_single_row():
    cols = _cols(10)
    cols["buyer_is_maker"][:] = True
    cols["qty"][:] = 0.5
    cols["last_id"] = cols["first_id"].copy()
    _same(cols, decode_block(encode_block(cols))[1])
    one = {c: a[:1] for c, a in _cols(1).items()}
    _same(one, decode_block(encode_block(one))[1])


def test_unsorted_times_and_large_gaps_round_trip():
    cols = _cols(100)
    cols["time"] = cols["time"][::-1].copy()
    cols["agg_id"] = cols["agg_id"] * 10**9  # deltas need int64
    _same(cols, decode_block(encode_block(cols))[1])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 10**12),  # price in 1e-8 units
            st.integers(0, 10**12),  # qty in 1e-8 units
            st.integers(0, 10**6),  # raw trades in the aggregate - 1
            st.integers(0, 5_000),  # ms since previous
            st.booleans(),
        ),
        min_size=1,
        max_size=200,
    )
)
def test_any_eight_decimal_trades_round_trip(rows):
    n = len(rows)
    price = np.array([float(f"{r[0] / 1e8:.8f}") for r in rows])
    qty = np.array([float(f"{r[1] / 1e8:.8f}") for r in rows])
    first = np.arange(n, dtype=np.int64) * 2_000_000
    cols = {
        "agg_id": np.arange(n, dtype=np.int64) + 7,
        "price": price,
        "qty": qty,
        "first_id": first,
        "last_id": first + np.array([r[2] for r in rows], dtype=np.int64),
        "time": 1_600_000_000_000 + np.cumsum([r[3] for r in rows]).astype(np.int64),
        "buyer_is_maker": np.array([r[4] for r in rows]),
    }
    _same(cols, decode_block(encode_block(cols))[1])


def test_damaged_or_foreign_values_raise_not_a_database():
    with pytest.raises(NotADatabaseError):
        decode_block(b"\xc1garbage")
    with pytest.raises(NotADatabaseError, match="unknown format"):
        decode_block(msgpack.packb({"v": 99, "c": {}}))
    with pytest.raises(NotADatabaseError, match="damaged"):
        decode_block(
            msgpack.packb(
                {
                    "v": 1,
                    "n": 3,
                    "t0": 0,
                    "t1": 0,
                    "i0": 0,
                    "i1": 0,
                    "c": {"agg_id": ["d", "<i1", 0, 1, b"\x01"]},
                }
            )
        )


def test_empty_block_is_refused():
    with pytest.raises(ValueError):
        encode_block(empty_columns())


def test_sort_dedupe_keeps_first_occurrence():
    cols = _cols(5)
    cols = concat_columns([cols, {c: a[[4, 0]] for c, a in cols.items()}])
    cols["price"][5] = 1.0  # the duplicate of id 1_000_004 differs: the first one wins
    out = sort_dedupe(cols)
    assert out["agg_id"].tolist() == list(range(1_000_000, 1_000_005))
    assert out["price"][4] != 1.0


def test_frame_conversion_round_trip():
    df = synthetic_trades("BTCUSDT", 1_700_000_000_000, 5_000)
    cols = frame_to_columns(df)
    assert cols["time"].dtype == np.int64
    back = columns_to_frame(decode_block(encode_block(cols))[1])
    assert back.schema == pl.Schema(TRADE_SCHEMA)
    assert back.equals(df)


def test_decode_into_preallocated_arrays_matches_decode_block():
    from tradelab.store.blocks import decode_into

    a, b = _cols(300, seed=1), _cols(200, seed=2)
    b["price"] = b["price"] + 1e-11  # float64 fallback in one block
    b["buyer_is_maker"][:] = False  # a constant column in the other
    out = {c: np.empty(500, dtype=v.dtype) for c, v in a.items()}
    off = decode_into(msgpack.unpackb(encode_block(a)), out, 0)
    off += decode_into(msgpack.unpackb(encode_block(b)), out, off)
    assert off == 500
    _same(concat_columns([a, b]), out)
