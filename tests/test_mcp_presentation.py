"""The MCP server's presentation layer, without MCP: row merging, price text, vacuum readings."""

from __future__ import annotations

import itertools
import random
from types import SimpleNamespace

import pytest

from tradelab.mcp_server.server import MAX_ROWS, format_price, merge_rows, vacuum_reading


def _rows(n: int, row_size: float, start: float, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        buy, sell = rng.random() * 3, rng.random() * 3
        if rng.random() < 0.2:
            buy = sell = 0.0
        out.append(
            {
                "price_low": round(start + i * row_size, 8),
                "price_high": round(start + (i + 1) * row_size, 8),
                "volume": buy + sell,
                "buy_volume": buy,
                "sell_volume": sell,
                "delta": buy - sell,
                "trades": 0 if buy + sell == 0 else rng.randint(1, 9),
            }
        )
    return out


def test_rows_within_the_bound_are_returned_unchanged() -> None:
    rows = _rows(MAX_ROWS, 0.5, 61000.0)
    merged, factor = merge_rows(rows, 0.5)
    assert factor == 1
    assert merged == rows


@pytest.mark.parametrize(
    ("n", "row_size", "start"),
    [(201, 0.01, 60000.37), (1000, 0.5, 61000.5), (4321, 2.5, 3012.5), (50_000, 0.01, 1.0)],
)
def test_merging_keeps_totals_alignment_and_the_bound(
    n: int, row_size: float, start: float
) -> None:
    rows = _rows(n, row_size, start)
    merged, factor = merge_rows(rows, row_size)
    assert 1 < len(merged) <= MAX_ROWS
    assert factor >= n / MAX_ROWS
    for key in ("volume", "buy_volume", "sell_volume", "delta"):
        assert sum(m[key] for m in merged) == pytest.approx(sum(r[key] for r in rows))
    assert sum(m["trades"] for m in merged) == sum(r["trades"] for r in rows)
    # Covers exactly the traded range, contiguous, low to high.
    assert merged[0]["price_low"] == pytest.approx(rows[0]["price_low"])
    assert merged[-1]["price_high"] == pytest.approx(rows[-1]["price_high"])
    for a, b in itertools.pairwise(merged):
        assert a["price_high"] == pytest.approx(b["price_low"])
    # Inner edges sit on multiples of the merged row size (same prices -> same merged row).
    step = row_size * factor
    for m in merged[1:]:
        ratio = m["price_low"] / step
        assert ratio == pytest.approx(round(ratio), abs=1e-6)
    # Every full-resolution row lies inside exactly one merged row.
    for r in rows:
        mid = (r["price_low"] + r["price_high"]) / 2
        assert sum(m["price_low"] <= mid < m["price_high"] for m in merged) == 1


def test_merge_rejects_a_zero_bound() -> None:
    with pytest.raises(ValueError, match="max_rows"):
        merge_rows(_rows(3, 1.0, 10.0), 1.0, 0)


def test_prices_print_with_the_decimals_the_step_needs() -> None:
    assert format_price(61790.0, 5.0) == "61,790"
    assert format_price(61790.5, 2.5) == "61,790.5"
    assert format_price(3012.37, 0.01) == "3,012.37"
    assert format_price(0.123456, 0.000001) == "0.123456"
    assert format_price(61790.0) == "61,790.00"
    assert format_price(61653.75, 2.5) == "61,653.75"  # a row middle keeps its digits


def test_vacuum_reading_is_one_line_with_zone_side_and_impact() -> None:
    v = SimpleNamespace(price_low=61790.0, price_high=61805.0, deficit_pct=92.4, impact="fast")
    text = vacuum_reading(v, poc=61500.0, step=5.0)
    assert text == (
        "thin zone 61,790–61,805 above the POC (92% below the median row volume): "
        "price likely to move fast through it"
    )
    low = SimpleNamespace(
        price_low=61000.0, price_high=61010.0, deficit_pct=60.0, impact="moderate"
    )
    assert "below the POC" in vacuum_reading(low, poc=61500.0, step=5.0)
    assert "may move quickly" in vacuum_reading(low, poc=61500.0, step=5.0)
    assert "\n" not in text
