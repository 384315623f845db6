"""What a history fill has to fetch, and from where: pure planning, no I/O.

A fill of ``[start, end)`` starts from what the store already holds in that window, as
:class:`Run`\\ s of contiguous aggregate ids (:func:`runs_from_ids`). What lies between them is
missing (:func:`missing_spans`): before the first run (located by time), between two runs (the
ids are known: ``fromId`` paging needs no time lookup) and after the last run. Then
:func:`plan_fill` decides per UTC day: a day that has ended and has at least
``min_archive_ms`` missing comes from Binance's daily archive (one download instead of up to
~1,700 REST calls for a busy symbol); everything else is REST pages. A day whose archive turns
out unusable (not yet published, bad checksum) falls back to :func:`rest_spans_of_day`.

Everything here works on unix milliseconds and is unit-tested without a network.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DAY_MS",
    "HOUR_MS",
    "ArchiveDay",
    "FillPlan",
    "Run",
    "Span",
    "archive_path",
    "day_text",
    "id_jumps",
    "merge_runs",
    "missing_spans",
    "parse_checksum",
    "plan_fill",
    "rest_spans_of_day",
    "runs_from_ids",
    "subtract",
]

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Run:
    """Stored trades with contiguous aggregate ids ``first_id..last_id`` (inclusive), traded
    from ``first_time`` to ``last_time`` (unix ms, inclusive)."""

    first_id: int
    last_id: int
    first_time: int
    last_time: int


@dataclass(frozen=True, slots=True)
class Span:
    """Missing trades with ``start <= time < end``; where known, the first missing id
    (``from_id``: page from it without a time lookup) and the last one (``stop_id``: stop
    there, the store holds what follows)."""

    start: int
    end: int
    from_id: int | None = None
    stop_id: int | None = None

    @property
    def ms(self) -> int:
        return max(0, self.end - self.start)


@dataclass(frozen=True, slots=True)
class ArchiveDay:
    """One UTC day taken from the daily archive: ``day`` is its midnight (unix ms); only the
    trades with ``keep_start <= time < keep_end`` (the window's part of the day) are stored;
    ``missing_ms`` is how much of it was missing (for progress)."""

    day: int
    keep_start: int
    keep_end: int
    missing_ms: int

    @property
    def date(self) -> str:
        return day_text(self.day)


@dataclass(frozen=True, slots=True)
class FillPlan:
    """What to fetch: the archive days, then the REST spans (oldest first)."""

    start: int
    end: int
    archive_days: tuple[ArchiveDay, ...]
    rest_spans: tuple[Span, ...]
    #: every missing span before the archive days were taken out (for the fallbacks)
    missing: tuple[Span, ...]

    @property
    def missing_ms(self) -> int:
        """Milliseconds of the window not covered by the store (what progress counts)."""
        return sum(s.ms for s in self.missing)


def day_text(day_ms: int) -> str:
    """``YYYY-MM-DD`` of the UTC day holding ``day_ms``."""
    return dt.datetime.fromtimestamp(day_ms / 1000, dt.UTC).strftime("%Y-%m-%d")


def archive_path(symbol: str, day_ms: int) -> str:
    """The path of a spot daily aggTrades archive on data.binance.vision (add ``.CHECKSUM``
    for its checksum file)."""
    d = day_text(day_ms)
    return f"/data/spot/daily/aggTrades/{symbol}/{symbol}-aggTrades-{d}.zip"


def parse_checksum(text: str) -> tuple[str, str]:
    """``(sha256 hex, file name)`` from a ``.CHECKSUM`` file (``<sha256>  <file name>``);
    raises ValueError for anything else."""
    parts = text.strip().split()
    if len(parts) != 2 or len(parts[0]) != 64:
        raise ValueError(f"not a checksum line: {text[:120]!r}")
    digest = parts[0].lower()
    int(digest, 16)  # ValueError if not hex
    return digest, parts[1]


def runs_from_ids(ids: np.ndarray, times: np.ndarray) -> list[Run]:
    """Runs of contiguous ids in stored trades (``ids`` ascending, ``times`` their unix ms)."""
    n = len(ids)
    if n == 0:
        return []
    ids = np.asarray(ids, dtype=np.int64)
    times = np.asarray(times, dtype=np.int64)
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks - 1, [n - 1]))
    return [
        Run(int(ids[a]), int(ids[b]), int(times[a]), int(times[b]))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    ]


def id_jumps(ids: np.ndarray) -> list[tuple[int, int]]:
    """The inclusive id ranges missing between ascending ``ids`` (vectorised)."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2:
        return []
    at = np.flatnonzero(np.diff(ids) > 1)
    return [(int(ids[i]) + 1, int(ids[i + 1]) - 1) for i in at.tolist()]


def merge_runs(runs: Iterable[Run]) -> list[Run]:
    """Runs sorted by id, touching ones (``last_id + 1 == first_id``) merged."""
    out: list[Run] = []
    for r in sorted(runs, key=lambda r: r.first_id):
        if out and r.first_id <= out[-1].last_id + 1:
            prev = out[-1]
            if r.last_id > prev.last_id:
                out[-1] = Run(prev.first_id, r.last_id, prev.first_time, r.last_time)
            continue
        out.append(r)
    return out


def missing_spans(start: int, end: int, runs: Sequence[Run]) -> list[Span]:
    """What the store lacks in ``[start, end)`` given its ``runs`` there (sorted by id).

    Before the first run: from ``start`` up to and including the first run's time (trades of
    that same millisecond with lower ids may be missing), ending at its first id. Between
    runs: the ids in between. After the last run: from its last id + 1 to ``end``. With no
    run the whole window is missing.
    """
    if end <= start:
        return []
    if not runs:
        return [Span(start, end)]
    out: list[Span] = []
    first = runs[0]
    head_end = min(end, first.first_time + 1)
    if head_end > start:
        out.append(Span(start, head_end, None, first.first_id - 1))
    for a, b in itertools.pairwise(runs):
        if b.first_id > a.last_id + 1:
            out.append(Span(a.last_time, min(end, b.first_time + 1), a.last_id + 1, b.first_id - 1))
    last = runs[-1]
    if end > last.last_time:
        out.append(Span(max(start, last.last_time), end, last.last_id + 1, None))
    return out


def subtract(span: Span, lo: int, hi: int) -> list[Span]:
    """``span`` without the times ``[lo, hi)``: up to two spans; a piece keeps ``from_id``
    only if it still starts where ``span`` did, ``stop_id`` only if it still ends there."""
    if hi <= span.start or lo >= span.end:
        return [span]
    out = []
    if lo > span.start:
        out.append(Span(span.start, lo, span.from_id, None))
    if hi < span.end:
        out.append(Span(hi, span.end, None, span.stop_id))
    return out


def rest_spans_of_day(missing: Sequence[Span], day: int) -> list[Span]:
    """The missing spans clipped to one UTC day (a day whose archive could not be used)."""
    out = []
    for s in missing:
        lo, hi = max(s.start, day), min(s.end, day + DAY_MS)
        if hi <= lo:
            continue
        out.append(
            Span(
                lo,
                hi,
                s.from_id if lo == s.start else None,
                s.stop_id if hi == s.end else None,
            )
        )
    return out


def plan_fill(
    start: int,
    end: int,
    runs: Sequence[Run],
    *,
    now: int,
    use_archives: bool = True,
    min_archive_ms: int = HOUR_MS,
) -> FillPlan:
    """Plan a fill of ``[start, end)`` around the stored ``runs``.

    A UTC day that has ended by ``now`` and has at least ``min_archive_ms`` missing inside the
    window comes from its archive (only the window's part of it is kept); the rest of every
    missing span is fetched through REST.
    """
    missing = missing_spans(start, end, merge_runs(runs))
    days: list[ArchiveDay] = []
    if use_archives and missing:
        first_day = start - start % DAY_MS
        for day in range(first_day, end, DAY_MS):
            if day + DAY_MS > now:
                break
            lo, hi = max(day, start), min(day + DAY_MS, end)
            gap = sum(max(0, min(s.end, hi) - max(s.start, lo)) for s in missing)
            if gap >= min_archive_ms:
                days.append(ArchiveDay(day, lo, hi, gap))
    rest = list(missing)
    for d in days:
        rest = [piece for s in rest for piece in subtract(s, d.keep_start, d.keep_end)]
    return FillPlan(start, end, tuple(days), tuple(s for s in rest if s.ms > 0), tuple(missing))
