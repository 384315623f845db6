"""Which aggregate ids a symbol is missing, from its blocks' headers alone — pure code, no I/O.

Binance's aggregate ids are contiguous per symbol, so the store knows its own coverage: every
block header in the index carries its first and last id and its trade count (``n``); a block
whose ``n`` is smaller than its id span also carries its *inner runs* — the missing runs of ids
inside it, each as ``(first_missing, last_missing, time_before, time_after)`` — computed once
when the block is written (:func:`inner_runs`). A symbol's coverage is then the union of its
blocks' id segments, and a *hole* is a run of ids between two segments: :func:`find_holes`
merges the segments with numpy (one sort, one running maximum), so a week of 15 M trades in a
few hundred blocks costs well under a millisecond — no trade is decoded.

Holes the exchange itself cannot fill are *unrepairable*: the store keeps those id ranges next
to the blocks (written in the same batch as the trades around them) and :func:`find_holes`
splits each hole into repairable and unrepairable rows. Headers written before this existed
lack the inner runs; for a gappy old block the store decodes its ``agg_id`` column
(:func:`segments_of_ids`), which is exact and only ever needed for such blocks.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import polars as pl

from tradelab.exceptions import InvalidParameterError

__all__ = [
    "HOLES_SCHEMA",
    "MAX_INNER_RUNS",
    "IndexEntry",
    "Segments",
    "empty_holes",
    "entry_from_stored",
    "find_holes",
    "inner_runs",
    "merge_ranges",
    "segments_of_entries",
    "segments_of_ids",
    "validate_ranges",
]

MAX_INNER_RUNS = 64
"""Inner runs kept in a block header; a block with more (a sparse import, say) is marked
``None`` ("read the block") so a header never grows large."""

IndexEntry = tuple[int, int, int, int, int, int, "tuple[int, ...] | None"]
"""A block header as the store keeps it: ``(n, t_min, t_max, id_min, id_max, bytes, inner)``
where ``inner`` is the flat tuple of inner runs (empty when the block is contiguous) or None
when they are not in the header (read the block)."""

Segments = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Stored id runs as four int64 arrays: first id, last id, time of the first, time of the last."""

HOLES_SCHEMA: dict[str, pl.DataType] = {
    "first_missing": pl.Int64(),
    "last_missing": pl.Int64(),
    "count": pl.Int64(),
    "after_time": pl.Datetime("ms", "UTC"),
    "before_time": pl.Datetime("ms", "UTC"),
    "unrepairable": pl.Boolean(),
}
"""Columns of :meth:`TradeStore.holes <tradelab.store.TradeStore.holes>`: the missing ids
``first_missing..last_missing`` (``count`` of them), the times of the stored trades just before
(``after_time``) and just after (``before_time``) them, and whether the exchange cannot serve
them (``unrepairable``)."""


def empty_holes() -> pl.DataFrame:
    """A holes frame with no rows."""
    return pl.DataFrame(schema=HOLES_SCHEMA)


def inner_runs(ids: np.ndarray, times: np.ndarray) -> tuple[int, ...] | None:
    """The missing runs inside one block (``ids`` sorted, unique; ``times`` row by row), flat:
    ``(first_missing, last_missing, time_before, time_after, ...)``; ``()`` when contiguous,
    None when there are more than :data:`MAX_INNER_RUNS`."""
    if len(ids) < 2 or int(ids[-1]) - int(ids[0]) + 1 == len(ids):
        return ()
    at = np.flatnonzero(np.diff(ids) > 1)
    if len(at) > MAX_INNER_RUNS:
        return None
    out: list[int] = []
    for i in at.tolist():
        out += [int(ids[i]) + 1, int(ids[i + 1]) - 1, int(times[i]), int(times[i + 1])]
    return tuple(out)


def entry_from_stored(value: Sequence[Any]) -> IndexEntry:
    """A header as unpacked from the index (6 fields before inner runs existed, 7 since)."""
    n, t0, t1, i0, i1, size = (int(x) for x in value[:6])
    if len(value) > 6:
        inner = None if value[6] is None else tuple(int(x) for x in value[6])
    else:  # an older store: contiguous if the count says so, else unknown
        inner = () if n == i1 - i0 + 1 else None
    return (n, t0, t1, i0, i1, size, inner)


def segments_of_ids(ids: np.ndarray, times: np.ndarray) -> Segments:
    """The contiguous runs of sorted unique ``ids`` (one block's column, read when its header
    does not list its inner runs)."""
    ids = np.asarray(ids, dtype=np.int64)
    times = np.asarray(times, dtype=np.int64)
    if not len(ids):
        e = np.empty(0, dtype=np.int64)
        return e, e, e, e
    breaks = np.flatnonzero(np.diff(ids) > 1)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(ids) - 1]))
    return ids[starts], ids[ends], times[starts], times[ends]


def segments_of_entries(
    entries: Iterable[tuple[int, IndexEntry]],
    read_ids: Callable[[int], tuple[np.ndarray, np.ndarray]],
) -> Segments:
    """The stored id runs of a symbol from its headers ``(key, entry)``; ``read_ids(key)``
    returns a block's ``agg_id`` and ``time`` columns when its header lacks the inner runs."""
    lo: list[int] = []
    hi: list[int] = []
    tlo: list[int] = []
    thi: list[int] = []
    extra: list[Segments] = []
    for key, (_n, t0, t1, i0, i1, _b, inner) in entries:
        if inner is None:
            extra.append(segments_of_ids(*read_ids(key)))
            continue
        start, t_start = i0, t0
        for j in range(0, len(inner), 4):
            first, last, t_before, t_after = inner[j : j + 4]
            lo.append(start)
            hi.append(first - 1)
            tlo.append(t_start)
            thi.append(t_before)
            start, t_start = last + 1, t_after
        lo.append(start)
        hi.append(i1)
        tlo.append(t_start)
        thi.append(t1)
    arrays = [np.array(x, dtype=np.int64) for x in (lo, hi, tlo, thi)]
    if extra:
        arrays = [np.concatenate([arrays[i], *(s[i] for s in extra)]) for i in range(4)]
    return arrays[0], arrays[1], arrays[2], arrays[3]


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive id ranges sorted, with overlapping and adjacent ones merged."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted((int(a), int(b)) for a, b in ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def validate_ranges(ranges: object, name: str = "unrepairable") -> list[tuple[int, int]]:
    """``ranges`` as a merged list of ``(first, last)`` id pairs; raises
    :class:`InvalidParameterError` naming what is wrong."""
    if type(ranges) is tuple and not ranges:  # an append's default: nothing to check
        return []
    if isinstance(ranges, str | bytes) or not isinstance(ranges, Iterable):
        raise InvalidParameterError(
            f"{name} must be a list of (first_id, last_id) pairs, got {type(ranges).__name__}"
        )
    pairs = []
    for r in ranges:
        ok = isinstance(r, tuple | list) and len(r) == 2
        if ok:
            a, b = r
            ok = all(isinstance(x, int | np.integer) and not isinstance(x, bool) for x in (a, b))
            ok = ok and 0 <= int(a) <= int(b)
        if not ok:
            raise InvalidParameterError(
                f"{name}: each item must be a (first_id, last_id) pair of integers with "
                f"0 <= first_id <= last_id, got {r!r}"
            )
        pairs.append((int(r[0]), int(r[1])))
    return merge_ranges(pairs)


def _split(first: int, last: int, lost: Sequence[tuple[int, int]]) -> list[tuple[int, int, bool]]:
    """``first..last`` cut into runs that are / are not inside the ``lost`` ranges."""
    out: list[tuple[int, int, bool]] = []
    i = max(0, bisect.bisect_right(lost, (first, first)) - 1)
    pos = first
    while pos <= last:
        while i < len(lost) and lost[i][1] < pos:
            i += 1
        if i < len(lost) and lost[i][0] <= pos:
            end = min(last, lost[i][1])
            out.append((pos, end, True))
        else:
            end = last if i >= len(lost) else min(last, lost[i][0] - 1)
            out.append((pos, end, False))
        pos = end + 1
    return out


def find_holes(segments: Segments, lost: Sequence[tuple[int, int]] = ()) -> pl.DataFrame:
    """Every missing run of ids between the first and the last stored id (schema
    :data:`HOLES_SCHEMA`), split where it enters or leaves an unrepairable range of ``lost``
    (sorted, merged)."""
    lo, hi, tlo, thi = segments
    if len(lo) < 2:
        return empty_holes()
    order = np.argsort(lo, kind="stable")
    lo, hi, tlo, thi = lo[order], hi[order], tlo[order], thi[order]
    reach = np.maximum.accumulate(hi)
    starts = np.flatnonzero(np.concatenate(([True], lo[1:] > reach[:-1] + 1)))
    if len(starts) < 2:
        return empty_holes()
    ends = np.concatenate((starts[1:] - 1, [len(lo) - 1]))
    g_lo, g_hi = lo[starts], reach[ends]
    g_tlo = np.minimum.reduceat(tlo, starts)
    g_thi = np.maximum.reduceat(thi, starts)
    first = (g_hi[:-1] + 1).tolist()
    last = (g_lo[1:] - 1).tolist()
    after = g_thi[:-1].tolist()
    before = g_tlo[1:].tolist()
    rows: list[tuple[int, int, int, int, int, bool]] = []
    for a, b, ta, tb in zip(first, last, after, before, strict=True):
        pieces = _split(a, b, lost) if lost else [(a, b, False)]
        rows += [(x, y, y - x + 1, ta, tb, flag) for x, y, flag in pieces]
    cols = list(zip(*rows, strict=True))
    return pl.DataFrame(
        {
            "first_missing": pl.Series(cols[0], dtype=pl.Int64),
            "last_missing": pl.Series(cols[1], dtype=pl.Int64),
            "count": pl.Series(cols[2], dtype=pl.Int64),
            "after_time": pl.Series(cols[3], dtype=pl.Int64).cast(HOLES_SCHEMA["after_time"]),
            "before_time": pl.Series(cols[4], dtype=pl.Int64).cast(HOLES_SCHEMA["before_time"]),
            "unrepairable": pl.Series(cols[5], dtype=pl.Boolean),
        }
    )
