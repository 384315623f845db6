"""Issue 12 ("survive the world"), the collector's parts with small fakes: a bad REST item does
not block later repairs, an implausible trade is stored only when REST vouches for it.

The end-to-end versions against the simulator are in ``test_survive.py``.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from tradelab.binance import GapTracker, Trade, WeightBudget
from tradelab.binance.protocol import MalformedPageError, Plausibility
from tradelab.collector.backfill import Backfiller
from tradelab.collector.gate import IntakeGate
from tradelab.collector.ports import AggTradesSource
from tradelab.collector.runtime import LastErrors, StopSignal
from tradelab.collector.suspects import BadItems, Suspects, confirms

SYM = "BTCUSDT"
T0 = 1_700_000_000_000


def trade(agg_id: int, *, time: int | None = None) -> Trade:
    return Trade(SYM, agg_id, 100.0 + agg_id, 0.5, agg_id, agg_id, time or T0 + agg_id, True)


class BadItemRest:
    """An AggTradesSource over ids ``ids`` that always serves the items in ``bad`` malformed
    (as :func:`~tradelab.binance.protocol.parse_rest_items` reports them)."""

    def __init__(self, ids: list[int], bad: set[int]) -> None:
        self.history = [trade(a) for a in ids]
        self.bad = bad
        self.calls: list[tuple[str, int | None, int]] = []
        self.budget = WeightBudget()

    def weight_delay(self) -> float:
        return 0.0

    async def agg_trades(
        self, symbol: str, from_id: int | None = None, limit: int = 1000
    ) -> list[Trade]:
        self.calls.append((symbol, from_id, limit))
        page = [t for t in self.history if t.agg_id >= (from_id or 0)][:limit]
        broken = [
            (t.agg_id, "field 'p' must be a decimal string") for t in page if t.agg_id in self.bad
        ]
        if broken:
            good = [t for t in page if t.agg_id not in self.bad]
            raise MalformedPageError(f"item {broken[0][0]}: bad", good, broken, len(page))
        return page


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == name]


def make(rest: AggTradesSource, **kw) -> tuple[Backfiller, GapTracker, IntakeGate]:
    tracker = GapTracker(SYM)
    gate = IntakeGate([SYM], 10_000)
    gate.begin()
    stop = StopSignal()
    stop.begin()
    bf = Backfiller({SYM: tracker}, rest, gate, stop, LastErrors([SYM]), rest_limit=1000, **kw)
    bf.begin()
    return bf, tracker, gate


def test_a_bad_rest_item_is_given_up_after_bounded_retries_and_later_holes_are_repaired(
    caplog,
) -> None:
    """Issue 12, item 3: a page with one item the collector rejects used to be refused whole
    and retried forever. Now the valid items are kept, the bad id is asked for again
    ``rest_item_retries`` times and then recorded as unrepairable, and the hole behind it is
    repaired too."""
    caplog.set_level(logging.DEBUG, logger="tradelab.collector")
    rest = BadItemRest(list(range(1, 21)), bad={4})
    bf, tracker, gate = make(rest, item_retries=2)
    for a in (1, 2, 6, 7, 10, 20):  # holes 3..5, 8..9 and 11..19
        v = tracker.observe(a, T0 + a)
        if v is not True:
            bf.gap_detected(v)  # type: ignore[arg-type]
    asyncio.run(asyncio.wait_for(bf.run_round(), 10.0))
    assert tracker.open_gaps == []
    assert sorted(t.agg_id for t in gate.take(SYM)) == [3, 5, 8, 9, *range(11, 20)]
    assert gate.take_unrepairable(SYM) == [(4, 4)]  # recorded with the round's trades
    asked_for_4 = [c for c in rest.calls if c[1] is not None and c[1] <= 4]
    assert len(asked_for_4) == 3  # once, then rest_item_retries=2 more times, then given up
    assert [r.agg_id for r in events(caplog, "rest_item_malformed")] == [4, 4]
    [given_up] = events(caplog, "rest_item_unrepairable")
    assert given_up.levelno == logging.ERROR and given_up.agg_ids == [4]
    [lost] = events(caplog, "gap_unrepairable")
    assert lost.lost_ranges == [(4, 4)]


def test_bad_items_of_ids_already_held_are_ignored() -> None:
    """A tail page reaches back into ids already received: their bad copies are no loss."""
    rest = BadItemRest(list(range(1, 8)), bad={2})
    bf, tracker, gate = make(rest)
    for a in (1, 2, 3):
        tracker.observe(a, T0 + a)
    bf.request_tail((SYM,))
    asyncio.run(asyncio.wait_for(bf.run_round(), 5.0))
    assert [t.agg_id for t in gate.take(SYM)] == [4, 5, 6, 7]
    assert gate.take_unrepairable(SYM) == [] and tracker.gaps_unrepairable == 0


def test_a_bad_last_item_of_a_tail_page_is_given_up_too() -> None:
    rest = BadItemRest(list(range(1, 6)), bad={5})
    bf, tracker, gate = make(rest, item_retries=1)
    tracker.observe(1, T0 + 1)
    bf.request_tail((SYM,))
    asyncio.run(asyncio.wait_for(bf.run_round(), 5.0))
    assert [t.agg_id for t in gate.take(SYM)] == [2, 3, 4]
    assert gate.take_unrepairable(SYM) == [(5, 5)] and tracker.high == 5


class OneTradeRest:
    """REST that knows exactly the trades ``known`` (by id)."""

    def __init__(self, known: list[Trade]) -> None:
        self.known = {t.agg_id: t for t in known}
        self.calls: list[tuple[str, int | None, int]] = []
        self.budget = WeightBudget()

    def weight_delay(self) -> float:
        return 0.0

    async def agg_trades(
        self, symbol: str, from_id: int | None = None, limit: int = 1000
    ) -> list[Trade]:
        self.calls.append((symbol, from_id, limit))
        return [self.known[a] for a in sorted(self.known) if a >= (from_id or 0)][:limit]


def test_an_implausible_trade_is_stored_only_if_rest_confirms_it(caplog) -> None:
    """Issue 12, item 2: a streamed trade with an absurd id or time is skipped and verified
    against REST before anything is stored: REST does not have it -> discarded; REST has it
    with other values -> discarded; REST has it -> stored, the ids before it are a gap."""
    caplog.set_level(logging.DEBUG, logger="tradelab.collector")
    real = trade(50_000_000)  # a real trade 50 M ids later (e.g. after a long outage)
    rest = OneTradeRest([trade(a) for a in range(1, 11)] + [real])
    bf, tracker, gate = make(rest, plausibility=Plausibility(max_id_jump=1000))
    for a in range(1, 11):
        tracker.observe(a, T0 + a)
    absurd = trade(4611686018427387904)
    century = trade(10, time=T0 + 100 * 365 * 86_400_000)._replace(agg_id=11)
    other_values = real._replace(price=1.0)
    for t in (absurd, century, other_values):
        bf.suspect(t, "implausible")
    bf.suspect(real, "implausible")  # the same id twice: queued once (the first copy)
    assert len(bf.suspects) == 3
    asyncio.run(asyncio.wait_for(bf.run_round(), 5.0))
    assert len(bf.suspects) == 0 and gate.take(SYM) == []  # nothing vouched for: nothing in
    assert len(events(caplog, "implausible_discarded")) == 3
    # the real trade, reported again, is confirmed: stored, and 11..49,999,999 is a gap (that
    # REST then finds it does not have, here)
    bf.suspect(real, "implausible")
    asyncio.run(asyncio.wait_for(bf.run_round(), 5.0))
    assert [t.agg_id for t in gate.take(SYM)] == [real.agg_id] and tracker.high == real.agg_id
    assert [r.agg_id for r in events(caplog, "implausible_confirmed")] == [real.agg_id]
    gap = events(caplog, "gap_detected")[-1]
    assert (gap.first_id, gap.last_id, gap.source) == (11, real.agg_id - 1, "verified")
    # one request of one trade per suspect, lowest id first
    assert rest.calls[:3] == [(SYM, 11, 1), (SYM, real.agg_id, 1), (SYM, absurd.agg_id, 1)]


def test_suspect_queue_and_bad_item_counts_are_bounded() -> None:
    q = Suspects([SYM], per_symbol=3)
    assert [q.add(trade(a), "x") for a in (9, 7, 8, 6)] == [True, True, True, False]
    assert q.dropped == 1 and q.next() == (trade(7), "x") and len(q) == 3
    assert confirms(trade(7), [trade(7)]) and not confirms(trade(7), [trade(8)])
    assert not confirms(trade(7), []) and not confirms(trade(7), [trade(7)._replace(qty=2.0)])
    b = BadItems(2)
    assert b.fail(SYM, [4]) == [] and b.fail(SYM, [4]) == [] and b.fail(SYM, [4, 9]) == [4]
