"""The append's fast intake: frames already in the trade schema and mappings of numpy columns
skip Polars' coercion, yet refuse exactly what the coercing path refuses; the small-block
encoder stays exact (and version 1, which every reader of the store decodes)."""

from __future__ import annotations

import msgpack
import numpy as np
import polars as pl
import pytest

from tradelab import schema
from tradelab.exceptions import InvalidTradesError
from tradelab.recordings import synthetic_trades
from tradelab.store import TradeStore, intake
from tradelab.store.blocks import decode_block, decode_into, encode_block

T0 = 1_767_225_600_000
FAR = 10**13


def _columns(df: pl.DataFrame) -> dict[str, np.ndarray]:
    return {c: df[c].to_physical().to_numpy() for c in df.columns}


@pytest.fixture
def no_coercion(monkeypatch):
    """Fail if the append goes through Polars' coercion (the slow path)."""

    def refuse(trades):
        raise AssertionError("to_trade_frame called on the fast path")

    monkeypatch.setattr(intake, "to_trade_frame", refuse)


def test_typed_frame_and_column_mapping_store_the_same_trades(store, no_coercion):
    df = synthetic_trades("BTCUSDT", T0, 500, rate_per_s=5.0)
    assert store.append("BTCUSDT", df[:200]) == 200
    cols = _columns(df[200:])
    assert store.append("BTCUSDT", cols) == 300
    assert store.append("BTCUSDT", cols) == 0  # exactly once, on this path too
    times = df[400:]["time"].to_numpy()  # datetime64[ms]
    assert times.dtype.kind == "M"
    assert store.append("ETHUSDT", {**_columns(df[400:]), "time": times}) == 100
    assert store.trades("BTCUSDT", 0, FAR).equals(df)
    assert store.trades("ETHUSDT", 0, FAR).equals(df[400:])


def test_mapping_columns_of_other_numeric_types_are_cast(store, no_coercion):
    df = synthetic_trades("BTCUSDT", T0, 50)
    cols = _columns(df)
    cols["agg_id"] = cols["agg_id"].astype(np.uint32)
    cols["first_id"] = cols["first_id"].tolist()  # a list is fine too
    cols["time"] = cols["time"].astype(np.uint64)
    cols["extra"] = np.zeros(3)  # extra columns are dropped, as for frames
    assert store.append("BTCUSDT", cols) == 50
    assert store.trades("BTCUSDT", 0, FAR).equals(df)


def test_other_frames_and_records_still_take_the_coercing_path(store):
    df = synthetic_trades("BTCUSDT", T0, 30)
    shuffled = df.select(reversed(df.columns)).with_columns(pl.col("time").dt.epoch("ms"))
    assert store.append("BTCUSDT", shuffled[:10]) == 10
    assert store.append("BTCUSDT", df[10:20].to_dicts()) == 10
    assert store.append("BTCUSDT", df[20:]) == 10
    assert store.trades("BTCUSDT", 0, FAR).equals(df)


def _bad(kind: str, df: pl.DataFrame) -> pl.DataFrame:
    return {
        "nan price": df.with_columns(pl.lit(float("nan")).alias("price")),
        "zero price": df.with_columns(pl.lit(0.0).alias("price")),
        "inf qty": df.with_columns(pl.lit(float("inf")).alias("qty")),
        "negative qty": df.with_columns(pl.lit(-1.0).alias("qty")),
        "time before 1970": df.with_columns(
            pl.lit(-5).cast(schema.TRADE_SCHEMA["time"]).alias("time")
        ),
        "negative id": df.with_columns(pl.lit(-1).cast(pl.Int64).alias("agg_id")),
        "inverted ids": df.with_columns((pl.col("first_id") - 1).alias("last_id")),
    }[kind]


BAD = [
    "nan price",
    "zero price",
    "inf qty",
    "negative qty",
    "time before 1970",
    "negative id",
    "inverted ids",
]


@pytest.mark.parametrize("kind", BAD)
def test_fast_paths_refuse_what_the_coercing_path_refuses(store, kind):
    df = synthetic_trades("BTCUSDT", T0, 20)
    bad = _bad(kind, df)
    assert bad.schema == df.schema  # still exactly the trade schema: the fast path
    messages = []
    for given in (bad, _columns(bad), bad.to_dicts()):
        with pytest.raises(InvalidTradesError) as err:
            store.append("BTCUSDT", given)
        messages.append(str(err.value))
        assert "\n" not in str(err.value)
    assert messages[0] == messages[1], kind
    assert store.stats("BTCUSDT").trade_count == 0


def test_nulls_in_a_typed_frame_are_refused(store, no_coercion):
    df = synthetic_trades("BTCUSDT", T0, 5)
    bad = df.with_columns(pl.when(pl.col("agg_id") == 3).then(None).otherwise("qty").alias("qty"))
    with pytest.raises(InvalidTradesError, match="missing \\(null\\) values in qty"):
        store.append("BTCUSDT", bad)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda c: c.pop("qty"), "trade columns lack qty"),
        (lambda c: c.update(price=np.array(["1.5"] * 5)), "column price holds <U3"),
        (lambda c: c.update(agg_id=c["agg_id"].astype(float)), "column agg_id holds float64"),
        (lambda c: c.update(buyer_is_maker=np.ones(5, int)), "column buyer_is_maker holds int"),
        (lambda c: c.update(time=c["time"].reshape(5, 1)), "column time must be 1-D"),
        (lambda c: c.update(last_id=c["last_id"][:4]), "trade columns differ in length"),
        (lambda c: c.update(agg_id=np.full(5, 2**63, np.uint64)), "agg_id has values beyond"),
        (lambda c: c.update(price=[[1.0], [2.0, 3.0]]), "column price is not an array"),
    ],
)
def test_bad_column_mappings_are_refused_in_one_line(store, change, says):
    cols = _columns(synthetic_trades("BTCUSDT", T0, 5))
    change(cols)
    with pytest.raises(InvalidTradesError) as err:
        store.append("BTCUSDT", cols)
    assert says in str(err.value) and "\n" not in str(err.value)
    assert store.stats("BTCUSDT").trade_count == 0


def test_negative_zero_quantity_round_trips_bit_for_bit(store):
    """The encoder compares bits, not values: -0.0 == 0.0 would store 0.0."""
    df = synthetic_trades("BTCUSDT", T0, 6).with_columns(
        pl.Series("qty", [0.5, -0.0, 0.0, 1.25, -0.0, 2.0])
    )
    store.append("BTCUSDT", df)
    out = store.trades("BTCUSDT", 0, FAR)
    assert np.array_equal(out["qty"].to_numpy().view(np.int64), df["qty"].to_numpy().view(np.int64))
    const = df.with_columns(pl.Series("qty", [0.0, -0.0, 0.0, 0.0, 0.0, 0.0]))
    back = decode_block(encode_block(_columns(const)))[1]["qty"]
    assert np.array_equal(back.view(np.int64), const["qty"].to_numpy().view(np.int64))


def test_a_version_1_block_as_first_written_decodes_exactly():
    """A block value built by hand to the documented version-1 layout (every column kind:
    constant, deltas, raw, scaled deltas, scaled counts, float64, packed bits) reads back
    through both decoders: stores written by earlier releases stay readable."""
    n = 5
    doc = {
        "v": 1,
        "n": n,
        "t0": T0,
        "t1": T0 + 9,
        "i0": 10,
        "i1": 16,
        "c": {
            "agg_id": ["d", "<i1", 10, 1, np.array([1, 1, 2, 2], "<i1").tobytes()],
            "price": ["s", "<i2", 6_000_000, 1_000_000, np.array([1, -2, 0, 3], "<i2").tobytes()],
            "qty": ["q", "<i4", 0, 1_000, np.array([5, 1, 70, 2, 9], "<i4").tobytes()],
            "first_id": ["d", "<i1", 100, 1, np.array([2, 2, 1, 5], "<i1").tobytes()],
            "last_id": ["r", "<i1", 0, 1, np.array([0, 1, 0, 3, 0], "<i1").tobytes()],
            "time": ["d", "<i2", T0, 1, np.array([0, 4, 4, 1], "<i2").tobytes()],
            "buyer_is_maker": ["b", "", 0, 1, np.packbits([1, 0, 0, 1, 1]).tobytes()],
        },
    }
    want = {
        "agg_id": np.array([10, 11, 12, 14, 16]),
        "price": np.array([60000.0, 60000.01, 59999.99, 59999.99, 60000.02]),
        "qty": np.array([5e-5, 1e-5, 7e-4, 2e-5, 9e-5]),
        "first_id": np.array([100, 102, 104, 105, 110]),
        "last_id": np.array([100, 103, 104, 108, 110]),
        "time": np.array([T0, T0, T0 + 4, T0 + 8, T0 + 9]),
        "buyer_is_maker": np.array([True, False, False, True, True]),
    }
    value = msgpack.packb(doc, use_bin_type=True)
    whole = decode_block(value)[1]
    out = {c: np.empty(n, dtype=a.dtype) for c, a in whole.items()}
    decode_into(msgpack.unpackb(value), out, 0)
    for c, a in want.items():
        assert np.array_equal(whole[c], a), c
        assert np.array_equal(
            out[c].view(np.int64) if c in ("price", "qty") else out[c],
            whole[c].view(np.int64) if c in ("price", "qty") else whole[c],
        ), c
    # a float64 column and constant columns of that version too
    doc["c"]["price"] = ["f", "<f8", 0, 1, np.array([0.1, 0.2, 0.3, 1e-11, 5.5]).tobytes()]
    doc["c"]["qty"] = ["c", "", 0.25, 1, b""]
    doc["c"]["buyer_is_maker"] = ["c", "", True, 1, b""]
    cols = decode_block(msgpack.packb(doc, use_bin_type=True))[1]
    assert cols["price"].tolist() == [0.1, 0.2, 0.3, 1e-11, 5.5]
    assert cols["qty"].tolist() == [0.25] * n and cols["buyer_is_maker"].all()


class _CountingDb:
    """The writer's database with its ``get`` calls of block keys counted (everything else
    passes through): shows what a roll-up reads back."""

    def __init__(self, db):
        self._db, self.block_gets = db, 0

    def get(self, key, *args, **kwargs):
        if bytes(key).startswith(b"trades:"):
            self.block_gets += 1
        return self._db.get(key, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._db, name)


def _stream(store, df: pl.DataFrame, as_columns: bool = False) -> list[dict[str, np.ndarray]]:
    given = []
    for _, batch in df.group_by(pl.col("time").dt.epoch("ms") // 1000, maintain_order=True):
        cols = {c: a.copy() for c, a in _columns(batch).items()} if as_columns else batch
        store.append("BTCUSDT", cols)
        given.append(cols)
    return given


def test_roll_ups_merge_the_writers_small_blocks_without_reading_them_back(store):
    df = synthetic_trades("BTCUSDT", T0, 1_500, rate_per_s=10.0)  # 150 s: 3 minutes
    store._rollups.schedule = lambda sym: None  # roll up only when asked, below
    _stream(store, df)
    counting = _CountingDb(store._db)
    store._db = counting
    assert store.roll_up("BTCUSDT") > 100  # the closed minutes' 1-second blocks
    assert counting.block_gets == 0
    assert store.trades("BTCUSDT", 0, FAR).equals(df)
    assert store.block_count("BTCUSDT", 0, FAR) < 40
    # the small blocks that went are forgotten; the minute blocks that came are kept
    st = store._states["BTCUSDT"]
    assert set(st.small) == set(st.keys)


def test_kept_small_blocks_do_not_alias_the_callers_arrays(store):
    df = synthetic_trades("BTCUSDT", T0, 800, rate_per_s=10.0)
    store._rollups.schedule = lambda sym: None
    given = _stream(store, df, as_columns=True)
    for cols in given:  # the caller reuses its buffers after the append returned
        cols["price"] += 1.0
        cols["buyer_is_maker"] ^= True
    store.roll_up("BTCUSDT")
    assert store.trades("BTCUSDT", 0, FAR).equals(df)


def test_kept_small_blocks_follow_retention_and_a_reopen(tmp_path):
    df = synthetic_trades("BTCUSDT", T0, 1_200, rate_per_s=10.0)
    with TradeStore(tmp_path / "db") as s:
        s._rollups.schedule = lambda sym: None
        _stream(s, df)
        cut = T0 + 45_000
        s.delete_before(cut)
        st = s._states["BTCUSDT"]
        assert set(st.small) == set(st.keys)
        s.roll_up()
        kept = df.filter(pl.col("time").dt.epoch("ms") >= cut)
        assert s.trades("BTCUSDT", 0, FAR).equals(kept)
    with TradeStore(tmp_path / "db") as s:  # a new writer reads blocks back, as before
        s._rollups.schedule = lambda sym: None
        _stream(
            s, synthetic_trades("BTCUSDT", T0 + 120_000, 300, rate_per_s=10.0, first_agg_id=1_201)
        )
        s.roll_up()
        assert s.trades("BTCUSDT", 0, FAR)["agg_id"].to_list() == [
            *kept["agg_id"].to_list(),
            *range(1_201, 1_501),
        ]


def test_the_kept_small_blocks_are_bounded_whatever_the_append_rate(store, monkeypatch):
    """Appends far faster than one batch a second (a bulk load in small batches, a flood) keep at
    most SMALL_CACHE_ROWS rows decoded; the blocks beyond are read back at roll-up, exactly."""
    from tradelab.store import plan

    monkeypatch.setattr(plan, "SMALL_CACHE_ROWS", 3_000)
    df = synthetic_trades("BTCUSDT", T0, 13_500, rate_per_s=150.0)  # 90 s: a closed minute
    store._rollups.schedule = lambda sym: None
    for i in range(0, df.height, 1_000):
        store.append("BTCUSDT", df.slice(i, 1_000))
    st = store._states["BTCUSDT"]
    assert len(st.keys) >= 14  # 1,000-trade blocks, split at the minute
    assert sum(len(c["agg_id"]) for c in st.small.values()) <= 3_000
    assert 0 < len(st.small) < len(st.keys)
    counting = _CountingDb(store._db)
    store._db = counting
    assert store.roll_up("BTCUSDT") > 0
    assert counting.block_gets > 0  # the blocks not kept are read back
    assert store.trades("BTCUSDT", 0, FAR).equals(df)


def test_a_roll_up_never_merges_more_than_max_merge_rows(store, monkeypatch):
    """Under a flood one minute holds millions of trades; merging them into one block held them
    decoded several times over (+500 MB). Merges stop at MAX_MERGE_ROWS: the minute keeps a few
    blocks, the trades are exact, and rolling up again changes nothing."""
    from tradelab.store import plan

    monkeypatch.setattr(plan, "MAX_MERGE_ROWS", 2_500)
    df = synthetic_trades("BTCUSDT", T0, 13_500, rate_per_s=150.0)  # 90 s: a closed minute
    store._rollups.schedule = lambda sym: None
    for i in range(0, df.height, 1_000):
        store.append("BTCUSDT", df.slice(i, 1_000))
    assert store.roll_up("BTCUSDT") > 0
    st = store._states["BTCUSDT"]
    first_minute = st.keys_between(T0, T0 + 60_000)
    sizes = [st.index[k][0] for k in first_minute]
    assert len(sizes) > 1 and max(sizes) <= 2_500 and sum(sizes) > 8_000, sizes
    assert store.roll_up("BTCUSDT") == 0
    assert store.trades("BTCUSDT", 0, FAR).equals(df)
