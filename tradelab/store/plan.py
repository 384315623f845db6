"""Change sets of the trade store's writer: which blocks to put and delete, as one WriteBatch.

Every change to a symbol — an append, a roll-up merge, a retention rewrite — is first planned
in memory as a ``_Plan`` (blocks to put, keys to delete, the decoded blocks it read), then
written with the symbol's new counters in ONE RocksDB WriteBatch (:func:`plan_to_batch`), so a
reader never sees half of it and a failed write leaves the store as it was. The writer
(:class:`tradelab.store.TradeStore`) decides *when*; this module decides *what*.
See docs/storage-layout.md, "Blocks" and "Exactly once".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np
import rocksdict as rd

from tradelab.exceptions import StorageError
from tradelab.store.blocks import (
    BlockHeader,
    Columns,
    concat_columns,
    decode_block,
    encode_block,
    sort_dedupe,
    take,
)
from tradelab.store.keys import HOUR_MS, _bkey, _ikey, _skey, _SymbolState

if TYPE_CHECKING:
    from tradelab.store.tradestore import TradeStore

__all__ = ["plan_append", "plan_to_batch"]


class _BlockGone(StorageError):
    """A block named by the index was deleted meanwhile (a concurrent retention)."""


class _Plan:
    """An in-memory change set for one symbol: blocks to put and keys to delete."""

    def __init__(self, store: TradeStore, sym: str, st: _SymbolState) -> None:
        self.store, self.sym, self.st = store, sym, st
        self.puts: dict[int, tuple[bytes, BlockHeader]] = {}
        self.deletes: set[int] = set()
        self.loaded: dict[int, Columns] = {}

    def cols(self, key: int) -> Columns:
        """The trades of block ``key``, read once (through the store's current database)."""
        if key not in self.loaded:
            raw = self.store._db.get(_bkey(self.sym, key))
            if raw is None:
                raise _BlockGone(f"block {key} of {self.sym} is in the index but missing")
            self.loaded[key] = decode_block(raw)[1]
        return self.loaded[key]

    def merge(self, keys: list[int], extra: Columns | None) -> None:
        """Replace blocks ``keys`` (plus ``extra`` trades) by one block."""
        parts = [self.cols(k) for k in keys]
        if extra is not None:
            parts.append(extra)
        merged = sort_dedupe(concat_columns(parts))
        if not len(merged["agg_id"]):
            self.deletes.update(keys)
            return
        t_min = int(merged["time"].min())
        if t_min not in keys and (
            t_min in self.puts or (t_min in self.st.index and t_min not in self.deletes)
        ):
            # another block already starts at that ms: fold it in rather than overwrite it
            self.merge([*keys, t_min], extra)
            return
        value = encode_block(merged)
        hdr = BlockHeader(
            len(merged["agg_id"]),
            t_min,
            int(merged["time"].max()),
            int(merged["agg_id"][0]),
            int(merged["agg_id"][-1]),
        )
        for k in keys:
            if k != t_min:
                self.deletes.add(k)
                self.puts.pop(k, None)
        self.deletes.discard(t_min)
        self.puts[t_min] = (value, hdr)
        self.loaded[t_min] = merged


def plan_append(store: TradeStore, sym: str, st: _SymbolState, cols: Columns) -> _Plan:
    """One new block per clock hour the trades touch (merged into a block of the same key).

    Roll-ups (closed minutes -> minute blocks, closed hours -> one block) are left to the
    background worker (:meth:`TradeStore.roll_up`) so an append stays ~1 ms whatever the time.
    """
    plan = _Plan(store, sym, st)
    t = cols["time"]
    hours = t - t % HOUR_MS
    first_hour = int(hours[0])
    groups = (
        [cols]
        if bool((hours == first_hour).all())
        else [take(cols, hours == h) for h in np.unique(hours)]
    )
    for part in groups:
        key = int(part["time"].min())
        if key in st.index or key in plan.puts:
            plan.merge([key], part)
            continue
        plan.puts[key] = (
            encode_block(part),
            BlockHeader(
                len(part["agg_id"]),
                key,
                int(part["time"].max()),
                int(part["agg_id"][0]),
                int(part["agg_id"][-1]),
            ),
        )
        plan.loaded[key] = part
    return plan


def plan_to_batch(
    batch: rd.WriteBatch,
    sym: str,
    st: _SymbolState,
    plan: _Plan,
    meta: dict[str, Any],
    dropped: Iterable[int] = (),
) -> dict[int, tuple[int, int, int, int, int, int]]:
    """Add ``plan`` and the counters ``meta`` (updated here, in place) to ``batch``.

    Returns the symbol's block index as it will be once the batch is written; ``st`` itself is
    not touched, so the caller updates its in-memory state only after the write succeeded.
    ``dropped``: block keys the caller already removed in ``batch`` with a range tombstone.
    """
    index = dict(st.index)
    for key in dropped:
        entry = index.pop(key)
        meta["bytes"] -= entry[5]
    for key in plan.deletes:
        if key in plan.puts:
            continue
        batch.delete(_bkey(sym, key))
        batch.delete(_ikey(sym, key))
        stale = index.pop(key, None)
        if stale is not None:
            meta["bytes"] -= stale[5]
    for key, (value, h) in plan.puts.items():
        entry = (h.n, h.t_min, h.t_max, h.id_min, h.id_max, len(value))
        batch.put(_bkey(sym, key), value)
        batch.put(_ikey(sym, key), msgpack.packb(list(entry)))
        old = index.get(key)
        if old is not None:
            meta["bytes"] -= old[5]
        index[key] = entry
        meta["bytes"] += len(value)
    if not index:
        # last_time/last_agg_id stay: they tell the collector where it left off
        meta.update(count=0, first_time=None, first_agg_id=None, bytes=0)
    elif plan.deletes or dropped:
        meta["first_time"] = min(e[1] for e in index.values())
        meta["first_agg_id"] = min(e[3] for e in index.values())
    batch.put(_skey(sym), msgpack.packb(meta))
    return index
