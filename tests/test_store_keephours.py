"""Hour histograms are kept for the 48 hours before the open hour (``dayhists.KEEP_HOURS_MS``):
a profile over any window of up to two days ending now merges hour histograms only — no day
histogram less decoded trades, no aged day decoded — while older hours give way to their day's
histogram (bytes per trade ≤ 5). With a 24 h keep a 36 h window starting at noon of an aged
day decoded 12 hours of it: 1.6× DuckDB's GROUP BY in ``python -m bench versus``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from test_store_hist import DAY, START, H, check, days_used, hours_used, stored_hours

from tradelab.recordings import synthetic_trades
from tradelab.store import TradeStore


def test_two_days_of_hour_histograms_are_kept_before_the_open_hour(tmp_path: Path) -> None:
    df = synthetic_trades("BTCUSDT", START, int(2.0 * 86_400 * 4), rate_per_s=2.0, seed=21)
    df = df.filter(pl.col("time").dt.epoch("ms") < START + 4 * DAY - H // 2)
    with TradeStore(tmp_path / "db") as s:
        for _, part in df.group_by(pl.col("time").dt.epoch("ms") // H, maintain_order=True):
            s.append("BTCUSDT", part)
        s.roll_up()
        assert s.wait_idle()
        open_hour = START + 4 * DAY - H
        keep_from = open_hour - 48 * H  # 01-02 23:00
        # days 1-3 closed: each has its day histogram; hours kept only from keep_from on
        assert days_used(s, START, START + 4 * DAY) == {START, START + DAY, START + 2 * DAY}
        assert stored_hours(s, START, open_hour) == set(range(keep_from, open_hour, H))
        for hours in (24, 36, 48):  # windows ending now, starting anywhere in the kept hours
            lo = open_hour - hours * H
            got = s.price_histograms("BTCUSDT", lo, open_hour)
            assert not got.minus, hours  # nothing taken away from a day histogram
            assert all(c["price"].size == 0 for c in got.rest), hours  # nothing decoded
            whole = {d for d in range(START, open_hour, DAY) if lo <= d and d + DAY <= open_hour}
            assert days_used(s, lo, open_hour) == whole  # 48 h: day 3, wholly inside
            covered = {h for h in range(lo, open_hour, H) if h // DAY * DAY not in whole}
            assert hours_used(s, lo, open_hour) == covered
            check(s, lo, open_hour + H)  # and the profile with the open hour is the trades'
        # a window reaching past keep_from takes day histograms again, still exact
        check(s, START + 13 * H, open_hour + H)
        assert days_used(s, START + 13 * H, open_hour) == {START + DAY, START + 2 * DAY}
