"""The trade schema every layer shares, and the one function that coerces input into it.

A trade (Binance aggTrade) is one row:

| column           | Polars type               | Binance field | meaning                           |
|------------------|---------------------------|---------------|-----------------------------------|
| ``agg_id``       | Int64                     | ``a``         | aggregate trade id (contiguous)   |
| ``price``        | Float64                   | ``p``         | price, exact to 8 decimals        |
| ``qty``          | Float64                   | ``q``         | base quantity, exact to 8 decimals|
| ``first_id``     | Int64                     | ``f``         | first raw trade id                |
| ``last_id``      | Int64                     | ``l``         | last raw trade id                 |
| ``time``         | Datetime("ms", "UTC")     | ``T``         | trade time                        |
| ``buyer_is_maker`` | Boolean                 | ``m``         | true = the taker sold             |
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

from tradelab.exceptions import InvalidTradesError, InvalidWindowError

__all__ = [
    "TRADE_COLUMNS",
    "TRADE_SCHEMA",
    "empty_trades",
    "to_ms",
    "to_trade_frame",
]

TRADE_SCHEMA: dict[str, pl.DataType] = {
    "agg_id": pl.Int64(),
    "price": pl.Float64(),
    "qty": pl.Float64(),
    "first_id": pl.Int64(),
    "last_id": pl.Int64(),
    "time": pl.Datetime("ms", "UTC"),
    "buyer_is_maker": pl.Boolean(),
}
TRADE_COLUMNS: tuple[str, ...] = tuple(TRADE_SCHEMA)

# Binance's one-letter field names, accepted in records as an alternative to column names.
_BINANCE_FIELDS = {
    "a": "agg_id",
    "p": "price",
    "q": "qty",
    "f": "first_id",
    "l": "last_id",
    "T": "time",
    "m": "buyer_is_maker",
}


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def empty_trades() -> pl.DataFrame:
    """A frame with no rows in the trade schema."""
    return pl.DataFrame(schema=TRADE_SCHEMA)


def to_ms(value: dt.datetime | int | float, *, name: str = "time") -> int:
    """Unix milliseconds from a timezone-aware datetime or a number of ms.

    Naive datetimes are refused: guessing a timezone silently shifts a window by hours.
    """
    if isinstance(value, bool):
        raise InvalidWindowError(f"{name} must be a timezone-aware datetime or unix ms, got bool")
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise InvalidWindowError(
                f"{name}={value!r} is a naive datetime: give a timezone, e.g. "
                "datetime(..., tzinfo=timezone.utc), or unix milliseconds"
            )
        return (value - _EPOCH) // dt.timedelta(milliseconds=1)
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidWindowError(f"{name} must be a finite number of unix ms, got {value!r}")
        return int(value)
    raise InvalidWindowError(
        f"{name} must be a timezone-aware datetime or unix milliseconds, got {type(value).__name__}"
    )


def _from_records(records: Iterable[Any]) -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise InvalidTradesError(
                f"trade record #{i} is a {type(rec).__name__}; expected a mapping with the "
                f"columns {', '.join(TRADE_COLUMNS)} (or Binance's a/p/q/f/l/T/m)"
            )
        row = {_BINANCE_FIELDS.get(k, k): v for k, v in rec.items()}
        missing = [c for c in TRADE_COLUMNS if c not in row]
        if missing:
            raise InvalidTradesError(
                f"trade record #{i} lacks {', '.join(missing)}; "
                f"required: {', '.join(TRADE_COLUMNS)}"
            )
        rows.append({c: row[c] for c in TRADE_COLUMNS})
    if not rows:
        return empty_trades()
    try:
        frame = pl.DataFrame(
            rows,
            schema={
                "agg_id": pl.Int64,
                "price": pl.Utf8 if isinstance(rows[0]["price"], str) else pl.Float64,
                "qty": pl.Utf8 if isinstance(rows[0]["qty"], str) else pl.Float64,
                "first_id": pl.Int64,
                "last_id": pl.Int64,
                "time": pl.Int64 if isinstance(rows[0]["time"], int) else pl.Datetime("ms", "UTC"),
                "buyer_is_maker": pl.Boolean,
            },
            strict=False,
        )
    except Exception as exc:  # polars raises several types for bad values
        raise InvalidTradesError(f"trade records do not fit the trade schema: {exc}") from None
    return _coerce_frame(frame)


def _coerce_frame(frame: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in TRADE_COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidTradesError(
            f"trades frame lacks column(s) {', '.join(missing)}; the trade schema is "
            + ", ".join(f"{c}: {t}" for c, t in TRADE_SCHEMA.items())
        )
    exprs = []
    for col, want in TRADE_SCHEMA.items():
        have = frame.schema[col]
        expr = pl.col(col)
        if have == want:
            exprs.append(expr)
        elif col == "time" and have.is_integer():
            exprs.append(expr.cast(pl.Int64).cast(pl.Datetime("ms", "UTC")))
        elif col == "time" and isinstance(have, pl.Datetime):
            if have.time_zone is None:
                raise InvalidTradesError(
                    "column time is a naive Datetime: give it a UTC timezone "
                    "(.dt.replace_time_zone('UTC')) or pass unix milliseconds"
                )
            exprs.append(expr.dt.convert_time_zone("UTC").dt.cast_time_unit("ms"))
        elif col in ("price", "qty") and (have.is_numeric() or have == pl.Utf8):
            exprs.append(expr.cast(pl.Float64, strict=True))
        elif col in ("agg_id", "first_id", "last_id") and have.is_integer():
            exprs.append(expr.cast(pl.Int64, strict=True))
        elif col == "buyer_is_maker" and have == pl.Boolean:
            exprs.append(expr)
        else:
            raise InvalidTradesError(
                f"column {col} has type {have}; expected {want}"
                + (" (or integers of unix ms)" if col == "time" else "")
            )
    try:
        out = frame.select(exprs)
    except Exception as exc:
        raise InvalidTradesError(f"trades do not fit the trade schema: {exc}") from None
    nulls = [c for c in TRADE_COLUMNS if out[c].null_count()]
    if nulls:
        raise InvalidTradesError(f"trades have missing (null) values in {', '.join(nulls)}")
    if out.height:
        bad_price = out.filter(~(pl.col("price").is_finite() & (pl.col("price") > 0))).height
        bad_qty = out.filter(~(pl.col("qty").is_finite() & (pl.col("qty") >= 0))).height
        if bad_price or bad_qty:
            raise InvalidTradesError(
                f"{bad_price} trade(s) with a price that is not a finite number > 0 and "
                f"{bad_qty} with a quantity that is not a finite number >= 0"
            )
    return out


def to_trade_frame(trades: pl.DataFrame | Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Coerce a frame or an iterable of trade records into the trade schema, or raise.

    Accepts a Polars DataFrame whose columns can be cast losslessly (integers for ids, numbers
    or decimal strings for price/qty, unix-ms integers or tz-aware datetimes for ``time``), or
    records keyed by column name or by Binance's one-letter fields. Extra columns are dropped.
    Raises :class:`InvalidTradesError` naming the offending column.
    """
    if isinstance(trades, pl.DataFrame):
        return _coerce_frame(trades)
    if isinstance(trades, str | bytes) or not isinstance(trades, Iterable):
        raise InvalidTradesError(
            f"trades must be a Polars DataFrame in the trade schema or an iterable of records, "
            f"got {type(trades).__name__}"
        )
    return _from_records(trades)
