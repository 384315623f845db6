"""Decoding many small blocks at once, column by column across the blocks. Pure, no I/O.

The open hour of a symbol is up to ~120 small blocks (its closed minutes, then the 1-second
blocks of the current minute). :func:`tradelab.store.blocks.decode_into` costs ~50 µs of
Python and numpy call overhead per block whatever its size, so a 1 h window spent ~6 ms of
its ~10 ms there. Here every column of a run of blocks is decoded with a fixed number of numpy
calls: the blocks' payloads are joined as bytes, one array per integer type they were
narrowed to, and written into the output rows (widened on the way; per block only a length
check remains of Python work, ~1 µs per block and column), and one cumulative sum serves all
blocks — each block's first row holds
the step from the previous block's last value to its base (one ``np.add.reduceat`` gives the
blocks' sums). Integer arithmetic wraps modulo 2**64 and every true value fits int64, so the
result is exact for any values; prices and quantities then take the same float64 steps as
:func:`~tradelab.store.blocks.decode_into` (exact: see there).

Kinds a vectorised pass does not cover (a constant or float64 price/qty column in one of the
blocks, a non-zero constant ``last_id - first_id``) are written block by block afterwards.
The result is bit for bit that of ``decode_into`` on each block (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tradelab.exceptions import NotADatabaseError
from tradelab.store.blocks import Columns, scaled_to_float

__all__ = ["SMALL_ROWS", "decode_small_into"]

SMALL_ROWS = 8_192
"""Blocks up to this many rows are decoded together (larger ones gain nothing from it)."""

_SCALE = 100_000_000
_ZEROS = np.zeros(SMALL_ROWS // 8 + 1, dtype=np.uint8)
_ONES = np.full(SMALL_ROWS // 8 + 1, 0xFF, dtype=np.uint8)
_SIZES = {"<i1": 1, "<i2": 2, "<i4": 4, "<i8": 8}  # the integer types blocks are narrowed to


def _damaged(what: str) -> NotADatabaseError:
    return NotADatabaseError(f"a stored trade block is damaged: {what}")


def _joined(
    specs: list[list[Any]], ns: list[int], delta: bool, dest: np.ndarray, apart: tuple[str, ...]
) -> list[tuple[int, list[Any]]]:
    """``dest`` := every block's payload of one column, end to end: per block a zero row then
    its n-1 deltas (``delta``), or its n values. Blocks of the kinds ``apart`` get zeros and
    are returned as ``(block number, spec)`` for the caller to write afterwards.

    The payloads are joined as bytes (one ``b"".join`` and one ``np.frombuffer`` per integer
    type), not turned into an array each: per block that costs a length check, not ~6 numpy
    calls (a 1 h window has ~120 blocks and 7 columns). Blocks narrowed to different integer
    types (the type follows each block's values) are joined per type with zeros in the other
    types' rows, and the arrays added up.
    """
    later: list[tuple[int, list[Any]]] = []
    groups: dict[str, tuple[list[bytes], list[int]]] = {}  # type -> (pieces, rows they fill)
    lead = 1 if delta else 0
    at = 0
    for i, (spec, n) in enumerate(zip(specs, ns, strict=True)):
        if spec[0] in apart:
            later.append((i, spec))
        else:
            payload, code = spec[4], spec[1]
            size = _SIZES[code]
            if len(payload) != (n - lead) * size:
                raise _damaged(f"a column holds {len(payload) // size} values, not {n - lead}")
            pieces, filled = groups.setdefault(code, ([], [0]))
            zero_rows = at - filled[0] + lead  # other types' rows since, and the zero row
            if zero_rows:
                pieces.append(bytes(zero_rows * size))
            pieces.append(payload)
            filled[0] = at + n
        at += n
    if not groups:
        dest[:] = 0
    for k, (code, (pieces, filled)) in enumerate(groups.items()):
        values = np.frombuffer(b"".join(pieces), dtype=code)
        if k == 0:
            dest[: filled[0]] = values
            dest[filled[0] :] = 0
        else:
            dest[: filled[0]] += values
    return later


def _running_sums(dest: np.ndarray, starts: np.ndarray, bases: list[int]) -> None:
    """``dest`` (per block: a zero row, then its deltas) := per block, its base then the running
    sum of its deltas.

    One ``reduceat`` gives each block's sum of deltas; each block's first row becomes the step
    from the previous block's last value to its base, so one cumulative sum yields every
    block's values. Integer arithmetic wraps modulo 2**64 and every true value fits int64.
    """
    b = np.array(bases, dtype=np.int64)
    if len(b) > 1:
        sums = np.add.reduceat(dest, starts)  # the placeholders are 0: each block's deltas
        step = b.copy()
        step[1:] -= b[:-1] + sums[:-1]  # last value of block k-1 = its base + its deltas
        dest[starts] = step
    else:
        dest[0] = b[0]
    np.add.accumulate(dest, out=dest)


def _ints(
    specs: list[list[Any]], ns: list[int], starts: np.ndarray, nsa: np.ndarray, dest: np.ndarray
) -> None:
    """An integer column (kinds "d", "r", "c") of every block into ``dest``."""
    kinds = {spec[0] for spec in specs}
    if not kinds <= {"d", "r", "c"}:
        raise _damaged(f"kinds {sorted(kinds)!r} in one column")
    delta = "d" in kinds
    later = _joined(specs, ns, delta, dest, ("c", "r") if delta else ("c",))
    if delta:  # a "c" block of a delta column: its base, then zero steps
        _running_sums(dest, starts, [0 if spec[0] == "r" else spec[2] for spec in specs])
        _write_runs(later, "r", ns, starts, dest)  # blocks stored unnarrowed (appends)
        return
    for i, spec in later:
        if spec[2]:
            dest[starts[i] : starts[i] + ns[i]] = spec[2]


def _decimals(
    specs: list[list[Any]], ns: list[int], starts: np.ndarray, nsa: np.ndarray, dest: np.ndarray
) -> None:
    """A price/qty column (kinds "s" or "q", with "c" and "f" blocks written afterwards)."""
    kinds = {spec[0] for spec in specs}
    if not kinds <= {"s", "q", "c", "f"} or kinds >= {"s", "q"}:
        raise _damaged(f"kinds {sorted(kinds)!r} in one column")
    delta = "s" in kinds
    counts = dest.view(np.int64)
    later = _joined(specs, ns, delta, counts, ("c", "f"))
    plain = [spec[0] not in ("c", "f") for spec in specs]  # those written afterwards: 0 / 1
    if delta:
        bases = [spec[2] if p else 0 for spec, p in zip(specs, plain, strict=True)]
        _running_sums(counts, starts, bases)
    scales = [spec[3] if p else 1 for spec, p in zip(specs, plain, strict=True)]
    if len(set(scales)) == 1:
        scaled_to_float(counts, scales[0], dest)  # int64 -> float64 in place
    else:
        np.multiply(counts, np.repeat(np.array(scales, dtype=np.float64), nsa), out=dest)
        dest /= _SCALE
    for i, spec in later:
        if spec[0] == "c":
            dest[starts[i] : starts[i] + ns[i]] = spec[2]
    _write_runs(later, "f", ns, starts, dest)


def _write_runs(
    later: list[tuple[int, list[Any]]], kind: str, ns: list[int], starts: np.ndarray, dest: Any
) -> None:
    """Write the blocks of ``kind`` among ``later`` (values stored as they are: float64 "f",
    or integers "r" in a delta column — an append's blocks), each run of consecutive blocks
    of one type joined and written at once (the open minute's ~60 blocks: one run)."""
    run: list[bytes] = []
    first = last = -2
    code = ""

    def flush() -> None:
        if run:
            dest[starts[first] : starts[last] + ns[last]] = np.frombuffer(b"".join(run), code)

    for i, spec in later:
        if spec[0] != kind:
            continue
        size = 8 if spec[1] == "<f8" else _SIZES[spec[1]]
        if len(spec[4]) != ns[i] * size:
            raise _damaged(f"a column holds {len(spec[4]) // size} values, not {ns[i]}")
        if i != last + 1 or spec[1] != code:
            flush()
            run, first, code = [], i, spec[1]
        run.append(spec[4])
        last = i
    flush()


def _bools(
    specs: list[list[Any]], ns: list[int], starts: np.ndarray, nsa: np.ndarray, dest: np.ndarray
) -> None:
    """``buyer_is_maker`` (kinds "b" and "c"): every block's bits unpacked at once."""
    chunks: list[bytes] = []
    byte_offs = []
    at = 0
    for spec, n in zip(specs, ns, strict=True):
        width = (n + 7) // 8
        if spec[0] == "b":
            payload = spec[4]
            if len(payload) != width:
                raise NotADatabaseError("a stored trade block is damaged: buyer_is_maker bits")
            chunks.append(payload)
        elif spec[0] == "c":
            chunks.append((_ONES if spec[2] else _ZEROS)[:width].tobytes())
        else:
            raise NotADatabaseError(f"a stored trade block is damaged: kind {spec[0]!r}")
        byte_offs.append(at)
        at += width
    bits = np.unpackbits(np.frombuffer(b"".join(chunks), dtype=np.uint8))
    shift = np.repeat(np.array(byte_offs, dtype=np.int64) * 8 - starts, nsa)
    shift += np.arange(len(dest), dtype=np.int64)
    dest[:] = bits[shift].view(bool)


def decode_small_into(docs: Sequence[dict[str, Any]], out: Columns, offset: int) -> int:
    """Decode unpacked blocks (each of at most :data:`SMALL_ROWS` rows, in order) into rows
    ``offset:`` of ``out`` (the columns it holds), as :func:`decode_into` block after block
    would. Returns the number of rows."""
    ns = [d["n"] for d in docs]
    total = sum(ns)
    nsa = np.array(ns, dtype=np.int64)
    starts = np.zeros(len(ns), dtype=np.int64)
    np.cumsum(nsa[:-1], out=starts[1:])
    sl = slice(offset, offset + total)
    try:
        if max(ns) > SMALL_ROWS or min(ns) < 1:
            raise NotADatabaseError("a stored trade block has an impossible row count")
        for name, arr in out.items():
            dest = arr[sl]
            specs = [d["c"][name] for d in docs]
            if name in ("price", "qty"):
                _decimals(specs, ns, starts, nsa, dest)
            elif name == "buyer_is_maker":
                _bools(specs, ns, starts, nsa, dest)
            elif name == "last_id":
                _ints(specs, ns, starts, nsa, dest)  # stored as last_id - first_id
                first = out["first_id"][sl] if "first_id" in out else np.empty(total, np.int64)
                _ints([d["c"]["first_id"] for d in docs], ns, starts, nsa, first)
                dest += first
            elif name != "first_id" or "last_id" not in out:
                _ints(specs, ns, starts, nsa, dest)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise NotADatabaseError(f"a stored trade block is damaged: {exc!r}") from None
    return total
