"""Trades the collector does not take on the stream's word, and REST items that keep coming back
bad — pure bookkeeping for the :class:`~tradelab.collector.backfill.Backfiller`.

* :class:`Suspects` — well-formed streamed trades that are implausible
  (:class:`~tradelab.binance.protocol.Plausibility`: an agg id far beyond the last one, a time
  decades away). They are skipped on the stream and wait here for REST's word: a trade is
  stored only if REST has that id with the same values (:func:`confirms`). At most
  ``per_symbol`` wait per symbol; more are dropped — harmless, since once one is confirmed the
  trades around it are an ordinary gap that REST repairs, and if none is, they never existed.
* :class:`BadItems` — agg ids REST served as malformed items, with how often: after
  ``retries`` attempts an id is given up as unrepairable, so one bad item never blocks the
  repairs behind it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tradelab.binance.protocol import Trade

__all__ = ["BadItems", "Suspects", "confirms"]


def confirms(trade: Trade, page: Sequence[Trade]) -> bool:
    """True if ``page`` (REST's answer to ``fromId=trade.agg_id&limit=1``) vouches for
    ``trade``: it starts with the same agg id with the same price, quantity, trade ids, time
    and side."""
    return bool(page) and page[0][1:] == trade[1:]


class Suspects:
    """Implausible streamed trades waiting for REST, per symbol, lowest id first."""

    def __init__(self, symbols: Iterable[str], *, per_symbol: int = 16) -> None:
        self.per_symbol = per_symbol
        self._pending: dict[str, dict[int, tuple[Trade, str]]] = {s: {} for s in symbols}
        self.dropped = 0
        """Suspects not queued because ``per_symbol`` were already waiting."""

    def add(self, trade: Trade, reason: str) -> bool:
        """Queue ``trade`` (implausible for ``reason``); False if it was not queued (already
        waiting, or the symbol's queue is full)."""
        pending = self._pending[trade.symbol]
        if trade.agg_id in pending:
            return False
        if len(pending) >= self.per_symbol:
            self.dropped += 1
            return False
        pending[trade.agg_id] = (trade, reason)
        return True

    def next(self) -> tuple[Trade, str] | None:
        """The suspect to verify next (the lowest id of the first symbol with any), or None."""
        for pending in self._pending.values():
            if pending:
                return pending[min(pending)]
        return None

    def remove(self, trade: Trade) -> None:
        """``trade`` is settled (confirmed, refuted or moot)."""
        self._pending[trade.symbol].pop(trade.agg_id, None)

    def of(self, symbol: str) -> list[tuple[Trade, str]]:
        """The suspects of ``symbol`` still waiting, lowest id first."""
        pending = self._pending[symbol]
        return [pending[a] for a in sorted(pending)]

    def __len__(self) -> int:
        return sum(len(p) for p in self._pending.values())

    def clear(self) -> None:
        """Forget every suspect (a new run)."""
        for pending in self._pending.values():
            pending.clear()


class BadItems:
    """How often REST served each agg id as a malformed item; ``retries`` tries per id."""

    def __init__(self, retries: int) -> None:
        self.retries = retries
        self._seen: dict[tuple[str, int], int] = {}

    def fail(self, symbol: str, ids: Iterable[int]) -> list[int]:
        """Count one more malformed answer for each of ``ids``; the ids that have now used up
        their retries (give them up as unrepairable), ascending."""
        out = []
        for a in ids:
            n = self._seen.get((symbol, a), 0) + 1
            self._seen[(symbol, a)] = n
            if n > self.retries:
                out.append(a)
        return sorted(out)

    def tries(self, symbol: str, agg_id: int) -> int:
        """Malformed answers seen so far for ``agg_id`` of ``symbol``."""
        return self._seen.get((symbol, agg_id), 0)

    def forget(self, symbol: str, ids: Iterable[int]) -> None:
        """Settled ids (given up, or served well after all)."""
        for a in ids:
            self._seen.pop((symbol, a), None)
