"""What the collector's parts need from the store and from the exchange, as ``typing.Protocol``s.

The parts never name :class:`~tradelab.store.TradeStore` or
:class:`~tradelab.binance.RestClient`: each takes the narrow interface it uses, so a unit test
hands it a small fake (a list that records appends, a REST source that serves canned pages)
and the end-to-end tests run the real ones.

* :class:`TradeSink` — the batch writer's store: ``append`` (with the unrepairable ranges);
* :class:`StatusSink` — the status publisher's store: ``put_meta`` and ``enforce_retention``;
* :class:`HoleSource` — the backfiller's view of the store's coverage: ``holes``;
* :class:`ResumeSource` — what start-up reads from the store: last ids and the holes;
* :class:`AggTradesSource` — the backfiller's REST client: one ``aggTrades`` page, the weight
  budget.
"""

from __future__ import annotations

from typing import Any, Protocol

import polars as pl

from tradelab.binance.protocol import MAX_REST_LIMIT, Trade

__all__ = [
    "AggTradesSource",
    "HoleSource",
    "ResumeSource",
    "StatusSink",
    "TradeSink",
    "WeightInfo",
]


class TradeSink(Protocol):
    """Where batches go: one atomic append per symbol; raises on failure (StorageError:
    retried; anything else: the trades are refused)."""

    def append(
        self, symbol: str, trades: pl.DataFrame, *, unrepairable: list[tuple[int, int]] = ...
    ) -> int:
        """Store ``trades`` of ``symbol`` and, in the same atomic write, the id ranges the
        exchange said it does not have (``unrepairable``; the writer passes it only when there
        are some); returns how many trades were new."""
        ...


class StatusSink(Protocol):
    """Where the status document goes, and who applies the retention period."""

    def put_meta(self, name: str, value: dict[str, Any]) -> None:
        """Store a small document under ``name``."""
        ...

    def enforce_retention(self) -> int:
        """Remove trades older than the retention period; returns how many."""
        ...


class LastTime(Protocol):
    """The part of a store's per-symbol statistics start-up reads."""

    @property
    def last_time(self) -> Any:
        """The last stored trade's time (a datetime), or None."""
        ...


class HoleSource(Protocol):
    """The store's coverage (:meth:`tradelab.store.TradeStore.holes`)."""

    def holes(self, symbol: str) -> pl.DataFrame:
        """The missing runs of ids of ``symbol`` (``first_missing``, ``last_missing``,
        ``after_time``, ``before_time``, ``unrepairable``, ...), one row each."""
        ...


class ResumeSource(HoleSource, Protocol):
    """What start-up reads from the store: where each symbol left off, and its holes."""

    def last_agg_id(self, symbol: str) -> int | None:
        """The highest stored agg id of ``symbol``, or None."""
        ...

    def stats(self, symbol: str) -> LastTime:
        """Statistics of ``symbol`` (only ``last_time`` is read)."""
        ...


class WeightInfo(Protocol):
    """The REST weight budget, as far as log lines need it."""

    used: int


class AggTradesSource(Protocol):
    """The REST side of Binance the backfiller uses (:class:`~tradelab.binance.RestClient`)."""

    @property
    def budget(self) -> WeightInfo:
        """The weight budget (``used`` is logged when it runs out)."""
        ...

    def weight_delay(self) -> float:
        """Seconds to wait before the next request fits the weight budget (0.0: go)."""
        ...

    async def agg_trades(
        self, symbol: str, from_id: int | None = None, limit: int = MAX_REST_LIMIT
    ) -> list[Trade]:
        """One page of aggTrades from ``from_id`` (inclusive), ascending.

        Raises :class:`~tradelab.exceptions.RateLimitedError` (with ``retry_after``),
        :class:`~tradelab.exceptions.ExchangeError` or
        :class:`~tradelab.exceptions.EndpointUnreachableError`; a page with items that are
        not valid trades raises :class:`~tradelab.binance.protocol.MalformedPageError`, which
        carries the valid items and the rejected ids (the backfiller keeps the former).
        """
        ...
