"""Pure gap tracking by aggregate id: duplicates, gaps, REST backfill, unrepairable holes."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tradelab.binance.gaps import GapTracker
from tradelab.binance.protocol import Trade


def tr(a: int) -> Trade:
    return Trade("BTCUSDT", a, 1.0, 1.0, a, a, 1_000 + a, False)


def test_contiguous_then_duplicate() -> None:
    g = GapTracker("BTCUSDT")
    assert [g.observe(a, a) for a in (10, 11, 12)] == [True, True, True]
    assert g.observe(11, 11) is False and g.duplicates == 1
    assert g.resume_point == 13 and g.gaps_detected == 0


def test_gap_detected_with_size_and_span() -> None:
    g = GapTracker("BTCUSDT")
    g.observe(10, 1000)
    gap = g.observe(15, 1900)
    assert gap is not True and gap is not False
    assert (gap.first_id, gap.last_id, gap.size, gap.span_ms) == (11, 14, 4, 900)
    assert g.next_missing() == 11 and g.missing_count == 4 and g.gaps_detected == 1


def test_late_live_trades_fill_gap_and_close_it_as_backfilled() -> None:
    g = GapTracker("BTCUSDT")
    g.observe(1, 1)
    g.observe(5, 5)  # rotation overlap: new connection ahead of the old one
    assert g.observe(3, 3) is True and g.open_ranges() == [(2, 2), (4, 4)]
    assert g.observe(3, 3) is False
    g.observe(2, 2)
    g.observe(4, 4)
    [closed] = g.pop_closed()
    assert closed.recovered == 3 and closed.lost == 0
    assert (g.gaps_backfilled, g.gaps_unrepairable) == (1, 0)
    assert g.pop_closed() == []


def test_rest_fills_gap_in_pages() -> None:
    g = GapTracker("BTCUSDT")
    g.observe(0, 0)
    g.observe(2501, 2501)
    pages = 0
    while (start := g.next_missing()) is not None:
        page = [tr(a) for a in range(start, start + 1000)]
        g.apply_rest(start, page, limit=1000)
        pages += 1
    assert pages == 3 and g.gaps_backfilled == 1 and g.missing_count == 0
    # the last page reached past 2501: 2502.. were accepted (REST ahead of the stream)
    assert g.resume_point == 3001


def test_rest_hole_is_unrepairable_and_reported_once() -> None:
    g = GapTracker("BTCUSDT")
    g.observe(100, 100)
    g.observe(111, 200)
    page = [tr(a) for a in (101, 102, 106, 107, 108, 109, 110, 111, 112)]
    out = g.apply_rest(101, page, limit=1000)
    assert [t.agg_id for t in out.accepted] == [101, 102, 106, 107, 108, 109, 110, 112]
    assert out.lost == 3
    [gap] = out.closed
    assert gap.lost_ranges == [(103, 105)] and gap.recovered == 7
    assert (g.gaps_detected, g.gaps_backfilled, g.gaps_unrepairable) == (1, 0, 1)
    assert g.next_missing() is None and g.pop_closed() == []


def test_short_page_declares_tail_lost_only_when_asked() -> None:
    g = GapTracker("BTCUSDT")
    g.observe(1, 1)
    g.observe(10, 10)
    out = g.apply_rest(2, [tr(2), tr(3)], limit=1000, declare_tail_lost=False)
    assert out.lost == 0 and g.open_ranges() == [(4, 9)]
    assert g.tail_lost_pending(4, [])
    out = g.apply_rest(4, [], limit=1000)
    assert out.lost == 6 and g.gaps_unrepairable == 1


def test_resume_from_store_opens_gap_on_first_live_trade() -> None:
    g = GapTracker("BTCUSDT", last_id=41)
    assert g.observe(40, 40) is False
    gap = g.observe(50, 50)
    assert (gap.first_id, gap.last_id) == (42, 49)
    g.add_gap(5, 6)
    assert g.next_missing() == 5 and g.open_ranges() == [(5, 6), (42, 49)]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**31),
    st.lists(st.integers(1, 400), min_size=1, max_size=300),
    st.randoms(use_true_random=False),
)
def test_any_arrival_order_with_backfill_yields_each_id_once(base, steps, rnd) -> None:
    published = [base]
    for s in steps:
        published.append(published[-1] + s)  # some ids never exist anywhere (REST holes)
    history = set(published)
    hole_free = sorted(history)
    live = [a for a in hole_free if rnd.random() < 0.6]
    live += rnd.sample(live, min(len(live), 5))  # duplicates from an overlapping connection
    g = GapTracker("X", last_id=base - 1)
    accepted = [a for a in live if g.observe(a, a) is not False]
    guard = 0
    while (start := g.next_missing()) is not None:
        page = [tr(a) for a in hole_free if a >= start][:7]
        accepted += [t.agg_id for t in g.apply_rest(start, page, limit=7).accepted]
        guard += 1
        assert guard < 10_000
    top = max(live) if live else base - 1
    assert sorted(accepted) == [a for a in hole_free if a <= max(top, max(accepted, default=top))]
    assert len(accepted) == len(set(accepted))


def test_random_drop_pattern_counts() -> None:
    rnd = random.Random(1)
    g = GapTracker("X")
    seen = [a for a in range(10_000) if rnd.random() > 0.01 or a == 0]
    for a in seen:
        g.observe(a, a)
    assert g.missing_count == 10_000 - len(seen)
