"""Partial histograms of trades at price resolution, their merge, and the profile of the merged
histogram — pure code, the part of the distributed profile that computes.

A **partial** is what one task makes of one Parquet file's trades in the window: for every
distinct price, the buy and sell quantity in exact units of 1e-8 (``rint(qty × 1e8)``, the very
operation :func:`tradelab.volume_profile` applies to each trade) and the trade count, plus the
few prices the tick inference would sample from it (:func:`tradelab.analytics.rows.tick_sample`).
Partials merge by adding integers, so any merge order gives the same histogram (the cluster
merges them as a tree).

**The same answer as one machine.** :func:`profile_from_histogram` hands the merged histogram to
:func:`tradelab.volume_profile` itself, as one weighted pseudo-trade per price and side (a
histogram is a weighted list of trades): rows, POC and value area come from the same code and
the same row assignment, and the row volumes are the same exact integer sums. Two details make
it exactly equal, not just close:

- the trade counts per row come from a second pass of the same function over ``count × 1e-8``
  per price (integers recovered exactly), and the total from the partials;
- with no ``tick_size``, the profile infers the tick from every
  :func:`~tradelab.analytics.rows.tick_sample_step`-th price of the window in ``agg_id`` order;
  each task returns exactly its share of those positions (it knows its offset in the window),
  so :func:`~tradelab.analytics.rows.tick_from_sample` — the profile's own rule — sees the
  very same prices.

Exactness holds while a price's buy or sell volume stays below 2^51 units (22.5 million BTC)
and a row's trade count below 2^51; beyond, an :class:`~tradelab.exceptions.InvalidTradesError`
says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from tradelab.analytics.checks import check_profile_args
from tradelab.analytics.profile import VolumeProfile, volume_profile
from tradelab.analytics.rows import QTY_PRECISION, tick_from_sample
from tradelab.exceptions import InvalidTradesError
from tradelab.formatting import decimals_needed

__all__ = [
    "HIST_SCHEMA",
    "Partial",
    "empty_partial",
    "merge_partials",
    "partial_histogram",
    "profile_from_histogram",
    "sample_start",
]

HIST_SCHEMA: dict[str, pl.DataType] = {
    "price": pl.Float64(),
    "buy_units": pl.Int64(),
    "sell_units": pl.Int64(),
    "trades": pl.Int64(),
}
_SCALE = 10.0**QTY_PRECISION  # the profile's exact quantity unit: 1e-8
_EXACT = 2.0**51  # below this, units / 1e8 * 1e8 rounds back to the same integer


@dataclass(frozen=True)
class Partial:
    """A histogram (:data:`HIST_SCHEMA`: one row per distinct price), the number of trades it
    counts, and the tick-inference samples it holds as ``(position in window, prices)``."""

    hist: pl.DataFrame
    trades: int
    samples: tuple[tuple[int, np.ndarray], ...] = ()


def empty_partial() -> Partial:
    """A partial of no trades (the identity of :func:`merge_partials`)."""
    return Partial(pl.DataFrame(schema=HIST_SCHEMA), 0, ())


def sample_start(offset: int, step: int) -> int:
    """Index, inside a chunk starting at window position ``offset``, of its first sampled
    price (positions ``0, step, 2·step, …`` of the window are sampled)."""
    return (-offset) % step


def partial_histogram(
    price: np.ndarray, qty: np.ndarray, maker: np.ndarray, *, offset: int = 0, step: int = 1
) -> Partial:
    """The partial of one chunk of trades (in ``agg_id`` order, starting at position
    ``offset`` of the window, whose tick sample takes every ``step``-th price; ``step=0``: no
    tick sample)."""
    n = int(price.size)
    if n == 0:
        return empty_partial()
    units = np.rint(np.multiply(qty, _SCALE))
    if not (units.min() >= 0 and units.max() < _EXACT and np.isfinite(units.sum())):
        raise InvalidTradesError(
            "quantities must be finite numbers >= 0 and below 2^51 × 1e-8 per trade for an "
            "exact profile"
        )
    u = units.astype(np.int64)
    is_sell = maker.astype(bool)
    hist = (
        pl.DataFrame(
            {
                "price": price.astype(np.float64, copy=False),
                "buy_units": np.where(is_sell, 0, u),
                "sell_units": np.where(is_sell, u, 0),
            }
        )
        .group_by("price")
        .agg(pl.col("buy_units").sum(), pl.col("sell_units").sum(), pl.len().alias("trades"))
        .cast(HIST_SCHEMA)  # type: ignore[arg-type]
    )
    if step == 0:
        return Partial(hist, n, ())
    first = sample_start(offset, step)
    picked = np.ascontiguousarray(price[first::step], dtype=np.float64)
    return Partial(hist, n, ((offset + first, picked),) if picked.size else ())


def merge_partials(*parts: Partial) -> Partial:
    """One partial from several: quantities and counts added per price (exact integers)."""
    parts = tuple(p for p in parts if p.trades)
    if not parts:
        return empty_partial()
    if len(parts) == 1:
        return parts[0]
    hist = (
        pl.concat([p.hist for p in parts])
        .group_by("price")
        .agg(pl.col("buy_units").sum(), pl.col("sell_units").sum(), pl.col("trades").sum())
    )
    samples = tuple(s for p in parts for s in p.samples)
    return Partial(hist, sum(p.trades for p in parts), samples)


def _check_exact(values: np.ndarray, what: str) -> None:
    if values.size and values.max() >= _EXACT:
        raise InvalidTradesError(
            f"{what} at one price reaches 2^51: beyond what the distributed profile sums "
            "exactly; profile a shorter window"
        )


def profile_from_histogram(
    part: Partial,
    *,
    row_size: float | None = None,
    rows: int | None = None,
    tick_size: float | None = None,
    value_area: float = 0.70,
    method: str = "cbot",
    symbol: str | None = None,
    start: int | None = None,
    end: int | None = None,
) -> VolumeProfile:
    """The :class:`~tradelab.analytics.VolumeProfile` of the trades a merged partial counts —
    equal to :func:`tradelab.volume_profile` on those trades with the same arguments."""
    row_size, tick, value_area = check_profile_args(
        row_size=row_size, rows=rows, tick_size=tick_size, value_area=value_area, method=method
    )
    if part.trades == 0:
        raise InvalidTradesError("no trades: the window holds nothing to profile")
    hist = part.hist.sort("price")
    prices = hist["price"].to_numpy()
    buy = hist["buy_units"].to_numpy()
    sell = hist["sell_units"].to_numpy()
    counts = hist["trades"].to_numpy()
    for values, what in ((buy, "buy volume"), (sell, "sell volume"), (counts, "the trade count")):
        _check_exact(values, what)
    samples = [s for _, s in sorted(part.samples, key=lambda item: item[0])]
    # volume_profile's own rule for a tick it infers, on the very prices it would sample
    inferred = tick if tick is not None else tick_from_sample(np.concatenate(samples), prices.max())
    m = prices.size
    weighted = pl.DataFrame(
        {
            "price": np.concatenate([prices, prices]),
            "qty": np.concatenate([buy, sell]) / _SCALE,
            "buyer_is_maker": np.repeat(np.array([False, True]), m),
        }
    )
    # With a row size and no tick, the tick only labels the result (as in volume_profile).
    given_size_only = row_size is not None and tick is None
    vp = volume_profile(
        weighted,
        row_size=row_size,
        rows=rows,
        tick_size=None if given_size_only else inferred,
        value_area=value_area,
        method=method,
        symbol=symbol,
        start=start,
        end=end,
    )
    counted = volume_profile(
        pl.DataFrame({"price": prices, "qty": counts / _SCALE, "buyer_is_maker": False}),
        row_size=vp.row_size,
    )
    per_row = np.rint(counted.rows["volume"].to_numpy() * _SCALE).astype(np.int64)
    if counted.rows.height != vp.rows.height:  # pragma: no cover - same prices, same rows
        raise AssertionError("row assignment differs between passes")
    out = replace(
        vp,
        rows=vp.rows.with_columns(pl.Series("trades", per_row, dtype=pl.Int64)),
        trade_count=part.trades,
    )
    if given_size_only:
        decimals = max(decimals_needed(vp.row_size), min(decimals_needed(inferred), 8))
        out = replace(out, tick_size=inferred, _price_decimals=decimals)
    return out
