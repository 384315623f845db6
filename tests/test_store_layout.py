"""The open hour's layout after the roll-ups: its closed ten-minute spans as one block, the
closed minutes after them one block each, the open minute's 1-second blocks — so a 1 h window
reads a few dozen blocks instead of ~120, exactly."""

from __future__ import annotations

import polars as pl

from tradelab.recordings import synthetic_trades
from tradelab.store.keys import HOUR_MS, MINUTE_MS, SPAN_MS

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
FAR = 10**13


def test_the_open_hours_closed_ten_minute_spans_become_one_block(store):
    # the last 5 minutes of an hour, then 27.5 minutes of the next, second by second
    df = synthetic_trades("BTCUSDT", T0 + HOUR_MS - 300_000, 9_750, rate_per_s=5.0)
    ms = df["time"].dt.epoch("ms")
    last = int(ms.max())
    hour = T0 + HOUR_MS
    assert last - hour > 2 * SPAN_MS + 5 * MINUTE_MS
    for _, batch in df.group_by(ms // 1000, maintain_order=True):
        store.append("BTCUSDT", batch)
    assert store.wait_idle()
    st = store._states["BTCUSDT"]
    span = last - last % SPAN_MS
    minute = last - last % MINUTE_MS
    assert st.keys_between(T0, hour) == [st.keys[0]]  # the closed hour: one block
    assert len(st.keys_between(hour, span)) == 1  # two closed ten-minute spans: one block
    closed_minutes = st.keys_between(span, minute)
    assert len(closed_minutes) == (minute - span) // MINUTE_MS  # one block per closed minute
    seconds = st.keys_between(minute, FAR)
    assert len(seconds) > 5  # the open minute's 1-second blocks
    # a 1 h window: the closed hour's block, the span's, the closed minutes', the seconds'
    n = store.block_count("BTCUSDT", last + 1 - HOUR_MS, last + 1)
    assert n == 2 + len(closed_minutes) + len(seconds) < 2 + 27 + len(seconds)
    assert store.trades("BTCUSDT", 0, FAR).equals(df)
    for lo, hi in [(last + 1 - HOUR_MS, last + 1), (hour + 599_000, hour + 601_000)]:
        want = df.filter((ms >= lo) & (ms < hi))
        assert want.height and store.trades("BTCUSDT", lo, hi).equals(want)
    # the next span boundary merges again into the same block (re-encoded, grown)
    first = st.keys_between(hour, span)[0]
    more = synthetic_trades(
        "BTCUSDT", span + SPAN_MS, 50, rate_per_s=5.0, first_agg_id=int(df["agg_id"][-1]) + 1
    )
    store.append("BTCUSDT", more)
    assert store.wait_idle()
    assert st.keys_between(hour, span + SPAN_MS) == [first]
    assert st.index[first][0] == int(((ms >= hour) & (ms < span + SPAN_MS)).sum())
    assert store.trades("BTCUSDT", 0, FAR).equals(pl.concat([df, more]))
