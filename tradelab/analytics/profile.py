"""Volume profile and liquidity vacuums: pure functions on trade frames, no I/O.

Definitions follow ``docs/analytics.md`` (what analysts see on TradingView, Sierra Chart,
thinkorswim):

- **Rows.** A row covers ``[price_low, price_low + row_size)``; rows are aligned to multiples of
  the row size (a price always lands in the same row, whatever the window), and every row between
  the lowest and the highest traded price is present, zero-volume rows included — they are the
  thin places an analyst looks for. Each trade lands in exactly one row, the maximum price
  included. Assignment is exact for decimal prices (up to 8 decimals, as Binance sends them):
  binary floating-point noise such as ``0.1 + 0.2`` never moves a price across a row edge.
- **Volumes** are base quantities, summed exactly: quantities are counted in units of 1e-8 (the
  exchange's precision), so a row's volume is the exact decimal sum of its trades' ``qty`` and
  ``buy_volume + sell_volume == volume`` holds to the last digit. ``buyer_is_maker = true``
  means the taker sold: that is *sell* volume. ``delta = buy_volume - sell_volume``.
- **POC** (point of control): the row with the largest volume; on a tie, the row whose middle is
  nearest the middle of the traded range (``(min price + max price) / 2``), then the lower row.
  ``poc`` is the middle price of that row.
- **Value area** (``value_area`` of the total volume, default 70%), grown from the POC row:

  * ``method="cbot"`` (CBOT / Dalton, the classic rule): compare the sum of the next two rows
    above with the sum of the next two rows below and add the larger *pair* (both rows); equal
    sums go up; at the edge of the range a "pair" is the one row left; when one side is
    exhausted, keep taking pairs from the other; stop as soon as the included volume reaches the
    target (checked after each added pair).
  * ``method="single"``: the same with one row at a time (ties go up).

  ``vah`` is the top edge of the highest value-area row, ``val`` the bottom edge of the lowest;
  ``value_area_volume_pct`` is the share actually covered (>= the target).
- **Liquidity vacuums** (low-volume nodes): see :func:`liquidity_vacuums`.

Row size: ``row_size`` in price (a whole number of ticks when ``tick_size`` is given), or
``rows`` (the smallest whole number of ticks giving at most that many aligned rows), or automatic:
the smallest "nice" size — 1, 2, 2.5, 5 × 10^k ticks, 2.5 only where it is a whole number of
ticks — giving at most 150 rows (so 60–150 rows on any range wider than 150 ticks).

The row-size choice lives in :mod:`tradelab.analytics.rows`, the input checks in
:mod:`tradelab.analytics.checks`, the vacuum rule in :mod:`tradelab.analytics.vacuums` and the
text/notebook presentation of a profile in :mod:`tradelab.analytics.display`.
"""

from __future__ import annotations

import datetime as dt
import importlib
import math
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import polars as pl

from tradelab.analytics.checks import (
    bad_prices,
    bad_quantities,
    check_price_steps,
    check_profile_args,
    trade_columns,
)
from tradelab.analytics.display import profile_html, profile_repr, profile_svg, window_text
from tradelab.analytics.rows import (
    QTY_PRECISION,
    auto_row_size,
    row_bounds,
    rows_to_row_size,
    tick_from_sample,
    tick_sample,
)
from tradelab.analytics.vacuums import Vacuum, vacuums_in_rows
from tradelab.config import validate_bool
from tradelab.exceptions import InvalidParameterError, InvalidTradesError
from tradelab.formatting import decimals_needed
from tradelab.schema import to_ms

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = [
    "MAX_ROWS",
    "PLOT_BACKEND",
    "VolumeProfile",
    "liquidity_vacuums",
    "poc_index",
    "value_area_rows",
    "value_area_target",
    "volume_profile",
]

MAX_ROWS = 1_000_000
"""A profile never has more rows than this (a row size too small for the range is refused)."""
PLOT_BACKEND = "tradelab.plotting"
"""The module :meth:`VolumeProfile.plot` draws with, loaded by name on first use (the way pandas
loads its plotting backend): this pure module never imports matplotlib or the plotting code,
which itself builds on the analytics."""

_QTY_SCALE = 10.0**QTY_PRECISION
_CHUNK = 65_536  # trades per vectorised step: temporaries stay in the CPU cache
_ROWS_SCHEMA = {
    "price_low": pl.Float64,
    "price_high": pl.Float64,
    "volume": pl.Float64,
    "buy_volume": pl.Float64,
    "sell_volume": pl.Float64,
    "delta": pl.Float64,
    "trades": pl.Int64,
}


# --- small helpers ---


def _exact(x: float) -> Fraction:
    """The decimal a float was written as (``repr``), as an exact fraction: 0.1 -> 1/10."""
    return Fraction(Decimal(repr(float(x))))


def _utc(value: dt.datetime | int | float | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    ms = to_ms(value, name=name)
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)


# --- the profile ---


@dataclass(frozen=True, eq=False, repr=False)
class VolumeProfile:
    """A volume profile over one window: the rows, POC, value area and totals.

    Attributes:
        rows: one row per price row from the lowest to the highest traded price (zero-volume
            rows included), columns ``price_low``, ``price_high``, ``volume``, ``buy_volume``,
            ``sell_volume``, ``delta``, ``trades``; sorted by price ascending.
        poc: middle price of the point-of-control row.
        vah, val: top edge of the highest / bottom edge of the lowest value-area row.
        value_area_volume_pct: share of the total volume inside the value area, in percent.
        value_area: the target share (0 < value_area <= 1) and ``method`` the rule used.
        total_volume, buy_volume, sell_volume: base quantity (exact sums of ``qty``).
        trade_count: number of trades; ``row_size`` and ``tick_size`` in price.
        price_min, price_max: lowest and highest traded price.
        start, end: the window (given, else the first and last trade times; None without times).
        symbol: the symbol, when known.
        window_note: a remark on how the window was read ("start had no time zone: read as
            UTC"), else None.
        poc_index, va_low_index, va_high_index: positions in ``rows`` of the POC row and of the
            value area's lowest and highest rows.
    """

    rows: pl.DataFrame
    poc: float
    vah: float
    val: float
    value_area_volume_pct: float
    value_area: float
    method: str
    total_volume: float
    buy_volume: float
    sell_volume: float
    trade_count: int
    row_size: float
    tick_size: float
    price_min: float
    price_max: float
    start: dt.datetime | None
    end: dt.datetime | None
    symbol: str | None
    poc_index: int
    va_low_index: int
    va_high_index: int
    _price_decimals: int = field(default=2, repr=False)
    window_note: str | None = None
    """A remark on how the window was read (e.g. "start had no time zone: read as UTC")."""

    # derived figures ------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        """Number of rows in the profile."""
        return self.rows.height

    @property
    def delta(self) -> float:
        """Buy volume minus sell volume over the whole window."""
        return float(round(self.buy_volume - self.sell_volume, QTY_PRECISION))

    @property
    def poc_volume(self) -> float:
        """Volume of the POC row."""
        return float(self.rows["volume"][self.poc_index])

    @property
    def value_area_volume(self) -> float:
        """Volume inside the value area (rows ``va_low_index..va_high_index``)."""
        vol = self.rows["volume"][self.va_low_index : self.va_high_index + 1]
        return round(float(vol.sum()), QTY_PRECISION)

    @property
    def price_decimals(self) -> int:
        """Decimals used to print prices of this profile (those of the row size, at least)."""
        return self._price_decimals

    # conversions ----------------------------------------------------------------------------

    def to_dict(self, *, rows: bool = True) -> dict[str, Any]:
        """The profile as plain JSON-ready Python values (datetimes as ISO 8601 strings).

        ``rows=False`` leaves out the per-row list (key figures only).
        """
        validate_bool(rows, "rows")
        out: dict[str, Any] = {
            "symbol": self.symbol,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "trade_count": self.trade_count,
            "total_volume": self.total_volume,
            "buy_volume": self.buy_volume,
            "sell_volume": self.sell_volume,
            "delta": self.delta,
            "price_min": self.price_min,
            "price_max": self.price_max,
            "row_size": self.row_size,
            "tick_size": self.tick_size,
            "row_count": self.row_count,
            "poc": self.poc,
            "poc_volume": self.poc_volume,
            "vah": self.vah,
            "val": self.val,
            "value_area": self.value_area,
            "value_area_method": self.method,
            "value_area_volume": self.value_area_volume,
            "value_area_volume_pct": self.value_area_volume_pct,
        }
        if self.window_note:
            out["window_note"] = self.window_note
        if rows:
            out["rows"] = self.rows.to_dicts()
        return out

    def vacuums(self, *, threshold: float = 0.20, min_rows: int = 1) -> list[Vacuum]:
        """Shortcut for :func:`liquidity_vacuums` on this profile."""
        return liquidity_vacuums(self, threshold=threshold, min_rows=min_rows)

    def plot(self, ax: Axes | None = None, **kwargs: Any) -> Any:
        """Draw the profile with matplotlib; see :func:`tradelab.plotting.plot_profile`."""
        return importlib.import_module(PLOT_BACKEND).plot_profile(self, ax=ax, **kwargs)

    # notebook display (built in tradelab.analytics.display) ----------------------------------

    def _window_text(self) -> str:
        return window_text(self)

    def __repr__(self) -> str:
        return profile_repr(self)

    def _repr_html_(self) -> str:
        return profile_html(self)

    def _svg(self, width: int = 220, max_height: int = 300) -> str:
        """A small inline SVG histogram (sell/buy stacked, value area shaded, POC red)."""
        return profile_svg(self, width=width, max_height=max_height)


# --- the computation ---


def _histogram(
    price: np.ndarray,
    qty: np.ndarray,
    maker: np.ndarray,
    inv: float,
    eps: float,
    first: float,
    nrows: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: volume and sell volume in exact units of 1e-8, and trade counts.

    Works in cache-sized chunks; sides are interleaved (row*2 + is_sell) so one weighted and one
    plain ``bincount`` give everything.
    """
    n = price.size
    size = min(_CHUNK, n)
    width = 2 * nrows
    units = np.zeros(width, dtype=np.float64)
    counts = np.zeros(width, dtype=np.int64)
    t = np.empty(size, dtype=np.float64)
    q = np.empty(size, dtype=np.float64)
    idx = np.empty(size, dtype=np.intp)
    qmin, qmax = math.inf, -math.inf
    for s in range(0, n, size):
        e = min(s + size, n)
        m = e - s
        tv, qv, iv = t[:m], q[:m], idx[:m]
        np.multiply(price[s:e], inv, out=tv)
        tv += eps
        tv -= first  # exact: first is an integer <= every value
        np.floor(tv, out=tv)
        tv *= 2.0
        tv += maker[s:e]
        iv[...] = tv
        np.multiply(qty[s:e], _QTY_SCALE, out=qv)
        np.rint(qv, out=qv)
        lo, hi = qv.min(), qv.max()
        qmin, qmax = min(qmin, lo), max(qmax, hi)
        units += np.bincount(iv, weights=qv, minlength=width)
        counts += np.bincount(iv, minlength=width)
    if not (qmin >= 0 and qmax < 2.0**53 and math.isfinite(float(units.sum()))):
        raise bad_quantities(qty)  # the sum catches NaN, which min/max comparisons skip
    sell = units[1::2]
    vol = units[0::2] + sell
    trades = counts[0::2] + counts[1::2]
    return vol, sell, trades


def poc_index(vol: list[int], first: float, row_size: float, pmin: float, pmax: float) -> int:
    """The POC row among ``vol`` (exact volumes, row ``i`` is aligned row ``first + i``): the
    largest volume; on a tie the row whose middle is nearest ``(pmin + pmax) / 2``, then the
    lower one."""
    top = max(vol)
    tied = [i for i, v in enumerate(vol) if v == top]
    if len(tied) == 1:
        return tied[0]
    # Nearest the middle of the traded range, then the lower: compare exactly in row units.
    r = _exact(row_size)
    mid_rows = (_exact(pmin) + _exact(pmax)) / 2 / r - int(first)
    return min(tied, key=lambda i: (abs(Fraction(2 * i + 1, 2) - mid_rows), i))


def value_area_rows(vol: list[int], poc: int, target: int, method: str) -> tuple[int, int, int]:
    """Grow the value area from ``poc`` until it holds ``target`` units; (lo, hi, included)."""
    step = 2 if method == "cbot" else 1
    n = len(vol)
    lo = hi = poc
    included = vol[poc]
    while included < target:
        up = vol[hi + 1 : min(hi + 1 + step, n)]
        down = vol[max(lo - step, 0) : lo]
        if not up and not down:  # pragma: no cover - impossible while target <= total
            break
        if up and (not down or sum(up) >= sum(down)):
            hi += len(up)
            included += sum(up)
        else:
            lo -= len(down)
            included += sum(down)
    return lo, hi, included


def value_area_target(value_area: float, total: int) -> int:
    """The volume (exact units) the value area must reach: ``ceil(value_area × total)``."""
    return math.ceil(Fraction(Decimal(repr(value_area))) * total)


def volume_profile(
    trades: pl.DataFrame,
    *,
    row_size: float | None = None,
    rows: int | None = None,
    tick_size: float | None = None,
    value_area: float = 0.70,
    method: str = "cbot",
    symbol: str | None = None,
    start: dt.datetime | int | None = None,
    end: dt.datetime | int | None = None,
) -> VolumeProfile:
    """The volume profile of ``trades``: rows by price, POC, value area (VAH/VAL), totals.

    Args:
        trades: a Polars frame with ``price``, ``qty`` and ``buyer_is_maker`` (the trade schema;
            ``time``, when present, gives the window's default start and end).
        row_size: row height in price (> 0; a whole number of ticks when ``tick_size`` is
            given). Rows are aligned to multiples of it.
        rows: instead of ``row_size``: the number of rows wanted; the row size becomes the
            smallest whole number of ticks giving at most that many aligned rows (rows=1 can
            give 2 when the range straddles a row edge).
        tick_size: the symbol's price increment; default: inferred from the prices' decimals
            (:func:`~tradelab.analytics.rows.tick_from_sample`). Only the automatic/``rows``
            row sizes depend on it.
            A given tick or row size must be plausible for the prices: from 1e-10 of the
            highest price (and 1e-8) to that price (:func:`check_price_steps`).
        value_area: share of the total volume the value area must hold, 0 < value_area <= 1.
        method: ``"cbot"`` (two rows at a time, the classic rule) or ``"single"``.
        symbol, start, end: labels carried by the result (start/end: tz-aware datetimes or unix
            ms; default: first and last trade time).

    Returns a :class:`VolumeProfile`. Well-defined edge cases: one trade, or all trades at one
    price, give a single row that is POC and value area (100%).

    Raises:
        InvalidTradesError: not a frame, missing/mistyped columns, no trades, nulls, a price that
            is NaN/infinite/<= 0, a qty that is NaN/negative, or all quantities zero.
        InvalidParameterError: row_size/tick_size <= 0 or not finite, finer than 1e-8 or
            implausible for the prices (see tick_size), row_size not a whole number of ticks,
            rows < 1, both row_size and rows, value_area outside (0, 1], an unknown
            method, or a row size that would need more than :data:`MAX_ROWS` rows.
    """
    row_size, tick, value_area = check_profile_args(
        row_size=row_size, rows=rows, tick_size=tick_size, value_area=value_area, method=method
    )
    price, qty, maker, frame = trade_columns(trades)
    pmin, pmax = float(price.min()), float(price.max())
    if not (math.isfinite(pmin) and math.isfinite(pmax) and pmin > 0):
        raise bad_prices(price)

    check_price_steps(pmin, pmax, tick_size=tick, row_size=row_size, symbol=symbol)
    if tick is None:
        tick = tick_from_sample(tick_sample(price), pmax)
    if row_size is None:
        row_size = (
            auto_row_size(pmin, pmax, tick)
            if rows is None
            else rows_to_row_size(int(rows), pmin, pmax, tick)
        )
    inv, eps, first, nrows_f = row_bounds(pmin, pmax, row_size)
    if nrows_f > MAX_ROWS:
        raise InvalidParameterError(
            f"row_size={row_size!r} would need {int(nrows_f):,} rows for the traded range "
            f"{pmin!r}–{pmax!r}; at most {MAX_ROWS:,} are allowed: give a larger row_size "
            "(or rows=N, or neither for an automatic size)"
        )
    nrows = int(nrows_f)

    vol_u, sell_u, counts = _histogram(price, qty, maker, inv, eps, first, nrows)
    vol_int = (
        vol_u.astype(np.int64).tolist()
        if vol_u.max() < 2.0**62
        else [int(x) for x in vol_u.tolist()]
    )
    total = sum(vol_int)
    if total == 0:
        raise InvalidTradesError(
            f"all {price.size:,} trades have quantity 0: there is no volume to profile"
        )

    poc = poc_index(vol_int, first, row_size, pmin, pmax)
    target = value_area_target(value_area, total)
    lo, hi, included = value_area_rows(vol_int, poc, target, method)

    dec = decimals_needed(row_size)
    lows = np.round((first + np.arange(nrows, dtype=np.float64)) * row_size, dec)
    highs = np.round((first + 1.0 + np.arange(nrows, dtype=np.float64)) * row_size, dec)
    volume = vol_u / _QTY_SCALE
    sell = sell_u / _QTY_SCALE
    buy = (vol_u - sell_u) / _QTY_SCALE
    delta = (vol_u - 2.0 * sell_u) / _QTY_SCALE
    table = pl.DataFrame(
        {
            "price_low": lows,
            "price_high": highs,
            "volume": volume,
            "buy_volume": buy,
            "sell_volume": sell,
            "delta": delta,
            "trades": counts,
        },
        schema=_ROWS_SCHEMA,
    )

    t_start, t_end = _utc(start, "start"), _utc(end, "end")
    if (t_start is None or t_end is None) and "time" in frame.columns:
        tcol = frame["time"]
        if isinstance(tcol.dtype, pl.Datetime):
            tcol = tcol.dt.epoch("ms")
        if tcol.dtype.is_integer() and tcol.null_count() == 0:
            # Integers, no nulls, and trade_columns refused an empty frame: min/max are ints.
            t_start = t_start or _utc(cast(int, tcol.min()), "start")
            t_end = t_end or _utc(cast(int, tcol.max()), "end")
    if t_start is not None and t_end is not None and t_end < t_start:
        raise InvalidParameterError(
            f"end={t_end.isoformat()} is before start={t_start.isoformat()}"
        )

    sell_total = int(sell_u.sum())
    return VolumeProfile(
        rows=table,
        poc=round(float(lows[poc]) + row_size / 2, dec + 1),
        vah=float(highs[hi]),
        val=float(lows[lo]),
        value_area_volume_pct=included / total * 100.0,
        value_area=value_area,
        method=method,
        total_volume=total / _QTY_SCALE,
        buy_volume=(total - sell_total) / _QTY_SCALE,
        sell_volume=sell_total / _QTY_SCALE,
        trade_count=int(price.size),
        row_size=row_size,
        tick_size=tick,
        price_min=pmin,
        price_max=pmax,
        start=t_start,
        end=t_end,
        symbol=symbol,
        poc_index=poc,
        va_low_index=lo,
        va_high_index=hi,
        _price_decimals=max(dec, min(decimals_needed(tick), 8)),
    )


# --- liquidity vacuums ---


def liquidity_vacuums(
    profile: VolumeProfile, *, threshold: float = 0.20, min_rows: int = 1
) -> list[Vacuum]:
    """Low-volume zones of a profile (the ported tool's rule, analytics.md), sorted by price.

    A vacuum is a maximal run of at least ``min_rows`` consecutive rows whose volume is below
    ``threshold × median row volume``. The median is taken over the rows that traded
    (volume > 0): with a wide range (an outlier print, a fast move) most rows can be empty, and a
    median of zero would hide every vacuum; empty rows still count as vacuum rows. Each zone
    reports ``[price_low, price_high)``, its volume, the median, the deficit
    ``1 − (zone volume / rows) / median`` in percent and the expected impact: deficit > 80% →
    "fast" movement through the zone, > 50% → "moderate", else "negligible". (With the default
    threshold 0.20 every zone's deficit exceeds 80%; a higher threshold admits milder zones.)

    Thin rows at the very edges of the traded range qualify like any other.
    """
    if not isinstance(profile, VolumeProfile):
        raise InvalidParameterError(
            f"profile must be a VolumeProfile (from tradelab.volume_profile), got "
            f"{type(profile).__name__}"
        )
    return vacuums_in_rows(profile.rows, threshold=threshold, min_rows=min_rows)
