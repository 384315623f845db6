"""TradeStore in one process: round trips, exactly-once, window edges, blocks, meta, bad input."""

from __future__ import annotations

import datetime as dt
import threading

import numpy as np
import polars as pl
import pytest
import rocksdict
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelab import recordings
from tradelab.exceptions import (
    ConfigurationError,
    InvalidParameterError,
    InvalidSymbolError,
    InvalidTradesError,
    InvalidWindowError,
    NotADatabaseError,
    StorageError,
    StoreLockedError,
)
from tradelab.recordings import synthetic_trades
from tradelab.schema import TRADE_SCHEMA
from tradelab.store import StoreStats, TradeStore
from tradelab.store.blocks import decode_block, frame_to_columns
from tradelab.store.keys import HOUR_MS, SymbolState, block_key, empty_meta
from tradelab.store.plan import (
    BlockGone,
    Plan,
    appended_meta,
    plan_append,
    plan_retention,
    plan_to_batch,
    roll_up_ranges,
)
from tradelab.store.rollups import RollUpWorker

T0 = 1_700_002_800_000  # 2023-11-14 23:00:00 UTC, an hour boundary
assert T0 % HOUR_MS == 0
FAR = 10**13


def _ms(frame: pl.DataFrame) -> np.ndarray:
    return frame["time"].dt.epoch("ms").to_numpy()


def _seconds(df: pl.DataFrame):
    """The frame cut into 1-second batches, as the collector appends them."""
    return df.group_by(df["time"].dt.epoch("ms") // 1000, maintain_order=True)


def test_append_and_query_round_trip_exactly(store):
    df = synthetic_trades("BTCUSDT", T0 - 600_000, 30_000)
    assert store.append("BTCUSDT", df) == 30_000
    out = store.trades("BTCUSDT", 0, FAR)
    assert out.schema == pl.Schema(TRADE_SCHEMA)
    assert out.equals(df)
    # a datetime window gives the same as unix ms
    start = dt.datetime.fromtimestamp(T0 / 1000, dt.UTC)
    assert store.trades("BTCUSDT", start, start + dt.timedelta(hours=1)).equals(
        df.filter(pl.col("time") >= start, pl.col("time") < start + dt.timedelta(hours=1))
    )


def test_reappending_stores_nothing_twice(store):
    df = synthetic_trades("BTCUSDT", T0, 5_000)
    assert store.append("BTCUSDT", df) == 5_000
    assert store.append("BTCUSDT", df) == 0
    assert store.append("BTCUSDT", df.sample(fraction=0.3, seed=1)) == 0
    assert store.stats("BTCUSDT").trade_count == 5_000
    assert store.trades("BTCUSDT", 0, FAR).equals(df)


def test_overlapping_backfill_stores_only_the_missing_trades(store):
    df = synthetic_trades("BTCUSDT", T0, 20_000)
    # the live stream has a hole in the middle, and is appended in 1-second batches
    live = pl.concat([df[:8_000], df[12_000:]])
    for _, batch in _seconds(live):
        store.append("BTCUSDT", batch)
    assert store.stats("BTCUSDT").trade_count == 16_000
    # a backfill that overlaps both sides of the hole stores exactly the hole
    assert store.append("BTCUSDT", df[7_000:13_000]) == 4_000
    out = store.trades("BTCUSDT", 0, FAR)
    assert out.equals(df)
    assert out["agg_id"].is_unique().all()


def test_duplicates_within_one_batch_are_stored_once(store):
    df = synthetic_trades("BTCUSDT", T0, 100)
    assert store.append("BTCUSDT", pl.concat([df, df[10:20]])) == 100
    assert store.trades("BTCUSDT", 0, FAR).height == 100


def test_records_in_binance_fields_are_accepted(store):
    recs = [
        {"a": 5, "p": "60000.01", "q": "0.00100000", "f": 9, "l": 10, "T": T0, "m": True},
        {"a": 6, "p": "60000.02", "q": "0.5", "f": 11, "l": 11, "T": T0 + 1, "m": False},
    ]
    assert store.append("btcusdt", recs) == 2
    out = store.trades("BTCUSDT", T0, T0 + 2)
    assert out["price"].to_list() == [60000.01, 60000.02]
    assert out["qty"].to_list() == [0.001, 0.5]


def test_window_edges_start_included_end_excluded(store):
    df = synthetic_trades("BTCUSDT", T0 - 2 * HOUR_MS, 400_000, rate_per_s=40)
    store.append("BTCUSDT", df)
    times = _ms(df)
    # a window whose start and end fall exactly on trade times, inside one hour block
    s, e = int(times[1000]), int(times[5000])
    out = store.trades("BTCUSDT", s, e)
    want = df.filter((pl.col("time").dt.epoch("ms") >= s) & (pl.col("time").dt.epoch("ms") < e))
    assert out.equals(want)
    assert _ms(out)[0] == s and _ms(out).max() < e
    assert store.trades("BTCUSDT", times[1000], times[5000]).equals(want)  # numpy int64 too
    # a window one ms wide holds exactly the trades of that ms
    one = store.trades("BTCUSDT", s, s + 1)
    assert one.height == int((times == s).sum()) and one.height >= 1
    # windows crossing hour boundaries and the whole range
    for lo, hi in [(T0 - 1, T0 + 1), (T0 - HOUR_MS - 5, T0 + 5), (0, FAR), (T0, T0 + HOUR_MS)]:
        want = df.filter(
            (pl.col("time").dt.epoch("ms") >= lo) & (pl.col("time").dt.epoch("ms") < hi)
        )
        assert store.trades("BTCUSDT", lo, hi).equals(want), (lo, hi)
    # before / after everything: empty frames in the schema
    assert store.trades("BTCUSDT", 0, int(times[0])).height == 0
    assert store.trades("BTCUSDT", int(times[-1]) + 1, FAR).schema == pl.Schema(TRADE_SCHEMA)


def test_streaming_appends_roll_up_into_minute_and_hour_blocks(store):
    # 1.5 hours at ~24 trades/s, appended second by second as the collector does
    df = synthetic_trades("BTCUSDT", T0 - 40 * 60_000, 120_000, rate_per_s=24)
    for _, batch in _seconds(df):
        store.append("BTCUSDT", batch)
    assert store.wait_idle()  # the roll-ups run on the writer's background thread
    assert store.roll_up() == 0  # ...and left nothing to do
    last = int(_ms(df)[-1])
    open_hour = last - last % HOUR_MS
    # every closed hour is one block; the open hour holds minute blocks + recent 1-s blocks
    assert store.block_count("BTCUSDT", T0 - HOUR_MS, T0) == 1
    n_open = store.block_count("BTCUSDT", open_hour, FAR)
    minutes_done = (last - open_hour) // 60_000
    assert n_open <= minutes_done + 61
    assert n_open <= 120
    # and the data is exactly what went in, across the open/closed-hour boundary too
    assert store.trades("BTCUSDT", 0, FAR).equals(df)
    lo, hi = open_hour - 90_000, open_hour + 90_000
    want = df.filter((pl.col("time").dt.epoch("ms") >= lo) & (pl.col("time").dt.epoch("ms") < hi))
    assert store.trades("BTCUSDT", lo, hi).equals(want)


def test_late_trades_into_a_closed_hour_merge_into_its_block(store):
    df = synthetic_trades("BTCUSDT", T0 - HOUR_MS, 200_000, rate_per_s=40)
    late = df.filter(pl.col("time").dt.epoch("ms") < T0).sample(500, seed=3)
    store.append("BTCUSDT", df.filter(~pl.col("agg_id").is_in(late["agg_id"].implode())))
    assert store.append("BTCUSDT", late) == 500
    assert store.trades("BTCUSDT", 0, FAR).equals(df)  # right away, as an extra block
    assert store.wait_idle()  # the background roll-up merges it into the hour's block
    assert store.block_count("BTCUSDT", T0 - HOUR_MS, T0) == 1
    assert store.trades("BTCUSDT", 0, FAR).equals(df)


def test_stats_symbols_last_agg_id_are_counters(store):
    assert store.symbols() == []
    assert store.last_agg_id("BTCUSDT") is None
    empty = store.stats("BTCUSDT")
    assert empty == StoreStats("BTCUSDT", 0, None, None, None, None, 0)
    btc = synthetic_trades("BTCUSDT", T0, 3_000, first_agg_id=100)
    eth = synthetic_trades("ETHUSDT", T0, 1_000, first_agg_id=7)
    store.append("BTCUSDT", btc)
    store.append("ETHUSDT", eth)
    assert store.symbols() == ["BTCUSDT", "ETHUSDT"]
    s = store.stats("btcusdt")
    assert s.trade_count == 3_000
    assert (s.first_agg_id, s.last_agg_id) == (100, 3_099)
    assert s.first_time == btc["time"].min() and s.last_time == btc["time"].max()
    assert s.bytes_on_disk > 0
    assert store.last_agg_id("ETHUSDT") == 1_006


def test_data_survives_reopening(tmp_path):
    df = synthetic_trades("ETHUSDT", T0, 10_000)
    with TradeStore(tmp_path / "db") as s:
        s.append("ETHUSDT", df)
        s.put_meta("collector_status", {"running": False, "pid": 1})
    with TradeStore(tmp_path / "db") as s:
        assert s.trades("ETHUSDT", 0, FAR).equals(df)
        assert s.last_agg_id("ETHUSDT") == 10_000
        assert s.get_meta("collector_status") == {"running": False, "pid": 1}
        # the next append after reopening still rolls up and dedupes correctly
        more = synthetic_trades("ETHUSDT", int(_ms(df)[-1]) + 1, 500, first_agg_id=10_001)
        assert s.append("ETHUSDT", pl.concat([df[-10:], more])) == 500


def test_meta_documents(store):
    assert store.get_meta("collector_status") is None
    doc = {"pid": 1, "symbols": {"BTCUSDT": {"connected": True, "last_agg_id": None}}}
    store.put_meta("collector_status", doc)
    assert store.get_meta("collector_status") == doc
    with pytest.raises(InvalidParameterError, match="meta name"):
        store.put_meta("bad name!", {})
    with pytest.raises(InvalidParameterError, match="dict"):
        store.put_meta("x", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="MessagePack"):
        store.put_meta("x", {"f": object()})
    with pytest.raises(InvalidParameterError, match="limit"):
        store.put_meta("x", {"blob": b"x" * (2 << 20)})


@pytest.mark.parametrize("symbol", ["", "B", "BTC-USDT", "BTC:USDT", "A" * 21, None, 5, "btc usdt"])
def test_bad_symbols_are_refused_everywhere(store, symbol):
    df = synthetic_trades("BTCUSDT", T0, 10)
    with pytest.raises(InvalidSymbolError, match="symbol"):
        store.append(symbol, df)
    with pytest.raises(InvalidSymbolError):
        store.trades(symbol, 0, FAR)
    with pytest.raises(InvalidSymbolError):
        store.stats(symbol)
    with pytest.raises(InvalidSymbolError):
        store.last_agg_id(symbol)
    assert store.symbols() == []


def test_bad_windows_are_refused(store):
    naive = dt.datetime(2024, 1, 1)
    aware = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    cases = [
        (10, 5, "after start"),
        (5, 5, "after start"),
        (-1, 10, "outside"),
        (0, FAR + 5, "outside"),
        (naive, aware, "naive"),
        ("2024", 5, "datetime"),
        (aware, float("nan"), "finite"),
        (True, 5, "bool"),
    ]
    for lo, hi, msg in cases:
        with pytest.raises(InvalidWindowError, match=msg):
            store.trades("BTCUSDT", lo, hi)


def test_bad_frames_are_refused_and_store_nothing(store):
    good = synthetic_trades("BTCUSDT", T0, 10)
    store.append("BTCUSDT", good)
    bad_frames = {
        "lacks column": good.drop("qty"),
        "type": good.with_columns(pl.col("buyer_is_maker").cast(pl.Utf8)),
        "null": good.with_columns(pl.lit(None, pl.Float64).alias("price")),
        "price": good.with_columns(pl.lit(-1.0).alias("price")),
        "naive": good.with_columns(pl.col("time").dt.replace_time_zone(None)),
        "last_id must be": good.with_columns(pl.col("first_id") + 100),
        "agg_id must be": good.with_columns(pl.col("agg_id") - 1000),
        "1970": good.with_columns(pl.lit(-5, pl.Int64).alias("time")),
    }
    for msg, frame in bad_frames.items():
        with pytest.raises(InvalidTradesError, match=msg):
            store.append("BTCUSDT", frame)
    with pytest.raises(InvalidTradesError):
        store.append("BTCUSDT", "not trades")  # type: ignore[arg-type]
    with pytest.raises(InvalidTradesError, match="lacks"):
        store.append("BTCUSDT", [{"a": 1}])
    assert store.stats("BTCUSDT").trade_count == 10
    assert store.trades("BTCUSDT", 0, FAR).equals(good)
    assert store.append("BTCUSDT", good.clear()) == 0


def test_not_a_database_paths(tmp_path):
    f = tmp_path / "file"
    f.write_text("hello")
    with pytest.raises(NotADatabaseError, match="is a file"):
        TradeStore(f)
    with pytest.raises(NotADatabaseError, match="is a file"):
        TradeStore(f, readonly=True)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("x")
    with pytest.raises(NotADatabaseError, match="no tradelab store"):
        TradeStore(junk)
    # a RocksDB that is not a tradelab store (another application's keys)
    other = tmp_path / "other"
    db = rocksdict.Rdict(str(other), rocksdict.Options(raw_mode=True))
    db[b"hello"] = b"world"
    db.close()
    with pytest.raises(NotADatabaseError, match="not a tradelab store"):
        TradeStore(other)
    with pytest.raises(NotADatabaseError, match="not a tradelab store"):
        TradeStore(other, readonly=True)


def test_bad_paths_and_settings(tmp_path):
    with pytest.raises(ConfigurationError, match="directory path"):
        TradeStore(42)  # type: ignore[arg-type]
    for days in (0, -1, float("inf"), float("nan"), "7", True):
        with pytest.raises(InvalidParameterError, match="retention_days"):
            TradeStore(tmp_path / "db", retention_days=days)  # type: ignore[arg-type]
    assert not (tmp_path / "db").exists()  # nothing was created on the way


def test_second_writer_in_the_same_process_is_told_who_holds_it(store):
    with pytest.raises(StoreLockedError, match="this process") as info:
        TradeStore(store.path)
    assert "readonly=True" in str(info.value)


def test_closed_store_refuses_politely(tmp_path):
    s = TradeStore(tmp_path / "db")
    s.close()
    s.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        s.trades("BTCUSDT", 0, FAR)
    # the lock was released: a new writer can open it
    TradeStore(tmp_path / "db").close()


def test_appends_from_a_worker_thread_while_another_thread_queries(store):
    df = synthetic_trades("BTCUSDT", T0, 60_000, rate_per_s=100)
    batches = [b for _, b in _seconds(df)]
    errors: list[BaseException] = []
    done = threading.Event()

    def writer():
        try:
            for b in batches:
                store.append("BTCUSDT", b)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    t = threading.Thread(target=writer)
    t.start()
    seen = 0
    while not done.is_set():
        out = store.trades("BTCUSDT", 0, FAR)
        ids = out["agg_id"].to_numpy()
        # every snapshot is a gap-free prefix of what was written: no half-written batch
        assert np.array_equal(ids, np.arange(1, len(ids) + 1))
        assert len(ids) >= seen
        seen = len(ids)
    t.join()
    assert not errors
    assert store.trades("BTCUSDT", 0, FAR).equals(df)


def test_shared_recordings_round_trip_exactly(tmp_path, shared_data):
    with TradeStore(tmp_path / "db") as s:
        loaded = {}
        for name in recordings.RECORDINGS:
            for sym, frame in recordings.load(name).items():
                if name.endswith(".trades.txt.gz"):
                    sym = sym + "RAW"  # raw @trade ids would collide with the aggTrade ids
                    if name.startswith("usdm"):
                        sym = sym + "F"
                loaded.setdefault(sym, []).append(frame)
        assert loaded
        for sym, frames in loaded.items():
            df = pl.concat(frames).unique("agg_id", keep="first").sort("agg_id")
            s.append(sym, df)
            out = s.trades(sym, 0, FAR)
            assert out.equals(df), sym
            # bit-exact prices and quantities, as the decimal strings parsed
            assert np.array_equal(
                out["price"].to_numpy().view(np.int64), df["price"].to_numpy().view(np.int64)
            )


_PROPERTY_DF = synthetic_trades("BTCUSDT", T0 - 1_800_000, 3_000, rate_per_s=0.6)  # ~1.4 h


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2_999), st.integers(1, 800)), min_size=1, max_size=12))
def test_any_order_of_overlapping_batches_stores_each_trade_once(tmp_path_factory, slices):
    df = _PROPERTY_DF
    want = np.zeros(df.height, dtype=bool)
    with TradeStore(tmp_path_factory.mktemp("prop") / "db") as store:
        stored = 0
        for start, length in slices:
            stored += store.append("BTCUSDT", df[start : start + length])
            want[start : start + length] = True
        expect = df.filter(pl.Series(want))
        assert stored == expect.height
        assert store.trades("BTCUSDT", 0, FAR).equals(expect)
        store.roll_up()
        assert store.trades("BTCUSDT", 0, FAR).equals(expect)
        assert store.stats("BTCUSDT").trade_count == expect.height


# --- the parts, without RocksDB: plans read through a dict, the roll-up worker on its own ---


def _commit(stored: dict[bytes, bytes], st: SymbolState, plan: Plan, meta: dict, dropped=()):
    """What TradeStore._commit does, with a dict for the database."""
    index = plan_to_batch(rocksdict.WriteBatch(raw_mode=True), "BTCUSDT", st, plan, meta, dropped)
    for key in [*plan.deletes, *dropped]:
        stored.pop(block_key("BTCUSDT", key), None)
    for key, (value, _header) in plan.puts.items():
        stored[block_key("BTCUSDT", key)] = value
    st.index, st.keys, st.meta = index, sorted(index), meta


def _stored_ids(stored: dict[bytes, bytes]) -> np.ndarray:
    return np.sort(np.concatenate([decode_block(v)[1]["agg_id"] for v in stored.values()]))


def test_plans_read_blocks_only_through_the_reader_they_are_handed():
    df = synthetic_trades("BTCUSDT", T0 - HOUR_MS, 5400, rate_per_s=1.0)  # T0 - 1 h .. T0 + 30 min
    times = _ms(df)
    assert times[2000] < T0 <= times[-1]
    stored: dict[bytes, bytes] = {}
    st = SymbolState(meta=empty_meta())
    for part in (df[:1000], df[1000:2000], df[2000:]):  # three blocks in the closed hour
        cols = frame_to_columns(part)
        _commit(
            stored, st, plan_append(stored.get, "BTCUSDT", st, cols), appended_meta(st.meta, cols)
        )
    assert st.meta["count"] == 5400 and st.meta["last_agg_id"] == int(df["agg_id"][-1])
    assert len(st.keys_between(T0 - HOUR_MS, T0)) == 3 and len(st.keys_between(T0, FAR)) == 1
    assert np.array_equal(_stored_ids(stored), df["agg_id"].to_numpy())

    # the roll-up merges the closed hour only (one block per minute of the open hour already)
    assert roll_up_ranges(st) == [(T0 - HOUR_MS, T0)]
    plan = Plan(stored.get, "BTCUSDT", st)
    plan.merge(st.keys_between(T0 - HOUR_MS, T0), None)
    _commit(stored, st, plan, dict(st.meta))
    assert st.keys_between(T0 - HOUR_MS, T0) == [T0 - HOUR_MS] and roll_up_ranges(st) == []
    assert np.array_equal(_stored_ids(stored), df["agg_id"].to_numpy())

    # retention: the closed hour goes whole, the open hour's block is rewritten from the cut
    cut = T0 + 600_000
    plan, whole, removed = plan_retention(stored.get, "BTCUSDT", st, cut)
    assert whole == [T0 - HOUR_MS] and removed == int((times < cut).sum())
    meta = dict(st.meta, count=st.meta["count"] - removed)
    _commit(stored, st, plan, meta, dropped=whole)
    assert np.array_equal(_stored_ids(stored), df["agg_id"].to_numpy()[times >= cut])
    assert st.meta["count"] == int((times >= cut).sum())
    assert st.meta["first_time"] == int(times[times >= cut][0])

    # a block the index names but the reader no longer has: the plan says so
    with pytest.raises(BlockGone):
        Plan({}.get, "BTCUSDT", st).cols(st.keys[0])


def test_roll_up_worker_gathers_requests_into_rounds_and_stops():
    started, release = threading.Event(), threading.Event()
    seen: list[str] = []

    def roll_up(symbol: str) -> None:
        started.set()
        assert release.wait(10)
        seen.append(symbol)

    worker = RollUpWorker(roll_up)
    assert worker.wait_idle(0.01)  # nothing scheduled, no thread yet
    worker.schedule("SOLUSDT")
    assert started.wait(10)  # the first round runs...
    for symbol in ("ETHUSDT", "BTCUSDT", "ETHUSDT"):  # ...so these wait for the next one
        worker.schedule(symbol)
    assert not worker.wait_idle(0.05)
    release.set()
    assert worker.wait_idle(10)
    assert seen == ["SOLUSDT", "BTCUSDT", "ETHUSDT"]  # each symbol once per round, sorted
    worker.stop()
    worker.join()
    worker.schedule("XRPUSDT")  # ignored once stopped
    assert worker.wait_idle(0.01) and seen == ["SOLUSDT", "BTCUSDT", "ETHUSDT"]
