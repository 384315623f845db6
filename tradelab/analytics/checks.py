"""Validation of the analytics' inputs: trade frames and volume-profile parameters.

Pure checks, no computation: :func:`check_profile_args` validates :func:`volume_profile`'s
parameters without any data (so the store-backed API refuses a typo before a long read), and
:func:`trade_columns` checks a trade frame and hands back its price, quantity and side columns.
Every message says what was wrong and what is allowed.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from tradelab.analytics.rows import (
    MIN_PRICE_STEP,
    QTY_PRECISION,
    check_positive_number,
    price_step_bounds,
    tick_multiple,
)
from tradelab.exceptions import InvalidParameterError, InvalidTradesError
from tradelab.formatting import price_text

__all__ = [
    "METHODS",
    "bad_prices",
    "bad_quantities",
    "check_price_steps",
    "check_profile_args",
    "trade_columns",
]

METHODS: tuple[str, ...] = ("cbot", "single")
"""The value-area rules: two rows at a time (CBOT / Dalton) or one."""

_QTY_SCALE = 10.0**QTY_PRECISION


def check_profile_args(
    *,
    row_size: float | None = None,
    rows: int | None = None,
    tick_size: float | None = None,
    value_area: float = 0.70,
    method: str = "cbot",
) -> tuple[float | None, float | None, float]:
    """Validate :func:`~tradelab.analytics.volume_profile`'s parameters without any data (the
    store-backed API calls it before a long read); returns ``(row_size, tick_size,
    value_area)`` as floats."""
    if method not in METHODS:
        raise InvalidParameterError(
            f"method={method!r} is not a value-area method; allowed: 'cbot' (two rows at a "
            "time, the classic rule) or 'single' (one row at a time)"
        )
    if (
        isinstance(value_area, bool)
        or not isinstance(value_area, int | float | np.integer | np.floating)
        or not (0.0 < float(value_area) <= 1.0)
    ):
        raise InvalidParameterError(
            f"value_area={value_area!r} is not allowed: give the share of volume as a number "
            "with 0 < value_area <= 1 (e.g. 0.70 for 70%)"
        )
    value_area = float(value_area)
    if row_size is not None and rows is not None:
        raise InvalidParameterError("give either row_size (in price) or rows (a count), not both")
    if rows is not None and (
        isinstance(rows, bool) or not isinstance(rows, int | np.integer) or rows < 1
    ):
        raise InvalidParameterError(f"rows={rows!r} is not allowed: give a whole number >= 1")
    if row_size is not None:
        row_size = _not_too_fine(
            check_positive_number(row_size, "row_size", "a price step > 0"), "row_size"
        )
    tick = (
        None
        if tick_size is None
        else _not_too_fine(
            check_positive_number(tick_size, "tick_size", "the price increment, > 0"), "tick_size"
        )
    )
    if tick is not None and row_size is not None:
        ratio = row_size / tick
        if abs(ratio - round(ratio)) > 1e-9 * max(1.0, ratio):
            below = tick_multiple(max(1, math.floor(ratio)), tick)
            above = tick_multiple(math.floor(ratio) + 1, tick)
            raise InvalidParameterError(
                f"row_size={row_size!r} is not a whole number of ticks (tick_size={tick!r}); "
                f"use a multiple of the tick such as {below!r} or {above!r}"
            )

    return row_size, tick, value_area


def _not_too_fine(value: float, name: str) -> float:
    if value < MIN_PRICE_STEP * (1 - 1e-9):
        raise InvalidParameterError(
            f"{name}={value!r} is finer than 0.00000001 (Binance writes prices with 8 "
            "decimals): give a price step from 1e-10 of the price (at least 0.00000001) to the "
            "price itself, e.g. 0.01 for BTCUSDT"
        )
    return value


def check_price_steps(
    price_min: float,
    price_max: float,
    *,
    tick_size: float | None = None,
    row_size: float | None = None,
    symbol: str | None = None,
) -> None:
    """Refuse a tick or row size implausible for prices ``price_min``–``price_max``: finer than
    1e-10 of the price (or 1e-8) or coarser than the price itself
    (:func:`~tradelab.analytics.rows.price_step_bounds`). Called once the prices are known,
    after :func:`check_profile_args` checked what it could without them."""
    lowest, highest = price_step_bounds(price_max)
    for name, value in (("tick_size", tick_size), ("row_size", row_size)):
        if value is None or lowest * (1 - 1e-9) <= value <= highest:
            continue
        who = f"{symbol} " if symbol else "prices "
        traded = (
            price_text(price_max, 2)
            if price_min == price_max
            else f"{price_text(price_min, 2)}–{price_text(price_max, 2)}"
        )
        raise InvalidParameterError(
            f"{name}={value!r} is not plausible for {who}traded at {traded}: give a price step "
            f"from {lowest:.{max(0, -math.floor(math.log10(lowest)))}f} to "
            f"{price_text(highest, 2)} (at least 1e-10 of the price and 8 decimals, at most the "
            "price itself)"
        )


def trade_columns(trades: object) -> tuple[np.ndarray, np.ndarray, np.ndarray, pl.DataFrame]:
    """``(price, qty, buyer_is_maker, frame)`` of a trade frame, as numpy arrays, after checking
    it is a non-empty Polars frame with those columns, correctly typed and without nulls."""
    if not isinstance(trades, pl.DataFrame):
        raise InvalidTradesError(
            "trades must be a Polars DataFrame with columns price, qty and buyer_is_maker "
            f"(the trade schema), got {type(trades).__name__}"
        )
    missing = [c for c in ("price", "qty", "buyer_is_maker") if c not in trades.columns]
    if missing:
        raise InvalidTradesError(
            f"trades frame lacks column(s) {', '.join(missing)}; a volume profile needs price, "
            "qty and buyer_is_maker (time is used for the window when present)"
        )
    if trades.height == 0:
        raise InvalidTradesError(
            "no trades: a volume profile needs at least one trade (for a store window, "
            "tradelab.get_volume_profile says how many are needed and how long to wait)"
        )
    for col in ("price", "qty"):
        dtype = trades.schema[col]
        if not dtype.is_numeric():
            raise InvalidTradesError(f"column {col} has type {dtype}; expected Float64 numbers")
    if trades.schema["buyer_is_maker"] != pl.Boolean:
        raise InvalidTradesError(
            f"column buyer_is_maker has type {trades.schema['buyer_is_maker']}; expected Boolean"
        )
    nulls = [c for c in ("price", "qty", "buyer_is_maker") if trades[c].null_count()]
    if nulls:
        raise InvalidTradesError(f"trades have missing (null) values in {', '.join(nulls)}")
    price = trades["price"].cast(pl.Float64).to_numpy()
    qty = trades["qty"].cast(pl.Float64).to_numpy()
    maker = trades["buyer_is_maker"].to_numpy()
    return price, qty, maker, trades


def bad_prices(price: np.ndarray) -> InvalidTradesError:
    """The error for prices that are not all finite and > 0, counting each kind of fault."""
    nan = int(np.isnan(price).sum())
    inf = int(np.isinf(price).sum())
    nonpos = int((price <= 0).sum())
    parts = [
        f"{n} {what}"
        for n, what in ((nan, "NaN"), (inf, "infinite"), (nonpos, "zero or negative"))
        if n
    ]
    return InvalidTradesError(
        f"trades have invalid prices ({', '.join(parts)}); every price must be a finite "
        "number > 0 — drop or repair those rows first"
    )


def bad_quantities(qty: np.ndarray) -> InvalidTradesError:
    """The error for quantities that are not all finite, >= 0 and small enough to sum exactly."""
    nan = int(np.isnan(qty).sum())
    bad = int((~np.isfinite(qty) | (qty < 0)).sum())
    big = int((qty >= 2.0**53 / _QTY_SCALE).sum())
    return InvalidTradesError(
        f"trades have invalid quantities ({bad} not a finite number >= 0, of which {nan} NaN; "
        f"{big} too large): every qty must be a finite number from 0 to 9e7"
    )
