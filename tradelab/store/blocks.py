"""The block codec: a run of trades as column arrays <-> one MessagePack value. Pure, no I/O.

A *block* holds the trades of one symbol that fall inside one clock hour (a block never crosses
an hour boundary; the store relies on that to find blocks by key). Its value is a MessagePack
map::

    {"v": 1, "n": rows, "t0": min time, "t1": max time, "i0": min agg_id, "i1": max agg_id,
     "c": {column: [kind, dtype, base, scale, payload]}}

Rows are sorted by ``agg_id``. Each column is packed little-endian bytes (decoded with
``np.frombuffer``, no Python object per trade), in the narrowest integer dtype that fits:

- ``agg_id``, ``time``: kind ``"d"`` — first value in ``base``, then the n-1 deltas.
- ``first_id``: deltas too; ``last_id`` is stored as ``last_id - first_id`` (kind ``"r"``, raw).
- ``price``: counts of 1e-8 divided by their greatest common divisor ``scale`` (the tick),
  delta-encoded; ``qty``: the same counts, not delta-encoded (kind ``"q"``). Binance prints
  8 decimals, so ``count / 1e8`` reproduces the exact float64 that parsing the decimal string
  gives. A column whose values do not survive that round trip bit for bit (more than
  8 decimals, or beyond 2**53 / 1e8) is stored as raw float64 (kind ``"f"``): exactness first.
- ``buyer_is_maker``: ``np.packbits`` (kind ``"b"``).
- A column whose values are all equal is kind ``"c"`` (the value in ``base``, no payload).

A small append's block may keep its columns as they are (:func:`encode_raw_block`: kinds "r",
"f", "b" only), cheap to write; the roll-up re-encodes it as above within a minute.

RocksDB then compresses the value with zstd; an hour of BTCUSDT (~86k trades) comes to about
9 bytes per trade on disk. See docs/storage-layout.md for the layout and the measurements.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import polars as pl

from tradelab.exceptions import NotADatabaseError
from tradelab.schema import TRADE_COLUMNS, TRADE_SCHEMA

__all__ = [
    "BLOCK_VERSION",
    "DTYPES",
    "INT_COLUMNS",
    "BlockHeader",
    "Columns",
    "block_header",
    "columns_to_frame",
    "concat_columns",
    "decode_block",
    "decode_columns",
    "decode_into",
    "decode_rows_into",
    "empty_columns",
    "encode_block",
    "encode_raw_block",
    "frame_to_columns",
    "scaled_to_float",
    "sort_dedupe",
    "take",
]

BLOCK_VERSION = 1
Columns = dict[str, np.ndarray]
"""Column name -> numpy array (time as int64 unix ms); all of the trade columns, or a
projection of them (:meth:`TradeStore.trades` with ``columns``)."""
INT_COLUMNS = ("agg_id", "first_id", "last_id", "time")
DTYPES: dict[str, np.dtype[Any]] = {  # numpy dtype of each column
    "agg_id": np.dtype(np.int64),
    "price": np.dtype(np.float64),
    "qty": np.dtype(np.float64),
    "first_id": np.dtype(np.int64),
    "last_id": np.dtype(np.int64),
    "time": np.dtype(np.int64),
    "buyer_is_maker": np.dtype(np.bool_),
}
_SCALE = 100_000_000  # counts of 1e-8: Binance's 8 decimals
_MAX_EXACT = float(2**53)
_INT_KINDS = ((np.int8, "<i1"), (np.int16, "<i2"), (np.int32, "<i4"), (np.int64, "<i8"))


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """What a block holds, readable without decoding its columns.

    ``inner``: the missing runs of ids inside the block, as the index keeps them
    (:func:`tradelab.store.coverage.inner_runs`); the block value itself does not hold them.
    """

    n: int
    t_min: int
    t_max: int
    id_min: int
    id_max: int
    inner: tuple[int, ...] | None = ()


def empty_columns() -> Columns:
    """Columns with no rows."""
    return {c: np.empty(0, dtype=DTYPES[c]) for c in TRADE_COLUMNS}


def frame_to_columns(frame: pl.DataFrame) -> Columns:
    """Numpy arrays of a frame already in the trade schema (time as int64 unix ms)."""
    out: Columns = {}
    for c in TRADE_COLUMNS:
        s = frame.get_column(c)
        if c == "time":
            s = s.dt.cast_time_unit("ms").to_physical()
        out[c] = np.ascontiguousarray(s.to_numpy(), dtype=DTYPES[c])
    return out


def columns_to_frame(cols: Columns) -> pl.DataFrame:
    """A Polars frame of the trade schema built straight from the arrays, in their order (all
    the trade columns or some): numeric columns and ``time`` are not copied."""
    series = []
    for c, a in cols.items():
        if c == "time":
            series.append(pl.Series(c, a, dtype=pl.Int64).cast(TRADE_SCHEMA[c]))
        else:
            series.append(pl.Series(c, a, dtype=TRADE_SCHEMA[c]))
    return pl.DataFrame(series)


def concat_columns(parts: Sequence[Columns]) -> Columns:
    """Concatenate column sets (in the order given)."""
    parts = [p for p in parts if len(p["agg_id"])]
    if not parts:
        return empty_columns()
    if len(parts) == 1:
        return parts[0]
    return {c: np.concatenate([p[c] for p in parts]) for c in TRADE_COLUMNS}


def take(cols: Columns, index: np.ndarray) -> Columns:
    """Rows selected by a boolean mask or an integer index array."""
    return {c: a[index] for c, a in cols.items()}


def sort_dedupe(cols: Columns) -> Columns:
    """Rows sorted by ``agg_id`` with repeated ids dropped (the first occurrence wins)."""
    ids = cols["agg_id"]
    if len(ids) < 2:
        return cols
    if len(ids) <= 64:  # a 1-second batch: a Python comparison costs less than numpy's
        listed = ids.tolist()
        if all(map(operator.lt, listed, listed[1:])):
            return cols
    elif bool(np.logical_and.reduce(ids[1:] > ids[:-1])):  # the usual case: already in order
        return cols
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    keep = np.empty(len(ids), dtype=bool)
    keep[0] = True
    np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=keep[1:])
    return take(cols, order[keep])


# --- encoding -----------------------------------------------------------------------------------


_BOUNDS = tuple((int(np.iinfo(t).min), int(np.iinfo(t).max), code) for t, code in _INT_KINDS)


def _narrow_in(values: np.ndarray, lo: int, hi: int) -> tuple[str, bytes]:
    """``values`` (whose min and max are ``lo``, ``hi``) in the narrowest integer type."""
    for mn, mx, code in _BOUNDS:
        if mn <= lo and hi <= mx:
            return code, values.astype(code, copy=False).tobytes()
    raise AssertionError("int64 values always fit int64")  # pragma: no cover


def _narrow(values: np.ndarray) -> tuple[str, bytes]:
    return _narrow_in(values, int(values.min()), int(values.max()))


def _enc_int(values: np.ndarray, kind: str) -> list[Any]:
    """kind "d": base + deltas; "r": raw values; both narrowed."""
    base = int(values[0])
    v = values[1:] - values[:-1] if kind == "d" else values  # np.diff costs 3x on small blocks
    if not len(v):
        return ["c", "", base, 1, b""]
    lo, hi = int(v.min()), int(v.max())
    if lo == hi and (kind != "d" or lo == 0):  # all values equal
        return ["c", "", base, 1, b""]
    code, payload = _narrow_in(v, lo, hi)
    return [kind, code, base if kind == "d" else 0, 1, payload]


def _dec_scaled(counts: np.ndarray, scale: int) -> np.ndarray:
    return (counts * scale).astype(np.float64) / _SCALE


def _enc_decimal(values: np.ndarray, *, delta: bool) -> list[Any]:
    """Exact 1e-8 counts (GCD-divided) if they reproduce ``values`` bit for bit, else float64.

    "Bit for bit" literally: -0.0 is not 0.0 here (a column holding both is stored as float64).
    """
    bits = values.view(np.int64)
    scaled = values * _SCALE
    lo, hi = float(scaled.min()), float(scaled.max())  # NaN fails both comparisons below
    first = float(values[0])
    if lo == hi and first == first and bool((bits == bits[0]).all()):
        return ["c", "", first, 1, b""]
    if lo > -_MAX_EXACT and hi < _MAX_EXACT:
        counts = np.rint(scaled).astype(np.int64)
        scale = int(np.gcd.reduce(counts)) or 1
        if scale > 1:
            counts //= scale
        if bool((_dec_scaled(counts, scale).view(np.int64) == bits).all()):
            if delta:
                d = counts[1:] - counts[:-1]
                code, payload = _narrow(d) if len(d) else ("<i1", b"")
                return ["s", code, int(counts[0]), scale, payload]
            code, payload = _narrow(counts)
            return ["q", code, 0, scale, payload]
    return ["f", "<f8", 0, 1, values.astype("<f8", copy=False).tobytes()]


def encode_block(cols: Mapping[str, np.ndarray]) -> bytes:
    """Encode trades (sorted by agg_id, at least one row) into one block value."""
    ids = cols["agg_id"]
    n = len(ids)
    if n == 0:
        raise ValueError("a block holds at least one trade")
    times = cols["time"]
    first = cols["first_id"]
    c: dict[str, list[Any]] = {
        "agg_id": _enc_int(ids, "d"),
        "price": _enc_decimal(cols["price"], delta=True),
        "qty": _enc_decimal(cols["qty"], delta=False),
        "first_id": _enc_int(first, "d"),
        "last_id": _enc_int(cols["last_id"] - first, "r"),
        "time": _enc_int(times, "d"),
    }
    bim = cols["buyer_is_maker"]
    c["buyer_is_maker"] = (
        ["c", "", bool(bim[0]), 1, b""]
        if bool((bim == bim[0]).all())
        else ["b", "", 0, 1, np.packbits(bim).tobytes()]
    )
    doc = {
        "v": BLOCK_VERSION,
        "n": n,
        "t0": int(times.min()),
        "t1": int(times.max()),
        "i0": int(ids[0]),
        "i1": int(ids[-1]),
        "c": c,
    }
    return msgpack.packb(doc, use_bin_type=True)


def encode_raw_block(
    cols: Mapping[str, np.ndarray], times_of: tuple[int, int] | None = None
) -> bytes:
    """Encode trades (sorted by agg_id, at least one row) into a block of the same format
    whose columns are stored as they are: integers as int64 (kind "r", ``last_id`` still
    relative to ``first_id``), prices and quantities as float64 ("f"), sides packed ("b").

    Why: the collector appends ~24 trades a second, and narrowing them (deltas, 1e-8 counts,
    their tick, the narrowest type; ~50 numpy calls) was ~70 µs of a ~250 µs append, to
    save ~1 kB that lives a minute: the roll-up merges the minute's blocks and stores the
    merge with :func:`encode_block`. Every decoder reads these kinds (they are version-1
    kinds, exact for any values); ~49 bytes a trade instead of ~10. ``times_of``: the first
    and last time, if the caller has them.
    """
    ids = cols["agg_id"]
    n = len(ids)
    if n == 0:
        raise ValueError("a block holds at least one trade")
    times, first = cols["time"], cols["first_id"]

    def ints(a: np.ndarray) -> list[Any]:
        return ["r", "<i8", 0, 1, a.astype("<i8", copy=False).tobytes()]

    def floats(a: np.ndarray) -> list[Any]:
        return ["f", "<f8", 0, 1, a.astype("<f8", copy=False).tobytes()]

    c = {
        "agg_id": ints(ids),
        "price": floats(cols["price"]),
        "qty": floats(cols["qty"]),
        "first_id": ints(first),
        "last_id": ints(cols["last_id"] - first),
        "time": ints(times),
        "buyer_is_maker": ["b", "", 0, 1, np.packbits(cols["buyer_is_maker"]).tobytes()],
    }
    t0, t1 = times_of if times_of is not None else (int(times.min()), int(times.max()))
    doc = {
        "v": BLOCK_VERSION,
        "n": n,
        "t0": t0,
        "t1": t1,
        "i0": int(ids[0]),
        "i1": int(ids[-1]),
        "c": c,
    }
    return msgpack.packb(doc, use_bin_type=True)


# --- decoding -----------------------------------------------------------------------------------


def _unpack(data: bytes) -> dict[str, Any]:
    try:
        doc = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        raise NotADatabaseError(f"a stored trade block is not MessagePack: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != BLOCK_VERSION or "c" not in doc:
        raise NotADatabaseError(
            f"a stored trade block has an unknown format (version {doc.get('v')!r} "
            f"if a map); this tradelab reads block version {BLOCK_VERSION}"
            if isinstance(doc, dict)
            else "a stored trade block is not a tradelab block"
        )
    return doc


def block_header(data: bytes) -> BlockHeader:
    """The header of an encoded block."""
    doc = _unpack(data)
    return BlockHeader(doc["n"], doc["t0"], doc["t1"], doc["i0"], doc["i1"])


def _dec_int(spec: list[Any], n: int) -> np.ndarray:
    kind, code, base, _scale, payload = spec
    if kind == "c":
        return np.full(n, base, dtype=np.int64)
    raw = np.frombuffer(payload, dtype=code).astype(np.int64)
    if kind == "d":
        out = np.empty(n, dtype=np.int64)
        out[0] = base
        np.cumsum(raw, out=out[1:])
        out[1:] += base
        return out
    return raw


def _dec_decimal(spec: list[Any], n: int) -> np.ndarray:
    kind, code, base, scale, payload = spec
    if kind == "c":
        return np.full(n, base, dtype=np.float64)
    if kind == "f":
        return np.frombuffer(payload, dtype="<f8").astype(np.float64)
    raw = np.frombuffer(payload, dtype=code).astype(np.int64)
    if kind == "s":
        counts = np.empty(n, dtype=np.int64)
        counts[0] = base
        np.cumsum(raw, out=counts[1:])
        counts[1:] += base
    else:
        counts = raw
    return _dec_scaled(counts, scale)


def decode_block(data: bytes | dict[str, Any]) -> tuple[BlockHeader, Columns]:
    """Header and column arrays of an encoded block (time as int64 unix ms)."""
    doc = _unpack(data) if isinstance(data, bytes | bytearray | memoryview) else data
    n = doc["n"]
    c = doc["c"]
    try:
        first = _dec_int(c["first_id"], n)
        bim_spec = c["buyer_is_maker"]
        if bim_spec[0] == "c":
            bim = np.full(n, bool(bim_spec[2]), dtype=bool)
        else:
            bim = np.unpackbits(np.frombuffer(bim_spec[4], dtype=np.uint8), count=n).astype(bool)
        cols: Columns = {
            "agg_id": _dec_int(c["agg_id"], n),
            "price": _dec_decimal(c["price"], n),
            "qty": _dec_decimal(c["qty"], n),
            "first_id": first,
            "last_id": _dec_int(c["last_id"], n) + first,
            "time": _dec_int(c["time"], n),
            "buyer_is_maker": bim,
        }
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise NotADatabaseError(f"a stored trade block is damaged: {exc!r}") from None
    return BlockHeader(n, doc["t0"], doc["t1"], doc["i0"], doc["i1"]), cols


def _dec_int_into(spec: list[Any], out: np.ndarray) -> None:
    kind, code, base, _scale, payload = spec
    if kind == "c":
        out.fill(base)
        return
    raw = np.frombuffer(payload, dtype=code)
    if kind == "d":
        out[0] = base
        np.cumsum(raw, dtype=np.int64, out=out[1:])
        if base:
            out[1:] += base
    else:
        out[:] = raw


def scaled_to_float(counts: np.ndarray, scale: int, out: np.ndarray) -> None:
    """``out[:] = float64(counts * scale) / 1e8`` bit for bit, in one pass when it can.

    The encoder stores counts only when ``|count * scale| < 2**53``, so ``count * scale`` is an
    integer float64 holds exactly, and the result is that integer over 1e8, correctly rounded.
    When ``scale`` divides 1e8 (a tick or lot of 10^-k: always on Binance), the same rational
    is ``count / (1e8 / scale)`` with both terms exact, so one correctly rounded division gives
    the same double; otherwise the product first (exact), then the division. ``counts`` may be
    ``out``'s own memory viewed as int64 (elementwise, in place).
    """
    if _SCALE % scale == 0:
        np.divide(counts, float(_SCALE // scale), out=out)
    else:
        np.multiply(counts, float(scale), out=out)
        out /= _SCALE


def _dec_decimal_into(spec: list[Any], out: np.ndarray) -> None:
    """Decode a price/qty column into float64 ``out``, with the bits of :func:`_dec_scaled`.

    Scaled deltas are summed as int64 in ``out``'s own memory (an integer cumsum is ~4x faster
    than a float one, and no temporary is allocated), then converted in place
    (:func:`scaled_to_float`: exact).
    """
    kind, code, base, scale, payload = spec
    if kind == "c":
        out.fill(base)
        return
    if kind == "f":
        out[:] = np.frombuffer(payload, dtype="<f8")
        return
    if kind == "s":
        counts = out.view(np.int64)
        _dec_int_into(["d", code, base, 1, payload], counts)
        scaled_to_float(counts, scale, out)
    else:
        scaled_to_float(np.frombuffer(payload, dtype=code), scale, out)


def _dec_bool_into(spec: list[Any], out: np.ndarray) -> None:
    if spec[0] == "c":
        out.fill(bool(spec[2]))
    else:
        out[:] = np.unpackbits(np.frombuffer(spec[4], dtype=np.uint8), count=len(out)).view(bool)


def decode_into(doc: dict[str, Any], out: Columns, offset: int) -> int:
    """Decode an unpacked block (``msgpack.unpackb`` of its value) straight into rows
    ``offset:offset+n`` of preallocated arrays — no intermediate arrays, no concatenation.

    Only the columns ``out`` holds are decoded (any subset of the trade columns: a projection
    decodes what it returns, nothing else). Returns ``n``.
    """
    n = doc["n"]
    c = doc["c"]
    sl = slice(offset, offset + n)
    try:
        for name, arr in out.items():
            dest = arr[sl]
            if name in ("price", "qty"):
                _dec_decimal_into(c[name], dest)
            elif name == "buyer_is_maker":
                _dec_bool_into(c[name], dest)
            elif name == "last_id":
                _dec_int_into(c["last_id"], dest)  # stored as last_id - first_id
                first = out["first_id"][sl] if "first_id" in out else np.empty(n, dtype=np.int64)
                _dec_int_into(c["first_id"], first)
                dest += first
            elif name != "first_id" or "last_id" not in out:
                _dec_int_into(c[name], dest)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise NotADatabaseError(f"a stored trade block is damaged: {exc!r}") from None
    return n


def _wrap64(v: int) -> int:
    """``v`` modulo 2**64 as a signed int64 value (what numpy's int64 sums give)."""
    return (v + 2**63) % 2**64 - 2**63


def _int_rows(spec: list[Any], out: np.ndarray, start: int, stop: int) -> None:
    """Rows ``start:stop`` of an integer column into ``out`` (kinds "c", "d", "r").

    A delta column's value at ``start`` is its base plus the sum of the deltas before it (one
    reduction, no running sum over the rows skipped); the rows after it are a running sum of
    their own deltas. int64 arithmetic wraps as the encoder's did, so every value is exact.
    """
    kind, code, base, _scale, payload = spec
    if kind == "c":
        out.fill(base)
        return
    raw = np.frombuffer(payload, dtype=code)
    if kind == "d":
        first = base if start == 0 else _wrap64(base + int(raw[:start].sum(dtype=np.int64)))
        out[0] = first
        np.cumsum(raw[start : stop - 1], dtype=np.int64, out=out[1:])
        if first:
            out[1:] += first
    else:
        out[:] = raw[start:stop]


def _decimal_rows(spec: list[Any], out: np.ndarray, start: int, stop: int) -> None:
    """Rows ``start:stop`` of a price/qty column, with the bits of :func:`_dec_decimal_into`."""
    kind, code, base, scale, payload = spec
    if kind == "c":
        out.fill(base)
    elif kind == "f":
        out[:] = np.frombuffer(payload, dtype="<f8")[start:stop]
    elif kind == "s":
        counts = out.view(np.int64)
        _int_rows(["d", code, base, 1, payload], counts, start, stop)
        scaled_to_float(counts, scale, out)
    else:
        scaled_to_float(np.frombuffer(payload, dtype=code)[start:stop], scale, out)


def _bool_rows(spec: list[Any], out: np.ndarray, start: int) -> None:
    if spec[0] == "c":
        out.fill(bool(spec[2]))
        return
    skip = start % 8  # unpack only the bytes that hold rows start:stop
    packed = np.frombuffer(spec[4], dtype=np.uint8)[start // 8 :]
    out[:] = np.unpackbits(packed, count=skip + len(out))[skip:].view(bool)


def decode_rows_into(doc: dict[str, Any], out: Columns, offset: int, start: int, stop: int) -> int:
    """Decode only rows ``start:stop`` of an unpacked block into rows ``offset:`` of ``out``
    (the columns it holds), bit for bit what :func:`decode_into` gives for those rows.

    Why: a window that begins or ends inside an hour block needs a few minutes of its ~86 k
    rows; decoding them all, then cutting, was most of a 1 h read. Here the rows before
    ``start`` cost one sum per delta column and the rows after ``stop`` nothing. Returns the
    number of rows (``stop - start``).
    """
    n = doc["n"]
    if not 0 <= start < stop <= n:
        raise ValueError(f"rows {start}:{stop} are not inside a block of {n} rows")
    c = doc["c"]
    sl = slice(offset, offset + stop - start)
    try:
        for name, arr in out.items():
            dest = arr[sl]
            if name in ("price", "qty"):
                _decimal_rows(c[name], dest, start, stop)
            elif name == "buyer_is_maker":
                _bool_rows(c[name], dest, start)
            elif name == "last_id":
                _int_rows(c["last_id"], dest, start, stop)  # stored as last_id - first_id
                first = out["first_id"][sl] if "first_id" in out else np.empty_like(dest)
                _int_rows(c["first_id"], first, start, stop)
                dest += first
            elif name != "first_id" or "last_id" not in out:
                _int_rows(c[name], dest, start, stop)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise NotADatabaseError(f"a stored trade block is damaged: {exc!r}") from None
    return stop - start


def decode_columns(doc: dict[str, Any], names: Sequence[str]) -> Columns:
    """The columns ``names`` of an unpacked block, in fresh arrays."""
    n = doc["n"]
    out = {c: np.empty(n, dtype=DTYPES[c]) for c in names}
    decode_into(doc, out, 0)
    return out
