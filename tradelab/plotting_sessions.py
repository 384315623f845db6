"""Session volume profiles side by side on one price axis (matplotlib, imported on demand).

The picture of TradingView's "Session Volume Profile": each session gets a column (its date
below), its profile drawn as horizontal bars growing rightwards from the column's left edge —
taker sells and buys stacked, value-area rows in full colour, the rest faded — with its POC as a
red line and VAH/VAL dashed across the column. Every session shares one row size and one volume
scale, so rows line up and bar lengths compare across days. Naked POCs (not revisited by later
trades) are extended to the right edge as dotted rays, the levels traders watch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.colors import to_rgba

from tradelab.analytics import SessionProfiles, naked_pocs
from tradelab.config import validate_bool
from tradelab.exceptions import InvalidParameterError
from tradelab.formatting import fixed_price, split_symbol
from tradelab.plotting import (
    BUY_COLOR,
    POC_COLOR,
    SELL_COLOR,
    VALUE_AREA_COLOR,
    new_figure,
    price_axis_formatter,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = ["plot_sessions"]

_FADED = 0.35
_WIDTH = 0.92  # share of a session's column its longest bar may take


def _draw_session(ax: Axes, i: int, vp: Any, scale: float) -> None:
    rows = vp.rows
    lows = rows["price_low"].to_numpy()
    sells = rows["sell_volume"].to_numpy() * scale
    buys = rows["buy_volume"].to_numpy() * scale
    inside = np.zeros(rows.height, dtype=bool)
    inside[vp.va_low_index : vp.va_high_index + 1] = True
    alpha = np.where(inside, 1.0, _FADED)
    height = vp.row_size * 0.92
    ax.barh(
        lows,
        sells,
        left=float(i),
        height=height,
        align="edge",
        color=[to_rgba(SELL_COLOR, a) for a in alpha],
        linewidth=0,
        label="taker sell" if i == 0 else None,
        gid=f"sell_{i}",
    )
    ax.barh(
        lows,
        buys,
        left=float(i) + sells,
        height=height,
        align="edge",
        color=[to_rgba(BUY_COLOR, a) for a in alpha],
        linewidth=0,
        label="taker buy" if i == 0 else None,
        gid=f"buy_{i}",
    )
    ax.hlines(vp.poc, i, i + _WIDTH, colors=POC_COLOR, linewidth=1.6, label="POC" if i == 0 else "")
    ax.hlines(
        [vp.vah, vp.val],
        i,
        i + _WIDTH,
        colors=VALUE_AREA_COLOR,
        linestyles="--",
        linewidth=0.9,
        label="VAH / VAL" if i == 0 else "",
    )


def plot_sessions(
    sessions: SessionProfiles,
    ax: Axes | None = None,
    *,
    naked: bool = True,
    title: str | None = None,
    legend: bool = True,
) -> Any:
    """Draw every session's profile side by side on one price axis.

    Args:
        sessions: the result of :func:`tradelab.session_profiles`.
        ax: the Axes to draw into; ``None`` makes a new Figure (shown inline in notebooks).
        naked: extend naked POCs (:func:`tradelab.naked_pocs`) to the right edge.
        title: replaces the default title (symbol, session, range).
        legend: draw the legend.

    Returns the Axes when ``ax`` is given, else the new Figure.
    """
    if not isinstance(sessions, SessionProfiles):
        raise InvalidParameterError(
            f"sessions must be a tradelab.SessionProfiles, got {type(sessions).__name__}"
        )
    validate_bool(naked, "naked")
    validate_bool(legend, "legend")
    n = len(sessions)
    fig = None
    if ax is None:
        fig = new_figure((max(6.0, min(16.0, 2.0 + 1.6 * n)), 6.5))
        ax = fig.subplots()
    top = max(float(vp.rows["volume"].max() or 0.0) for vp in sessions) or 1.0  # type: ignore[arg-type]
    scale = _WIDTH / top
    for i, vp in enumerate(sessions):
        _draw_session(ax, i, vp, scale)
    if naked and n > 1:
        table = naked_pocs(sessions)
        starts = sessions.summary["start"].to_list()
        for k, row in enumerate(table.iter_rows(named=True)):
            i = starts.index(row["session_start"])
            ax.hlines(
                row["poc"],
                i + _WIDTH,
                n,
                colors=POC_COLOR,
                linestyles=":",
                linewidth=1.2,
                label="naked POC" if k == 0 else "",
                gid="naked_poc",
            )
    lo = min(float(vp.rows["price_low"][0]) for vp in sessions)
    hi = max(float(vp.rows["price_high"][-1]) for vp in sessions)
    pad = (hi - lo) * 0.02 or sessions.row_size
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlim(-0.05, n + 0.05)
    labels = [f"{day:%a %d %b}" for day in sessions.summary["session"].to_list()]
    ax.set_xticks(np.arange(n) + _WIDTH / 2, labels, fontsize=8.5)
    for i in range(1, n):
        ax.axvline(i - (1 - _WIDTH) / 2, color="#e0e0e0", linewidth=0.8, zorder=0)
    base, quote = split_symbol(sessions.symbol)
    d = sessions.profiles[0].price_decimals
    ax.set_ylabel(f"Price ({quote})")
    ax.set_xlabel(
        f"{sessions.session.name} sessions ({sessions.session.hours_text}); rows of "
        f"{fixed_price(sessions.row_size, d)} {quote}, bar length = volume ({base}), one scale"
    )
    ax.yaxis.set_major_formatter(price_axis_formatter())
    ax.grid(axis="y", color="#eeeeee", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    default = (
        f"{sessions.symbol or 'Session volume profiles'} · {n} session{'' if n == 1 else 's'} · "
        f"{sessions.start:%Y-%m-%d %H:%M} → {sessions.end:%Y-%m-%d %H:%M} UTC"
    )
    ax.set_title(title or default, fontsize=11, fontweight="bold", loc="left")
    if legend:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=5, fontsize=8, frameon=False)
    return fig if fig is not None else ax
