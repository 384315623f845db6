"""Row-size selection for volume profiles: pure arithmetic on prices, no data frames needed.

A profile's rows are aligned to multiples of the row size (:mod:`.profile`). This
module chooses that size and counts the rows it gives:

- :func:`infer_tick_size`: the price resolution visible in the prices (10^-d for the fewest
  decimals d that write them all), used when neither ``tick_size`` nor the exchange tick is known.
  It looks at :func:`tick_sample` (every :func:`tick_sample_step`-th price); a profile then
  applies :func:`tick_from_sample` — the sample's resolution, never finer than plausible for
  the highest price. One rule, shared by every profile that infers a tick, including the one
  computed from partial histograms on a cluster (:mod:`tradelab.scale.histogram`), which
  gathers exactly the same sample from its pieces.
- :func:`auto_row_size`: the smallest "nice" size — 1, 2, 2.5, 5 × 10^k ticks, 2.5 only where it
  is a whole number of ticks — giving at most :data:`AUTO_MAX_ROWS` rows.
- ``rows=N``: the smallest whole number of ticks giving at most N aligned rows.

Row assignment itself (which row a price lands in, with a tolerance that absorbs binary
floating-point noise) is :func:`row_bounds`, shared with the histogram in
:mod:`tradelab.analytics.profile` so that counting rows here and filling them there always agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from tradelab.exceptions import InvalidParameterError, InvalidTradesError
from tradelab.formatting import decimals_needed

__all__ = [
    "AUTO_MAX_ROWS",
    "MAX_DECIMALS",
    "MIN_PRICE_STEP",
    "MIN_RELATIVE_STEP",
    "QTY_PRECISION",
    "TICK_SAMPLE",
    "auto_row_size",
    "check_positive_number",
    "infer_tick_size",
    "price_step_bounds",
    "row_bounds",
    "rows_to_row_size",
    "tick_from_sample",
    "tick_multiple",
    "tick_sample",
    "tick_sample_step",
]

AUTO_MAX_ROWS = 150
"""The automatic row size is the smallest nice size giving at most this many rows."""
MAX_DECIMALS = 8
"""Binance writes prices and quantities with at most this many decimals."""
QTY_PRECISION = MAX_DECIMALS
"""Quantities are summed exactly in units of 10^-QTY_PRECISION (Binance sends 8 decimals)."""

MIN_PRICE_STEP = 1e-8
"""No tick or row is finer than Binance's 8 decimals (finer steps also defeat the 1e-9 noise
tolerance of :func:`~tradelab.formatting.decimals_needed`: 1e-9 rounds to 0 — the old
ZeroDivisionError)."""
MIN_RELATIVE_STEP = 1e-10
"""No tick or row is finer than 1e-10 of the price: row numbers stay below 10^10, far inside
float64's 15-16 exact digits, so the row tolerance of :func:`row_bounds` stays < 10^-4 rows."""
TICK_SAMPLE = 8192
"""The tick is inferred from about this many prices: every :func:`tick_sample_step`-th."""

_NICE_MANTISSAS = (1.0, 2.0, 2.5, 5.0)


# --- parameter checks (shared with the profile and vacuum checks) ---


def check_positive_number(value: object, name: str, allowed: str) -> float:
    """``value`` as a float if it is a finite number > 0 (not a bool), else an
    :class:`InvalidParameterError` naming ``name`` and what is ``allowed``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InvalidParameterError(f"{name} must be a number ({allowed}), got {value!r}")
    x = float(value)
    if not math.isfinite(x) or x <= 0:
        raise InvalidParameterError(f"{name}={value!r} is not allowed: {allowed}")
    return x


def price_step_bounds(price_max: float) -> tuple[float, float]:
    """``(lowest, highest)`` plausible tick or row size for prices up to ``price_max``: from
    1e-10 of the price (rounded up to a power of ten, never below :data:`MIN_PRICE_STEP`) to
    the price itself — a coarser step makes one row wider than every price traded and its
    midpoint (the POC) a price never seen (``tick_size=1e300`` gave a 300-digit POC)."""
    raw = price_max * MIN_RELATIVE_STEP
    lowest = MIN_PRICE_STEP
    if raw > MIN_PRICE_STEP:
        lowest = float(f"1e{math.ceil(math.log10(raw) - 1e-12)}")
    return lowest, price_max


# --- row size ---


def tick_sample_step(n: int) -> int:
    """The stride of the tick sample of ``n`` prices: ``max(1, n // TICK_SAMPLE)`` (positions
    ``0, step, 2·step, …`` are sampled)."""
    return max(1, n // TICK_SAMPLE)


def tick_sample(prices: np.ndarray | pl.Series | Sequence[float]) -> np.ndarray:
    """The prices the tick inference looks at: every :func:`tick_sample_step`-th, from the
    first (in the order given)."""
    arr = prices.to_numpy() if isinstance(prices, pl.Series) else np.asarray(prices, dtype=float)
    return arr[:: tick_sample_step(arr.size)]


def _resolution(sample: np.ndarray) -> float:
    if sample.size == 0:
        raise InvalidTradesError("cannot infer a tick size from no prices")
    for d in range(0, MAX_DECIMALS + 1):
        scaled = sample * 10.0**d
        tolerance = np.maximum(1e-6, np.abs(scaled) * 1e-14)
        if np.all(np.abs(scaled - np.rint(scaled)) <= tolerance):
            return float(f"1e-{d}")
    return float(f"1e-{MAX_DECIMALS}")


def infer_tick_size(prices: np.ndarray | pl.Series | Sequence[float]) -> float:
    """The price resolution visible in ``prices``: 10^-d for the fewest decimals d (0..8) that
    write every price (checked on up to ~8,000 evenly spaced prices: :func:`tick_sample`).

    Used only to choose a nice automatic row size when neither ``tick_size`` nor a symbol's
    exchange tick is known; row assignment never depends on it.
    """
    return _resolution(tick_sample(prices))


def tick_from_sample(sample: np.ndarray | Sequence[float], price_max: float) -> float:
    """The tick a profile infers when none is given: the resolution of ``sample`` (the
    :func:`tick_sample` of its prices, taken as is) — never finer than the lowest step
    plausible for prices up to ``price_max`` (:func:`price_step_bounds`: 8-decimal noise on a
    large price must not make a tick of 1e-8)."""
    return max(_resolution(np.asarray(sample, dtype=float)), price_step_bounds(price_max)[0])


def row_bounds(pmin: float, pmax: float, row_size: float) -> tuple[float, float, float, float]:
    """(inverse row size, tolerance in rows, first row number, number of rows) for the range.

    A price p lands in row ``floor(p / row_size + eps)``: ``eps`` (a few ulps of the largest
    row number) absorbs binary representation error, so a price exactly on an edge always goes
    to the row it starts, and a price one decimal step below an edge never does.
    """
    inv = 1.0 / row_size
    eps = max(1.0, abs(pmax) * inv) * 2e-15
    first = math.floor(pmin * inv + eps)
    last = math.floor(pmax * inv + eps)
    return inv, eps, float(first), float(last - first + 1)


def _count_rows(pmin: float, pmax: float, row_size: float) -> int:
    return int(row_bounds(pmin, pmax, row_size)[3])


def _nice_candidates() -> list[int]:
    out: list[int] = []
    for k in range(0, 19):
        for m in _NICE_MANTISSAS:
            ticks = m * 10**k
            if ticks == int(ticks):
                out.append(int(ticks))
    return out


_NICE_TICKS = _nice_candidates()


def auto_row_size(price_min: float, price_max: float, tick_size: float) -> float:
    """The automatic row size: the smallest nice multiple of the tick (1, 2, 2.5, 5 × 10^k
    ticks; 2.5 only when that is a whole number of ticks) giving at most
    :data:`AUTO_MAX_ROWS` aligned rows over ``[price_min, price_max]``."""
    tick = check_positive_number(tick_size, "tick_size", "a price increment > 0")
    for ticks in _NICE_TICKS:
        size = tick_multiple(ticks, tick)
        if _count_rows(price_min, price_max, size) <= AUTO_MAX_ROWS:
            return size
    raise InvalidParameterError(  # pragma: no cover - needs a range of 10^18 ticks
        f"no automatic row size fits the range {price_min}..{price_max}"
    )


def tick_multiple(ticks: int, tick: float) -> float:
    """``ticks × tick`` written with the tick's decimals (0.01 × 25 -> 0.25, not 0.25000000001)."""
    return round(ticks * tick, decimals_needed(tick) + 1)


def rows_to_row_size(rows: int, pmin: float, pmax: float, tick: float) -> float:
    """The smallest whole number of ticks (to within 0.1% beyond 1,000 ticks) giving at most
    ``rows`` aligned rows. Alignment can add a row to ``span / rows``; for rows >= 2 doubling the
    size always fits, so the search is bounded. rows=1 over a range that straddles a row edge
    gives 2 rows (a single aligned row would have to be wider than the prices themselves)."""
    span_ticks = (pmax - pmin) / tick
    ticks = max(1, math.ceil(span_ticks / rows - 1e-9))
    step = max(1, ticks // 1000)
    for t in range(ticks, 2 * ticks + 1, step):
        size = tick_multiple(t, tick)
        if _count_rows(pmin, pmax, size) <= rows:
            return size
    return tick_multiple(ticks, tick)
