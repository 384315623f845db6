"""Session profiles from partial histograms split by session — pure code, the part of the
distributed session profiles that computes (:func:`tradelab.scale.distributed.session_profiles`).

A chunk of the window's trades (one task: one Parquet file, or a few whose times overlap) in
**time order** becomes :class:`SessionPartials`: for every session it touches, the partial
histogram of its trades (:class:`~tradelab.scale.histogram.Partial`), the first and the last
trade (position in the window and price: the session's open and close) and the largest
quantity; plus the window's tick sample held by the chunk. Partials merge by adding integers
per session and price (any order, a tree on the cluster).

:func:`session_profiles_from_partials` then does what
:func:`tradelab.analytics.session_profiles_from_trades` does with the trades themselves — same
sessions kept (trades with a quantity > 0), same tick (inferred from every
:func:`~tradelab.analytics.rows.tick_sample_step`-th price of the whole window in time order,
by :func:`~tradelab.analytics.rows.tick_from_sample`), same shared row size, and each session's
profile through :func:`~tradelab.scale.histogram.profile_from_histogram`, i.e.
:func:`tradelab.volume_profile` itself: the answer is equal, every profile and the summary.

The local code orders a window by time, equal times by ``agg_id`` (a stable sort of the
``agg_id``-ordered frame); the chunks keep that order and know their offset in it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradelab.analytics.checks import check_price_steps, check_profile_args
from tradelab.analytics.profile import VolumeProfile
from tradelab.analytics.rows import auto_row_size, infer_tick_size, tick_from_sample
from tradelab.analytics.sessions import (
    SessionProfiles,
    SessionSpec,
    migration,
    parse_session,
    session_record,
    sessions_result,
)
from tradelab.exceptions import InvalidTradesError
from tradelab.scale.histogram import (
    Partial,
    merge_partials,
    partial_histogram,
    profile_from_histogram,
    sample_start,
)

__all__ = [
    "SessionPart",
    "SessionPartials",
    "empty_session_partials",
    "merge_session_partials",
    "session_partials",
    "session_profiles_from_partials",
]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class SessionPart:
    """One session's share of a chunk: its histogram (no tick samples), its first and last
    trade as ``(position in the window, price)``, and its largest quantity."""

    partial: Partial
    first: tuple[int, float]
    last: tuple[int, float]
    max_qty: float


@dataclass(frozen=True)
class SessionPartials:
    """A chunk's sessions, keyed by the session's (clipped) start in unix ms, in time order;
    the number of the window's trades it holds (in sessions or not), and its share of the
    window's tick sample as ``(position in window, prices)``."""

    sessions: tuple[tuple[int, SessionPart], ...]
    trades: int
    samples: tuple[tuple[int, np.ndarray], ...] = ()


def empty_session_partials() -> SessionPartials:
    """No trades (the identity of :func:`merge_session_partials`)."""
    return SessionPartials((), 0, ())


def session_partials(
    price: np.ndarray,
    qty: np.ndarray,
    maker: np.ndarray,
    time_ms: np.ndarray,
    starts: Sequence[int] | np.ndarray,
    ends: Sequence[int] | np.ndarray,
    *,
    offset: int = 0,
    step: int = 1,
) -> SessionPartials:
    """The :class:`SessionPartials` of one chunk of trades in time order (equal times by
    ``agg_id``), starting at position ``offset`` of the window, whose tick sample takes every
    ``step``-th price; ``starts``/``ends``: the session windows ``[start, end)`` (clipped to
    the window, in time order, not overlapping) the chunk may touch."""
    n = int(price.size)
    if n == 0:
        return empty_session_partials()
    t = np.asarray(time_ms, dtype=np.int64)
    a = np.searchsorted(t, np.asarray(starts, dtype=np.int64), "left")
    b = np.searchsorted(t, np.asarray(ends, dtype=np.int64), "left")
    out = []
    for s, i, j in zip(starts, a.tolist(), b.tolist(), strict=True):
        if j > i:
            part = partial_histogram(price[i:j], qty[i:j], maker[i:j], step=0)
            out.append(
                (
                    int(s),
                    SessionPart(
                        part,
                        (offset + i, float(price[i])),
                        (offset + j - 1, float(price[j - 1])),
                        float(qty[i:j].max()),
                    ),
                )
            )
    first = sample_start(offset, step)
    picked = np.ascontiguousarray(price[first::step], dtype=np.float64)
    return SessionPartials(tuple(out), n, ((offset + first, picked),) if picked.size else ())


def _merge_parts(parts: list[SessionPart]) -> SessionPart:
    if len(parts) == 1:
        return parts[0]
    return SessionPart(
        merge_partials(*(p.partial for p in parts)),
        min(p.first for p in parts),
        max(p.last for p in parts),
        max(p.max_qty for p in parts),
    )


def merge_session_partials(*chunks: SessionPartials) -> SessionPartials:
    """One :class:`SessionPartials` from several: per session, histograms added (exact
    integers), the earliest first and the latest last trade, the largest quantity."""
    chunks = tuple(c for c in chunks if c.trades)
    if not chunks:
        return empty_session_partials()
    if len(chunks) == 1:
        return chunks[0]
    by_start: dict[int, list[SessionPart]] = {}
    for c in chunks:
        for start, part in c.sessions:
            by_start.setdefault(start, []).append(part)
    return SessionPartials(
        tuple((s, _merge_parts(by_start[s])) for s in sorted(by_start)),
        sum(c.trades for c in chunks),
        tuple(s for c in chunks for s in c.samples),
    )


def session_profiles_from_partials(
    merged: SessionPartials,
    windows: Sequence[tuple[dt.date, int, int]],
    *,
    session: str | SessionSpec,
    start_ms: int,
    end_ms: int,
    symbol: str | None = None,
    row_size: float | None = None,
    tick_size: float | None = None,
    value_area: float = 0.70,
    method: str = "cbot",
) -> SessionProfiles:
    """The :class:`~tradelab.analytics.SessionProfiles` of the window's merged partials —
    equal to :func:`tradelab.analytics.session_profiles_from_trades` on the window's trades
    with ``start=start_ms``, ``end=end_ms`` and the same arguments. ``windows``:
    :func:`tradelab.analytics.sessions.session_windows` of the session over the window."""
    spec = parse_session(session)
    row_size, tick, value_area = check_profile_args(
        row_size=row_size, tick_size=tick_size, value_area=value_area, method=method
    )
    if merged.trades == 0:
        raise InvalidTradesError("no trades: the window holds nothing to profile")
    by_start = dict(merged.sessions)
    cuts = [
        (day, s, e, by_start[s])
        for day, s, e in windows
        if s in by_start and by_start[s].max_qty > 0  # zero-quantity sessions have no profile
    ]
    if not cuts:
        raise InvalidTradesError(
            f"no trades between {_utc(start_ms):%Y-%m-%d %H:%M} and {_utc(end_ms):%Y-%m-%d %H:%M}"
            " UTC: no session to profile"
        )
    spans = []
    for *_, part in cuts:
        prices = part.partial.hist["price"]
        spans.append((float(prices.min()), float(prices.max())))  # type: ignore[arg-type]
    low, high = min(lo for lo, _ in spans), max(hi for _, hi in spans)
    sample = np.concatenate([s for _, s in sorted(merged.samples, key=lambda item: item[0])])
    if math.isfinite(low) and math.isfinite(high) and low > 0:  # else each profile says why
        check_price_steps(low, high, tick_size=tick, row_size=row_size, symbol=symbol)
        if tick is None:
            tick = tick_from_sample(sample, high)
    if tick is None:  # pragma: no cover - only for prices the profiles refuse
        tick = infer_tick_size(sample)
    if row_size is None:
        row_size = max(auto_row_size(lo, hi, tick) for lo, hi in spans)
    profiles: list[VolumeProfile] = []
    records: list[dict[str, Any]] = []
    for day, s, e, part in cuts:
        vp = profile_from_histogram(
            part.partial,
            row_size=row_size,
            tick_size=tick,
            value_area=value_area,
            method=method,
            symbol=symbol,
            start=s,
            end=e,
        )
        prev = profiles[-1] if profiles else None
        move = migration(prev.val, prev.vah, vp.val, vp.vah) if prev else None
        records.append(session_record(day, s, e, vp, part.first[1], part.last[1], move))
        profiles.append(vp)
    return sessions_result(symbol, spec, start_ms, end_ms, profiles, records)


def _utc(ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ms)
