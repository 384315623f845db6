"""The intake gate: the one owner of the buffered trades, their count and the pause at the bound.

Every trade the collector accepts (from a stream or a REST page) enters through
:meth:`IntakeGate.admit` / :meth:`IntakeGate.admit_many` and stays *buffered* until the batch
writer reports it stored or refused (:meth:`IntakeGate.settle`). The gate alone counts them:
per symbol, trades waiting (``pending``) plus trades the writer has taken but not yet settled
(in flight, or kept for a retry after a failed write).

At ``max_buffered`` trades the gate *pauses intake*: it logs the ERROR "BUFFER FULL", tells its
pause listeners (the stream supervisor closes its connections), and keeps
:meth:`IntakeGate.wait_open` waiting. Once the writer has brought the count down to half the
bound it *resumes* and logs so; the trades published meanwhile are then a gap for the backfill.
Memory stays bounded and nothing buffered is dropped.

The trades are held packed (:class:`~tradelab.collector.columns.TradeColumns`, 49 bytes a
trade, no Python object per trade), so the bound costs ~10 MB at the default 200,000 trades
and that memory goes back in one piece once written.

The gate also holds the id ranges the backfill found the exchange does not have
(:meth:`IntakeGate.note_unrepairable`): the writer takes them with the trades of the same round
(:meth:`IntakeGate.take_unrepairable`) so the store records them in the same atomic write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence

from tradelab.binance.protocol import Trade
from tradelab.collector.columns import TradeColumns
from tradelab.logs import get_logger

__all__ = ["IntakeGate"]

log = get_logger("tradelab.collector")


class IntakeGate:
    """Buffered trades per symbol, their total, and the pause/resume of intake at the bound."""

    def __init__(self, symbols: Iterable[str], max_buffered: int) -> None:
        self.max_buffered = max_buffered
        self._pending: dict[str, TradeColumns] = {s: TradeColumns(s) for s in symbols}
        self._lost: dict[str, list[tuple[int, int]]] = {s: [] for s in self._pending}
        self._held: dict[str, int] = dict.fromkeys(self._pending, 0)
        self._total = 0
        self._paused = False
        self._open: asyncio.Event | None = None
        self._listeners: list[Callable[[], None]] = []

    # --- run --------------------------------------------------------------------------------

    def begin(self) -> None:
        """Arm for a new run (call on the loop the run uses): intake open."""
        self._open = asyncio.Event()
        if not self._paused:
            self._open.set()

    def release_waiters(self) -> None:
        """Stop: wake everything waiting in :meth:`wait_open` (the pause flag stays as is)."""
        if self._open is not None:
            self._open.set()

    def on_pause(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever intake pauses (after the ERROR line)."""
        self._listeners.append(listener)

    async def wait_open(self) -> None:
        """Return once intake is open (not paused), or the run is stopping."""
        assert self._open is not None, "IntakeGate.begin() was not called"
        await self._open.wait()

    # --- state ------------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """True while intake is paused for a full buffer."""
        return self._paused

    @property
    def buffered(self) -> int:
        """Trades received and not yet stored (nor refused by the store), all symbols."""
        return self._total

    def buffered_of(self, symbol: str) -> int:
        """Trades of ``symbol`` received and not yet stored (nor refused)."""
        return len(self._pending[symbol]) + self._held[symbol]

    @property
    def backfill_room(self) -> bool:
        """True while the buffer is below half the bound: the backfill may fetch another page.
        REST pages come faster than the store may take them (catching up after a flood), so
        the backfill gets at most half of the buffer and the live stream always keeps the
        other half — a catch-up never pauses the live stream, and memory stays at the bound."""
        return self._total < self.max_buffered // 2

    def has_pending(self, symbol: str) -> bool:
        """True if ``symbol`` has trades (or unrepairable ranges) the writer has not taken."""
        return bool(self._pending[symbol] or self._lost[symbol])

    def pending_ids(self, symbol: str) -> list[int]:
        """The agg ids of ``symbol`` waiting for the writer."""
        return self._pending[symbol].ids()

    def pending_unrepairable(self, symbol: str) -> list[tuple[int, int]]:
        """The unrepairable id ranges of ``symbol`` waiting for the writer."""
        return list(self._lost[symbol])

    # --- intake (stream reader, backfill) ---------------------------------------------------

    def admit(self, symbol: str, trade: Trade) -> bool:
        """Buffer one new trade; True if intake is now paused (bound reached)."""
        self._pending[symbol].append(*trade[1:])
        self._total += 1
        if self._total >= self.max_buffered:
            self._pause()
            return True
        return False

    def admit_values(
        self,
        symbol: str,
        agg_id: int,
        price: float,
        qty: float,
        first_id: int,
        last_id: int,
        time_ms: int,
        buyer_is_maker: bool,
    ) -> bool:
        """Buffer one new trade given as plain values (the stream reader's hot path: no
        :class:`Trade` is built); True if intake is now paused (bound reached)."""
        self._pending[symbol].append(agg_id, price, qty, first_id, last_id, time_ms, buyer_is_maker)
        self._total += 1
        if self._total >= self.max_buffered:
            self._pause()
            return True
        return False

    def admit_many(self, symbol: str, trades: Sequence[Trade]) -> bool:
        """Buffer new trades (a REST page); True if intake is now paused."""
        if not trades:
            return False
        self._pending[symbol].extend(trades)
        self._total += len(trades)
        if self._total >= self.max_buffered:
            self._pause()
            return True
        return False

    def note_unrepairable(self, symbol: str, ranges: Sequence[tuple[int, int]]) -> None:
        """Ids the exchange does not have: recorded with the next write of ``symbol``."""
        self._lost[symbol].extend(ranges)

    # --- output (batch writer) --------------------------------------------------------------

    def take_unrepairable(self, symbol: str) -> list[tuple[int, int]]:
        """Hand ``symbol``'s unrepairable ranges to the writer (with :meth:`take`)."""
        out, self._lost[symbol] = self._lost[symbol], []
        return out

    def take(self, symbol: str) -> TradeColumns:
        """Hand ``symbol``'s pending trades to the writer; they stay buffered until settled."""
        batch = self._pending[symbol]
        if batch:
            self._pending[symbol] = TradeColumns(symbol)
            self._held[symbol] += len(batch)
        return batch

    def settle(self, settled: Mapping[str, int]) -> None:
        """Trades taken earlier left the buffer for good (stored, or refused by the store):
        ``settled`` maps symbol to count. Resumes intake once at most half the bound is left."""
        for symbol, n in settled.items():
            self._held[symbol] -= n
            self._total -= n
        if self._paused and self._total <= self.max_buffered // 2:
            self._paused = False
            if self._open is not None:
                self._open.set()
            log.warning(
                "The store caught up (%d trades buffered): resuming intake",
                self._total,
                extra={"event": "buffer_resumed", "buffered": self._total},
            )

    # --- the bound --------------------------------------------------------------------------

    def _pause(self) -> None:
        if self._paused:
            return
        self._paused = True
        if self._open is not None:
            self._open.clear()
        log.error(
            "BUFFER FULL: %d trades are waiting for the store (max_buffered=%d). Pausing intake: "
            "closing the stream until the store accepts writes; trades published meanwhile "
            "will be backfilled through REST. Nothing buffered is dropped.",
            self._total,
            self.max_buffered,
            extra={
                "event": "buffer_full",
                "buffered": self._total,
                "max_buffered": self.max_buffered,
            },
        )
        for listener in self._listeners:
            listener()
