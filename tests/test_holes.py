"""The store knows its own coverage: ``TradeStore.holes`` from block headers, unrepairable ranges
recorded in the same write as the trades around them, ``mark_unrepairable``, old headers."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import numpy as np
import polars as pl
import pytest

from tradelab.exceptions import InvalidParameterError, StorageWriteError
from tradelab.schema import TRADE_SCHEMA
from tradelab.store import TradeStore, recovery
from tradelab.store.coverage import MAX_INNER_RUNS
from tradelab.store.keys import HOUR_MS, index_key

T0 = 1_700_006_400_000  # an hour boundary
STEP = 1_000  # ms between consecutive ids: 3,600 ids per hour


def trades(ids: Any) -> pl.DataFrame:
    """Trades with the given agg ids; the time of id ``a`` is ``T0 + a * STEP`` ms."""
    a = np.asarray(list(ids), dtype=np.int64)
    return pl.DataFrame(
        {
            "agg_id": a,
            "price": 100.0 + (a % 7) * 0.01,
            "qty": 0.001 * (1 + a % 5),
            "first_id": a * 3,
            "last_id": a * 3 + 1,
            "time": T0 + a * STEP,
            "buyer_is_maker": a % 2 == 0,
        }
    ).with_columns(pl.col("time").cast(TRADE_SCHEMA["time"]))


def rows(store: TradeStore, sym: str = "BTCUSDT") -> list[tuple[int, int, int, bool]]:
    h = store.holes(sym)
    return [
        (r["first_missing"], r["last_missing"], r["count"], r["unrepairable"])
        for r in h.iter_rows(named=True)
    ]


def brute_force(stored: set[int], lost: list[tuple[int, int]] = ()) -> list[tuple]:
    """Holes by walking every id (the reference)."""
    out: list[list] = []
    bad = {a for lo, hi in lost for a in range(lo, hi + 1)}
    for a in range(min(stored), max(stored) + 1):
        if a in stored:
            continue
        flag = a in bad
        if out and out[-1][1] == a - 1 and out[-1][3] == flag:
            out[-1][1] = a
            out[-1][2] += 1
        else:
            out.append([a, a, 1, flag])
    return [tuple(x) for x in out]


def test_no_holes_in_contiguous_data_and_in_an_empty_store(store) -> None:
    assert store.holes("BTCUSDT").height == 0
    assert store.holes("BTCUSDT").columns == [
        "first_missing",
        "last_missing",
        "count",
        "after_time",
        "before_time",
        "unrepairable",
    ]
    store.append("BTCUSDT", trades(range(1, 5001)))  # crosses an hour: two blocks
    store.append("BTCUSDT", trades(range(5001, 5010)))
    assert store.holes("BTCUSDT").height == 0


def test_one_hole_between_appends_with_its_times(store) -> None:
    store.append("BTCUSDT", trades(range(1, 101)))
    store.append("BTCUSDT", trades(range(151, 201)))
    h = store.holes("BTCUSDT")
    assert rows(store) == [(101, 150, 50, False)]
    assert h["after_time"].dt.epoch("ms").to_list() == [T0 + 100 * STEP]
    assert h["before_time"].dt.epoch("ms").to_list() == [T0 + 151 * STEP]
    assert h.schema["after_time"] == pl.Datetime("ms", "UTC")


def test_holes_inside_one_block_and_at_block_and_hour_edges(store) -> None:
    ids = set(range(1, 8000))  # spans three clock hours
    for lo, hi in ((10, 12), (3599, 3600), (3601, 3601), (7000, 7100)):
        ids -= set(range(lo, hi + 1))
    store.append("BTCUSDT", trades(sorted(ids)))  # one append: one block per hour
    assert rows(store) == [
        (10, 12, 3, False),
        (3599, 3601, 3, False),  # the hour boundary is at id 3600: a hole across two blocks
        (7000, 7100, 101, False),
    ]
    h = store.holes("BTCUSDT")
    assert h["after_time"].dt.epoch("ms").to_list()[0] == T0 + 9 * STEP
    assert h["before_time"].dt.epoch("ms").to_list()[2] == T0 + 7101 * STEP
    # filling a hole in pieces, in other blocks, closes it; roll-ups keep the answer
    store.append("BTCUSDT", trades([10, 12]))
    store.append("BTCUSDT", trades([11]))
    store.append("BTCUSDT", trades(range(7000, 7050)))
    assert rows(store) == [(3599, 3601, 3, False), (7050, 7100, 51, False)]
    store.roll_up()
    assert rows(store) == [(3599, 3601, 3, False), (7050, 7100, 51, False)]


def test_random_appends_and_roll_ups_match_a_brute_force_walk(store) -> None:
    rnd = random.Random(5)
    universe = list(range(1, 12_000))
    stored: set[int] = set()
    for _ in range(40):
        lo = rnd.randrange(1, 11_000)
        chunk = [a for a in range(lo, lo + rnd.randrange(1, 900)) if rnd.random() < 0.97]
        store.append("BTCUSDT", trades(chunk))
        stored |= set(chunk)
        if rnd.random() < 0.3:
            store.roll_up()
        assert rows(store) == brute_force(stored)
    assert stored <= set(universe)


def test_a_block_with_more_inner_runs_than_the_header_keeps(store) -> None:
    ids = list(range(1, 4 * MAX_INNER_RUNS, 2))  # every other id: > MAX_INNER_RUNS runs
    store.append("BTCUSDT", trades(ids))
    state = store._state("BTCUSDT")
    assert [e[6] for e in state.index.values()] == [None]  # "read the block"
    assert rows(store) == brute_force(set(ids))


def test_unrepairable_is_recorded_in_the_same_write_as_the_trades(store, monkeypatch) -> None:
    store.append("BTCUSDT", trades(range(1, 101)))
    store.append("BTCUSDT", trades(range(131, 201)), unrepairable=[(101, 110), (120, 125)])
    assert rows(store) == [
        (101, 110, 10, True),
        (111, 119, 9, False),
        (120, 125, 6, True),
        (126, 130, 5, False),
    ]
    # a write that fails records neither the trades nor the ranges (the disk refuses writes
    # on the store's handle and on every handle it reopens meanwhile)
    refusing = [True]

    class Refusing:
        def __init__(self, db: Any) -> None:
            self._db = db

        def write(self, *a: Any) -> None:
            raise Exception("IO error: No space left on device")

        def __getattr__(self, name: str) -> Any:
            return getattr(self._db, name)

    real_open = recovery.open_writer
    monkeypatch.setattr(
        recovery, "open_writer", lambda p: Refusing(real_open(p)) if refusing[0] else real_open(p)
    )
    store._recovery.every_s = 0.0
    store._db = Refusing(store._db)
    with pytest.raises(StorageWriteError):
        store.append("BTCUSDT", trades(range(300, 310)), unrepairable=[(201, 299)])
    with pytest.raises(StorageWriteError):
        store.append("BTCUSDT", trades([]), unrepairable=[(111, 119)])
    refusing[0] = False
    assert rows(store)[1] == (111, 119, 9, False)
    assert store.last_agg_id("BTCUSDT") == 200
    # ids stored later are no longer missing, whatever the record says
    store.append("BTCUSDT", trades([105]))
    assert rows(store)[:2] == [(101, 104, 4, True), (106, 110, 5, True)]


def test_unrepairable_survives_reopening_and_is_seen_by_readers(tmp_path) -> None:
    path = tmp_path / "db"
    with TradeStore(path) as w:
        w.append("BTCUSDT", trades(range(1, 51)))
        w.append("BTCUSDT", trades(range(61, 100)), unrepairable=[(51, 55)])
        with TradeStore(path, readonly=True) as r:
            assert rows(r) == [(51, 55, 5, True), (56, 60, 5, False)]
    with TradeStore(path) as w:
        assert rows(w) == [(51, 55, 5, True), (56, 60, 5, False)]


def test_mark_an_existing_hole_unrepairable(store) -> None:
    store.append("BTCUSDT", trades(range(1, 51)))
    store.append("BTCUSDT", trades(range(61, 100)))
    assert store.mark_unrepairable("BTCUSDT", [(51, 60), (500, 600)]) == 10
    assert rows(store) == [(51, 60, 10, True)]
    assert store.mark_unrepairable("BTCUSDT", [(51, 60)]) == 0


@pytest.mark.parametrize(
    "bad",
    ["1-5", [(5, 1)], [(1,)], [(-1, 3)], [(1.5, 2)], [(True, 2)], 7],
)
def test_bad_unrepairable_ranges_are_refused_with_one_line(store, bad) -> None:
    with pytest.raises(InvalidParameterError, match=r"\(first_id, last_id\)"):
        store.append("BTCUSDT", trades([1]), unrepairable=bad)
    assert store.last_agg_id("BTCUSDT") is None


def test_headers_of_older_stores_are_read_by_decoding_only_gappy_blocks(tmp_path) -> None:
    """Stores written before the inner runs existed have 6-field headers: still exact."""
    path = tmp_path / "db"
    ids = sorted(set(range(1, 8000)) - set(range(100, 200)) - set(range(5000, 5001)))
    with TradeStore(path) as w:
        w.append("BTCUSDT", trades(ids))
        for key, entry in w._state("BTCUSDT").index.items():
            w._db.put(index_key("BTCUSDT", key), msgpack.packb(list(entry[:6])))
    expected = [(100, 199, 100, False), (5000, 5000, 1, False)]
    with TradeStore(path) as w:
        assert [e[6] for e in w._state("BTCUSDT").index.values()] == [None, None, ()]
        assert rows(w) == expected
        with TradeStore(path, readonly=True) as r:
            assert rows(r) == expected
        w.append("BTCUSDT", trades(range(100, 200)))
        assert rows(w) == [(5000, 5000, 1, False)]


def test_retention_drops_unrepairable_ranges_below_the_first_id_kept(store) -> None:
    store.append("BTCUSDT", trades(range(1, 20)))
    store.append("BTCUSDT", trades(range(31, 8000)), unrepairable=[(20, 30)])
    store.append("BTCUSDT", trades(range(8011, 8100)), unrepairable=[(8000, 8005)])
    assert [r[3] for r in rows(store)] == [True, True, False]
    store.delete_before(T0 + 4000 * STEP)  # into the second hour
    assert rows(store) == [(8000, 8005, 6, True), (8006, 8010, 5, False)]
    assert store._state("BTCUSDT").unrepairable == [(8000, 8005)]


def test_holes_of_a_week_of_blocks_come_from_headers_fast(store) -> None:
    """168 hour blocks with a hole each: the answer without decoding any trade."""
    per_hour = 3600
    for h in range(168):
        ids = np.arange(h * per_hour + 1, (h + 1) * per_hour + 1, dtype=np.int64)
        store.append("BTCUSDT", trades(np.delete(ids, [100, 101])))
    import time

    t = time.perf_counter()
    h = store.holes("BTCUSDT")
    took = time.perf_counter() - t
    assert h.height == 168 and set(h["count"].to_list()) == {2}
    assert took < 0.05, took  # the bench measures ~1 ms; the bound leaves room for load
    assert HOUR_MS == 3600 * STEP
