"""Which hours of a symbol can go into the shared table, and what their commits carry — pure.

The exporter (:mod:`tradelab.scale.exporter`) commits each **closed hour** of each symbol as one
Delta transaction. Its rules, as plain functions of numbers and frames:

- **Application transaction id.** Every commit carries ``Transaction(app_id(symbol),
  hour_number(hour))``: the app id names the symbol (``tradelab:BTCUSDT``), the version is the
  hour's number since the epoch. A symbol's hours are exported in order, so the table's
  recorded version for the app id is a watermark: an hour at or below it is already in the
  table and exporting it again is a no-op. One watermark per symbol (not one id per hour) keeps
  the table's transaction state small — a year of 400 symbols is 400 entries, not 3.5 million.
- **Closed.** An hour ``[h, h + 1 h)`` is closed when it has ended (``h + 1 h <= now``) and the
  store holds a trade at or after its end: aggregate ids are contiguous and time-ordered, so a
  later stored trade proves every earlier id either is stored or is a hole the store knows of.
  Without such a trade (the collector stopped, or the symbol is idle), the hour waits.
- **Complete.** An hour is held back while a *repairable* hole of the store may hold trades of
  it — the hole's missing ids lie between its ``after_time`` and ``before_time``. Holes declared
  unrepairable (the exchange does not have the ids) no longer hold it back: the hour is exported
  and its commit records ``complete: false`` and how many ids are missing around it.
- Because the watermark only moves forward, a held-back hour also holds back every later hour of
  that symbol: the table never skips past an hour it would then be unable to add.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl

from tradelab.schema import TRADE_COLUMNS, TRADE_SCHEMA

__all__ = [
    "APP_ID_PREFIX",
    "HOUR_MS",
    "PARTITION_COLUMNS",
    "TABLE_SCHEMA",
    "HoleSpan",
    "HourState",
    "app_id",
    "commit_metadata",
    "date_of",
    "file_stats",
    "hole_spans",
    "hour_floor",
    "hour_number",
    "hour_state",
    "hour_text",
    "hours_between",
    "table_frame",
]

HOUR_MS = 3_600_000
APP_ID_PREFIX = "tradelab:"
PARTITION_COLUMNS = ("symbol", "date")
TABLE_SCHEMA: dict[str, pl.DataType] = {
    **TRADE_SCHEMA,
    "time": pl.Datetime("us", "UTC"),  # Delta's timestamp is microseconds; values are whole ms
    "symbol": pl.String(),
    "date": pl.Date(),
}
"""The table's columns: the trade schema (``time`` as Delta's µs timestamp, holding whole
milliseconds) plus the partition columns ``symbol`` and ``date`` (UTC day of ``time``)."""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def hour_floor(ms: int) -> int:
    """The start (unix ms) of the UTC hour holding ``ms``."""
    return ms - ms % HOUR_MS


def hour_number(hour_ms: int) -> int:
    """Hours since the epoch of the hour starting at ``hour_ms``: the commit's txn version."""
    return hour_ms // HOUR_MS


def app_id(symbol: str) -> str:
    """The Delta application id of a symbol's exports: ``tradelab:BTCUSDT``."""
    return APP_ID_PREFIX + symbol


def hour_text(hour_ms: int) -> str:
    """``2024-08-08 23:00`` (UTC)."""
    return (_EPOCH + dt.timedelta(milliseconds=hour_ms)).strftime("%Y-%m-%d %H:%M")


def date_of(ms: int) -> dt.date:
    """The UTC date of ``ms`` (the ``date`` partition)."""
    return (_EPOCH + dt.timedelta(milliseconds=ms)).date()


@dataclass(frozen=True)
class HoleSpan:
    """A missing run of ids as the store reports it: its ids lie in time between ``after_ms``
    (the stored trade before) and ``before_ms`` (the stored trade after)."""

    first_missing: int
    last_missing: int
    count: int
    after_ms: int
    before_ms: int
    unrepairable: bool

    def touches(self, hour_ms: int) -> bool:
        """Whether missing trades of this hole may belong to the hour ``[hour_ms, +1 h)``."""
        return self.after_ms < hour_ms + HOUR_MS and self.before_ms >= hour_ms


def hole_spans(holes: pl.DataFrame) -> list[HoleSpan]:
    """:class:`HoleSpan` rows from ``TradeStore.holes()`` (``first_missing``,
    ``last_missing``, ``count``, ``after_time``, ``before_time``, ``unrepairable``)."""
    if holes.height == 0:
        return []
    frame = holes.with_columns(
        pl.col(c).dt.epoch("ms") if isinstance(holes.schema[c], pl.Datetime) else pl.col(c)
        for c in ("after_time", "before_time")
    )
    return [
        HoleSpan(int(a), int(b), int(n), int(ta), int(tb), bool(u))
        for a, b, n, ta, tb, u in frame.select(
            "first_missing", "last_missing", "count", "after_time", "before_time", "unrepairable"
        ).iter_rows()
    ]


@dataclass(frozen=True)
class HourState:
    """Whether an hour can be exported now: ``ready``, else ``reason`` says why it waits;
    when ready, ``complete`` is False if ids the exchange lacks (``unrepairable_ids``, in
    ``holes``) may belong to it."""

    hour_ms: int
    ready: bool
    reason: str | None = None
    complete: bool = True
    unrepairable_ids: int = 0
    holes: tuple[tuple[int, int], ...] = ()


def hour_state(
    hour_ms: int, holes: Sequence[HoleSpan], last_time_ms: int | None, now_ms: int
) -> HourState:
    """The :class:`HourState` of the hour starting at ``hour_ms`` given the store's holes of the
    symbol, the time of its last stored trade and the current time (see the module rules)."""
    end = hour_ms + HOUR_MS
    if end > now_ms:
        return HourState(hour_ms, False, f"{hour_text(hour_ms)} has not ended yet")
    if last_time_ms is None or last_time_ms < end:
        return HourState(
            hour_ms,
            False,
            f"{hour_text(hour_ms)} is open: no trade after it is stored yet, so trades of it "
            "may still be in flight",
        )
    touching = [h for h in holes if h.touches(hour_ms)]
    waiting = [h for h in touching if not h.unrepairable]
    if waiting:
        ids = sum(h.count for h in waiting)
        first = min(h.first_missing for h in waiting)
        last = max(h.last_missing for h in waiting)
        return HourState(
            hour_ms,
            False,
            f"{hour_text(hour_ms)} waits for {ids:,} missing ids ({first}–{last}) to be repaired "
            "or declared unrepairable",
        )
    lost = sum(h.count for h in touching)
    return HourState(
        hour_ms,
        True,
        complete=lost == 0,
        unrepairable_ids=lost,
        holes=tuple((h.first_missing, h.last_missing) for h in touching),
    )


def table_frame(trades: pl.DataFrame) -> pl.DataFrame:
    """Trades (trade schema) as the rows of the table's data files: ``time`` in µs, sorted by
    ``agg_id``. The partition columns are not stored in the files (Delta keeps them in the
    log); :data:`TABLE_SCHEMA` is what readers see."""
    return (
        trades.select(TRADE_COLUMNS)
        .sort("agg_id")
        .with_columns(pl.col("time").dt.cast_time_unit("us"))
    )


def _ts(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def file_stats(frame: pl.DataFrame) -> str:
    """The Delta ``stats`` JSON of a data file (``numRecords``, ``minValues``, ``maxValues``,
    ``nullCount``): what lets Polars, Spark, Trino and DuckDB skip files by time and id."""
    mins: dict[str, object] = {}
    maxs: dict[str, object] = {}
    for col in ("agg_id", "price", "qty", "first_id", "last_id"):
        lo, hi = frame[col].min(), frame[col].max()
        mins[col] = int(lo) if isinstance(lo, int) else float(lo)  # type: ignore[arg-type]
        maxs[col] = int(hi) if isinstance(hi, int) else float(hi)  # type: ignore[arg-type]
        if not (math.isfinite(float(mins[col])) and math.isfinite(float(maxs[col]))):  # type: ignore[arg-type]
            raise ValueError(f"column {col} holds a value that is not finite")
    t = frame["time"]
    mins["time"], maxs["time"] = _ts(t.min()), _ts(t.max())  # type: ignore[arg-type]
    mins["buyer_is_maker"] = bool(frame["buyer_is_maker"].min())
    maxs["buyer_is_maker"] = bool(frame["buyer_is_maker"].max())
    return json.dumps(
        {
            "numRecords": frame.height,
            "minValues": mins,
            "maxValues": maxs,
            "nullCount": {c: 0 for c in TRADE_COLUMNS},
        },
        allow_nan=False,
    )


def commit_metadata(
    symbol: str, state: HourState, trades: pl.DataFrame, exporter: str
) -> dict[str, object]:
    """The commit's custom metadata: ``{"tradelab": {...}}`` with the symbol, the hour, its
    trade count and agg-id range, and its completeness (``complete``, ``unrepairable_ids``,
    the holes around it) — readable in ``DESCRIBE HISTORY`` or ``DeltaTable.history()``."""
    ids = trades["agg_id"]
    return {
        "tradelab": {
            "symbol": symbol,
            "hour": hour_text(state.hour_ms) + "Z",
            "hour_number": hour_number(state.hour_ms),
            "trades": trades.height,
            "first_agg_id": int(ids.min()),  # type: ignore[arg-type]
            "last_agg_id": int(ids.max()),  # type: ignore[arg-type]
            "complete": state.complete,
            "unrepairable_ids": state.unrepairable_ids,
            "unrepairable_holes": [list(h) for h in state.holes],
            "exporter": exporter,
        }
    }


def hours_between(first_ms: int, last_ms: int) -> Iterable[int]:
    """Start of every hour from the one holding ``first_ms`` to the one holding ``last_ms``."""
    return range(hour_floor(first_ms), hour_floor(last_ms) + 1, HOUR_MS)
