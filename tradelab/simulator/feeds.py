"""The simulator's feeds: per symbol, trades pulled from a source, paced onto the wall clock,
put through the stream faults, recorded, and queued as frames for each subscribed connection.

A :class:`Feed` is one symbol's state; :class:`FeedRunner` runs every feed of one
:class:`~tradelab.simulator.server.Simulator` (one asyncio task per feed, started and cancelled
by the simulator). Paced (``speed`` N): a trade goes out when ``N × (wall time since start)``
of source time has passed. As fast as possible (``speed`` inf): chunks of trades stamped with
the current time, with back-pressure from the slowest subscriber, and no production while
nobody subscribes (unless ``max_trades`` is set). The frames go to the connections of the
:class:`~tradelab.simulator.connections.StreamEndpoint`, which disconnects a client too slow to
read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from tradelab.logs import get_logger
from tradelab.simulator import protocol as proto
from tradelab.simulator.connections import Conn, StreamEndpoint, now_ms
from tradelab.simulator.faults import ABSURD_KINDS, Faults
from tradelab.simulator.history import TradeHistory
from tradelab.simulator.sources import SyntheticSource, Trade, TradeSource, live_time

__all__ = ["Feed", "FeedRunner"]

log = get_logger("tradelab.simulator")

_BATCH_MAX = 5_000  # trades published per feed step at most
_FAST_CHUNK = 500  # trades per step when running as fast as possible


@dataclass
class Feed:
    """One symbol's feed: its source and history, the connections subscribed to it, how far it
    got, the trades pulled but not yet published, and the state of an injected id skip.

    ``src0``/``wall0`` anchor source time to wall time (ms) for pacing; ``has_subscriber``
    wakes a feed that pauses while nobody subscribes.
    """

    symbol: str
    source: TradeSource
    history: TradeHistory
    subscribers: set[Conn] = field(default_factory=set)
    produced: int = 0
    exhausted: bool = False
    pending: deque[Trade] = field(default_factory=deque)
    src0: float | None = None
    wall0: float = 0.0
    skip_left: int = 0
    skip_hole: bool = False
    has_subscriber: asyncio.Event = field(default_factory=asyncio.Event)


class FeedRunner:
    """Publishes the feeds of one simulator.

    Args:
        endpoint: the connections the frames go to (and the one that disconnects slow clients).
        faults: returns the faults in force (they can be switched at runtime).
        rng: the simulator's random source (skips and malformed frames are drawn from it).
        counts: the simulator's counters (``trades_published``, ``gaps_injected`` ...).
        speed: 1 = recorded pace, N = N× faster, ``math.inf`` = as fast as clients read.
        max_trades: stop each feed after this many trades (None: never).
        send_queue_limit: frames queued for one client before it is disconnected.
    """

    def __init__(
        self,
        *,
        endpoint: StreamEndpoint,
        faults: Callable[[], Faults],
        rng: random.Random,
        counts: Counter[str],
        speed: float,
        max_trades: int | None,
        send_queue_limit: int,
    ) -> None:
        self._endpoint = endpoint
        self._faults = faults
        self._rng = rng
        self._counts = counts
        self.speed = speed
        self.max_trades = max_trades
        self.send_queue_limit = send_queue_limit

    async def run(self, feed: Feed) -> None:
        """Publish ``feed`` until its source is exhausted or ``max_trades`` is reached."""
        try:
            while True:
                if self.max_trades is not None and feed.produced >= self.max_trades:
                    break
                if not feed.pending:
                    chunk = (
                        await asyncio.to_thread(feed.source.next_chunk)
                        if isinstance(feed.source, SyntheticSource)
                        else feed.source.next_chunk()
                    )
                    if not chunk:
                        break
                    if feed.src0 is None:
                        feed.src0 = chunk[0][5]
                    feed.pending.extend(chunk)
                if self.speed == math.inf:
                    await self._step_fast(feed)
                else:
                    await self._step_paced(feed)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "Simulator feed for %s failed", feed.symbol, extra={"symbol": feed.symbol}
            )
            raise
        feed.exhausted = True
        log.info(
            "Simulator source for %s exhausted after %d trades",
            feed.symbol,
            feed.produced,
            extra={"symbol": feed.symbol, "trades": feed.produced},
        )

    def _take(self, feed: Feed, n: int) -> list[Trade]:
        if self.max_trades is not None:
            n = min(n, self.max_trades - feed.produced)
        out: list[Trade] = []
        pending = feed.pending
        while pending and len(out) < n:
            out.append(pending.popleft())
        return out

    async def _step_paced(self, feed: Feed) -> None:
        assert feed.src0 is not None
        now = time.time() * 1000.0
        due_src = feed.src0 + (now - feed.wall0) * self.speed
        pending = feed.pending
        if pending[0][5] > due_src:
            wait = live_time(pending[0][5], feed.src0, feed.wall0, self.speed) - now
            await asyncio.sleep(min(max(wait / 1000.0, 0.001), 0.25))
            return
        batch: list[Trade] = []
        limit = (
            _BATCH_MAX
            if self.max_trades is None
            else min(_BATCH_MAX, self.max_trades - feed.produced)
        )
        while pending and pending[0][5] <= due_src and len(batch) < limit:
            a, p, q, f, la, t, m = pending.popleft()
            live = int(live_time(t, feed.src0, feed.wall0, self.speed))
            batch.append((a, p, q, f, la, live, m))
        self._publish(feed, batch, int(now))
        await asyncio.sleep(0)

    async def _step_fast(self, feed: Feed) -> None:
        if self.max_trades is None and not feed.subscribers:
            feed.has_subscriber.clear()
            await feed.has_subscriber.wait()
        now = now_ms()
        batch = [
            (a, p, q, f, la, now, m) for a, p, q, f, la, _t, m in self._take(feed, _FAST_CHUNK)
        ]
        self._publish(feed, batch, now)
        # Back-pressure: wait until every subscriber has sent most of its queue.
        for c in list(feed.subscribers):
            while len(c.queue) > 4 * _FAST_CHUNK and c in self._endpoint.conns:
                c.drained.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(c.drained.wait(), 0.05)
        await asyncio.sleep(0)

    def _publish(self, feed: Feed, batch: list[Trade], now: int) -> None:
        """Apply the stream faults to ``batch``, record it, and queue frames to subscribers."""
        if not batch:
            return
        faults = self._faults()
        rng = self._rng
        sym = feed.symbol
        kept: list[Trade] = []
        items: list[tuple[str, Trade]] = []  # ("t" | malformed kind, trade)
        for t in batch:
            if feed.skip_left == 0 and faults.skip_rate and rng.random() < faults.skip_rate:
                feed.skip_left = faults.skip_length
                feed.skip_hole = rng.random() < faults.skip_unrepairable
                self._counts["gaps_injected"] += 1
                if feed.skip_hole:
                    self._counts["gaps_unrepairable"] += 1
            if feed.skip_left:
                feed.skip_left -= 1
                if feed.skip_hole:
                    self._counts["skipped_ids_unrepairable"] += 1
                    continue
                self._counts["skipped_ids_repairable"] += 1
                kept.append(t)
                continue
            kept.append(t)
            if faults.absurd_rate and rng.random() < faults.absurd_rate:
                kind = rng.choice(faults.absurd_kinds)
                items.append((kind, t))
                self._counts["absurd_frames"] += 1
                self._counts[f"absurd_{kind}"] += 1
            if faults.malformed_rate and rng.random() < faults.malformed_rate:
                kind = rng.choice(faults.malformed_kinds)
                items.append((kind, t))
                self._counts["malformed_frames"] += 1
                self._counts[f"malformed_{kind}"] += 1
            items.append(("t", t))
        feed.produced += len(batch)
        feed.history.append(kept)
        self._counts["trades_published"] += len(kept)
        if not feed.subscribers or not items:
            return
        rendered: dict[tuple[bool, bool], list[str]] = {}
        for c in list(feed.subscribers):
            key = (c.combined, c.micro)
            frames = rendered.get(key)
            if frames is None:
                frames = rendered[key] = self._render(sym, items, now, *key)
            if c.stalled_until:
                self._counts["frames_dropped_stalled"] += len(frames)
            elif not c.enqueue(frames, self.send_queue_limit):
                self._endpoint.disconnect(
                    c, "slow_consumer", 1008, "client too slow to read the stream"
                )

    def _render(
        self, sym: str, items: list[tuple[str, Trade]], now: int, combined: bool, micro: bool
    ) -> list[str]:
        stream = proto.stream_name(sym)
        out = []
        for kind, t in items:
            if kind == "t":
                payload, cut = proto.format_payload(sym, t, now, micro=micro), False
            elif kind in ABSURD_KINDS:
                payload, cut = proto.absurd_payload(kind, sym, t, now), False
            else:
                payload, cut = proto.malformed_payload(kind, sym, t, now, self._rng)
            frame = proto.wrap_combined(stream, payload) if combined else payload
            if cut:
                frame = frame[: max(1, len(frame) // 2)]
            out.append(frame)
        return out
