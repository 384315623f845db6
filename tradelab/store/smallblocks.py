"""Decoding many small blocks at once, column by column across the blocks. Pure, no I/O.

The open hour of a symbol is up to ~120 small blocks (its closed minutes, then the 1-second
blocks of the current minute). :func:`tradelab.store.blocks.decode_into` costs ~50 µs of
Python and numpy call overhead per block whatever its size, so a 1 h window spent ~6 ms of
its ~10 ms there. Here every column of a run of blocks is decoded with a fixed number of numpy
calls: the blocks' payloads are concatenated straight into the output rows (narrow integers
widened on the way), and one cumulative sum serves all blocks — each block's first row holds
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
_ZEROS = np.zeros(SMALL_ROWS, dtype=np.int8)
_ONES = np.full(SMALL_ROWS // 8 + 1, 0xFF, dtype=np.uint8)


def _check(a: np.ndarray, want: int) -> np.ndarray:
    if len(a) != want:
        raise NotADatabaseError(
            f"a stored trade block is damaged: a column holds {len(a)} values, not {want}"
        )
    return a


def _segmented_sum(
    dest: np.ndarray, parts: list[np.ndarray], starts: np.ndarray, bases: list[int], ns: np.ndarray
) -> None:
    """``dest`` := per block, ``base`` then its running sum of deltas (``parts`` holds, per
    block, a zero placeholder row and the deltas, already narrow).

    One pass writes the deltas, one sums each block's (``reduceat``), then each block's first
    row becomes the step from the previous block's last value to its base, so a single
    cumulative sum yields every block's values.
    """
    np.concatenate(parts, out=dest, casting="same_kind")
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
    parts: list[np.ndarray] = []
    later: list[tuple[int, int, int]] = []
    delta = any(s[0] == "d" for s in specs)
    bases = []
    for spec, n, s in zip(specs, ns, starts.tolist(), strict=True):
        kind, code, base, _scale, payload = spec
        if delta:
            parts.append(_ZEROS[:1])
            bases.append(int(base))
            if kind == "d":
                parts.append(_check(np.frombuffer(payload, dtype=code), n - 1))
            elif kind == "c":
                parts.append(_ZEROS[: n - 1])
            else:
                raise NotADatabaseError(f"a stored trade block is damaged: kind {kind!r}")
        elif kind == "r":
            parts.append(_check(np.frombuffer(payload, dtype=code), n))
        elif kind == "c":
            parts.append(_ZEROS[:n])
            if base:
                later.append((s, n, int(base)))
        else:
            raise NotADatabaseError(f"a stored trade block is damaged: kind {kind!r}")
    if delta:
        _segmented_sum(dest, parts, starts, bases, nsa)
    else:
        np.concatenate(parts, out=dest, casting="same_kind")
        for s, n, base in later:
            dest[s : s + n] = base


def _decimals(
    specs: list[list[Any]], ns: list[int], starts: np.ndarray, nsa: np.ndarray, dest: np.ndarray
) -> None:
    """A price/qty column (kinds "s" or "q", with "c" and "f" blocks written afterwards)."""
    counts = dest.view(np.int64)
    parts: list[np.ndarray] = []
    later: list[tuple[int, int, list[Any]]] = []
    delta = any(s[0] == "s" for s in specs)
    bases, scales = [], []
    for spec, n, s in zip(specs, ns, starts.tolist(), strict=True):
        kind, code, base, scale, payload = spec
        if kind in ("c", "f"):
            later.append((s, n, spec))
            payload, code, base, scale = None, "", 0, 1
        elif kind != ("s" if delta else "q"):
            raise NotADatabaseError(f"a stored trade block is damaged: kind {kind!r}")
        scales.append(scale)
        if delta:
            parts.append(_ZEROS[:1])
            bases.append(int(base))
            parts.append(
                _ZEROS[: n - 1]
                if payload is None
                else _check(np.frombuffer(payload, dtype=code), n - 1)
            )
        else:
            parts.append(
                _ZEROS[:n] if payload is None else _check(np.frombuffer(payload, dtype=code), n)
            )
    if delta:
        _segmented_sum(counts, parts, starts, bases, nsa)
    else:
        np.concatenate(parts, out=counts, casting="same_kind")
    if len(set(scales)) == 1:
        scaled_to_float(counts, scales[0], dest)  # int64 -> float64 in place
    else:
        np.multiply(counts, np.repeat(np.array(scales, dtype=np.float64), nsa), out=dest)
        dest /= _SCALE
    for s, n, spec in later:
        if spec[0] == "c":
            dest[s : s + n] = spec[2]
        else:
            dest[s : s + n] = _check(np.frombuffer(spec[4], dtype="<f8"), n)


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
            chunks.append((_ONES if spec[2] else _ZEROS.view(np.uint8))[:width].tobytes())
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
