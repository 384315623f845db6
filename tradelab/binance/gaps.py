"""Gap tracking by aggregate trade id, per symbol — pure bookkeeping, no I/O, no clock.

Binance's aggregate ids ``a`` are contiguous per symbol, so a jump from ``a`` to ``a + k`` means
``k - 1`` trades were missed (a reconnect, a stall, a dropped frame). :class:`GapTracker` sees
every trade the collector receives, from the stream or from REST, and answers three questions:

* is this trade new (store it) or a duplicate (an overlapping connection, a REST page that
  reaches into ids already held) — the in-memory half of "exactly once";
* which ids are missing (:attr:`GapTracker.open_gaps`), so the collector can backfill them
  through REST with ``fromId`` = :meth:`GapTracker.next_missing`;
* what happened to each gap: filled completely (*backfilled*), or closed with ids that REST
  does not have (*unrepairable*, reported once with size and time span).

The resume point after a restart is the store's last id + 1 (:meth:`GapTracker.resume`); the
first live trade after it opens the gap that REST then fills.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["BackfillOutcome", "Gap", "GapTracker"]


class _HasIdTime(Protocol):
    @property
    def agg_id(self) -> int: ...
    @property
    def time(self) -> int: ...


@dataclass
class Gap:
    """Ids ``first_id..last_id`` (inclusive) that were missing when the gap was detected.

    ``time_before``/``time_after`` are the trade times (unix ms) of the trades on either side,
    when known; ``missing`` holds the sub-ranges still missing; ``recovered`` and ``lost`` count
    ids filled later and ids declared unrepairable, ``lost_ranges`` lists the latter and
    ``lost_noted`` says how many of them the collector has handed on to be recorded in the store.
    """

    symbol: str
    first_id: int
    last_id: int
    time_before: int | None = None
    time_after: int | None = None
    missing: list[list[int]] = field(default_factory=list)
    recovered: int = 0
    lost: int = 0
    lost_ranges: list[tuple[int, int]] = field(default_factory=list)
    lost_noted: int = 0

    def __post_init__(self) -> None:
        if not self.missing:
            self.missing = [[self.first_id, self.last_id]]

    @property
    def size(self) -> int:
        """Number of ids the gap spanned when detected."""
        return self.last_id - self.first_id + 1

    @property
    def remaining(self) -> int:
        """Number of ids still missing."""
        return sum(hi - lo + 1 for lo, hi in self.missing)

    @property
    def closed(self) -> bool:
        """True once no id is missing any more (each was recovered or declared lost)."""
        return not self.missing

    @property
    def span_ms(self) -> int | None:
        """Time between the trades either side of the gap, if both are known."""
        if self.time_before is None or self.time_after is None:
            return None
        return self.time_after - self.time_before

    def _take(self, agg_id: int) -> bool:
        """Remove ``agg_id`` from the missing ranges; True if it was missing."""
        for i, (lo, hi) in enumerate(self.missing):
            if agg_id < lo:
                return False
            if agg_id <= hi:
                if lo == hi:
                    del self.missing[i]
                elif agg_id == lo:
                    self.missing[i][0] = lo + 1
                elif agg_id == hi:
                    self.missing[i][1] = hi - 1
                else:
                    self.missing[i : i + 1] = [[lo, agg_id - 1], [agg_id + 1, hi]]
                return True
        return False

    def _lose(self, lo: int, hi: int) -> int:
        """Declare every still-missing id in ``lo..hi`` unrepairable; returns how many."""
        out: list[list[int]] = []
        count = 0
        for a, b in self.missing:
            if b < lo or a > hi:
                out.append([a, b])
                continue
            cut_lo, cut_hi = max(a, lo), min(b, hi)
            count += cut_hi - cut_lo + 1
            self.lost_ranges.append((cut_lo, cut_hi))
            if a < cut_lo:
                out.append([a, cut_lo - 1])
            if cut_hi < b:
                out.append([cut_hi + 1, b])
        self.missing = out
        self.lost += count
        return count


@dataclass
class BackfillOutcome:
    """What one REST page did: the trades to store, ids declared lost, gaps it closed."""

    accepted: list = field(default_factory=list)
    lost: int = 0
    closed: list[Gap] = field(default_factory=list)
    opened: list[Gap] = field(default_factory=list)


class GapTracker:
    """Per-symbol id bookkeeping: duplicates, gaps, backfill, resume point.

    ``observe`` is on the hot path (every received trade) and costs a comparison in the common
    case. It returns ``True`` for a new trade, ``False`` for a duplicate, or the :class:`Gap`
    that this (new) trade revealed.
    """

    __slots__ = (
        "_closed",
        "duplicates",
        "gaps_backfilled",
        "gaps_detected",
        "gaps_unrepairable",
        "high",
        "last_time",
        "open_gaps",
        "symbol",
    )

    def __init__(
        self, symbol: str, *, last_id: int | None = None, last_time: int | None = None
    ) -> None:
        self.symbol = symbol
        self.high: int | None = last_id
        self.last_time: int | None = last_time
        self.open_gaps: list[Gap] = []
        self._closed: list[Gap] = []
        self.gaps_detected = 0
        self.gaps_backfilled = 0
        self.gaps_unrepairable = 0
        self.duplicates = 0

    # --- state -----------------------------------------------------------------------------

    def resume(self, last_id: int, last_time: int | None = None) -> None:
        """Continue after ``last_id`` (e.g. the store's last id): ids <= it are duplicates."""
        if self.high is None or last_id > self.high:
            self.high = last_id
            self.last_time = last_time

    @property
    def resume_point(self) -> int | None:
        """The next id expected from the stream (highest id seen + 1), None before any."""
        return None if self.high is None else self.high + 1

    @property
    def missing_count(self) -> int:
        """Ids currently missing across all open gaps."""
        return sum(g.remaining for g in self.open_gaps)

    def next_missing(self) -> int | None:
        """The lowest missing id — the ``fromId`` of the next REST backfill — or None."""
        best = None
        for g in self.open_gaps:
            if g.missing and (best is None or g.missing[0][0] < best):
                best = g.missing[0][0]
        return best

    def open_ranges(self) -> list[tuple[int, int]]:
        """Missing id ranges, sorted (for persistence and status)."""
        return sorted((lo, hi) for g in self.open_gaps for lo, hi in g.missing)

    def add_gap(
        self,
        first_id: int,
        last_id: int,
        *,
        time_before: int | None = None,
        time_after: int | None = None,
    ) -> Gap:
        """Register a known gap (e.g. one left open by a previous run) for backfilling."""
        if last_id < first_id:
            raise ValueError(f"gap {first_id}..{last_id} is empty")
        gap = Gap(self.symbol, first_id, last_id, time_before, time_after)
        self.open_gaps.append(gap)
        self.gaps_detected += 1
        return gap

    def pop_closed(self) -> list[Gap]:
        """Gaps closed since the last call (each reported exactly once)."""
        out, self._closed = self._closed, []
        return out

    # --- the hot path ----------------------------------------------------------------------

    def observe(self, agg_id: int, time_ms: int) -> bool | Gap:
        """Account for one received trade: True new, False duplicate, a Gap if it opened one."""
        high = self.high
        if high is None or agg_id == high + 1:
            self.high = agg_id
            self.last_time = time_ms
            return True
        if agg_id > high:
            gap = Gap(self.symbol, high + 1, agg_id - 1, self.last_time, time_ms)
            self.open_gaps.append(gap)
            self.gaps_detected += 1
            self.high = agg_id
            self.last_time = time_ms
            return gap
        if self.open_gaps and self._fill(agg_id):
            return True
        self.duplicates += 1
        return False

    def _fill(self, agg_id: int) -> bool:
        for gap in self.open_gaps:
            if gap.first_id <= agg_id <= gap.last_id and gap._take(agg_id):
                gap.recovered += 1
                if gap.closed:
                    self._close(gap)
                return True
        return False

    def _close(self, gap: Gap) -> None:
        self.open_gaps.remove(gap)
        if gap.lost:
            self.gaps_unrepairable += 1
        else:
            self.gaps_backfilled += 1
        self._closed.append(gap)

    def lose(self, first_id: int, last_id: int) -> int:
        """Declare the missing ids in ``first_id..last_id`` unrepairable; returns how many."""
        count = 0
        for gap in list(self.open_gaps):
            if gap.last_id < first_id or gap.first_id > last_id:
                continue
            count += gap._lose(first_id, last_id)
            if gap.closed:
                self._close(gap)
        return count

    def is_missing(self, agg_id: int) -> bool:
        """True if ``agg_id`` is not received yet: in an open gap, or above the highest id."""
        if self.high is None or agg_id > self.high:
            return True
        return any(lo <= agg_id <= hi for g in self.open_gaps for lo, hi in g.missing)

    def give_up(self, first_id: int, last_id: int) -> int:
        """Declare ``first_id..last_id`` unrepairable even where no gap holds them yet (ids
        above the highest seen, e.g. a bad REST item at the end of a tail page): they are
        opened as a gap first (ids between the highest and ``first_id`` stay missing, to be
        fetched). Returns how many ids were declared lost."""
        if self.high is not None and last_id > self.high:
            gap = self.add_gap(self.high + 1, last_id, time_before=self.last_time)
            self.high = last_id
            if gap.first_id > first_id:
                first_id = gap.first_id
        elif self.high is None:
            self.add_gap(first_id, last_id)
            self.high = last_id
        return self.lose(first_id, last_id)

    # --- REST backfill ---------------------------------------------------------------------

    def apply_rest(
        self,
        from_id: int,
        trades: Sequence[_HasIdTime],
        *,
        limit: int,
        declare_tail_lost: bool = True,
    ) -> BackfillOutcome:
        """Apply one REST page requested with ``fromId=from_id`` (ids ascending).

        Trades that fill a missing id, or extend the stream past the highest id seen, are
        accepted (returned for storing); the rest are duplicates. Missing ids inside the page's
        range that REST skipped are unrepairable (REST is the full history). If the page was
        short (fewer than ``limit`` items), REST has nothing newer: missing ids beyond the page
        are declared lost too when ``declare_tail_lost`` (the caller may first retry once, in
        case REST lags the stream by a moment).
        """
        out = BackfillOutcome()
        for tr in trades:
            a = tr.agg_id
            if a < from_id:
                continue
            verdict = self.observe(a, tr.time)
            if verdict is False:
                continue
            out.accepted.append(tr)
            if verdict is not True:
                out.opened.append(verdict)  # a hole in REST's own history beyond the stream
        upper = trades[-1].agg_id if trades else from_id - 1
        if upper >= from_id:
            out.lost += self.lose(from_id, upper)
        if len(trades) < limit and declare_tail_lost and self.high is not None:
            out.lost += self.lose(max(from_id, upper + 1), self.high)
        out.closed = self.pop_closed()
        return out

    def tail_lost_pending(self, from_id: int, trades: Sequence[_HasIdTime]) -> bool:
        """True if a short page left missing ids above it (worth one retry before losing them)."""
        upper = trades[-1].agg_id if trades else from_id - 1
        return any(hi > upper for g in self.open_gaps for _lo, hi in g.missing if hi >= from_id)

    def observe_many(self, trades: Iterable[_HasIdTime]) -> list:
        """Observe several trades; returns those that are new (helper for tests and REST)."""
        return [t for t in trades if self.observe(t.agg_id, t.time) is not False]
