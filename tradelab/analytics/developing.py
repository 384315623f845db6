"""The developing profile: POC, VAH and VAL as a session unfolds, step by step (pure, no I/O).

:func:`developing_levels` answers "where were the POC and the value area at 10:05, 10:10, …?"
— the lines platforms draw over the price chart. Row size and row alignment are fixed once for
the whole frame (the automatic size of the whole range unless ``row_size`` is given), so the
value at each step is exactly the :func:`~tradelab.analytics.volume_profile` of the trades
before that step computed with that row size, and the last step is the whole frame's profile.

Computed incrementally: every trade's row and exact quantity (units of 1e-8) are found once,
vectorised; each step adds only its own trades to a running histogram (``bincount`` over the
rows they touch) and finds POC and value area on the rows traded so far with the same rules
(tie rules, CBOT pairs or single rows, exact sums) as the profile — never re-reading the
earlier trades.

Steps: every ``every`` (``"5m"``, ``"1h"``, …) from ``start``, each step's levels covering the
trades with ``start <= time < step``; the last step is ``end`` (default: just after the last
trade) so it holds every trade. Steps before the first trade are left out.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from tradelab.analytics.checks import (
    bad_prices,
    bad_quantities,
    check_price_steps,
    check_profile_args,
)
from tradelab.analytics.profile import (
    MAX_ROWS,
    poc_index,
    value_area_rows,
    value_area_target,
)
from tradelab.analytics.rows import (
    QTY_PRECISION,
    auto_row_size,
    row_bounds,
    tick_from_sample,
    tick_sample,
)
from tradelab.analytics.sessions import time_sorted
from tradelab.exceptions import InvalidParameterError
from tradelab.formatting import decimals_needed
from tradelab.timerange import parse_duration, parse_time

__all__ = ["DEVELOPING_SCHEMA", "MAX_STEPS", "developing_levels"]

MAX_STEPS = 100_000
"""A developing profile has at most this many steps."""

DEVELOPING_SCHEMA: dict[str, Any] = {
    "time": pl.Datetime("ms", "UTC"),
    "poc": pl.Float64,
    "vah": pl.Float64,
    "val": pl.Float64,
    "value_area_pct": pl.Float64,
    "volume": pl.Float64,
    "trades": pl.Int64,
}
"""Columns of a developing profile: ``time`` is the end (exclusive) of the trades counted."""

_QTY_SCALE = 10.0**QTY_PRECISION


def _steps(t0: int, start: int, end: int, every: int) -> np.ndarray:
    """Step ends: start + k·every strictly inside (t0, end), then end itself."""
    first_k = max(1, (t0 - start) // every + 1)
    k_end = (end - 1 - start) // every  # last k with start + k·every < end
    grid = start + every * np.arange(first_k, k_end + 1, dtype=np.int64)
    return np.append(grid[grid > t0], np.int64(end))


def developing_levels(
    trades: pl.DataFrame,
    every: object = "5m",
    *,
    start: object = None,
    end: object = None,
    row_size: float | None = None,
    tick_size: float | None = None,
    value_area: float = 0.70,
    method: str = "cbot",
) -> pl.DataFrame:
    """POC, VAH, VAL (and value-area share, volume, trades) after each step of ``every``.

    Args:
        trades: a trade frame with ``price``, ``qty``, ``buyer_is_maker`` and ``time``.
        every: the step: ``"5m"``, ``"30s"``, ``"1h"``, a timedelta or seconds.
        start: where steps start (datetime, unix ms or ISO string); default: the first trade's
            time rounded down to a multiple of ``every``; trades before it are ignored.
        end: the last step (exclusive); default: just after the last trade; later trades are
            ignored.
        row_size, tick_size, value_area, method: as in
            :func:`~tradelab.analytics.volume_profile`, fixed for every step.

    Returns a Polars frame with :data:`DEVELOPING_SCHEMA`, one row per step.
    """
    step = parse_duration(every, "every")
    row_size, tick, value_area = check_profile_args(
        row_size=row_size, tick_size=tick_size, value_area=value_area, method=method
    )
    frame, t = time_sorted(trades)
    lo = (int(t[0]) // step) * step if start is None else parse_time(start, "start")[0]
    hi = int(t[-1]) + 1 if end is None else parse_time(end, "end")[0]
    if hi <= lo:
        raise InvalidParameterError("end must be after start: the steps cover [start, end)")
    a, b = int(np.searchsorted(t, lo, "left")), int(np.searchsorted(t, hi, "left"))
    if b <= a:
        raise InvalidParameterError("no trades between start and end: nothing develops")
    t = t[a:b]
    price = frame["price"].cast(pl.Float64).to_numpy()[a:b]
    qty = frame["qty"].cast(pl.Float64).to_numpy()[a:b]
    pmin, pmax = float(price.min()), float(price.max())
    if not (math.isfinite(pmin) and math.isfinite(pmax) and pmin > 0):
        raise bad_prices(price)
    check_price_steps(pmin, pmax, tick_size=tick, row_size=row_size)
    if tick is None:
        tick = tick_from_sample(tick_sample(price), pmax)
    if row_size is None:
        row_size = auto_row_size(pmin, pmax, tick)
    inv, eps, first, nrows_f = row_bounds(pmin, pmax, row_size)
    if nrows_f > MAX_ROWS:
        raise InvalidParameterError(
            f"row_size={row_size!r} would need {int(nrows_f):,} rows; at most {MAX_ROWS:,}"
        )
    # Row of every trade, in the profile's exact order of operations (see profile._histogram).
    tv = price * inv
    tv += eps
    tv -= first
    idx = np.floor(tv).astype(np.int64)
    units = np.rint(qty * _QTY_SCALE)
    if not (units.min() >= 0 and units.max() < 2.0**53 and math.isfinite(float(units.sum()))):
        raise bad_quantities(qty)
    run_lo = np.minimum.accumulate(idx)
    run_hi = np.maximum.accumulate(idx)
    run_pmin = np.minimum.accumulate(price)
    run_pmax = np.maximum.accumulate(price)

    if (hi - lo) // step > MAX_STEPS:
        raise InvalidParameterError(
            f"every={every!r} gives {(hi - lo) // step:,} steps over the window; at most "
            f"{MAX_STEPS:,}: give a longer step"
        )
    ends = _steps(int(t[0]), lo, hi, step)
    cuts = np.searchsorted(t, ends, "left")
    dec = decimals_needed(row_size)
    vol = np.zeros(int(nrows_f), dtype=np.float64)
    out: dict[str, list[Any]] = {k: [] for k in DEVELOPING_SCHEMA}
    done = 0
    for end_ms, cut in zip(ends.tolist(), cuts.tolist(), strict=True):
        if cut > done:
            r0, r1 = int(idx[done:cut].min()), int(idx[done:cut].max())
            vol[r0 : r1 + 1] += np.bincount(
                idx[done:cut] - r0, weights=units[done:cut], minlength=r1 - r0 + 1
            )
            done = cut
        r_lo, r_hi = int(run_lo[done - 1]), int(run_hi[done - 1])
        sub = vol[r_lo : r_hi + 1].astype(np.int64).tolist()
        total = sum(sub)
        out["time"].append(end_ms)
        out["trades"].append(done)
        out["volume"].append(total / _QTY_SCALE)
        if total == 0:  # only zero-quantity trades so far: no level yet
            for k in ("poc", "vah", "val", "value_area_pct"):
                out[k].append(None)
            continue
        base = first + r_lo
        poc = poc_index(sub, base, row_size, float(run_pmin[done - 1]), float(run_pmax[done - 1]))
        va_lo, va_hi, included = value_area_rows(
            sub, poc, value_area_target(value_area, total), method
        )
        # the profile's own arithmetic (np.round of aligned row edges), so values are equal
        poc_low = float(np.round((base + poc) * row_size, dec))
        out["poc"].append(round(poc_low + row_size / 2, dec + 1))
        out["vah"].append(float(np.round((base + 1.0 + va_hi) * row_size, dec)))
        out["val"].append(float(np.round((base + va_lo) * row_size, dec)))
        out["value_area_pct"].append(included / total * 100.0)
    raw = {**DEVELOPING_SCHEMA, "time": pl.Int64}
    return pl.DataFrame(out, schema=raw).with_columns(pl.col("time").cast(pl.Datetime("ms", "UTC")))
