"""tradelab.formatting: every formatter's exact output, and that it stays a leaf module."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import pytest

from tradelab import formatting as f

UTC = dt.UTC


def test_decimals_needed() -> None:
    assert f.decimals_needed(0.25) == 2
    assert f.decimals_needed(10.0) == 0
    assert f.decimals_needed(0.1 + 0.2) == 1  # binary noise is not a decimal
    assert f.decimals_needed(0.000125) == 6
    assert f.decimals_needed(1 / 3, limit=8) == 8


@pytest.mark.parametrize(
    ("x", "decimals", "text"),
    [
        (61790.0, 2, "61,790.00"),
        (61790.125, 2, "61,790.125"),  # the price's own decimals win
        (1.123456789, 2, "1.12345679"),  # but never more than 8
        (0.5, 0, "0.5"),
    ],
)
def test_price_text(x: float, decimals: int, text: str) -> None:
    assert f.price_text(x, decimals) == text


def test_fixed_price_and_price_for_a_step() -> None:
    assert f.fixed_price(61790.126, 2) == "61,790.13"
    assert f.fixed_price(61790.4, 0) == "61,790"
    assert f.price_text_for_step(61790.0, 5.0) == "61,790"
    assert f.price_text_for_step(61653.75, 2.5) == "61,653.75"
    assert f.price_text_for_step(61790.0) == "61,790.00"
    assert f.price_text_for_step(0.123456, 0.000001) == "0.123456"


@pytest.mark.parametrize(
    ("x", "long", "short"),
    [
        (1234.5, "1,234.50", "1,234.5"),
        (1.5, "1.5000", "1.5"),
        (0.00012, "0.00012", "0.0001"),
        (0.0, "0", "0"),
        (12.34567, "12.3457", "12.3457"),
    ],
)
def test_quantities(x: float, long: str, short: str) -> None:
    assert f.qty_text(x) == long
    assert f.qty_text_short(x) == short


def test_rates_and_symbols() -> None:
    assert f.rate_text(41.0) == "41"
    assert f.rate_text(1234.4) == "1,234"
    assert f.rate_text(4) == "4.0"
    assert f.split_symbol("BTCUSDT") == ("BTC", "USDT")
    assert f.split_symbol("ETHBTC") == ("ETH", "BTC")
    assert f.split_symbol("USDT") == ("base asset", "quote")
    assert f.split_symbol(None) == ("base asset", "quote")


def test_times() -> None:
    ms = 1_767_225_661_039  # 2026-01-01 00:01:01.039 UTC
    assert f.utc_text(ms) == "2026-01-01 00:01:01"
    assert f.utc_text(ms, millis=True) == "2026-01-01 00:01:01.039"
    when = dt.datetime(2024, 5, 1, 10, 0, 5, 123456, tzinfo=UTC)
    assert f.utc_text(when) == "2024-05-01 10:00:05"
    assert f.utc_text(when, millis=True) == "2024-05-01 10:00:05.123"
    assert f.utc_text(None) == "None" and f.utc_text("soon") == "soon"
    assert f.iso_utc(None) is None
    assert f.iso_utc(ms) == "2026-01-01T00:01:01.039+00:00"
    assert f.iso_utc(dt.datetime(2024, 5, 1, 10)) == "2024-05-01T10:00:00.000+00:00"  # naive=UTC


def test_windows() -> None:
    a = dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
    b = a + dt.timedelta(hours=1)
    c = a + dt.timedelta(days=1, minutes=30)
    assert f.window_text(a, b) == "2024-05-01 10:00:00 → 11:00:00 UTC"
    assert f.window_text(a, c) == "2024-05-01 10:00:00 → 2024-05-02 10:30:00 UTC"
    assert f.window_text(a, b, seconds=False, length=True) == "2024-05-01 10:00 → 11:00 UTC (1 h)"
    half = a + dt.timedelta(minutes=30)
    assert f.window_text(a, half, seconds=False, length=True).endswith("(30 min)")
    assert f.window_text(a, a + dt.timedelta(minutes=90), seconds=False, length=True).endswith(
        "(1.5 h)"
    )
    assert (
        f.window_text(a, b, seconds=False, shorten=False)
        == "2024-05-01 10:00 → 2024-05-01 11:00 UTC"
    )
    assert f.window_text(None, b) == "window unknown"


def test_durations() -> None:
    assert f.hours_text(1) == "1 h" and f.hours_text(1.5) == "1.5 h"
    assert f.wait_text(0.5) == "under a minute"
    assert f.wait_text(19.2) == "19 min"
    assert f.wait_text(180) == "3.0 h"
    assert f.uptime_text(42.9) == "42 s"
    assert f.uptime_text(303) == "5 min 3 s"
    assert f.uptime_text(7620) == "2 h 7 min"
    assert f.uptime_text(-5) == "0 s"
    assert f.span_text(45) == "45 s"
    assert f.span_text(720) == "12 min"
    assert f.span_text(12600) == "3.5 h"
    assert f.ago_text(None) == "never"
    assert f.ago_text(12) == "12 s ago"
    assert f.ago_text(300) == "5 min ago"
    assert f.ago_text(3 * 3600) == "3.0 h ago"
    assert f.ago_text(3 * 86400) == "3.0 days ago"


def test_formatting_is_a_leaf_module() -> None:
    tree = ast.parse(Path(f.__file__).read_text())
    imported = {
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert {m for m in imported if m and m.startswith("tradelab")} == set()
