"""Key figures as a small table (HTML in notebooks, aligned text elsewhere).

:class:`KeyFigures` is what ``%tradelab profile``, ``vacuums``, ``sessions`` and the live view
(:mod:`tradelab.jupyter.live`) display beside their plots; values are written by
:mod:`tradelab.formatting`.
"""

from __future__ import annotations

from typing import Any

from tradelab.formatting import fixed_price, hours_text, qty_text_short, utc_text

__all__ = ["KeyFigures"]


class KeyFigures:
    """A small two-column table of key figures: HTML in notebooks, text elsewhere."""

    def __init__(self, title: str, rows: list[tuple[str, str]], table: Any = None) -> None:
        self.title = title
        self.rows = rows
        self.table = table  # optional extra rows (e.g. vacuums): list of dicts

    @classmethod
    def of_profile(cls, p: Any, hours: float | None) -> KeyFigures:
        """The key figures of a :class:`~tradelab.analytics.VolumeProfile` of the last ``hours``
        (``None``: of a range)."""
        d = _decimals(p)
        rows = [
            ("POC", fixed_price(p.poc, d)),
            ("VAH", fixed_price(p.vah, d)),
            ("VAL", fixed_price(p.val, d)),
            ("value area", f"{p.value_area_volume_pct:.1f}% of the volume ({p.method})"),
            (
                "volume",
                f"{qty_text_short(p.total_volume)} (buy {qty_text_short(p.buy_volume)}, "
                f"sell {qty_text_short(p.sell_volume)})",
            ),
            ("trades", f"{int(p.trade_count):,}"),
            ("rows", f"{p.row_count} of {fixed_price(p.row_size, d)}"),
            ("window", f"{utc_text(p.start)} → {utc_text(p.end)} UTC"),
        ]
        if getattr(p, "window_note", None):
            rows.append(("note", str(p.window_note)))
        return cls(f"{p.symbol or ''} volume profile, {_window(p, hours)}".strip(), rows)

    @classmethod
    def of_vacuums(cls, report: Any, hours: float | None) -> KeyFigures:
        """The key figures of a :class:`~tradelab.analytics.VacuumReport`, and its zones."""
        p = report.profile
        d = _decimals(p)
        table = [
            {
                "from": fixed_price(v.price_low, d),
                "to": fixed_price(v.price_high, d),
                "rows": str(v.rows),
                "volume": qty_text_short(v.volume),
                "deficit": f"{v.deficit_pct:.0f}%",
                "impact": str(v.impact),
            }
            for v in report.vacuums
        ]
        rows = [
            ("vacuums", f"{len(table)} (rows under 20% of the median row volume)"),
            ("POC", fixed_price(p.poc, d)),
            ("value area", f"{fixed_price(p.val, d)} – {fixed_price(p.vah, d)}"),
            ("trades", f"{int(p.trade_count):,}"),
        ]
        return cls(f"{p.symbol or ''} liquidity vacuums, {_window(p, hours)}".strip(), rows, table)

    @classmethod
    def of_sessions(cls, sp: Any) -> KeyFigures:
        """The key figures of :class:`~tradelab.analytics.SessionProfiles`: one table row per
        session, then the naked POCs."""
        d = sp.profiles[0].price_decimals if len(sp) else 2
        naked = sp.naked_pocs()
        rows = [
            ("sessions", f"{len(sp)} × {sp.session.name} ({sp.session.hours_text})"),
            ("range", f"{utc_text(sp.start)} → {utc_text(sp.end)} UTC"),
            ("rows", f"{fixed_price(sp.row_size, d)} (shared by every session)"),
            (
                "naked POCs",
                ", ".join(
                    f"{fixed_price(r['poc'], d)} ({r['session']}, {r['distance_pct']:+.2f}%)"
                    for r in naked.iter_rows(named=True)
                )
                or "none",
            ),
        ]
        if sp.window_note:
            rows.append(("note", str(sp.window_note)))
        title = f"{sp.symbol or ''} session volume profiles".strip()
        return cls(title, rows, sp.table())

    def to_text(self) -> str:
        width = max(len(k) for k, _ in self.rows)
        lines = [self.title] + [f"  {k.ljust(width)}  {v}" for k, v in self.rows]
        if self.table:
            keys = list(self.table[0])
            widths = [max(len(k), *(len(r[k]) for r in self.table)) for k in keys]
            lines.append("  " + "  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
            for r in self.table:
                lines.append(
                    "  " + "  ".join(r[k].ljust(w) for k, w in zip(keys, widths, strict=True))
                )
        return "\n".join(line.rstrip() for line in lines)

    def __repr__(self) -> str:
        return self.to_text()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.to_text())

    def _repr_html_(self) -> str:
        import html

        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in self.rows
        )
        out = f"<p><b>{html.escape(self.title)}</b></p><table>{body}</table>"
        if self.table:
            keys = list(self.table[0])
            head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(r[k])}</td>" for k in keys) + "</tr>"
                for r in self.table
            )
            out += f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        return out


def _window(p: Any, hours: float | None) -> str:
    if hours is not None:
        return f"last {hours_text(hours)}"
    return f"{utc_text(p.start)} → {utc_text(p.end)} UTC"


def _decimals(p: Any) -> int:
    return int(getattr(p, "price_decimals", 2))
