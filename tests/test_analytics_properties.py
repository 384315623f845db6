"""Property tests (hypothesis) of the volume profile: what holds for any trades."""

from __future__ import annotations

import itertools
from decimal import Decimal

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradelab.analytics import liquidity_vacuums, volume_profile

TICKS = [0.01, 0.1, 0.5, 1.0, 0.00001, 0.25]


@st.composite
def profiles(draw):
    tick = draw(st.sampled_from(TICKS))
    base = draw(st.integers(min_value=1, max_value=10_000_000))
    spread = draw(st.integers(min_value=0, max_value=3_000))
    n = draw(st.integers(min_value=1, max_value=120))
    offsets = draw(st.lists(st.integers(0, spread), min_size=n, max_size=n))
    units = draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n))
    if not any(units):
        units[0] = 1
    makers = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    dec = max(0, -Decimal(repr(tick)).normalize().as_tuple().exponent)
    prices = [round((base + o) * tick, dec + 1) for o in offsets]
    qtys = [u / 10**8 for u in units]
    how = draw(st.sampled_from(["auto", "row_ticks", "rows"]))
    kwargs: dict = {"tick_size": tick}
    if how == "row_ticks":
        # a row at most as tall as the lowest price (a coarser one is refused as implausible)
        kwargs["row_size"] = round(draw(st.integers(1, min(400, base))) * tick, dec + 1)
    elif how == "rows":
        kwargs["rows"] = draw(st.integers(1, 300))
    kwargs["value_area"] = draw(st.sampled_from([0.7, 0.5, 0.01, 0.95, 1.0, 0.333]))
    kwargs["method"] = draw(st.sampled_from(["cbot", "single"]))
    df = pl.DataFrame({"price": prices, "qty": qtys, "buyer_is_maker": makers})
    return df, kwargs


def D(x: float) -> Decimal:
    return Decimal(repr(float(x)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profiles())
def test_profile_invariants(case) -> None:
    df, kwargs = case
    vp = volume_profile(df, **kwargs)
    rows = vp.rows
    lows, highs = rows["price_low"].to_list(), rows["price_high"].to_list()
    vols = [D(v) for v in rows["volume"].to_list()]

    # rows partition the traded range: contiguous, equal height, covering min and max price
    assert all(h == lo for h, lo in zip(highs[:-1], lows[1:], strict=True))
    assert all(
        abs((h - lo) - vp.row_size) <= 1e-9 * max(1.0, h) for lo, h in zip(lows, highs, strict=True)
    )
    assert lows[0] <= vp.price_min < highs[0]
    assert lows[-1] <= vp.price_max < highs[-1]
    assert rows.height <= 1_000_000
    if "rows" in kwargs:
        assert rows.height <= kwargs["rows"] or (kwargs["rows"] == 1 and rows.height == 2)

    # every trade counted once; volumes exact
    assert sum(rows["trades"].to_list()) == df.height == vp.trade_count
    assert sum(vols) == sum(D(q) for q in df["qty"].to_list()) == D(vp.total_volume)
    for b, s, v, d in zip(
        rows["buy_volume"], rows["sell_volume"], rows["volume"], rows["delta"], strict=True
    ):
        assert D(b) + D(s) == D(v)
        assert D(b) - D(s) == D(d)
    sells = sum(D(q) for q, m in zip(df["qty"], df["buyer_is_maker"], strict=True) if m)
    assert D(vp.sell_volume) == sells

    # POC is a maximum, and inside the value area; the value area reaches its target
    assert vols[vp.poc_index] == max(vols)
    assert vp.va_low_index <= vp.poc_index <= vp.va_high_index
    covered = sum(vols[vp.va_low_index : vp.va_high_index + 1])
    assert covered >= Decimal(repr(kwargs["value_area"])) * sum(vols)
    assert vp.val == lows[vp.va_low_index] and vp.vah == highs[vp.va_high_index]
    assert vp.val <= vp.poc <= vp.vah

    # vacuums are runs of thin rows inside the range, sorted and disjoint
    vac = liquidity_vacuums(vp)
    assert all(a.price_high <= b.price_low for a, b in itertools.pairwise(vac))
    assert all(lows[0] <= v.price_low < v.price_high <= highs[-1] for v in vac)
