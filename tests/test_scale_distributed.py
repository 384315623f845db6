"""Volume profiles and session profiles on a Dask cluster (tradelab.scale.distributed) equal
the single-machine ones exactly: rows, POC, VAH, VAL, every figure and the sessions' summary —
on synthetic trades built so that a misplaced tick sample would change the answer (for
sessions: over three UTC days, times out of agg_id order), and on the real recordings. One real
``LocalCluster`` of two worker processes serves the whole module."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tradelab import session_profiles, volume_profile
from tradelab.analytics import (
    infer_tick_size,
    parse_session,
    session_profiles_from_trades,
)
from tradelab.analytics.sessions import session_windows
from tradelab.exceptions import (
    InsufficientTradesError,
    InvalidParameterError,
    InvalidTradesError,
    InvalidWindowError,
)
from tradelab.recordings import load_file, synthetic_trades
from tradelab.scale import (
    distributed_session_profiles,
    distributed_volume_profile,
    export,
    local_client,
    merge_partials,
    partial_histogram,
    profile_from_histogram,
    scan_trades,
    volume_profile_from,
)
from tradelab.scale.distributed import time_groups
from tradelab.scale.distributed import volume_profile as cluster_profile
from tradelab.scale.hours import HOUR_MS
from tradelab.scale.sessions import (
    merge_session_partials,
    session_partials,
    session_profiles_from_partials,
)
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


# --- session profiles on the cluster ---------------------------------------------------------

SESSION_LO, SESSION_HI = DAY0 - 4 * HOUR_MS + 12_345, DAY0 + 49 * HOUR_MS + 777


def _disorder(frame: pl.DataFrame) -> pl.DataFrame:
    """Swap the times of every 5th pair of neighbours: time order is no longer agg_id order
    (the session profiles order by time, equal times by agg_id)."""
    t = frame["time"].dt.epoch("ms").to_numpy().copy()
    i = np.arange(1, t.size - 1, 5)
    t[i], t[i + 1] = t[i + 1].copy(), t[i].copy()
    return frame.with_columns(pl.Series("time", t).cast(pl.Datetime("ms", "UTC")))


def _session_trap(frame: pl.DataFrame, lo: int, hi: int) -> pl.DataFrame:
    """Like ``_tick_trap``, but the spared prices are those the session profiles sample: every
    n // 8192-th of the window in *time* order."""
    t = frame["time"].dt.epoch("ms").to_numpy()
    order = np.lexsort((frame["agg_id"].to_numpy(), t))
    inside = (t >= lo) & (t < hi)
    rank = np.empty(t.size, np.int64)
    rank[order] = np.cumsum(inside[order]) - 1
    step = max(1, int(inside.sum()) // 8192)
    assert step >= 2
    shifted = inside & (rank % step != 0)
    price = frame["price"].to_numpy() + np.where(shifted, 0.005, 0.0)
    return frame.with_columns(pl.Series("price", np.round(price, 3)))


@pytest.fixture(scope="module")
def days_table(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, TradeStore]]:
    """~55 hours of trades over three UTC days (55 hour files), times out of agg_id order."""
    base = tmp_path_factory.mktemp("sessions")
    frame = _disorder(synthetic_trades("BTCUSDT", DAY0 - 5 * HOUR_MS, 60_000, rate_per_s=0.3))
    frame = _session_trap(frame, SESSION_LO, SESSION_HI)
    store = TradeStore(base / "data")
    store.append("BTCUSDT", frame)
    uri = base / "table"
    assert export(store, uri, now_ms=NOW).hours >= 52
    try:
        yield uri, store
    finally:
        store.close()


def assert_same_sessions(got, want) -> None:  # type: ignore[no-untyped-def]
    """Two SessionProfiles equal: the summary frame exactly, every session's profile in every
    field, the range, the session and the shared row size."""
    assert_frame_equal(got.summary, want.summary, check_exact=True)
    assert (got.symbol, got.session, got.start, got.end, got.window_note) == (
        want.symbol,
        want.session,
        want.start,
        want.end,
        want.window_note,
    )
    assert len(got) == len(want) and got.row_size == want.row_size
    for a, b in zip(got, want, strict=True):
        assert_same(a, b)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"session": "london", "method": "single", "value_area": 0.8},
        {"session": "22:00-03:00", "tick_size": 0.001},
        {"row_size": 5.0},
    ],
    ids=["utc-day-auto", "london-single-80", "overnight-tick", "row_size"],
)
def test_the_cluster_session_profiles_equal_the_local_ones(
    client: object, days_table: tuple[Path, TradeStore], kwargs: dict
) -> None:
    uri, store = days_table
    lo, hi = SESSION_LO, SESSION_HI
    trades = store.trades("BTCUSDT", lo, hi)
    assert trades.equals(scan_trades(uri, "BTCUSDT", lo, hi))  # every hour is in the table
    local = session_profiles_from_trades(trades, start=lo, end=hi, symbol="BTCUSDT", **kwargs)
    got = distributed_session_profiles(uri, "BTCUSDT", lo, hi, client=client, **kwargs)
    assert_same_sessions(got, local)
    assert len(got) >= 2 and got.summary["va_migration"][1] in ("higher", "lower", "overlapping")
    if not kwargs:  # the trap is armed: sampled in time order 0.01, in agg_id order 0.001
        assert got[0].tick_size == 0.01 and infer_tick_size(trades["price"]) == 0.001
        assert len(got) == 4 and got.summary["trades"].sum() == trades.height


def test_session_partials_merge_in_any_order_to_the_local_session_profiles() -> None:
    frame = _disorder(synthetic_trades("ETHUSDT", DAY0 - 7 * HOUR_MS, 30_000, rate_per_s=0.4))
    t = frame["time"].dt.epoch("ms")
    frame = frame.with_columns(t.alias("ms")).sort(["ms", "agg_id"])
    lo, hi = int(frame["ms"][0]), int(frame["ms"][-1]) + 1
    spec = parse_session("new-york")
    windows = session_windows(spec, lo, hi)
    n, step = frame.height, max(1, frame.height // 8192)
    cuts = np.sort(np.random.default_rng(5).choice(np.arange(1, n), 12, replace=False))
    parts = []
    for a, b in zip([0, *cuts], [*cuts, n], strict=True):
        chunk = frame[int(a) : int(b)]
        parts.append(
            session_partials(
                chunk["price"].to_numpy(),
                chunk["qty"].to_numpy(),
                chunk["buyer_is_maker"].to_numpy(),
                chunk["ms"].to_numpy(),
                [s for _, s, _ in windows],
                [e for _, _, e in windows],
                offset=int(a),
                step=step,
            )
        )
    flat = merge_session_partials(*parts)
    tree = merge_session_partials(
        merge_session_partials(*parts[9:]),
        merge_session_partials(*parts[:4]),
        merge_session_partials(*parts[4:9]),
    )
    local = session_profiles_from_trades(
        frame.drop("ms"), session=spec, start=lo, end=hi, symbol="ETHUSDT"
    )
    assert len(local) >= 2
    for merged in (flat, tree):
        got = session_profiles_from_partials(
            merged, windows, session=spec, start_ms=lo, end_ms=hi, symbol="ETHUSDT"
        )
        assert_same_sessions(got, local)


def test_files_whose_times_overlap_are_read_by_one_task() -> None:
    files = pl.DataFrame(
        {
            "min_ms": [300, 0, 100, 500, 450],
            "max_ms": [400, 99, 300, 600, 470],
            "min_agg_id": [30, 0, 10, 50, 45],
        }
    )
    assert time_groups(files) == [[1], [2, 0], [4], [3]]


def test_session_profiles_of_real_recordings(
    client: object, shared_data: Path, tmp_path: Path
) -> None:
    uri = tmp_path / "table"
    with TradeStore(tmp_path / "data") as store:
        for name in (
            "spot_btcusdt_20240808-09.aggTrade.tsv.gz",
            "spot_ethusdt_20240808-09.aggTrade.tsv.gz",
        ):
            for sym, frame in load_file(shared_data / name).items():
                store.append(sym, frame)
                # one later trade closes the 00:00 hour, so both hours of the recording go
                closing = frame.tail(1).with_columns(
                    pl.col("agg_id") + 1,
                    pl.lit(DAY0 + HOUR_MS + 1).cast(pl.Datetime("ms", "UTC")).alias("time"),
                )
                store.append(sym, closing)
        assert export(store, uri, now_ms=NOW).hours == 4
        lo, hi = DAY0 - 6 * 60_000, DAY0 + 6 * 60_000  # across midnight: 2 UTC days
        for sym, session, tick in (
            ("BTCUSDT", "utc-day", None),
            ("ETHUSDT", "utc-day", None),
            ("BTCUSDT", "00:01-23:58", 0.01),  # two sessions, a gap between them
            ("ETHUSDT", "23:56-00:03", 0.01),  # one session across midnight
        ):
            trades = store.trades(sym, lo, hi)
            assert trades.height > 5000
            local = session_profiles_from_trades(
                trades, session=session, start=lo, end=hi, symbol=sym, tick_size=tick
            )
            got = distributed_session_profiles(
                uri, sym, lo, hi, client=client, session=session, tick_size=tick
            )
            assert_same_sessions(got, local)
            assert len(got) == (1 if session.startswith("23") else 2)
            if tick is not None:  # the API's own answer from the table: the same
                api = session_profiles(sym, start=lo, end=hi, source=uri, session=session)
                assert_same_sessions(got, api)


def test_session_errors(client: object, days_table: tuple[Path, TradeStore]) -> None:
    uri, _ = days_table
    with pytest.raises(InsufficientTradesError, match=r"BTCUSDT has trades in .* from 2024-08-08"):
        distributed_session_profiles(uri, "BTCUSDT", NOW, NOW + HOUR_MS, client=client)
    with pytest.raises(InvalidTradesError, match="no session to profile"):  # 03:00-04:00 only
        distributed_session_profiles(
            uri, "BTCUSDT", DAY0 + HOUR_MS, DAY0 + 2 * HOUR_MS, client=client, session="03:00-04:00"
        )
    for kwargs, match in (
        ({"session": "lunch"}, "is not a session: give 'utc-day'"),
        ({"value_area": 2}, "value_area"),
        ({"fan_in": 1}, "fan_in must be a whole number >= 2"),
        ({"client": "tcp://scheduler:8786"}, r"client must be a distributed\.Client"),
        ({"row_size": -1}, "row_size"),
    ):
        kwargs.setdefault("client", client)
        with pytest.raises(InvalidParameterError, match=match) as caught:
            distributed_session_profiles(uri, "BTCUSDT", SESSION_LO, SESSION_HI, **kwargs)
        assert "\n" not in str(caught.value)
    with pytest.raises(InvalidWindowError, match="must be after start"):
        distributed_session_profiles(uri, "BTCUSDT", SESSION_HI, SESSION_LO, client=client)
