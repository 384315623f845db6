"""Session volume profiles: one profile per trading session, side by side (pure, no I/O).

A **session** is a daily window in UTC: ``"utc-day"`` (00:00–24:00), ``"HH:MM-HH:MM"`` (an end at
or before the start runs into the next day, ``"22:00-06:00"``), or a named preset —
:data:`SESSION_PRESETS`: ``"asia"`` 00:00–09:00, ``"london"`` 07:00–16:00, ``"new-york"``
13:00–22:00 (fixed UTC hours, no daylight-saving shift). A session is labelled with the UTC date
it starts on; sessions are clipped to the range asked for, so the first and last may be partial
(the summary's ``start``/``end`` say so).

:func:`session_profiles_from_trades` splits a trade frame at the session boundaries (exact to the
millisecond: a trade at 00:00:00.000 opens the new day) and computes one
:func:`~tradelab.analytics.volume_profile` per session that has trades. All sessions share one
row size (the automatic size of the widest session, unless ``row_size`` is given), so their rows
are aligned and the profiles can be drawn on one price axis. The summary frame has one row per
session: date, window, trade count, open/high/low/close, POC, VAH, VAL, volume, buy/sell volume,
delta, and the value area's migration against the previous session: ``"higher"`` (this VAL at
or above the previous VAH), ``"lower"`` (this VAH at or below the previous VAL) or
``"overlapping"``.
"""

from __future__ import annotations

import datetime as dt
import importlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from tradelab.analytics.checks import check_price_steps, check_profile_args, trade_columns
from tradelab.analytics.profile import VolumeProfile, volume_profile
from tradelab.analytics.rows import auto_row_size, infer_tick_size, tick_from_sample, tick_sample
from tradelab.config import validate_bool
from tradelab.exceptions import InvalidParameterError, InvalidTradesError
from tradelab.formatting import price_text, qty_text
from tradelab.timerange import parse_time

__all__ = [
    "MIGRATIONS",
    "SESSION_PRESETS",
    "SessionProfiles",
    "SessionSpec",
    "migration",
    "parse_session",
    "session_profiles_from_trades",
    "session_record",
    "session_windows",
    "sessions_result",
    "time_sorted",
]

DAY_MS = 86_400_000
SESSION_PRESETS: dict[str, str] = {
    "utc-day": "00:00-24:00",
    "asia": "00:00-09:00",
    "london": "07:00-16:00",
    "new-york": "13:00-22:00",
}
"""Named sessions and their UTC hours."""
MIGRATIONS = ("higher", "lower", "overlapping")
"""How a session's value area sits against the previous one's."""

_HHMM = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_SUMMARY_SCHEMA: dict[str, Any] = {
    "session": pl.Date,
    "start": pl.Datetime("ms", "UTC"),
    "end": pl.Datetime("ms", "UTC"),
    "trades": pl.Int64,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "poc": pl.Float64,
    "vah": pl.Float64,
    "val": pl.Float64,
    "volume": pl.Float64,
    "buy_volume": pl.Float64,
    "sell_volume": pl.Float64,
    "delta": pl.Float64,
    "va_migration": pl.Utf8,
}


@dataclass(frozen=True)
class SessionSpec:
    """A daily session: ``start_min`` minutes after UTC midnight, ``length_min`` long."""

    name: str
    start_min: int
    length_min: int

    @property
    def hours_text(self) -> str:
        """``07:00-16:00 UTC``."""
        end = (self.start_min + self.length_min) % 1440
        end_text = "24:00" if self.length_min == 1440 and self.start_min == 0 else _hhmm(end)
        return f"{_hhmm(self.start_min)}-{end_text} UTC"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_session(session: object) -> SessionSpec:
    """The :class:`SessionSpec` of ``"utc-day"``, a preset (:data:`SESSION_PRESETS`) or
    ``"HH:MM-HH:MM"`` in UTC (an end at or before the start runs into the next day)."""
    if isinstance(session, SessionSpec):
        return session
    allowed = (
        "'utc-day', a preset ('asia', 'london', 'new-york') or UTC hours 'HH:MM-HH:MM' "
        "such as '08:00-16:30' (an end at or before the start runs into the next day)"
    )
    if not isinstance(session, str):
        raise InvalidParameterError(f"session must be {allowed}; got {session!r}")
    name = session.strip().lower().replace("_", "-").replace("newyork", "new-york")
    hours = SESSION_PRESETS.get(name, name)
    m = _HHMM.match(hours)
    if not m:
        raise InvalidParameterError(f"session={session!r} is not a session: give {allowed}")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
        raise InvalidParameterError(f"session={session!r} has an impossible time: give {allowed}")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    length = (end - start) % 1440 or 1440
    return SessionSpec(name if name in SESSION_PRESETS else hours, start, length)


def session_windows(
    spec: SessionSpec, start_ms: int, end_ms: int
) -> list[tuple[dt.date, int, int]]:
    """``(date, start_ms, end_ms)`` of every session overlapping ``[start_ms, end_ms)``, clipped
    to it, in time order; ``date`` is the UTC date the (unclipped) session starts on."""
    out = []
    for day in range(start_ms // DAY_MS - 1, end_ms // DAY_MS + 1):
        s = day * DAY_MS + spec.start_min * 60_000
        e = s + spec.length_min * 60_000
        lo, hi = max(s, start_ms), min(e, end_ms)
        if lo < hi:
            out.append((dt.date(1970, 1, 1) + dt.timedelta(days=day), lo, hi))
    return out


def migration(prev_val: float, prev_vah: float, val: float, vah: float) -> str:
    """``"higher"`` when ``val >= prev_vah``, ``"lower"`` when ``vah <= prev_val``, else
    ``"overlapping"`` (value areas are row ranges ``[val, vah)``: touching is not overlapping)."""
    if val >= prev_vah:
        return "higher"
    if vah <= prev_val:
        return "lower"
    return "overlapping"


@dataclass(frozen=True, eq=False)
class SessionProfiles:
    """One :class:`VolumeProfile` per session with trades, and their summary.

    Attributes:
        symbol: the symbol, when known.
        session: the :class:`SessionSpec` the trades were split by.
        start, end: the range covered (``[start, end)``).
        profiles: the sessions' profiles, in time order (empty sessions left out); all share
            one row size, so their rows are aligned.
        summary: one row per profile — ``session`` (date), ``start``, ``end``, ``trades``,
            ``open``, ``high``, ``low``, ``close``, ``poc``, ``vah``, ``val``, ``volume``,
            ``buy_volume``, ``sell_volume``, ``delta``, ``va_migration`` (None for the first).
        window_note: a remark on how the range was read (no zone = UTC), else None.
    """

    symbol: str | None
    session: SessionSpec
    start: dt.datetime
    end: dt.datetime
    profiles: tuple[VolumeProfile, ...]
    summary: pl.DataFrame
    window_note: str | None = None

    def __len__(self) -> int:
        return len(self.profiles)

    def __iter__(self) -> Iterator[VolumeProfile]:
        return iter(self.profiles)

    def __getitem__(self, i: int) -> VolumeProfile:
        return self.profiles[i]

    @property
    def row_size(self) -> float:
        """The row size every session's profile uses."""
        return self.profiles[0].row_size

    def naked_pocs(self, **kwargs: Any) -> pl.DataFrame:
        """The POCs no later trade has revisited: :func:`tradelab.analytics.naked_pocs`."""
        naked = importlib.import_module("tradelab.analytics.naked")
        return naked.naked_pocs(self, **kwargs)

    def plot(self, **kwargs: Any) -> Any:
        """Draw the sessions side by side on one price axis
        (:func:`tradelab.plotting_sessions.plot_sessions`)."""
        return importlib.import_module("tradelab.plotting_sessions").plot_sessions(self, **kwargs)

    def to_dict(self, *, naked: bool = True) -> dict[str, Any]:
        """JSON-ready: the range, the session, the row size, one summary dict per session and
        (``naked=True``) the naked POCs (ages in hours)."""
        validate_bool(naked, "naked")
        rows = _json_rows(self.summary)
        extra: dict[str, Any] = {}
        if naked:
            extra["naked_pocs"] = _json_rows(self.naked_pocs().drop("age"))
        return {
            "symbol": self.symbol,
            "session": self.session.name,
            "session_hours": self.session.hours_text,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "row_size": self.row_size,
            "sessions": rows,
            **extra,
            **({"window_note": self.window_note} if self.window_note else {}),
        }

    def table(self) -> list[dict[str, str]]:
        """One dict of display strings per session (date, trades, open → close, POC, VAH, VAL,
        volume, delta, value-area migration): what the CLI, the magic and reports print."""
        d = self.profiles[0].price_decimals if self.profiles else 2
        out = []
        for r in self.summary.iter_rows(named=True):
            partial = r["end"] - r["start"] < dt.timedelta(minutes=self.session.length_min)
            out.append(
                {
                    "session": f"{r['session']}" + ("*" if partial else ""),
                    "trades": f"{r['trades']:,}",
                    "open → close": f"{price_text(r['open'], d)} → {price_text(r['close'], d)}",
                    "POC": price_text(r["poc"], d),
                    "VAH": price_text(r["vah"], d),
                    "VAL": price_text(r["val"], d),
                    "volume": qty_text(r["volume"]),
                    "delta": f"{r['delta']:+,.4f}",
                    "value area": r["va_migration"] or "—",
                }
            )
        return out

    def to_text(self, *, naked: bool = True) -> str:
        """The sessions as an aligned text table, then the naked POCs (``naked=True``)."""
        validate_bool(naked, "naked")
        rows = self.table()
        head = repr(self)[1:-1].replace("SessionProfiles ", "", 1)
        lines = [head]
        if rows:
            keys = list(rows[0])
            widths = [max(len(k), *(len(r[k]) for r in rows)) for k in keys]
            right = {"trades", "POC", "VAH", "VAL", "volume", "delta"}

            def line(cells: list[str]) -> str:
                parts = [
                    c.rjust(w) if k in right else c.ljust(w)
                    for k, c, w in zip(keys, cells, widths, strict=True)
                ]
                return "  " + "  ".join(parts).rstrip()

            lines.append(line(keys))
            lines += [line([r[k] for k in keys]) for r in rows]
            if any(r["session"].endswith("*") for r in rows):
                lines.append("  * partial session (clipped to the range)")
        if naked and len(self.profiles) > 1:
            table = self.naked_pocs()
            d = self.profiles[0].price_decimals
            if table.height == 0:
                lines.append("Naked POCs: none — every earlier POC was traded through later.")
            else:
                last = float(self.summary["close"][-1])
                lines.append(f"Naked POCs (not revisited since; last price {price_text(last, d)}):")
                for r in table.iter_rows(named=True):
                    lines.append(
                        f"  {r['session']}  POC {price_text(r['poc'], d)}  "
                        f"{r['age_hours']:,.1f} h old  {r['distance']:+,.{d}f} "
                        f"({r['distance_pct']:+.2f}%) {r['side']} the last price"
                    )
        return "\n".join(lines)

    def __repr__(self) -> str:
        n = len(self.profiles)
        return (
            f"<SessionProfiles {self.symbol or '(symbol unknown)'} {self.session.name} "
            f"({self.session.hours_text}) {self.start:%Y-%m-%d %H:%M} → {self.end:%Y-%m-%d %H:%M}"
            f" UTC: {n} session{'' if n == 1 else 's'}, rows of "
            f"{price_text(self.row_size, self.profiles[0].price_decimals) if n else '—'}"
            + (f"; {self.window_note}" if self.window_note else "")
            + ">"
        )

    def _repr_html_(self) -> str:
        import html

        d = self.profiles[0].price_decimals if self.profiles else 2
        head = "".join(
            f"<th>{h}</th>"
            for h in ("session", "trades", "POC", "VAH", "VAL", "volume", "delta", "value area")
        )
        body = ""
        for r in self.summary.iter_rows(named=True):
            cells = (
                str(r["session"]),
                f"{r['trades']:,}",
                price_text(r["poc"], d),
                price_text(r["vah"], d),
                price_text(r["val"], d),
                qty_text(r["volume"]),
                f"{r['delta']:+,.4f}",
                r["va_migration"] or "—",
            )
            body += "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
        title = html.escape(repr(self)[1:-1])
        return f"<p><b>{title}</b></p><table><thead><tr>{head}</tr></thead>{body}</table>"


def _json_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (v.isoformat() if isinstance(v, dt.date | dt.datetime) else v) for k, v in r.items()}
        for r in frame.iter_rows(named=True)
    ]


def _times_ms(frame: pl.DataFrame) -> np.ndarray:
    if "time" not in frame.columns:
        raise InvalidTradesError("trades frame lacks column time; sessions need trade times")
    col = frame["time"]
    if isinstance(col.dtype, pl.Datetime):
        if col.dtype.time_zone is None:
            raise InvalidTradesError(
                "column time is a naive Datetime: give it a UTC timezone or unix milliseconds"
            )
        col = col.dt.epoch("ms")
    if not col.dtype.is_integer() or col.null_count():
        raise InvalidTradesError("column time must be UTC datetimes or unix ms, without nulls")
    return col.cast(pl.Int64).to_numpy()


def time_sorted(trades: object) -> tuple[pl.DataFrame, np.ndarray]:
    """``(frame, times_ms)`` of a trade frame ordered by time (stable: equal times keep their
    order), after checking its price, qty, side and time columns."""
    _, _, _, frame = trade_columns(trades)
    t = _times_ms(frame)
    if t.size > 1 and not bool(np.all(t[1:] >= t[:-1])):
        order = np.argsort(t, kind="stable")
        frame, t = frame[order], t[order]
    return frame, t


def _range(value: object, default: int, name: str) -> int:
    return default if value is None else parse_time(value, name)[0]


def session_profiles_from_trades(
    trades: pl.DataFrame,
    *,
    session: str | SessionSpec = "utc-day",
    start: object = None,
    end: object = None,
    symbol: str | None = None,
    row_size: float | None = None,
    tick_size: float | None = None,
    value_area: float = 0.70,
    method: str = "cbot",
    window_note: str | None = None,
) -> SessionProfiles:
    """Split ``trades`` into sessions and profile each (see the module's docstring).

    ``start``/``end`` bound the range (default: the first trade and just after the last);
    ``row_size``, ``tick_size``, ``value_area`` and ``method`` as in
    :func:`~tradelab.analytics.volume_profile`, shared by every session. Sessions without
    trades (or with only zero-quantity trades) are left out; no trade in the range at all raises
    :class:`~tradelab.exceptions.InvalidTradesError`.
    """
    spec = parse_session(session)
    row_size, tick, value_area = check_profile_args(
        row_size=row_size, tick_size=tick_size, value_area=value_area, method=method
    )
    frame, t = time_sorted(trades)
    lo = _range(start, int(t[0]), "start")
    hi = _range(end, int(t[-1]) + 1, "end")
    if hi <= lo:
        raise InvalidParameterError("end must be after start: the range is [start, end)")
    price = frame["price"].cast(pl.Float64).to_numpy()
    qty = frame["qty"].cast(pl.Float64).to_numpy()
    cuts = []
    for day, s, e in session_windows(spec, lo, hi):
        a, b = int(np.searchsorted(t, s, "left")), int(np.searchsorted(t, e, "left"))
        if b > a and qty[a:b].max() > 0:  # a session of zero-quantity trades has no profile
            cuts.append((day, s, e, a, b))
    if not cuts:
        raise InvalidTradesError(
            f"no trades between {dt.datetime.fromtimestamp(lo / 1000, dt.UTC):%Y-%m-%d %H:%M} "
            f"and {dt.datetime.fromtimestamp(hi / 1000, dt.UTC):%Y-%m-%d %H:%M} UTC: no session "
            "to profile"
        )
    spans = [(float(price[a:b].min()), float(price[a:b].max())) for _, _, _, a, b in cuts]
    low, high = min(lo for lo, _ in spans), max(hi for _, hi in spans)
    if math.isfinite(low) and math.isfinite(high) and low > 0:  # else each profile says why
        check_price_steps(low, high, tick_size=tick, row_size=row_size, symbol=symbol)
        if tick is None:
            tick = tick_from_sample(tick_sample(price), high)
    if tick is None:
        tick = infer_tick_size(price)
    if row_size is None:
        row_size = max(auto_row_size(lo, hi, tick) for lo, hi in spans)
    profiles: list[VolumeProfile] = []
    records: list[dict[str, Any]] = []
    for day, s, e, a, b in cuts:
        vp = volume_profile(
            frame.slice(a, b - a),
            row_size=row_size,
            tick_size=tick,
            value_area=value_area,
            method=method,
            symbol=symbol,
            start=s,
            end=e,
        )
        move = None
        if profiles:
            prev = profiles[-1]
            move = migration(prev.val, prev.vah, vp.val, vp.vah)
        seg = price[a:b]
        records.append(session_record(day, s, e, vp, float(seg[0]), float(seg[-1]), move))
        profiles.append(vp)
    return sessions_result(symbol, spec, lo, hi, profiles, records, window_note=window_note)


def session_record(
    day: dt.date,
    start_ms: int,
    end_ms: int,
    vp: VolumeProfile,
    open_price: float,
    close_price: float,
    move: str | None,
) -> dict[str, Any]:
    """One row of :attr:`SessionProfiles.summary`: the session's profile with its open and close
    (first and last trade price) and how its value area moved (:func:`migration`)."""
    return {
        "session": day,
        "start": start_ms,
        "end": end_ms,
        "trades": vp.trade_count,
        "open": open_price,
        "high": vp.price_max,
        "low": vp.price_min,
        "close": close_price,
        "poc": vp.poc,
        "vah": vp.vah,
        "val": vp.val,
        "volume": vp.total_volume,
        "buy_volume": vp.buy_volume,
        "sell_volume": vp.sell_volume,
        "delta": vp.delta,
        "va_migration": move,
    }


def sessions_result(
    symbol: str | None,
    spec: SessionSpec,
    lo: int,
    hi: int,
    profiles: list[VolumeProfile],
    records: list[dict[str, Any]],
    *,
    window_note: str | None = None,
) -> SessionProfiles:
    """The :class:`SessionProfiles` of window ``[lo, hi)`` (unix ms) from its profiles and their
    :func:`session_record` rows — what the one-process and the cluster paths both return."""
    summary = pl.DataFrame(
        records, schema={**_SUMMARY_SCHEMA, "start": pl.Int64, "end": pl.Int64}, orient="row"
    ).with_columns(
        pl.col("start").cast(pl.Datetime("ms", "UTC")), pl.col("end").cast(pl.Datetime("ms", "UTC"))
    )
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return SessionProfiles(
        symbol=symbol,
        session=spec,
        start=epoch + dt.timedelta(milliseconds=lo),
        end=epoch + dt.timedelta(milliseconds=hi),
        profiles=tuple(profiles),
        summary=summary,
        window_note=window_note,
    )
