"""The REST backfill client against the simulator's real HTTP endpoint, and its pure parts."""

from __future__ import annotations

import asyncio
import time

import pytest

from tradelab.binance.rest import RestClient, WeightBudget, parse_retry_after
from tradelab.exceptions import (
    EndpointUnreachableError,
    ExchangeError,
    InvalidParameterError,
    RateLimitedError,
)
from tradelab.simulator import Faults, Simulator


@pytest.fixture(scope="module")
def sim():
    with Simulator(("BTCUSDT",), source="synthetic", speed=50, max_trades=3000, seed=2) as s:
        for _ in range(200):  # production is bounded; wait for it to finish (bounded loop)
            if len(s.published("BTCUSDT")) >= 3000:
                break
            time.sleep(0.05)
        yield s


def test_pages_from_id_match_the_published_history(sim) -> None:
    client = RestClient(sim.rest_url)
    ids = sim.published("BTCUSDT")
    page = client.fetch_agg_trades("BTCUSDT", ids[10], 1000)
    assert [t.agg_id for t in page] == ids[10:1010]
    assert all(t.symbol == "BTCUSDT" for t in page)
    frame = sim.published_frame("BTCUSDT")
    row = frame.row(10, named=True)
    t = page[0]
    assert (t.price, t.qty, t.first_id, t.last_id, t.buyer_is_maker) == (
        row["price"],
        row["qty"],
        row["first_id"],
        row["last_id"],
        row["buyer_is_maker"],
    )
    assert client.budget.used > 0  # the weight header was read


def test_async_call_runs_off_the_loop(sim) -> None:
    client = RestClient(sim.rest_url)
    ids = sim.published("BTCUSDT")
    page = asyncio.run(client.agg_trades("BTCUSDT", ids[-5]))
    assert [t.agg_id for t in page] == ids[-5:]


@pytest.mark.parametrize("status", [429, 418])
def test_rate_limit_answers_carry_retry_after(sim, status) -> None:
    sim.set_faults(Faults(rest_fail_next=1, rest_fail_status=status, retry_after=7))
    try:
        with pytest.raises(RateLimitedError) as info:
            RestClient(sim.rest_url).fetch_agg_trades("BTCUSDT", sim.published("BTCUSDT")[0])
    finally:
        sim.set_faults(Faults())
    assert info.value.status == status and info.value.retry_after == 7
    assert "Retry-After 7 s" in str(info.value)


def test_unknown_symbol_and_unreachable_endpoint(sim) -> None:
    with pytest.raises(ExchangeError, match=r"HTTP 400: -1121: Invalid symbol"):
        RestClient(sim.rest_url).fetch_agg_trades("XRPUSDT", 1)
    with pytest.raises(EndpointUnreachableError, match="unreachable"):
        RestClient("http://127.0.0.1:9", timeout=2).fetch_agg_trades("BTCUSDT", 1)
    with pytest.raises(InvalidParameterError, match="timeout"):
        RestClient(sim.rest_url, timeout=0)


def test_weight_budget_waits_for_the_next_minute() -> None:
    b = WeightBudget(100, headroom=0.8)
    assert b.delay(4, now=120.0) == 0.0
    b.update(78, now=130.0)
    assert b.delay(4, now=131.0) == pytest.approx(180 - 131 + 0.05)
    assert b.delay(2, now=131.0) == 0.0
    assert b.delay(4, now=180.5) == 0.0  # a new minute: the server's counter reset
    with pytest.raises(InvalidParameterError):
        WeightBudget(0)


def test_parse_retry_after() -> None:
    assert parse_retry_after("12", 5) == 12
    assert parse_retry_after(None, 5) == 5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 5) == 5
    assert parse_retry_after("-3", 5) == 5
