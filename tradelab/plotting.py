"""Drawing volume profiles with matplotlib (imported only when a plot is asked for).

The picture traders know from their platforms: horizontal bars by price, taker-sell and
taker-buy volume stacked in two colours, the rows of the value area in full colour and the rest
faded, the value area shaded with VAH/VAL labelled, the POC line, and liquidity vacuums hatched.
:func:`plot_profile` optionally puts the price-over-time panel on the left, sharing the price
axis, so the profile reads as "where the time was spent".

Every function draws into the Axes it is given (and returns it) or, with ``ax=None``, into a new
:class:`ProfileFigure` (a matplotlib Figure that also shows itself in notebooks) that it
returns. No pyplot state is touched: safe in servers, threads and the CLI.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import polars as pl

from tradelab.analytics import Vacuum, VolumeProfile, liquidity_vacuums
from tradelab.config import validate_bool
from tradelab.exceptions import InvalidParameterError, InvalidTradesError
from tradelab.formatting import decimals_needed, fixed_price, price_text, split_symbol, window_text

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "BUY_COLOR",
    "POC_COLOR",
    "SELL_COLOR",
    "VALUE_AREA_COLOR",
    "draw_developing",
    "figure_png",
    "new_figure",
    "plot_price",
    "plot_profile",
    "price_axis_formatter",
]

BUY_COLOR = "#26a69a"
SELL_COLOR = "#ef5350"
POC_COLOR = "#b71c1c"
VALUE_AREA_COLOR = "#5c6bc0"
VACUUM_COLOR = "#616161"
DEVELOPING_POC_COLOR = "#ef6c00"
DEVELOPING_VA_COLOR = "#6a1b9a"
PRICE_COLOR = "#37474f"
_OUTSIDE_ALPHA = 0.35


def _profile_figure_class() -> type:
    from matplotlib.figure import Figure

    class ProfileFigure(Figure):
        """A matplotlib Figure that renders itself as PNG in notebooks (``_repr_png_``)."""

        def _repr_png_(self) -> bytes:
            return figure_png(self)

    return ProfileFigure


_FIGURE_CLASS: type | None = None


def new_figure(figsize: tuple[float, float] = (9.0, 6.5), dpi: int = 100) -> Figure:
    """A new, pyplot-free Figure that also displays itself in Jupyter."""
    global _FIGURE_CLASS
    if _FIGURE_CLASS is None:
        _FIGURE_CLASS = _profile_figure_class()
    return _FIGURE_CLASS(figsize=figsize, dpi=dpi, layout="constrained")


def figure_png(fig: Figure, *, dpi: int | None = None) -> bytes:
    """The figure as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if fig.canvas is None or not hasattr(fig.canvas, "print_png"):  # pragma: no cover
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or fig.dpi)
    return buf.getvalue()


def _price_formatter() -> Any:
    """Prices with thousands separators and as many decimals as the tick spacing needs."""
    from matplotlib.ticker import Formatter

    class PriceFormatter(Formatter):
        decimals = 0

        def set_locs(self, locs: Sequence[float]) -> None:
            # The stub says list[float]; matplotlib passes (and stores) any sequence, arrays too.
            super().set_locs(locs)  # type: ignore[arg-type]
            steps = np.diff(np.sort(np.asarray(locs, dtype=float)))
            steps = steps[steps > 0]
            step = float(steps.min()) if steps.size else 1.0
            self.decimals = min(decimals_needed(float(f"{step:.10g}")), 8)

        def __call__(self, x: float, pos: int | None = None) -> str:
            return fixed_price(x, self.decimals)

    return PriceFormatter()


def price_axis_formatter() -> Any:
    """A matplotlib Formatter writing prices with thousands separators and as many decimals
    as the tick spacing needs (shared by every tradelab chart)."""
    return _price_formatter()


def draw_developing(ax: Axes, developing: pl.DataFrame) -> Axes:
    """Draw a developing profile (:func:`tradelab.developing_profile`: ``time``, ``poc``,
    ``vah``, ``val``) as step lines over a price-over-time panel: each level holds from its
    step on (it counts the trades before it), POC solid red, VAH/VAL dashed."""
    need = {"time", "poc", "vah", "val"}
    if not isinstance(developing, pl.DataFrame) or not need <= set(developing.columns):
        raise InvalidParameterError(
            "developing must be the frame of tradelab.developing_profile (time, poc, vah, val)"
        )
    frame = developing.drop_nulls(["poc"])
    if frame.height == 0:
        return ax
    when = frame["time"].to_list()
    styles = (
        ("poc", DEVELOPING_POC_COLOR, "-", 1.4, "developing POC"),
        ("vah", DEVELOPING_VA_COLOR, "--", 1.1, "developing VAH / VAL"),
        ("val", DEVELOPING_VA_COLOR, "--", 1.1, None),
    )
    for col, color, style, width, label in styles:
        ax.plot(
            when,
            frame[col].to_list(),
            drawstyle="steps-post",
            color=color,
            linestyle=style,
            linewidth=width,
            label=label,
            gid=f"developing_{col}",
            zorder=3,
        )
    return ax


def _title(profile: VolumeProfile) -> str:
    name = profile.symbol or "Volume profile"
    n = profile.trade_count
    window = window_text(profile.start, profile.end, seconds=False, length=True)
    return f"{name} · {window} · {n:,} trade{'' if n == 1 else 's'}"


def _resolve_vacuums(
    profile: VolumeProfile, vacuums: Sequence[Vacuum] | bool | None
) -> list[Vacuum]:
    if vacuums is None or vacuums is True:
        return liquidity_vacuums(profile)
    if vacuums is False:
        return []
    out = list(vacuums)
    if not all(isinstance(v, Vacuum) for v in out):
        raise InvalidParameterError(
            "vacuums must be a list of tradelab.Vacuum (from liquidity_vacuums), None to "
            "compute them, or False to draw none"
        )
    return out


def _draw_bars(ax: Axes, profile: VolumeProfile) -> None:
    rows = profile.rows
    lows = rows["price_low"].to_numpy()
    sells = rows["sell_volume"].to_numpy()
    buys = rows["buy_volume"].to_numpy()
    height = profile.row_size
    inside = np.zeros(rows.height, dtype=bool)
    inside[profile.va_low_index : profile.va_high_index + 1] = True
    alpha = np.where(inside, 1.0, _OUTSIDE_ALPHA)
    from matplotlib.colors import to_rgba

    sell_colors = [to_rgba(SELL_COLOR, a) for a in alpha]
    buy_colors = [to_rgba(BUY_COLOR, a) for a in alpha]
    edge = 0.0 if rows.height > 60 else 0.4
    ax.barh(
        lows,
        sells,
        height=height * 0.92,
        align="edge",
        color=sell_colors,
        linewidth=edge,
        edgecolor="white",
        label="taker sell",
        gid="sell",
    )
    ax.barh(
        lows,
        buys,
        left=sells,
        height=height * 0.92,
        align="edge",
        color=buy_colors,
        linewidth=edge,
        edgecolor="white",
        label="taker buy",
        gid="buy",
    )


def _draw_levels(ax: Axes, profile: VolumeProfile) -> None:
    ax.axhspan(
        profile.val,
        profile.vah,
        color=VALUE_AREA_COLOR,
        alpha=0.10,
        zorder=0,
        linewidth=0,
        label=f"value area ({profile.value_area_volume_pct:.1f}% of volume)",
        gid="value_area",
    )
    for y, name in ((profile.vah, "VAH"), (profile.val, "VAL")):
        ax.axhline(y, color=VALUE_AREA_COLOR, linestyle="--", linewidth=0.9, gid=name)
    ax.axhline(profile.poc, color=POC_COLOR, linewidth=1.6, label="POC", gid="POC")


def _draw_level_labels(ax: Axes, profile: VolumeProfile) -> None:
    """Price tags right of the axes (like a platform's price scale), nudged apart if close."""
    import matplotlib.transforms as mtransforms

    d = profile.price_decimals
    lo, hi = ax.get_ylim()
    gap = (hi - lo) * 0.045
    levels = sorted(
        [
            (profile.val, "VAL", VALUE_AREA_COLOR),
            (profile.poc, "POC", POC_COLOR),
            (profile.vah, "VAH", VALUE_AREA_COLOR),
        ],
        key=lambda t: t[0],
    )
    ys = [y for y, _, _ in levels]
    # push apart from the POC outwards so the tags never overlap
    ys[0] = min(ys[0], ys[1] - gap)
    ys[2] = max(ys[2], ys[1] + gap)
    trans = mtransforms.blended_transform_factory(ax.transAxes, ax.transData)
    for (y, name, color), y_text in zip(levels, ys, strict=True):
        ax.text(
            1.01,
            y_text,
            f"{name} {price_text(y, d)}",
            transform=trans,
            ha="left",
            va="center",
            fontsize=8.5,
            color="white",
            fontweight="bold",
            clip_on=False,
            zorder=5,
            bbox={"boxstyle": "round,pad=0.25", "facecolor": color, "edgecolor": "none"},
            gid=f"label_{name}",
        )


def _view(profile: VolumeProfile) -> tuple[float, float, str | None]:
    """The price range to show, and a note on what lies outside it.

    Normally the whole traded range. When a few stray prints (an outlier like the futures
    recording's 28722.5) stretch the range so that 99.9% of the volume sits in less than 40% of
    it, the view zooms onto that body and the note says how many trades lie outside.
    """
    rows = profile.rows
    lo = float(rows["price_low"][0])
    hi = float(rows["price_high"][-1])
    vol = rows["volume"].to_numpy()
    cum = np.cumsum(vol) / vol.sum()
    a = int(np.searchsorted(cum, 0.0005, side="left"))
    b = int(np.searchsorted(cum, 0.9995, side="left"))
    a, b = max(0, min(a, profile.va_low_index)), min(rows.height - 1, max(b, profile.va_high_index))
    body_lo = float(rows["price_low"][a])
    body_hi = float(rows["price_high"][b])
    if body_hi - body_lo >= 0.4 * (hi - lo):
        return lo, hi, None
    margin = (body_hi - body_lo) * 0.15 or profile.row_size
    view_lo, view_hi = max(lo, body_lo - margin), min(hi, body_hi + margin)
    trades = rows["trades"].to_numpy()
    lows = rows["price_low"].to_numpy()
    highs = rows["price_high"].to_numpy()
    above = int(trades[lows >= view_hi].sum())
    below = int(trades[highs <= view_lo].sum())
    d = profile.price_decimals
    parts = []
    if above:
        parts.append(
            f"{above:,} trade{'s' if above > 1 else ''} up to {fixed_price(profile.price_max, d)}"
        )
    if below:
        parts.append(
            f"{below:,} trade{'s' if below > 1 else ''} down to {fixed_price(profile.price_min, d)}"
        )
    note = ("outside the view: " + "; ".join(parts)) if parts else None
    return view_lo, view_hi, note


def _draw_vacuums(ax: Axes, vacuums: list[Vacuum]) -> None:
    for i, v in enumerate(vacuums):
        ax.axhspan(
            v.price_low,
            v.price_high,
            facecolor="none",
            edgecolor=VACUUM_COLOR,
            hatch="///",
            linewidth=0.0,
            alpha=0.30,
            zorder=0.5,
            label="liquidity vacuum" if i == 0 else None,
            gid="vacuum",
        )


def plot_profile(
    profile: VolumeProfile,
    ax: Axes | None = None,
    *,
    trades: pl.DataFrame | None = None,
    vacuums: Sequence[Vacuum] | bool | None = None,
    title: str | None = None,
    legend: bool = True,
    developing: pl.DataFrame | None = None,
) -> Any:
    """Draw ``profile`` as horizontal buy/sell bars by price with POC, value area and vacuums.

    Args:
        profile: a :class:`~tradelab.analytics.VolumeProfile`.
        ax: the Axes to draw the profile into; ``None`` makes a new :class:`ProfileFigure`.
        trades: the profile's trades (``time`` and ``price``) to add the price-over-time panel
            on the left, sharing the price axis.
        vacuums: the vacuums to hatch; ``None`` computes them with the default rule
            (:func:`~tradelab.analytics.liquidity_vacuums`), ``False`` draws none.
        title: replaces the default title (symbol, window, trade count).
        legend: draw the legend.
        developing: a developing profile (:func:`tradelab.developing_profile`) to draw as
            lines over the price panel (needs ``trades``).

    Returns the Axes drawn into when ``ax`` is given (the profile's), else the new Figure.
    """
    if not isinstance(profile, VolumeProfile):
        raise InvalidParameterError(
            f"profile must be a tradelab.VolumeProfile, got {type(profile).__name__}"
        )
    validate_bool(legend, "legend")
    zones = _resolve_vacuums(profile, vacuums)
    if developing is not None and trades is None:
        raise InvalidParameterError(
            "developing lines are drawn over the price panel: give trades= as well"
        )
    fig = None
    price_ax = None
    if ax is None:
        fig = new_figure((12.0, 6.5) if trades is not None else (9.0, 6.5))
        if trades is not None:
            price_ax, ax = fig.subplots(
                1, 2, sharey=True, width_ratios=[2.6, 1.0], gridspec_kw={"wspace": 0.02}
            )
        else:
            ax = fig.subplots()
    elif trades is not None:
        # Split the given Axes: price panel on the left 70%, profile on the right.
        pos = ax.get_position()
        left_w = pos.width * 0.70
        price_ax = ax.figure.add_axes((pos.x0, pos.y0, left_w - pos.width * 0.01, pos.height))
        ax.set_position((pos.x0 + left_w, pos.y0, pos.width - left_w, pos.height))
        ax.sharey(price_ax)

    base, quote = split_symbol(profile.symbol)
    d = profile.price_decimals
    _draw_vacuums(ax, zones)
    _draw_levels(ax, profile)
    _draw_bars(ax, profile)

    lo, hi, note = _view(profile)
    pad = (hi - lo) * 0.01 or profile.row_size
    ax.set_ylim(lo - pad, hi + pad)
    top = float(cast(float, profile.rows["volume"].max()))  # a profile has at least one row
    ax.set_xlim(0, top * 1.08)
    ax.set_xlabel(f"Volume ({base}) per {fixed_price(profile.row_size, d)} {quote} row")
    ax.yaxis.set_major_formatter(_price_formatter())
    ax.grid(axis="x", color="#e0e0e0", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    _draw_level_labels(ax, profile)
    if note:
        ax.text(
            0.99,
            0.99,
            note,
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
            color="#424242",
            style="italic",
            gid="outside_note",
            bbox={"boxstyle": "round,pad=0.3", "facecolor": "#fff8e1", "edgecolor": "#ffcc80"},
        )

    if price_ax is not None and trades is not None:  # price_ax exists only with trades
        plot_price(trades, price_ax, profile=profile)
        if developing is not None:
            draw_developing(price_ax, developing)
            pairs = zip(*price_ax.get_legend_handles_labels(), strict=True)
            mine = [(h, lab) for h, lab in pairs if lab.startswith("developing")]
            if mine:
                price_ax.legend(*zip(*mine, strict=True), loc="upper left", fontsize=8)
        price_ax.set_ylabel(f"Price ({quote})")
        ax.tick_params(axis="y", labelleft=False)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_title("Volume profile", fontsize=10, loc="left")
        (fig or ax.figure).suptitle(title or _title(profile), fontsize=12, fontweight="bold")
    else:
        ax.set_ylabel(f"Price ({quote})")
        ax.set_title(title or _title(profile), fontsize=11, fontweight="bold", loc="left")
    if legend:
        handles, labels = ax.get_legend_handles_labels()
        order = ["taker buy", "taker sell", "POC"]
        ordered = sorted(
            zip(handles, labels, strict=True),
            key=lambda hl: order.index(hl[1]) if hl[1] in order else 9,
        )
        hs, ls = [h for h, _ in ordered], [lab for _, lab in ordered]
        if fig is not None:
            fig.legend(
                hs, ls, loc="outside lower center", ncol=len(hs), fontsize=8.5, frameon=False
            )
        else:
            ax.legend(
                hs,
                ls,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.11),
                ncol=3,
                fontsize=8,
                frameon=False,
            )
    return fig if fig is not None else ax


def _bucketed(times_ms: np.ndarray, prices: np.ndarray, buckets: int) -> tuple[np.ndarray, ...]:
    """(time, low, high, last) per time bucket: thousands of points, whatever the trade count."""
    order = np.argsort(times_ms, kind="stable")
    t = times_ms[order]
    p = prices[order]
    edges = np.linspace(t[0], t[-1] + 1, buckets + 1)
    starts = np.searchsorted(t, edges[:-1], side="left")
    keep = np.r_[starts[1:] > starts[:-1], t.size > starts[-1]]
    starts = starts[keep]
    lows = np.minimum.reduceat(p, starts)
    highs = np.maximum.reduceat(p, starts)
    ends = np.r_[starts[1:], t.size] - 1
    return t[starts], lows, highs, p[ends]


def plot_price(
    trades: pl.DataFrame,
    ax: Axes | None = None,
    *,
    profile: VolumeProfile | None = None,
    buckets: int = 1500,
) -> Any:
    """Price over time (a low–high band per time bucket and the last price), with the
    profile's POC and value area drawn across when ``profile`` is given.

    Returns the Axes drawn into, or a new Figure when ``ax`` is None.
    """
    import matplotlib.dates as mdates

    if not isinstance(trades, pl.DataFrame) or not {"time", "price"} <= set(trades.columns):
        raise InvalidTradesError("trades must be a Polars frame with time and price columns")
    if trades.height == 0:
        raise InvalidTradesError("no trades to draw")
    if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
        raise InvalidParameterError(f"buckets must be a whole number >= 1, got {buckets!r}")
    fig = None
    if ax is None:
        fig = new_figure((9.0, 5.0))
        ax = fig.subplots()
    tcol = trades["time"]
    ms = (tcol.dt.epoch("ms") if isinstance(tcol.dtype, pl.Datetime) else tcol).to_numpy()
    prices = trades["price"].to_numpy()
    t, lows, highs, last = _bucketed(ms.astype(np.int64), prices.astype(float), buckets)
    naive = (t.astype("datetime64[ms]")).astype(dt.datetime)
    when = [w.replace(tzinfo=dt.UTC) for w in naive]
    if profile is not None:
        _draw_levels(ax, profile)
    ax.fill_between(
        when,
        lows,
        highs,
        step="post",
        color=PRICE_COLOR,
        alpha=0.25,
        linewidth=0,
        gid="price_range",
    )
    ax.plot(when, last, drawstyle="steps-post", color=PRICE_COLOR, linewidth=0.9, gid="price")
    locator = mdates.AutoDateLocator(tz=dt.UTC)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=dt.UTC))
    ax.set_xlabel("Time (UTC)")
    if profile is not None:
        # The window, unless trades cover only its end (collection started recently): then
        # from the first trade, so the line is readable rather than squeezed into a corner.
        left = profile.start or when[0]
        right = profile.end or when[-1]
        span = right - left
        if when[0] - left > 0.1 * span:
            left = when[0] - 0.02 * (right - when[0])
            ax.set_title(
                f"trades from {when[0]:%H:%M:%S} UTC", fontsize=8.5, loc="left", color="#666666"
            )
        ax.set_xlim(left, right)  # type: ignore[arg-type]  # datetimes: matplotlib's date units
        _, quote = split_symbol(profile.symbol)
        ax.set_ylabel(f"Price ({quote})")
    ax.grid(color="#e0e0e0", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig if fig is not None else ax
