"""What an append accepts, as checked numpy columns — the collector's 1-second batch in ~30 µs.

:meth:`tradelab.store.TradeStore.append` takes trades as

- a Polars frame **exactly in the trade schema** (the columns of
  :data:`tradelab.schema.TRADE_SCHEMA`, in that order and of those types — what the collector
  and :meth:`TradeStore.trades` produce): its arrays are taken without a copy and checked with
  a few numpy reductions;
- a **mapping of column name -> 1-D array** (numpy arrays or sequences; ``time`` as integer
  unix ms or ``datetime64``): the same checks, no Polars at all;
- anything else :func:`tradelab.schema.to_trade_frame` accepts (other frames, records), coerced
  by it first.

Every path refuses the same trades with the same one-line :class:`InvalidTradesError`: nulls,
a price that is not a finite number > 0, a quantity that is not a finite number >= 0, times
outside 1970..2286, negative ids, ``last_id < first_id``. Pure: no I/O.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import polars as pl

from tradelab.exceptions import InvalidTradesError
from tradelab.schema import TRADE_COLUMNS, TRADE_SCHEMA, to_trade_frame
from tradelab.store.blocks import DTYPES, Columns
from tradelab.store.keys import MAX_MS

__all__ = ["Trades", "trade_columns", "validate_columns"]

_NAMES = list(TRADE_COLUMNS)
_TYPES = list(TRADE_SCHEMA.values())
_INF = float("inf")
_min, _max, _any = np.minimum.reduce, np.maximum.reduce, np.logical_or.reduce  # no wrappers


Trades = pl.DataFrame | Mapping[str, Any] | Iterable[Mapping[str, Any]]
"""What :meth:`TradeStore.append` accepts (see the module docstring)."""


def trade_columns(trades: Trades) -> Columns:
    """The trades as checked numpy columns (time as int64 unix ms), in the given row order."""
    frame = None
    if isinstance(trades, pl.DataFrame):
        frame = trades if trades.columns == _NAMES and trades.dtypes == _TYPES else None
        cols = _typed_frame(frame if frame is not None else to_trade_frame(trades))
    elif isinstance(trades, Mapping):
        cols = _mapping(trades)
    else:
        cols = _typed_frame(to_trade_frame(trades))
    try:
        if any(a.dtype != DTYPES[c] for c, a in cols.items()):  # a null made it float/object
            raise InvalidTradesError("trades have values of another type")
        n = len(cols["agg_id"])
        if n and not (n <= _FEW and _few_fine(cols)):
            _check_values(cols)  # they raise, saying what is wrong
            validate_columns(cols)
    except InvalidTradesError:
        if frame is not None:
            _refuse_nulls(frame)  # the message a null deserves, rather than what it became
        raise
    return cols


_FEW = 64


def _few_fine(cols: Columns) -> bool:
    """True if a few trades (a 1-second batch) pass every check of :func:`_check_values` and
    :func:`validate_columns`, checked on Python lists: ~20 numpy reductions cost far more than
    the rows (most of all right after other work has evicted numpy's code from the caches).
    A NaN fails every comparison, so it is never fine; False sends the trades to those two
    checks, which say what is wrong."""
    first, last = cols["first_id"].tolist(), cols["last_id"].tolist()
    t = cols["time"].tolist()
    return (
        all(0 < x < _INF for x in cols["price"].tolist())
        and all(0 <= x < _INF for x in cols["qty"].tolist())
        and min(t) >= 0
        and max(t) <= MAX_MS
        and min(cols["agg_id"].tolist()) >= 0
        and min(first) >= 0
        and all(map(operator.le, first, last))
    )


def _refuse_nulls(frame: pl.DataFrame) -> None:
    if any(s.null_count() for s in frame.get_columns()):
        nulls = [s.name for s in frame.get_columns() if s.null_count()]
        raise InvalidTradesError(f"trades have missing (null) values in {', '.join(nulls)}")


def _typed_frame(frame: pl.DataFrame) -> Columns:
    """The arrays of a frame already in the trade schema (no copy for one-chunk columns).

    Nulls are not counted here (seven calls into Polars per append): a null turns its column
    into float64 (integers), an object array (booleans), NaT (times) or NaN (prices,
    quantities), which the checks refuse; :func:`trade_columns` then names the nulls.
    """
    out: Columns = {}
    for c, s in zip(TRADE_COLUMNS, frame.get_columns(), strict=True):
        a = s.to_numpy()
        out[c] = a.view(np.int64) if c == "time" and a.dtype.kind == "M" else a
    return out


def _mapping(trades: Mapping[str, Any]) -> Columns:
    missing = [c for c in TRADE_COLUMNS if c not in trades]
    if missing:
        raise InvalidTradesError(
            f"trade columns lack {', '.join(missing)}; a mapping of columns needs "
            f"{', '.join(TRADE_COLUMNS)} (1-D arrays of equal length)"
        )
    out: Columns = {}
    for c in TRADE_COLUMNS:
        try:
            a = np.asarray(trades[c])
        except Exception as exc:  # ragged lists, objects numpy cannot hold
            raise InvalidTradesError(f"column {c} is not an array: {exc}") from None
        out[c] = _typed_array(c, a)
    n = {len(a) for a in out.values()}
    if len(n) > 1:
        lengths = ", ".join(f"{c} {len(a)}" for c, a in out.items())
        raise InvalidTradesError(f"trade columns differ in length ({lengths}); give equal lengths")
    return out


def _typed_array(c: str, a: np.ndarray) -> np.ndarray:
    """``a`` as the column's numpy dtype, refusing what would change a value."""
    if a.ndim != 1:
        raise InvalidTradesError(f"column {c} must be 1-D, got shape {a.shape}")
    kind = a.dtype.kind
    if c == "time" and kind == "M":
        return a.astype("datetime64[ms]").view(np.int64)
    want = DTYPES[c]
    if c == "buyer_is_maker":
        ok = kind == "b"
        expected = "booleans"
    elif c in ("price", "qty"):
        ok = kind in "fiu"
        expected = "numbers (float64)"
    else:
        ok = kind in "iu"
        expected = "integers" + (" of unix ms (or datetime64)" if c == "time" else "")
    if not ok:
        raise InvalidTradesError(f"column {c} holds {a.dtype} values; expected {expected}")
    if kind == "u" and c not in ("price", "qty") and len(a) and int(a.max()) > 2**63 - 1:
        raise InvalidTradesError(f"column {c} has values beyond int64")
    return np.ascontiguousarray(a, dtype=want)


def _check_values(cols: Columns) -> None:
    """Refuse NaN/inf/non-positive prices and NaN/inf/negative quantities (min/max only: a NaN
    makes both fail)."""
    p, q = cols["price"], cols["qty"]
    if not (_min(p) > 0 and _max(p) < _INF and _min(q) >= 0 and _max(q) < _INF):
        bad_price = int((~(np.isfinite(p) & (p > 0))).sum())
        bad_qty = int((~(np.isfinite(q) & (q >= 0))).sum())
        raise InvalidTradesError(
            f"{bad_price} trade(s) with a price that is not a finite number > 0 and "
            f"{bad_qty} with a quantity that is not a finite number >= 0"
        )


def validate_columns(cols: Columns) -> None:
    """Refuse trades the store cannot hold (times outside 1970..2286, negative or inverted ids)."""
    t = cols["time"]
    problems = []
    if int(_min(t)) < 0 or int(_max(t)) > MAX_MS:
        problems.append(f"time must lie between 1970 and the year 2286 (0..{MAX_MS} ms)")
    for c in ("agg_id", "first_id", "last_id"):
        if int(_min(cols[c])) < 0:
            problems.append(f"{c} must be >= 0")
    if _any(cols["last_id"] < cols["first_id"]):
        problems.append("last_id must be >= first_id")
    if problems:
        raise InvalidTradesError("invalid trades: " + "; ".join(problems))
