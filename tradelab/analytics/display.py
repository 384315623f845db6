"""Text and notebook presentation of a :class:`~tradelab.analytics.VolumeProfile`.

Pure string building, no computation: the one-line ``repr``, the HTML summary Jupyter shows
(:func:`profile_html`: key figures beside :func:`profile_svg`, a small inline SVG histogram with
sell/buy stacked, the value area shaded and the POC in red), and the price/quantity formatting
the CLI and the plots share (:func:`_fmt_price`, :func:`_fmt_qty`). ``VolumeProfile.__repr__``,
``_repr_html_`` and ``_svg`` delegate here, so the result type stays a plain data class.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from tradelab.analytics.rows import _decimals

if TYPE_CHECKING:  # pragma: no cover
    from tradelab.analytics.profile import VolumeProfile

__all__ = ["profile_html", "profile_repr", "profile_svg", "window_text"]


def _fmt_price(x: float, decimals: int) -> str:
    """Price with thousands separators and at least ``decimals`` decimals (more if needed)."""
    return f"{x:,.{max(decimals, min(_decimals(x), 8))}f}"


def _fmt_qty(x: float) -> str:
    """Quantity: 2 decimals from 1,000, 4 from 1, else up to 8 without trailing zeros."""
    if x >= 1000:
        return f"{x:,.2f}"
    if x >= 1:
        return f"{x:,.4f}"
    return f"{x:.8f}".rstrip("0").rstrip(".") or "0"


def window_text(profile: VolumeProfile) -> str:
    """The profile's window as text, e.g. ``2024-05-01 10:00:00 → 11:00:00 UTC``."""
    if profile.start is None or profile.end is None:
        return "window unknown"
    fmt = "%Y-%m-%d %H:%M:%S"
    end_fmt = "%H:%M:%S" if profile.start.date() == profile.end.date() else fmt
    return f"{profile.start.strftime(fmt)} → {profile.end.strftime(end_fmt)} UTC"


def profile_repr(profile: VolumeProfile) -> str:
    """One line: symbol, window, trades, volume, POC, value area and rows."""
    d = profile.price_decimals
    return (
        f"<VolumeProfile {profile.symbol or '(symbol unknown)'} {window_text(profile)}: "
        f"{profile.trade_count:,} trades, volume {_fmt_qty(profile.total_volume)}; "
        f"POC {_fmt_price(profile.poc, d)}, VA {_fmt_price(profile.val, d)}–"
        f"{_fmt_price(profile.vah, d)} ({profile.value_area_volume_pct:.1f}%, {profile.method}); "
        f"{profile.row_count} rows of {_fmt_price(profile.row_size, d)}>"
    )


def profile_html(profile: VolumeProfile) -> str:
    """The notebook view: a table of key figures beside :func:`profile_svg`."""
    d = profile.price_decimals
    esc = html.escape
    figures = [
        ("Window", window_text(profile)),
        ("Trades", f"{profile.trade_count:,}"),
        (
            "Volume",
            f"{_fmt_qty(profile.total_volume)} (buy {_fmt_qty(profile.buy_volume)}, "
            f"sell {_fmt_qty(profile.sell_volume)}, delta {profile.delta:+,.4f})",
        ),
        ("POC", _fmt_price(profile.poc, d)),
        (
            "Value area",
            f"{_fmt_price(profile.val, d)} – {_fmt_price(profile.vah, d)} "
            f"({profile.value_area_volume_pct:.2f}% of volume; target "
            f"{profile.value_area:.0%}, {profile.method})",
        ),
        (
            "Traded range",
            f"{_fmt_price(profile.price_min, d)} – {_fmt_price(profile.price_max, d)}",
        ),
        ("Rows", f"{profile.row_count} × {_fmt_price(profile.row_size, d)}"),
    ]
    cells = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{esc(k)}</th>"
        f"<td style='text-align:left'>{esc(v)}</td></tr>"
        for k, v in figures
    )
    title = esc(f"Volume profile — {profile.symbol or 'symbol unknown'}")
    return (
        "<div style='display:flex;gap:1.5em;align-items:flex-start'>"
        f"<div><b>{title}</b><table>{cells}</table></div>{profile_svg(profile)}</div>"
    )


def profile_svg(profile: VolumeProfile, width: int = 220, max_height: int = 300) -> str:
    """A small inline SVG histogram (sell/buy stacked, value area shaded, POC red)."""
    n = profile.row_count
    if n == 0:
        return ""
    bar_h = max(min(max_height / n, 6.0), 0.5)
    height = bar_h * n
    vols = profile.rows["volume"].to_numpy()
    sells = profile.rows["sell_volume"].to_numpy()
    top = float(vols.max()) or 1.0
    parts = [
        f"<svg width='{width}' height='{height:.0f}' viewBox='0 0 {width} {height:.1f}' "
        "xmlns='http://www.w3.org/2000/svg' style='background:#fff'>",
        f"<rect x='0' y='{(n - 1 - profile.va_high_index) * bar_h:.2f}' width='{width}' "
        f"height='{(profile.va_high_index - profile.va_low_index + 1) * bar_h:.2f}' "
        "fill='#e8eef7'/>",
    ]
    for i in range(n):
        if vols[i] <= 0:
            continue
        y = (n - 1 - i) * bar_h
        ws = sells[i] / top * width
        wt = vols[i] / top * width
        parts.append(
            f"<rect x='0' y='{y:.2f}' width='{ws:.2f}' height='{bar_h:.2f}' fill='#d6604d'/>"
        )
        parts.append(
            f"<rect x='{ws:.2f}' y='{y:.2f}' width='{wt - ws:.2f}' "
            f"height='{bar_h:.2f}' fill='#4393c3'/>"
        )
    y_poc = (n - 1 - profile.poc_index + 0.5) * bar_h
    parts.append(
        f"<line x1='0' x2='{width}' y1='{y_poc:.2f}' y2='{y_poc:.2f}' "
        "stroke='#b2182b' stroke-width='1'/>"
    )
    parts.append("</svg>")
    return "".join(parts)
