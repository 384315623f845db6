"""Buffered trades as packed rows: 49 bytes a trade, no Python object per trade.

The intake gate holds up to ``max_buffered`` trades per collector while the store catches up —
200,000 by default, and a flood keeps it near that. As :class:`~tradelab.binance.Trade` tuples
that was ~300 bytes a trade (a tuple, four ints, two floats) in small objects the allocator
cannot hand back in one piece; here each trade is one fixed-size record appended to a
``bytearray`` (``struct`` layout ``<qddqqq?``: agg_id, price, qty, first_id, last_id, time in
unix ms, buyer_is_maker). Appending costs one ``struct.pack``; the writer gets the columns as
numpy arrays (:meth:`TradeColumns.columns`, one copy each) and a frame exactly in the trade
schema (:meth:`TradeColumns.to_frame`), which the store takes on its typed fast path.

Iterating yields :class:`~tradelab.binance.Trade` values (for the few places and tests that look
at single trades); :meth:`TradeColumns.ids` gives the agg ids without building them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

import numpy as np
import polars as pl

from tradelab.binance.protocol import Trade
from tradelab.schema import TRADE_COLUMNS, TRADE_SCHEMA, empty_trades

__all__ = ["ROW_BYTES", "TradeColumns"]

_ROW = struct.Struct("<qddqqq?")
ROW_BYTES = _ROW.size
"""Bytes one buffered trade takes (49)."""
_DTYPE = np.dtype(
    [
        ("agg_id", "<i8"),
        ("price", "<f8"),
        ("qty", "<f8"),
        ("first_id", "<i8"),
        ("last_id", "<i8"),
        ("time", "<i8"),
        ("buyer_is_maker", "?"),
    ]
)
assert _DTYPE.itemsize == ROW_BYTES and _DTYPE.names == TRADE_COLUMNS
_pack = _ROW.pack


class TradeColumns:
    """The trades of one symbol, in arrival order, packed (see the module docstring)."""

    __slots__ = ("_buf", "symbol")

    def __init__(self, symbol: str, trades: Iterable[Trade] = ()) -> None:
        self.symbol = symbol
        self._buf = bytearray()
        self.extend(trades)

    def append(
        self,
        agg_id: int,
        price: float,
        qty: float,
        first_id: int,
        last_id: int,
        time_ms: int,
        buyer_is_maker: bool,
    ) -> None:
        """Add one trade (the stream reader's hot path: one ``struct.pack``)."""
        self._buf += _pack(agg_id, price, qty, first_id, last_id, time_ms, buyer_is_maker)

    def extend(self, trades: Iterable[Trade]) -> None:
        """Add trades (a REST page)."""
        self._buf += b"".join(_pack(*t[1:]) for t in trades)

    def extend_columns(self, other: TradeColumns) -> None:
        """Add every trade of ``other`` after these (a retried batch, then newer trades)."""
        self._buf += other._buf

    def __len__(self) -> int:
        return len(self._buf) // ROW_BYTES

    def __bool__(self) -> bool:
        return bool(self._buf)

    def __iter__(self) -> Iterator[Trade]:
        sym = self.symbol
        for row in _ROW.iter_unpack(self._buf):
            yield Trade(sym, *row)

    def __eq__(self, other: object) -> bool:
        """Equal to the same trades as columns, or as a list/tuple of :class:`Trade`."""
        if isinstance(other, TradeColumns):
            return self.symbol == other.symbol and self._buf == other._buf
        if isinstance(other, list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"<TradeColumns {self.symbol}: {len(self)} trades>"

    @property
    def nbytes(self) -> int:
        """Bytes the buffered trades take."""
        return len(self._buf)

    def _rows(self) -> np.ndarray:
        return np.frombuffer(self._buf, dtype=_DTYPE)

    def ids(self) -> list[int]:
        """The agg ids, in arrival order."""
        return self._rows()["agg_id"].tolist() if self._buf else []

    def last(self) -> tuple[int, int] | None:
        """``(agg id, time)`` of the trade with the highest agg id, None when empty."""
        if not self._buf:
            return None
        rows = self._rows()
        i = int(rows["agg_id"].argmax())
        return int(rows["agg_id"][i]), int(rows["time"][i])

    def columns(self) -> dict[str, np.ndarray]:
        """Each column as its own contiguous numpy array (time as int64 unix ms): copies, so
        nothing keeps a view of the buffer (which must stay resizable)."""
        rows = self._rows()
        return {c: rows[c].copy() for c in TRADE_COLUMNS}

    def to_frame(self) -> pl.DataFrame:
        """The trades as a frame exactly in the trade schema (``time`` as UTC ms datetimes),
        built from the columns without a row-wise pass."""
        if not self._buf:
            return empty_trades()
        cols = self.columns()
        series = [
            pl.Series(c, cols[c]).cast(TRADE_SCHEMA[c]) if c == "time" else pl.Series(c, cols[c])
            for c in TRADE_COLUMNS
        ]
        return pl.DataFrame(series)
