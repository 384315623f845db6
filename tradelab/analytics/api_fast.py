"""A window's volume profile from the store's hour histograms: merge histograms, not trades.

For a closed hour stored as one block the store keeps the hour's price histogram (buy and sell
units of 1e-8 and the trade count per distinct price; :mod:`tradelab.store.histograms`), and
for a closed day older than a 48-hour window the day's (:mod:`tradelab.store.dayhists`).
:func:`profile_from_store` asks the store for the window as those histograms plus the
``price``/``qty``/``buyer_is_maker`` of everything else (the partial edge hours, the open
hour, hours without a valid histogram) and of a day's trades outside the window when it takes
that day's histogram less them (:meth:`tradelab.TradeStore.price_histograms`), merges all of
them in exact integer units and computes the profile of the merged histogram —
with :mod:`tradelab.scale.histogram`'s :func:`~tradelab.scale.histogram.partial_histogram`,
:func:`~tradelab.scale.histogram.merge_partials` and
:func:`~tradelab.scale.histogram.profile_from_histogram`, which hand it to
:func:`tradelab.volume_profile` itself, so the answer equals the profile of the trades (every
field, the rows frame included). A 168-hour window merges ~6 day and ~24 hour histograms
instead of binning ~15 M trades.

It needs the tick size (given or the exchange's): with a tick inferred from the prices the
profile samples every n-th trade's price, which histograms do not keep. When it cannot answer
exactly as :func:`tradelab.volume_profile` would — too few trades (the caller's message says
why), trades the profile refuses, sums beyond what the merge adds exactly — it returns None and
the caller reads the trades as before, so every error message stays the same.
"""

from __future__ import annotations

import polars as pl

from tradelab.analytics.profile import VolumeProfile
from tradelab.exceptions import TradelabError
from tradelab.scale.histogram import (
    HIST_SCHEMA,
    Partial,
    merge_partials,
    partial_histogram,
    profile_from_histogram,
)
from tradelab.store import TradeStore
from tradelab.store.histograms import HourHistogram, merge_window
from tradelab.store.hourhists import WindowHistograms

__all__ = ["profile_from_store"]

_EXACT = 2**51  # profile_from_histogram sums a price's units exactly below this


def _partial(h: HourHistogram) -> Partial:
    hist = {"price": h.prices, "buy_units": h.buy, "sell_units": h.sell, "trades": h.counts}
    return Partial(pl.DataFrame(hist, schema=HIST_SCHEMA), h.trades)


def merged_partial(got: WindowHistograms) -> Partial | None:
    """The window's histogram as one :class:`~tradelab.scale.histogram.Partial`: merged on the
    dense price grid of the store (:func:`tradelab.store.histograms.merge_window`) when it
    can be, else by :func:`~tradelab.scale.histogram.merge_partials` of the histograms'
    partials and those of the decoded trades (each exact; the first is ~10× faster on a
    week). None when the window takes trades away from a day histogram (``got.minus``) and
    the dense merge cannot: the caller then reads the trades."""
    merged = merge_window([*got.hours, *got.days], got.rest, got.minus)
    if merged is not None:
        return _partial(merged)
    if got.minus:
        return None
    parts = [_partial(h) for h in [*got.hours, *got.days]]
    parts += [
        partial_histogram(c["price"], c["qty"], c["buyer_is_maker"], step=0) for c in got.rest
    ]
    return merge_partials(*parts)


def profile_from_store(
    store: object,
    symbol: str,
    start_ms: int,
    end_ms: int,
    *,
    tick_size: float,
    row_size: float | None,
    value_area: float,
    method: str,
    min_trades: int,
) -> VolumeProfile | None:
    """The profile of ``symbol``'s trades in ``[start_ms, end_ms)`` of ``store`` (arguments
    already checked) from hour histograms, equal to :func:`tradelab.volume_profile` on the
    trades with these arguments; None when the caller must read the trades instead (not a
    :class:`~tradelab.TradeStore`, fewer than ``min_trades`` trades, or anything the profile
    of the trades would answer differently or refuse)."""
    if not isinstance(store, TradeStore):
        return None
    got = store.price_histograms(symbol, start_ms, end_ms)
    if got.trades < min_trades:
        return None
    try:
        merged = merged_partial(got)
    except TradelabError:
        return None  # e.g. quantities the profile refuses: its own message says which
    if merged is None or merged.trades < min_trades:
        return None
    hist = merged.hist
    buy, sell = hist["buy_units"].to_numpy(), hist["sell_units"].to_numpy()
    top = max(int(buy.max()), int(sell.max()), int(hist["trades"].to_numpy().max()))
    if int(buy.sum()) + int(sell.sum()) == 0 or top >= _EXACT:
        return None
    try:
        return profile_from_histogram(
            merged,
            row_size=row_size,
            tick_size=tick_size,
            value_area=value_area,
            method=method,
            symbol=symbol,
            start=start_ms,
            end=end_ms,
        )
    except TradelabError:
        return None
