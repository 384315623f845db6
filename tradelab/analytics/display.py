"""Text and notebook presentation of a :class:`~tradelab.analytics.VolumeProfile`.

Pure string building, no computation: the one-line ``repr``, the HTML summary Jupyter shows
(:func:`profile_html`: key figures beside :func:`profile_svg`, a small inline SVG histogram with
sell/buy stacked, the value area shaded and the POC in red). Prices and quantities are written
by :mod:`tradelab.formatting`. ``VolumeProfile.__repr__``, ``_repr_html_`` and ``_svg`` delegate
here, so the result type stays a plain data class; the functions take any object with a
profile's attributes (:class:`ProfileView`), so this module does not depend on the profile's.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Protocol

import polars as pl

from tradelab.formatting import price_text, qty_text
from tradelab.formatting import window_text as format_window

__all__ = ["ProfileView", "profile_html", "profile_repr", "profile_svg", "window_text"]


class ProfileView(Protocol):
    """What the presentation reads of a :class:`~tradelab.analytics.VolumeProfile`."""

    @property
    def rows(self) -> pl.DataFrame: ...
    @property
    def symbol(self) -> str | None: ...
    @property
    def start(self) -> dt.datetime | None: ...
    @property
    def end(self) -> dt.datetime | None: ...
    @property
    def trade_count(self) -> int: ...
    @property
    def total_volume(self) -> float: ...
    @property
    def buy_volume(self) -> float: ...
    @property
    def sell_volume(self) -> float: ...
    @property
    def delta(self) -> float: ...
    @property
    def poc(self) -> float: ...
    @property
    def vah(self) -> float: ...
    @property
    def val(self) -> float: ...
    @property
    def value_area(self) -> float: ...
    @property
    def value_area_volume_pct(self) -> float: ...
    @property
    def method(self) -> str: ...
    @property
    def price_min(self) -> float: ...
    @property
    def price_max(self) -> float: ...
    @property
    def row_size(self) -> float: ...
    @property
    def row_count(self) -> int: ...
    @property
    def price_decimals(self) -> int: ...
    @property
    def poc_index(self) -> int: ...
    @property
    def va_low_index(self) -> int: ...
    @property
    def va_high_index(self) -> int: ...


def window_text(profile: ProfileView) -> str:
    """The profile's window as text, e.g. ``2024-05-01 10:00:00 → 11:00:00 UTC``."""
    return format_window(profile.start, profile.end)


def profile_repr(profile: ProfileView) -> str:
    """One line: symbol, window, trades, volume, POC, value area and rows."""
    d = profile.price_decimals
    note = getattr(profile, "window_note", None)
    return (
        f"<VolumeProfile {profile.symbol or '(symbol unknown)'} {window_text(profile)}: "
        f"{profile.trade_count:,} trades, volume {qty_text(profile.total_volume)}; "
        f"POC {price_text(profile.poc, d)}, VA {price_text(profile.val, d)}–"
        f"{price_text(profile.vah, d)} ({profile.value_area_volume_pct:.1f}%, {profile.method}); "
        f"{profile.row_count} rows of {price_text(profile.row_size, d)}"
        + (f"; {note}" if note else "")
        + ">"
    )


def profile_html(profile: ProfileView) -> str:
    """The notebook view: a table of key figures beside :func:`profile_svg`."""
    d = profile.price_decimals
    esc = html.escape
    figures = [
        (
            "Window",
            window_text(profile)
            + (f" ({n})" if (n := getattr(profile, "window_note", None)) else ""),
        ),
        ("Trades", f"{profile.trade_count:,}"),
        (
            "Volume",
            f"{qty_text(profile.total_volume)} (buy {qty_text(profile.buy_volume)}, "
            f"sell {qty_text(profile.sell_volume)}, delta {profile.delta:+,.4f})",
        ),
        ("POC", price_text(profile.poc, d)),
        (
            "Value area",
            f"{price_text(profile.val, d)} – {price_text(profile.vah, d)} "
            f"({profile.value_area_volume_pct:.2f}% of volume; target "
            f"{profile.value_area:.0%}, {profile.method})",
        ),
        (
            "Traded range",
            f"{price_text(profile.price_min, d)} – {price_text(profile.price_max, d)}",
        ),
        ("Rows", f"{profile.row_count} × {price_text(profile.row_size, d)}"),
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


def profile_svg(profile: ProfileView, width: int = 220, max_height: int = 300) -> str:
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
