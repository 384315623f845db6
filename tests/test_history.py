"""The history engine's pure parts: planning (which days from archives, which spans from REST),
checksum lines, Vision CSV parsing, the REST query rules and the weight share."""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import polars as pl
import pytest

from tradelab.binance import MAX_TIME_SPAN_MS, WeightBudget, agg_trades_query
from tradelab.exceptions import InvalidParameterError, InvalidTradesError
from tradelab.history import (
    DAY_MS,
    ArchiveDay,
    Run,
    Span,
    archive_path,
    missing_spans,
    parse_vision_csv,
    plan_fill,
)
from tradelab.history.plan import (
    HOUR_MS,
    id_jumps,
    merge_runs,
    parse_checksum,
    rest_spans_of_day,
    runs_from_ids,
    subtract,
)
from tradelab.recordings import synthetic_trades
from tradelab.simulator import build_archive

D0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC


def test_runs_from_ids_and_jumps() -> None:
    ids = np.array([5, 6, 7, 10, 11, 20])
    times = np.array([100, 101, 102, 110, 111, 200])
    assert runs_from_ids(ids, times) == [
        Run(5, 7, 100, 102),
        Run(10, 11, 110, 111),
        Run(20, 20, 200, 200),
    ]
    assert runs_from_ids(np.array([], dtype=np.int64), np.array([], dtype=np.int64)) == []
    assert id_jumps(ids) == [(8, 9), (12, 19)]
    assert merge_runs([Run(10, 11, 5, 6), Run(5, 9, 1, 4)]) == [Run(5, 11, 1, 6)]


def test_missing_spans_around_runs() -> None:
    runs = [Run(10, 19, 1_000, 1_900), Run(25, 30, 2_500, 3_000)]
    assert missing_spans(0, 5_000, runs) == [
        Span(0, 1_001, None, 9),  # before the first run: located by time, stops at id 9
        Span(1_900, 2_501, 20, 24),  # between runs: the ids are known
        Span(3_000, 5_000, 31, None),  # after the last run: up to the window's end
    ]
    assert missing_spans(0, 5_000, []) == [Span(0, 5_000)]
    assert missing_spans(5, 5, []) == []


def test_subtract_and_clip_keep_ids_only_where_the_span_still_starts_or_ends() -> None:
    s = Span(0, 100, 7, 70)
    assert subtract(s, 40, 60) == [Span(0, 40, 7, None), Span(60, 100, None, 70)]
    assert subtract(s, 0, 100) == []
    assert subtract(s, 200, 300) == [s]
    day = Span(D0 - HOUR_MS, D0 + DAY_MS + HOUR_MS, 5, 9)
    assert rest_spans_of_day([day], D0) == [Span(D0, D0 + DAY_MS, None, None)]


def test_plan_takes_whole_past_days_from_archives_and_the_rest_from_rest() -> None:
    start, end = D0 - 6 * HOUR_MS, D0 + DAY_MS + 4 * HOUR_MS  # 6 h + a whole day + 4 h
    plan = plan_fill(start, end, [], now=end)
    assert [d.date for d in plan.archive_days] == ["2025-12-31", "2026-01-01"]
    assert plan.archive_days[0] == ArchiveDay(D0 - DAY_MS, start, D0, 6 * HOUR_MS)
    assert plan.archive_days[1] == ArchiveDay(D0, D0, D0 + DAY_MS, DAY_MS)
    assert plan.rest_spans == (Span(D0 + DAY_MS, end),)  # today: not published yet
    assert plan.missing_ms == end - start
    # Less than an hour missing in a day: REST is cheaper than a day's zip.
    plan = plan_fill(D0 + DAY_MS - 30 * 60_000, end, [], now=end)
    assert plan.archive_days == () and plan.rest_spans == (Span(plan.start, end),)
    # A day the store already holds entirely is not fetched again.
    runs = [Run(1, 1_000, D0 - 1, D0 + DAY_MS)]
    plan = plan_fill(D0, D0 + DAY_MS, runs, now=end)
    assert plan.archive_days == () and plan.rest_spans == ()
    plan = plan_fill(start, end, [], now=end, use_archives=False)
    assert plan.archive_days == () and plan.rest_spans == (Span(start, end),)


def test_archive_paths_and_checksum_lines() -> None:
    assert archive_path("BTCUSDT", D0 + 5) == (
        "/data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2026-01-01.zip"
    )
    digest = "a" * 64
    assert parse_checksum(f"{digest}  BTCUSDT-aggTrades-2026-01-01.zip\n") == (
        digest,
        "BTCUSDT-aggTrades-2026-01-01.zip",
    )
    for bad in ("", "abc  x.zip", "z" * 64 + "  x.zip", digest):
        with pytest.raises(ValueError):
            parse_checksum(bad)


def _zip_csv(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.read(zf.namelist()[0])


@pytest.mark.parametrize("day", [D0, D0 - 400 * DAY_MS])  # µs since 2025, ms before
def test_simulator_archive_round_trips_through_the_parser(day: int) -> None:
    trades = synthetic_trades("BTCUSDT", day + 1_000, 5_000, first_agg_id=77)
    data, line = build_archive("BTCUSDT", day, trades)
    digest, name = parse_checksum(line)
    assert digest == hashlib.sha256(data).hexdigest() and name.endswith(".zip")
    csv = _zip_csv(data)
    stamp = csv.split(b"\n", 1)[0].split(b",")[5]
    assert len(stamp) == (16 if day >= D0 - 365 * DAY_MS else 13)
    assert parse_vision_csv(csv).equals(trades)


def test_parse_vision_csv_of_the_real_export(shared_data) -> None:
    frame = parse_vision_csv(
        (shared_data / "BTCUSDT-aggTrades-2026-01-01.first5000.csv").read_bytes()
    )
    assert frame.height == 5_000 and frame["agg_id"][0] == 3_800_397_495
    assert frame["time"][0].isoformat() == "2026-01-01T00:00:00.039000+00:00"
    assert frame["price"][0] == 87648.21 and frame["buyer_is_maker"][0] is True
    assert frame["agg_id"].diff().drop_nulls().eq(1).all()


def test_parse_vision_csv_refuses_other_files() -> None:
    with pytest.raises(InvalidTradesError):
        parse_vision_csv(b"1,2,3\n4,5,6\n")
    assert parse_vision_csv(b"").height == 0
    assert isinstance(parse_vision_csv(b"").schema, pl.Schema)


def test_agg_trades_query_by_time_and_its_limits() -> None:
    url = agg_trades_query("http://h:1", "BTCUSDT", start_time=5, end_time=5 + MAX_TIME_SPAN_MS)
    assert url == (
        "http://h:1/api/v3/aggTrades?symbol=BTCUSDT&startTime=5&endTime=3600005&limit=1000"
    )
    with pytest.raises(InvalidParameterError, match="one hour"):
        agg_trades_query("http://h:1", "BTCUSDT", start_time=0, end_time=MAX_TIME_SPAN_MS + 1)
    with pytest.raises(InvalidParameterError, match="-1128"):
        agg_trades_query("http://h:1", "BTCUSDT", from_id=1, start_time=0)
    with pytest.raises(InvalidParameterError):
        agg_trades_query("http://h:1", "BTCUSDT", start_time=10, end_time=5)


def test_weight_share_leaves_the_rest_of_the_minute_to_others() -> None:
    budget = WeightBudget(6000, headroom=0.5)
    budget.update(2996, now=120.0)
    assert budget.delay(4, now=121.0) == 0.0  # 3000: exactly the share
    budget.update(3000, now=121.0)
    assert budget.delay(4, now=121.0) == pytest.approx(59.05)  # wait for the next minute
    assert budget.delay(4, now=180.0) == 0.0
    with pytest.raises(InvalidParameterError):
        WeightBudget(6000, headroom=0)
