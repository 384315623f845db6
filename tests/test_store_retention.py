"""Retention: exact edges, counters, logging, and never disturbing a running query."""

from __future__ import annotations

import logging
import threading

import numpy as np
import polars as pl
import pytest

from tradelab.exceptions import InvalidParameterError, InvalidWindowError
from tradelab.recordings import synthetic_trades
from tradelab.store import TradeStore
from tradelab.store.keys import HOUR_MS

T0 = 1_700_002_800_000  # an hour boundary
FAR = 10**13
t_ms = pl.col("time").dt.epoch("ms")


@pytest.fixture
def filled(tmp_path):
    """A store with ~5 hours of trades: 4 closed hours and an open one in minute blocks."""
    df = synthetic_trades("BTCUSDT", T0, 300_000, rate_per_s=16)
    s = TradeStore(tmp_path / "db", retention_days=1)
    s.append("BTCUSDT", df[:280_000])
    for _, batch in df[280_000:].group_by(pl.col("agg_id") // 40, maintain_order=True):
        s.append("BTCUSDT", batch)
    s.append("ETHUSDT", synthetic_trades("ETHUSDT", T0, 1_000))
    yield s, df
    s.close()


@pytest.mark.parametrize("offset", [0, 1, HOUR_MS, 2 * HOUR_MS + 123_456, None])
def test_delete_before_removes_exactly_the_older_trades(filled, offset):
    store, df = filled
    times = df["time"].dt.epoch("ms").to_numpy()
    # cut exactly on a trade time (offset None), on / just after an hour boundary, mid-hour,
    # and in the open hour's minute blocks
    cut = int(times[290_000]) if offset is None else T0 + offset
    removed = store.delete_before(cut)
    keep = df.filter(t_ms >= cut)
    eth_removed = 1_000 - store.stats("ETHUSDT").trade_count
    assert removed == (df.height - keep.height) + eth_removed
    assert store.trades("BTCUSDT", 0, FAR).equals(keep)
    s = store.stats("BTCUSDT")
    assert s.trade_count == keep.height
    assert s.first_agg_id == keep["agg_id"][0] and s.first_time == keep["time"][0]
    assert s.last_agg_id == 300_000
    # a window straddling the cut gives only the surviving part
    assert store.trades("BTCUSDT", cut - 5_000, cut + 5_000).equals(
        df.filter((t_ms >= cut) & (t_ms < cut + 5_000))
    )
    # deleting again removes nothing; the next append still works and dedupes
    assert store.delete_before(cut) == 0
    more = synthetic_trades("BTCUSDT", int(times[-1]) + 10, 100, first_agg_id=300_001)
    assert store.append("BTCUSDT", pl.concat([df[-50:], more])) == 100


def test_deleting_everything_keeps_the_resume_point(filled):
    store, df = filled
    assert store.delete_before(FAR - 1) == df.height + 1_000
    s = store.stats("BTCUSDT")
    assert s.trade_count == 0 and s.first_time is None and s.bytes_on_disk == 0
    assert store.last_agg_id("BTCUSDT") == 300_000  # where the collector resumes
    assert store.trades("BTCUSDT", 0, FAR).height == 0
    assert store.symbols() == []


def test_enforce_retention_uses_the_configured_days_and_logs(filled, caplog):
    store, df = filled
    now = T0 + 26 * HOUR_MS  # retention 1 day: everything before T0 + 2h goes
    with caplog.at_level(logging.INFO, logger="tradelab.store"):
        removed = store.enforce_retention(now)
    cut = T0 + 2 * HOUR_MS
    assert removed == df.filter(t_ms < cut).height + 1_000
    rec = [r for r in caplog.records if r.getMessage().startswith("Retention removed")]
    assert rec and rec[0].levelno == logging.INFO
    assert rec[0].symbol == "BTCUSDT" and rec[0].trades == df.filter(t_ms < cut).height
    with pytest.raises(InvalidWindowError):
        store.delete_before("yesterday")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="retention_days"):
        TradeStore(store.path.parent / "other", retention_days=0)


def test_retention_job_runs_in_the_background(filled):
    store, _df = filled
    # every trade is years old relative to the clock: the first run removes everything
    store.start_retention(every_s=3600)
    for _ in range(400):
        if store.stats("BTCUSDT").trade_count == 0:
            break
        threading.Event().wait(0.05)
    assert store.stats("BTCUSDT").trade_count == 0
    with pytest.raises(InvalidParameterError):
        store.start_retention(every_s=0)


def test_a_query_iterating_while_retention_runs_sees_its_snapshot(filled):
    store, df = filled
    blocks = store._iter_blocks("BTCUSDT", 0, FAR)
    first = next(blocks)  # the query has started reading
    cut = T0 + 3 * HOUR_MS + 600_000
    t = threading.Thread(target=store.delete_before, args=(cut,))
    t.start()
    t.join()
    assert store.stats("BTCUSDT").trade_count == df.filter(t_ms >= cut).height
    rest = list(blocks)  # ...and finishes on the snapshot it started from
    ids = np.concatenate([first["agg_id"], *[b["agg_id"] for b in rest]])
    assert np.array_equal(np.sort(ids), df["agg_id"].to_numpy())


def test_queries_in_threads_never_see_half_a_retention(filled):
    store, df = filled
    cuts = [T0 + k * 1_800_000 + 777 for k in range(1, 9)]
    valid = {df.filter(t_ms >= c).height for c in [0, *cuts]}
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def query():
        try:
            while not stop.is_set():
                out = store.trades("BTCUSDT", 0, FAR)
                ids = out["agg_id"].to_numpy()
                # always a contiguous suffix of the ids: whole retention or none of it
                assert np.array_equal(ids, np.arange(ids[0], 300_001)) if len(ids) else True
                seen.append(out.height)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=query) for _ in range(2)]
    for t in threads:
        t.start()
    for c in cuts:
        store.delete_before(c)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    assert seen and set(seen) <= valid


def test_streaming_appends_roll_ups_and_retention_together_stay_exact(tmp_path):
    """The collector appends second by second while the roll-up worker merges and retention
    deletes older hours: the result is exactly the appended trades newer than the last cut."""
    df = synthetic_trades("BTCUSDT", T0, 200_000, rate_per_s=40)  # ~1.4 h
    times = df["time"].dt.epoch("ms").to_numpy()
    split = 150_000
    cuts = [int(times[k]) for k in range(10_000, split, 20_000)]
    with TradeStore(tmp_path / "db") as store:
        store.append("BTCUSDT", df[:split])
        errors: list[BaseException] = []

        def retention():
            try:
                for c in cuts:
                    store.delete_before(c)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        t = threading.Thread(target=retention)
        t.start()
        for _, batch in df[split:].group_by(pl.col("agg_id") // 40, maintain_order=True):
            store.append("BTCUSDT", batch)
        t.join()
        assert not errors, errors
        assert store.wait_idle()
        keep = df.filter(t_ms >= cuts[-1])
        assert store.trades("BTCUSDT", 0, FAR).equals(keep)
        assert store.stats("BTCUSDT").trade_count == keep.height
        store.roll_up()
        assert store.trades("BTCUSDT", 0, FAR).equals(keep)


def test_rewritten_edge_block_never_overwrites_a_block_with_the_same_key(tmp_path):
    h = T0
    rows = [(1, h + 1_000), (2, h + 2_000), (3, h + 3_000)]
    a = pl.DataFrame(
        {
            "agg_id": [r[0] for r in rows],
            "price": [100.0, 101.0, 102.0],
            "qty": [1.0, 2.0, 3.0],
            "first_id": [r[0] for r in rows],
            "last_id": [r[0] for r in rows],
            "time": [r[1] for r in rows],
            "buyer_is_maker": [True, False, True],
        }
    )
    late = a[1:2].with_columns(pl.lit(10, pl.Int64).alias("agg_id"), pl.lit(9.0).alias("qty"))
    with TradeStore(tmp_path / "db") as store:
        store.append("BTCUSDT", a)
        store.append("BTCUSDT", late)  # its own block, keyed h + 2000
        assert store.block_count("BTCUSDT", h, h + HOUR_MS) == 2
        # cutting at h + 1500 rewrites the first block to start at h + 2000: same key
        assert store.delete_before(h + 1_500) == 1
        out = store.trades("BTCUSDT", 0, FAR)
        assert out["agg_id"].to_list() == [2, 3, 10]
        assert out["qty"].to_list() == [2.0, 3.0, 9.0]
        assert store.stats("BTCUSDT").trade_count == 3
