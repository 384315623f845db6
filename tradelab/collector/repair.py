"""Repair planning for the backfiller — pure code: which page to fetch next, which holes are new.

* :class:`RoundRobin` picks the next REST page among every open hole of every symbol and every
  pending tail probe, one page each in turn (by a stable key: symbol, then holes by first id,
  then the tail). A hole of a million ids therefore never starves a hole of three ids, or the
  tail, behind it: each waits at most one page per other open job.
* :func:`subtract` takes the id ranges a store reports missing and removes what the collector
  already knows about (ids it is fetching, ids received and not yet written, ranges already
  found unrepairable), so a hole is added to the trackers once.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import NamedTuple

__all__ = ["Job", "RoundRobin", "id_ranges", "subtract"]


class Job(NamedTuple):
    """One REST page to fetch: ``fromId`` of ``symbol``; ``tail``: a probe past the last id."""

    symbol: str
    from_id: int
    tail: bool


JobKey = tuple[str, int, int]
"""Stable order of jobs: ``(symbol, 0, hole's first id)`` for holes, ``(symbol, 1, 0)`` tails."""


class RoundRobin:
    """Chooses jobs in turn: the first job whose key comes after the last one served."""

    def __init__(self) -> None:
        self._last: JobKey | None = None

    def reset(self) -> None:
        """Start again from the first job (a new run)."""
        self._last = None

    def pick(self, jobs: Iterable[tuple[JobKey, Job]]) -> Job | None:
        """The next job of ``jobs`` (``(key, job)`` pairs, any order), or None if empty."""
        ordered = sorted(jobs, key=lambda kj: kj[0])
        if not ordered:
            return None
        last = self._last
        key, job = next(
            ((k, j) for k, j in ordered if last is None or k > last),
            ordered[0],
        )
        self._last = key
        return job


def subtract(
    ranges: Iterable[tuple[int, int]],
    known: Iterable[tuple[int, int]],
    ids: Sequence[int] = (),
) -> list[tuple[int, int]]:
    """``ranges`` (inclusive id ranges) minus the ranges ``known`` and the single ``ids``."""
    cut = sorted([*((int(a), int(b)) for a, b in known), *((int(a), int(a)) for a in ids)])
    merged: list[tuple[int, int]] = []
    for lo, hi in cut:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    starts = [lo for lo, _ in merged]
    out: list[tuple[int, int]] = []
    for lo, hi in ranges:
        pos = lo
        i = max(0, bisect.bisect_right(starts, lo) - 1)
        while pos <= hi:
            while i < len(merged) and merged[i][1] < pos:
                i += 1
            if i < len(merged) and merged[i][0] <= pos:
                pos = merged[i][1] + 1
                continue
            end = hi if i >= len(merged) else min(hi, merged[i][0] - 1)
            out.append((pos, end))
            pos = end + 1
    return out


def id_ranges(ids: Iterable[int]) -> list[tuple[int, int]]:
    """``ids`` (any order, repeats allowed) as sorted inclusive runs of consecutive ids."""
    out: list[tuple[int, int]] = []
    for a in sorted(set(ids)):
        if out and a == out[-1][1] + 1:
            out[-1] = (out[-1][0], a)
        else:
            out.append((a, a))
    return out
