"""Volume profiles on a Dask cluster (tradelab.scale.distributed) equal the single-machine
profile exactly: rows, POC, VAH, VAL and every figure — on synthetic trades built so that a
misplaced tick sample would change the answer, and on the real recordings. One real
``LocalCluster`` of two worker processes serves the whole module."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tradelab import volume_profile
from tradelab.analytics import infer_tick_size
from tradelab.exceptions import InsufficientTradesError, InvalidParameterError
from tradelab.recordings import load_file, synthetic_trades
from tradelab.scale import (
    distributed_volume_profile,
    export,
    local_client,
    merge_partials,
    partial_histogram,
    profile_from_histogram,
    volume_profile_from,
)
from tradelab.scale.distributed import volume_profile as cluster_profile
from tradelab.scale.hours import HOUR_MS
from tradelab.store import TradeStore

DAY0 = 1_723_161_600_000  # 2024-08-09 00:00 UTC
START = DAY0 - 3 * HOUR_MS
NOW = DAY0 + 30 * 24 * HOUR_MS
# a window cutting the first and the last hour file, across the date boundary
LO, HI = START + 1_234_567, START + 6 * HOUR_MS - 98_765
FIELDS = [
    f.name
    for f in dataclasses.fields(
        volume_profile(pl.DataFrame({"price": [1.0], "qty": [1.0], "buyer_is_maker": [False]}))
    )
]


def assert_same(got, want) -> None:  # type: ignore[no-untyped-def]
    """Two profiles equal in every field: the rows frame exactly, every figure exactly."""
    assert_frame_equal(got.rows, want.rows, check_exact=True)
    for name in FIELDS:
        if name != "rows":
            assert getattr(got, name) == getattr(want, name), name


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    c = local_client(2)
    try:
        yield c
    finally:
        cluster = c.cluster
        c.close()
        cluster.close()


def _tick_trap(frame: pl.DataFrame, lo: int, hi: int) -> pl.DataFrame:
    """Give every trade of [lo, hi) a third decimal except those the tick inference samples
    (every n // 8192-th in agg_id order): a sample taken at other positions infers 0.001, not
    0.01, and the automatic row size and the profile's labels change."""
    t = frame["time"].dt.epoch("ms")
    inside = ((t >= lo) & (t < hi)).to_numpy()
    n = int(inside.sum())
    step = max(1, n // 8192)
    assert step >= 2
    pos = np.cumsum(inside) - 1
    shifted = inside & (pos % step != 0)
    price = frame["price"].to_numpy() + np.where(shifted, 0.005, 0.0)
    return frame.with_columns(pl.Series("price", np.round(price, 3)))


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, TradeStore]]:
    base = tmp_path_factory.mktemp("scale")
    frame = _tick_trap(synthetic_trades("BTCUSDT", START, 140_000, rate_per_s=6.0, seed=9), LO, HI)
    store = TradeStore(base / "data")
    store.append("BTCUSDT", frame)
    uri = base / "table"
    assert export(store, uri, now_ms=NOW).hours >= 6
    try:
        yield uri, store
    finally:
        store.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"row_size": 5.0},
        {"rows": 40},
        {"tick_size": 0.001, "method": "single", "value_area": 0.8},
    ],
    ids=["auto", "row_size", "rows", "tick-single-80"],
)
def test_the_cluster_profile_equals_the_local_profile(
    client: object, table: tuple[Path, TradeStore], kwargs: dict
) -> None:
    uri, store = table
    trades = store.trades("BTCUSDT", LO, HI)
    local = volume_profile(trades, symbol="BTCUSDT", start=LO, end=HI, **kwargs)
    got = distributed_volume_profile(uri, "BTCUSDT", LO, HI, client=client, **kwargs)
    assert_same(got, local)
    assert_same(volume_profile_from(uri, "BTCUSDT", LO, HI, **kwargs), local)
    if not kwargs:  # the trap is armed: all prices say 0.001, the sampled ones 0.01
        assert got.tick_size == 0.01 and infer_tick_size(trades["price"].unique()) == 0.001


def test_whole_files_and_a_tree_of_merges(client: object, table: tuple[Path, TradeStore]) -> None:
    uri, store = table
    lo, hi = START, START + 6 * HOUR_MS  # whole hour files, no edge to count
    local = volume_profile(store.trades("BTCUSDT", lo, hi), symbol="BTCUSDT", start=lo, end=hi)
    assert_same(cluster_profile(uri, "BTCUSDT", lo, hi, client=client, fan_in=2), local)


def test_real_recordings(client: object, shared_data: Path, tmp_path: Path) -> None:
    uri = tmp_path / "table"
    with TradeStore(tmp_path / "data") as store:
        for name in (
            "spot_btcusdt_20240808-09.aggTrade.tsv.gz",
            "spot_ethusdt_20240808-09.aggTrade.tsv.gz",
        ):
            for sym, frame in load_file(shared_data / name).items():
                store.append(sym, frame)
        export(store, uri, now_ms=NOW)  # the 23:00 hour; 00:00 stays open (no later trade)
        for sym in ("BTCUSDT", "ETHUSDT"):
            for lo, hi in ((DAY0 - 6 * 60_000, DAY0), (DAY0 - 270_000, DAY0 - 50_123)):
                trades = store.trades(sym, lo, hi)
                assert trades.height > 1000
                for kwargs in ({}, {"tick_size": 0.01}):
                    local = volume_profile(trades, symbol=sym, start=lo, end=hi, **kwargs)
                    got = distributed_volume_profile(uri, sym, lo, hi, client=client, **kwargs)
                    assert_same(got, local)


def test_without_a_client_a_local_cluster_is_started(table: tuple[Path, TradeStore]) -> None:
    uri, store = table
    lo, hi = DAY0, DAY0 + HOUR_MS
    local = volume_profile(store.trades("BTCUSDT", lo, hi), symbol="BTCUSDT", start=lo, end=hi)
    assert_same(distributed_volume_profile(uri, "BTCUSDT", lo, hi), local)


@pytest.mark.parametrize("noisy", [False, True], ids=["ticks", "8-decimal-prices"])
def test_partials_merge_in_any_order_to_the_local_profile(noisy: bool) -> None:
    frame = synthetic_trades("ETHUSDT", START, 40_000, rate_per_s=5.0, seed=2, price=3000.0)
    if noisy:  # prices written with 8 decimals: the inferred tick is clamped to a plausible one
        noise = np.random.default_rng(3).integers(0, 100, frame.height) * 1e-8
        frame = frame.with_columns(
            price=pl.Series(np.round(frame["price"].to_numpy() * 20 + noise, 8))
        )
    n, step = frame.height, max(1, frame.height // 8192)
    rng = np.random.default_rng(1)
    cuts = np.sort(rng.choice(np.arange(1, n), 9, replace=False))
    parts = []
    for a, b in zip([0, *cuts], [*cuts, n], strict=True):
        chunk = frame[int(a) : int(b)]
        parts.append(
            partial_histogram(
                chunk["price"].to_numpy(),
                chunk["qty"].to_numpy(),
                chunk["buyer_is_maker"].to_numpy(),
                offset=int(a),
                step=step,
            )
        )
    flat = merge_partials(*parts)
    tree = merge_partials(
        merge_partials(*parts[7:]), merge_partials(*parts[:3]), merge_partials(*parts[3:7])
    )
    local = volume_profile(frame, symbol="ETHUSDT", start=START, end=NOW)
    for merged in (flat, tree):
        assert_same(profile_from_histogram(merged, symbol="ETHUSDT", start=START, end=NOW), local)


def test_errors(client: object, table: tuple[Path, TradeStore]) -> None:
    uri, _ = table
    with pytest.raises(
        InsufficientTradesError, match=r"BTCUSDT has trades in .* from 2024-08-08 21:00"
    ):
        distributed_volume_profile(uri, "BTCUSDT", NOW, NOW + HOUR_MS, client=client)
    with pytest.raises(InvalidParameterError, match=r"client must be a distributed\.Client"):
        distributed_volume_profile(uri, "BTCUSDT", LO, HI, client="tcp://scheduler:8786")
    with pytest.raises(InvalidParameterError, match="unknown profile argument"):
        distributed_volume_profile(uri, "BTCUSDT", LO, HI, client=client, bins=3)
    with pytest.raises(InvalidParameterError, match="value_area"):
        distributed_volume_profile(uri, "BTCUSDT", LO, HI, client=client, value_area=2)
    with pytest.raises(InvalidParameterError, match="fan_in"):
        distributed_volume_profile(uri, "BTCUSDT", LO, HI, client=client, fan_in=1)
