"""History fills against the simulator: archives for whole past days, REST for the rest, the
weight share, Retry-After, refused archives, stop and resume — with the real store."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator

import pytest

from tradelab.cli import main
from tradelab.history import DAY_MS, HistoryProgress, fill_window
from tradelab.simulator import Faults, Simulator
from tradelab.store import TradeStore

HOUR = 3_600_000
SYM = "BTCUSDT"


@pytest.fixture(scope="module")
def hist_sim() -> Iterator[Simulator]:
    """30 hours of synthetic history at 5 trades/s (~540k trades), then live at that pace."""
    with Simulator((SYM,), history_hours=30, rate_per_s=5, speed=1, seed=7) as sim:
        yield sim


def _now() -> int:
    return int(time.time() * 1000)


def _rest(records: list) -> list:
    return [r for r in records if r.kind == "rest" and r.path == "/api/v3/aggTrades"]


def test_backfill_30_hours_is_the_simulators_history(hist_sim, tmp_path, capsys) -> None:
    sim, data = hist_sim, str(tmp_path / "db")
    args = ["backfill", SYM, "--hours", "30", "--data", data]
    args += ["--rest-url", sim.rest_url, "--archive-url", sim.archive_url]
    n0, t_a = len(sim.requests), _now()
    assert main(args) == 0
    t_b = _now()
    out = capsys.readouterr().out
    assert out.startswith(f"{SYM}: ") and "from archives" in out
    with TradeStore(data) as store:
        got = store.trades(SYM, 0, t_b + HOUR)
    ms = got["time"].dt.epoch("ms")
    first, last = int(ms.min()), int(ms.max())  # type: ignore[arg-type]
    # The store equals the simulator's history for the window, every id once ...
    assert got.equals(sim.history_frame(SYM, first, last + 1))
    # ... and the window is whole: nothing published in it is missing at either end.
    assert t_a - 30 * HOUR <= first and sim.history_frame(SYM, t_b - 30 * HOUR, first).height == 0
    assert last < t_b and sim.history_frame(SYM, last + 1, t_a).height == 0
    reqs = sim.requests[n0:]
    zips = [r for r in reqs if r.kind == "archive" and r.path.endswith(".zip")]
    assert zips and all(r.status == 200 for r in zips)
    rest = _rest(reqs)
    for z in zips:  # each archived day came from its zip alone, never through REST
        date = z.path.rsplit("-aggTrades-", 1)[1][:10]
        day = int(dt.datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=dt.UTC).timestamp() * 1000)
        lo, hi = max(day, t_b - 30 * HOUR), day + DAY_MS
        assert sim.history_frame(SYM, lo, hi).height > 0
        assert all(r.trades == 0 or r.last_time < lo or r.first_time >= hi for r in rest)
    # REST: never more than an hour between startTime and endTime (-1127), never a 4xx.
    assert rest and all(r.status == 200 for r in rest)
    for r in rest:
        q = dict(kv.split("=") for kv in r.query.split("&"))
        if "startTime" in q and "endTime" in q:
            assert int(q["endTime"]) - int(q["startTime"]) < HOUR
    # A second run fetches only what is still missing: the few live seconds since.
    n1 = len(sim.requests)
    assert main(args) == 0
    again = sim.requests[n1:]
    assert not [r for r in again if r.kind == "archive"] and len(_rest(again)) <= 3


@pytest.mark.parametrize(
    ("faults", "why"),
    [(Faults(archive_bad_checksum=True), "refused"), (Faults(archive_missing=True), "404")],
)
def test_refused_or_missing_archive_day_is_fetched_through_rest(
    hist_sim, store, faults, why
) -> None:
    sim = hist_sim
    day = _now() // DAY_MS * DAY_MS - DAY_MS  # yesterday, midnight UTC
    lo, hi = day + 21 * HOUR, day + DAY_MS + HOUR // 2
    n0 = len(sim.requests)
    sim.set_faults(faults)
    try:
        report = fill_window(store, SYM, lo, hi, rest_url=sim.rest_url, archive_url=sim.archive_url)
    finally:
        sim.set_faults(Faults())
    assert report.archive_days == () and report.complete
    assert len(report.archive_refused) == 1 and why in report.archive_refused[0][1]
    assert store.trades(SYM, lo, hi).equals(sim.history_frame(SYM, lo, hi))
    rest = _rest(sim.requests[n0:])
    assert any(r.trades and r.first_time < day + DAY_MS for r in rest)  # the day came by REST
    if why == "refused":  # the zip was downloaded, then refused on its checksum
        zips = [r for r in sim.requests[n0:] if r.path.endswith(".zip")]
        assert [r.status for r in zips] == [200]


def test_the_simulators_archive_matches_its_checksum(hist_sim) -> None:
    day = _now() // DAY_MS * DAY_MS - DAY_MS
    date = time.strftime("%Y-%m-%d", time.gmtime(day / 1000))
    url = f"{hist_sim.archive_url}/data/spot/daily/aggTrades/{SYM}/{SYM}-aggTrades-{date}.zip"
    data = urllib.request.urlopen(url).read()
    line = urllib.request.urlopen(url + ".CHECKSUM").read().decode()
    assert line == f"{hashlib.sha256(data).hexdigest()}  {SYM}-aggTrades-{date}.zip\n"
    today = time.strftime("%Y-%m-%d", time.gmtime(time.time()))
    for missing in (url.replace(date, today), url.replace(SYM, "ETHUSDT")):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(missing)
        assert err.value.code == 404  # a day not over yet is not published


def test_retry_after_is_honoured(hist_sim, store) -> None:
    sim, slept = hist_sim, []

    def sleep(s: float) -> None:
        slept.append(s)
        time.sleep(s)

    end = _now() - HOUR
    sim.set_faults(Faults(rest_fail_next=2, rest_fail_status=418, retry_after=1))
    try:
        report = fill_window(
            store, SYM, end - 600_000, end, rest_url=sim.rest_url, use_archives=False, sleep=sleep
        )
    finally:
        sim.set_faults(Faults())
    assert slept[:2] == [1, 1] and report.complete
    assert store.trades(SYM, end - 600_000, end).equals(sim.history_frame(SYM, end - 600_000, end))


def test_stop_then_resume_fills_exactly_once(hist_sim, store) -> None:
    sim = hist_sim
    end = _now() - 2 * HOUR
    start = end - HOUR
    want = sim.history_frame(SYM, start, end)
    store.append(SYM, want.slice(3_000, 2_000))  # stored pieces: the fill goes around them
    store.append(SYM, want.slice(9_000, 10))
    stop = threading.Event()
    seen: list[HistoryProgress] = []

    def progress(p: HistoryProgress) -> None:
        seen.append(p)
        if p.trades >= 5_000:
            stop.set()

    first = fill_window(
        store,
        SYM,
        start,
        end,
        rest_url=sim.rest_url,
        use_archives=False,
        progress=progress,
        stop=stop,
    )
    assert not first.complete and first.unfetched[0][2] == "stopped"
    assert seen[-1].done and 0.03 < seen[0].days_total < 1 / 24  # the stored pieces excluded
    assert seen[-1].days_done < seen[-1].days_total
    again = fill_window(store, SYM, start, end, rest_url=sim.rest_url, use_archives=False)
    assert again.complete
    assert store.trades(SYM, start, end).equals(want)
    assert first.trades + again.trades + 2_010 == want.height


def test_weight_share_is_honoured_per_minute(tmp_path) -> None:
    """A clock 60x faster on both sides: a REST minute passes every real second."""
    t0 = time.time()

    def fast() -> float:
        return t0 + (time.time() - t0) * 60

    with (
        Simulator(
            (SYM,),
            history_hours=2,
            rate_per_s=5,
            speed=1,
            seed=3,
            weight_limit=200,
            rest_clock=fast,
        ) as sim,
        TradeStore(tmp_path / "db") as store,
    ):
        end = _now()
        report = fill_window(
            store,
            SYM,
            end - 2 * HOUR,
            end,
            rest_url=sim.rest_url,
            use_archives=False,
            weight_limit=200,
            weight_share=0.5,
            clock=fast,
            sleep=lambda s: time.sleep(s / 60),
        )
        assert report.complete and report.rest_calls > 25
        assert store.trades(SYM, end - 2 * HOUR, end).equals(
            sim.history_frame(SYM, end - 2 * HOUR, end)
        )
        rest = _rest(sim.requests)
    assert all(r.status == 200 for r in rest)  # never a 429
    per_minute = Counter(int(r.at // 60) for r in rest)
    assert max(per_minute.values()) * 4 <= 100 and len(per_minute) >= 2


def test_ids_the_exchange_lacks_are_recorded_unrepairable_with_the_trades(tmp_path) -> None:
    faults = Faults(skip_rate=0.01, skip_length=3, skip_unrepairable=1.0)
    with Simulator((SYM,), speed=20, seed=11, faults=faults) as sim:
        deadline = time.monotonic() + 30
        while len(sim.published(SYM)) < 3000 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(sim.published(SYM)) >= 3000
        with TradeStore(tmp_path / "db") as store:
            report = fill_window(
                store, SYM, _now() - HOUR, _now(), rest_url=sim.rest_url, use_archives=False
            )
            holes = store.holes(SYM)
            stored = store.trades(SYM, 0, _now() + HOUR)["agg_id"].to_list()
        published = sim.published(SYM)  # after the fill: it may have stored newer trades
    assert report.unrepairable, "the simulator skipped ids that REST does not have"
    assert holes.height > 0 and holes["unrepairable"].all()
    # exactly the ids the exchange never published, between the first and last stored id
    never = set(range(stored[0], stored[-1] + 1)) - set(published)
    assert sum(holes["count"]) == len(never) and set(stored) <= set(published)
    assert main(["check", "--data", str(tmp_path / "db")]) == 0
