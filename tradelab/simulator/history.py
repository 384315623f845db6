"""What the simulator has published, per symbol: pure, thread-safe bookkeeping.

:class:`TradeHistory` holds every trade made available (on the stream or only through REST)
in compact typed arrays (~41 bytes a trade), answers the REST ``aggTrades`` queries, and keeps
a :class:`RangeSet` of the published agg ids that survives trimming, so tests can compare
"sent" with "stored" exactly even after hours of replay.
"""

from __future__ import annotations

import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np
import polars as pl

from tradelab.schema import TRADE_SCHEMA
from tradelab.simulator.sources import Trade

__all__ = ["RangeSet", "TradeHistory"]


class RangeSet:
    """Sorted, disjoint inclusive ranges of integers, built by appending increasing ids."""

    __slots__ = ("_ends", "_starts", "_total")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._total = 0
        for lo, hi in ranges:
            self.add_range(lo, hi)

    def add_range(self, lo: int, hi: int) -> None:
        """Add ``lo..hi`` (inclusive); ``lo`` must be above everything already held."""
        if hi < lo:
            raise ValueError(f"empty range {lo}..{hi}")
        if self._ends and lo <= self._ends[-1]:
            raise ValueError(f"ids must increase: {lo} after {self._ends[-1]}")
        if self._ends and lo == self._ends[-1] + 1:
            self._ends[-1] = hi
        else:
            self._starts.append(lo)
            self._ends.append(hi)
        self._total += hi - lo + 1

    def add(self, value: int) -> None:
        """Add one id (above every id already held)."""
        self.add_range(value, value)

    @property
    def ranges(self) -> list[tuple[int, int]]:
        """The inclusive ranges, ascending."""
        return list(zip(self._starts, self._ends, strict=True))

    def __len__(self) -> int:
        return self._total

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int):
            return False
        i = bisect_right(self._starts, value) - 1
        return i >= 0 and value <= self._ends[i]

    def __iter__(self) -> Iterator[int]:
        for lo, hi in zip(self._starts, self._ends, strict=True):
            yield from range(lo, hi + 1)

    def to_list(self) -> list[int]:
        """Every id, ascending."""
        return list(self)

    def gaps(self) -> list[tuple[int, int]]:
        """The missing inclusive ranges between the first and last id."""
        return [(e + 1, s - 1) for e, s in zip(self._ends, self._starts[1:], strict=False)]

    def __repr__(self) -> str:
        shown = ", ".join(f"{lo}..{hi}" for lo, hi in self.ranges[:5])
        more = "" if len(self._starts) <= 5 else f", … ({len(self._starts)} ranges)"
        return f"RangeSet({shown}{more}; {self._total} ids)"


_MARKS_KEPT_S = 120.0
"""How long the publication times of appends are kept (for REST lag; far above any lag)."""


class TradeHistory:
    """Every trade published for one symbol, oldest first, at most ``limit`` kept for REST."""

    def __init__(self, symbol: str, *, limit: int | None = None) -> None:
        self.symbol = symbol
        self.limit = limit
        self.published = RangeSet()
        self.trimmed = 0
        self._lock = threading.Lock()
        self._a = array("q")
        self._p = array("d")
        self._q = array("d")
        self._f = array("q")
        self._l = array("q")
        self._t = array("q")
        self._m = array("b")
        self._marks: deque[tuple[float, int, int]] = deque()
        """(monotonic time, ids kept before, after) of each recent append, for ``lag``."""

    def __len__(self) -> int:
        return len(self._a)

    def append(self, trades: Iterable[Trade]) -> int:
        """Record published trades (ids increasing); returns how many were added."""
        rows = list(trades)
        if not rows:
            return 0
        a, p, q, f, la, t, m = zip(*rows, strict=True)
        with self._lock:
            before = self.trimmed + len(self._a)
            # The published ids, as runs of consecutive ids.
            lo = prev = a[0]
            for x in a[1:]:
                if x != prev + 1:
                    self.published.add_range(lo, prev)
                    lo = x
                prev = x
            self.published.add_range(lo, prev)
            self._a.extend(a)
            self._p.extend(p)
            self._q.extend(q)
            self._f.extend(f)
            self._l.extend(la)
            self._t.extend(t)
            self._m.extend(map(int, m))
            if self.limit is not None and len(self._a) > self.limit + self.limit // 4 + 1000:
                drop = len(self._a) - self.limit
                for arr in (self._a, self._p, self._q, self._f, self._l, self._t, self._m):
                    del arr[:drop]
                self.trimmed += drop
            self._mark(before)
        return len(rows)

    def _mark(self, before: int) -> None:
        """Note when the ids after the first ``before`` were published (lock held)."""
        now = time.monotonic()
        self._marks.append((now, before, self.trimmed + len(self._a)))
        while len(self._marks) > 1 and self._marks[1][0] < now - _MARKS_KEPT_S:
            self._marks.popleft()

    def _published_by(self, when: float) -> int:
        """How many ids (counting trimmed ones) were published by monotonic time ``when``
        (lock held)."""
        for t, _before, after in reversed(self._marks):
            if t <= when:
                return after
        return self._marks[0][1] if self._marks else self.trimmed + len(self._a)

    def append_frame(self, frame: pl.DataFrame) -> int:
        """Record published trades given as a frame in the trade schema (ids increasing):
        the vectorised :meth:`append`, for seeding hours of history."""
        if frame.height == 0:
            return 0
        ids = frame["agg_id"].to_numpy().astype(np.int64)
        breaks = np.flatnonzero(np.diff(ids) != 1) + 1
        starts = np.concatenate(([0], breaks)).tolist()
        ends = np.concatenate((breaks - 1, [len(ids) - 1])).tolist()
        with self._lock:
            before = self.trimmed + len(self._a)
            for a, b in zip(starts, ends, strict=True):
                self.published.add_range(int(ids[a]), int(ids[b]))
            self._a.frombytes(ids.tobytes())
            self._p.frombytes(frame["price"].to_numpy().astype(np.float64).tobytes())
            self._q.frombytes(frame["qty"].to_numpy().astype(np.float64).tobytes())
            self._f.frombytes(frame["first_id"].to_numpy().astype(np.int64).tobytes())
            self._l.frombytes(frame["last_id"].to_numpy().astype(np.int64).tobytes())
            times = frame["time"].dt.epoch("ms").to_numpy().astype(np.int64)
            self._t.frombytes(times.tobytes())
            self._m.frombytes(frame["buyer_is_maker"].to_numpy().astype(np.int8).tobytes())
            self._mark(before)
        return frame.height

    def between(self, start_ms: int, end_ms: int) -> pl.DataFrame:
        """The kept trades with ``start_ms <= time < end_ms`` (trade schema, by agg id)."""
        with self._lock:
            i = bisect_left(self._t, start_ms)
            j = bisect_left(self._t, end_ms)
            cols = {
                name: np.frombuffer(arr, dtype=dtype)[i:j].copy()
                for name, arr, dtype in (
                    ("agg_id", self._a, np.int64),
                    ("price", self._p, np.float64),
                    ("qty", self._q, np.float64),
                    ("first_id", self._f, np.int64),
                    ("last_id", self._l, np.int64),
                    ("time", self._t, np.int64),
                    ("buyer_is_maker", self._m, np.int8),
                )
            }
        frame = pl.DataFrame(cols).with_columns(
            pl.col("time").cast(pl.Datetime("ms", "UTC")),
            pl.col("buyer_is_maker").cast(pl.Boolean),
        )
        return frame.select(list(TRADE_SCHEMA)).cast(TRADE_SCHEMA)  # type: ignore[arg-type]

    def _rows(self, i: int, j: int) -> list[Trade]:
        return list(
            zip(
                self._a[i:j],
                self._p[i:j],
                self._q[i:j],
                self._f[i:j],
                self._l[i:j],
                self._t[i:j],
                map(bool, self._m[i:j]),
                strict=True,
            )
        )

    def query(
        self,
        *,
        from_id: int | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        limit: int = 500,
        lag: float = 0.0,
    ) -> list[Trade]:
        """Binance's ``aggTrades`` semantics: ``fromId`` inclusive, ascending; or the trades
        with ``startTime <= T <= endTime`` (the first ``limit``; with only ``endTime`` the
        last ``limit`` up to it); with neither, the most recent ``limit`` trades. ``lag``:
        only the trades published at least that many seconds ago exist (REST trailing)."""
        with self._lock:
            n = len(self._a)
            if lag > 0:
                n = min(n, max(0, self._published_by(time.monotonic() - lag) - self.trimmed))
            if from_id is not None:
                i = bisect_left(self._a, from_id)
                return self._rows(i, min(n, i + limit))
            if start_time is not None:
                i = bisect_left(self._t, start_time)
                j = n if end_time is None else min(n, bisect_right(self._t, end_time))
                return self._rows(i, min(j, i + limit))
            j = n if end_time is None else min(n, bisect_right(self._t, end_time))
            return self._rows(max(0, j - limit), j)

    def published_ranges(self) -> list[tuple[int, int]]:
        """A consistent snapshot of the published id ranges (safe from any thread)."""
        with self._lock:
            return self.published.ranges

    def last(self) -> Trade | None:
        """The most recent trade, or None."""
        with self._lock:
            return self._rows(len(self._a) - 1, len(self._a))[0] if self._a else None

    def frame(self) -> pl.DataFrame:
        """The kept trades as a frame in the trade schema (sorted by agg_id)."""
        with self._lock:
            cols = {
                "agg_id": pl.Series(self._a, dtype=pl.Int64),
                "price": pl.Series(self._p, dtype=pl.Float64),
                "qty": pl.Series(self._q, dtype=pl.Float64),
                "first_id": pl.Series(self._f, dtype=pl.Int64),
                "last_id": pl.Series(self._l, dtype=pl.Int64),
                "time": pl.Series(self._t, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC")),
                "buyer_is_maker": pl.Series(self._m, dtype=pl.Int8).cast(pl.Boolean),
            }
        return pl.DataFrame(cols, schema=TRADE_SCHEMA)
