"""The MCP answer for session profiles: output models and the sentences for a language model.

:func:`session_profiles_result` turns :class:`~tradelab.analytics.SessionProfiles` (from
:func:`tradelab.session_profiles`) into :class:`SessionProfilesResult`: one compact entry per
session (POC, value area, volume, delta, value-area migration) and the naked POCs, with a
summary paragraph. Prices are written by :mod:`tradelab.formatting`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from tradelab.formatting import iso_utc, price_text_for_step

__all__ = ["NakedPoc", "SessionProfilesResult", "SessionSummary", "session_profiles_result"]


class SessionSummary(BaseModel):
    """One session's profile in brief."""

    session: str = Field(description="UTC date the session starts on (YYYY-MM-DD)")
    start: str = Field(description="start of the session's window, ISO 8601 UTC")
    end: str = Field(description="end of the window (exclusive); clipped to the range asked")
    trades: int
    open: float
    high: float
    low: float
    close: float
    poc: float = Field(description="point of control: middle price of the session's top row")
    vah: float
    val: float
    volume: float
    delta: float = Field(description="taker buy volume minus taker sell volume")
    va_migration: Literal["higher", "lower", "overlapping"] | None = Field(
        description="this value area against the previous session's (None for the first)"
    )


class NakedPoc(BaseModel):
    """An earlier session's POC that price has not traded through since."""

    session: str
    poc: float
    age_hours: float = Field(description="hours from the end of its session to the last trade")
    distance: float = Field(description="poc - last price")
    distance_pct: float
    side: Literal["above", "below"] = Field(description="where the POC is against the price")


class SessionProfilesResult(BaseModel):
    """Session volume profiles of one symbol, side by side."""

    symbol: str
    session: str = Field(description="the session rule, e.g. utc-day or london")
    session_hours: str = Field(description="the session's UTC hours")
    start: str
    end: str
    row_size: float = Field(description="row height shared by every session's profile")
    sessions: list[SessionSummary]
    naked_pocs: list[NakedPoc]
    summary: str


def session_profiles_result(sp: Any) -> SessionProfilesResult:
    """The tool's answer for :class:`~tradelab.analytics.SessionProfiles`."""
    step = float(sp.row_size)
    entries = [
        SessionSummary(
            session=str(r["session"]),
            start=iso_utc(r["start"]) or "",
            end=iso_utc(r["end"]) or "",
            trades=int(r["trades"]),
            open=r["open"],
            high=r["high"],
            low=r["low"],
            close=r["close"],
            poc=r["poc"],
            vah=r["vah"],
            val=r["val"],
            volume=r["volume"],
            delta=r["delta"],
            va_migration=r["va_migration"],
        )
        for r in sp.summary.iter_rows(named=True)
    ]
    naked = [
        NakedPoc(
            session=str(r["session"]),
            poc=r["poc"],
            age_hours=round(r["age_hours"], 3),
            distance=r["distance"],
            distance_pct=round(r["distance_pct"], 4),
            side=r["side"],
        )
        for r in sp.naked_pocs().iter_rows(named=True)
    ]

    def px(x: float) -> str:
        return price_text_for_step(x, step)

    parts = [
        f"{e.session}: POC {px(e.poc)}, value area {px(e.val)}–{px(e.vah)}"
        + (f" ({e.va_migration} than the previous)" if e.va_migration else "")
        + f", {e.trades:,} trades, delta {e.delta:+,.4f}"
        for e in entries
    ]
    text = (
        f"{sp.symbol} {sp.session.name} sessions ({sp.session.hours_text}) from "
        f"{sp.start:%Y-%m-%d %H:%M} to {sp.end:%Y-%m-%d %H:%M} UTC: {len(entries)} session(s). "
        + "; ".join(parts)
        + ". "
    )
    if naked:
        text += "Naked POCs (not revisited since, levels price may return to): " + "; ".join(
            f"{px(n.poc)} from {n.session}, {n.distance_pct:+.2f}% from the last price"
            for n in naked
        )
    else:
        text += "No naked POC: every earlier session's POC was traded through later."
    if sp.window_note:
        text += f" ({sp.window_note}.)"
    return SessionProfilesResult(
        symbol=str(sp.symbol),
        session=sp.session.name,
        session_hours=sp.session.hours_text,
        start=iso_utc(sp.start) or "",
        end=iso_utc(sp.end) or "",
        row_size=step,
        sessions=entries,
        naked_pocs=naked,
        summary=text,
    )
