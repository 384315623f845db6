"""The simulator's WebSocket side: per-connection state, control messages, sending, faults.

:class:`StreamEndpoint` is one part of :class:`~tradelab.simulator.server.Simulator`, which
owns the feeds, the counters and the listening socket and hands the endpoint what it needs:
``serve()`` creates each connection as a :class:`SimConnection` (it counts every incoming frame
for Binance's 5-messages-per-second limit and can go silent for a stall) and runs
:meth:`StreamEndpoint.handle` on it. Per connection a :class:`Conn` holds the subscriptions and
the queue of frames; a sender task writes the queue in slices, a watcher applies the connection
faults (drops, stalls, lifetime, ``serverShutdown``), and ``SUBSCRIBE``/``UNSUBSCRIBE``/
``LIST_SUBSCRIPTIONS`` are answered here. Keepalive pings are websockets' own. A symbol's feed
is seen only as a :class:`Subscribable` (this module does not know how trades are produced).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame
from websockets.protocol import State

from tradelab.logs import get_logger
from tradelab.simulator import protocol as proto
from tradelab.simulator.faults import Faults

__all__ = ["Conn", "SimConnection", "StreamEndpoint", "Subscribable", "now_ms"]

log = get_logger("tradelab.simulator")

_WATCH_TICK = 0.02  # seconds between random-drop draws per connection
_IDLE_TICK = 0.25  # longest sleep of a connection's fault watcher


def _compact(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def now_ms() -> int:
    """The wall clock in unix milliseconds (the time stamped on frames)."""
    return time.time_ns() // 1_000_000


@dataclass(eq=False)
class Conn:
    """One WebSocket client's state: its subscriptions, the frames queued for it and where its
    connection faults stand. Compared by identity (it lives in sets)."""

    ws: SimConnection
    cid: int
    combined: bool
    micro: bool
    streams: list[str]
    opened: float
    queue: list[str] = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    stalled_until: float = 0.0
    next_stall_at: float = math.inf
    shutdown_sent: bool = False
    close_reason: str | None = None
    frames_sent: int = 0
    incoming: deque[float] = field(default_factory=deque)

    def enqueue(self, frames: list[str], limit: int) -> bool:
        """Queue frames; False if the client is too slow (queue over ``limit``)."""
        self.queue.extend(frames)
        self.drained.clear()
        self.wakeup.set()
        return len(self.queue) <= limit


class SimConnection(ServerConnection):
    """A server connection that counts every incoming frame (pings, pongs, control
    messages) for Binance's 5-messages-per-second limit."""

    endpoint: StreamEndpoint | None = None
    target: proto.StreamTarget | None = None
    conn: Conn | None = None

    def process_event(self, event: Any) -> None:
        """websockets' hook for each parsed event: count frames, then handle as usual."""
        if self.request is not None and isinstance(event, Frame) and self.endpoint:
            self.endpoint.count_incoming(self)
        super().process_event(event)

    def freeze(self) -> None:
        """Go silent (a stall): stop reading — so pings get no pong — and stop pinging."""
        self.transport.pause_reading()
        if self.keepalive_task is not None:
            self.keepalive_task.cancel()
            self.keepalive_task = None

    def thaw(self) -> None:
        """End a stall: read again and restart the keepalive pings."""
        with contextlib.suppress(Exception):
            self.transport.resume_reading()
        if self.keepalive_task is None and self.state is State.OPEN:
            self.start_keepalive()


class Subscribable(Protocol):
    """What a connection needs of a symbol's feed: the set of connections it publishes to, and
    the event that wakes a feed which pauses while nobody subscribes."""

    subscribers: set[Conn]
    has_subscriber: asyncio.Event


class StreamEndpoint:
    """The WebSocket connections of a :class:`~tradelab.simulator.server.Simulator`.

    Args:
        symbols: the simulated symbols (named in the warning about an unknown stream).
        feeds: each symbol's feed; read when a client subscribes (filled and emptied by the
            simulator as it starts and stops).
        faults: returns the faults in force (they can be switched at runtime).
        rng: the simulator's random source (drops are drawn from it).
        counts: the simulator's counters (``connections_opened``, ``closed_<reason>`` ...).
        max_incoming_per_second: incoming frames per connection per second before the
            connection is closed (None: no limit).

    :attr:`conns` are the open connections, :attr:`tasks` the close handshakes under way.
    """

    def __init__(
        self,
        *,
        symbols: tuple[str, ...],
        feeds: Mapping[str, Subscribable],
        faults: Callable[[], Faults],
        rng: random.Random,
        counts: Counter[str],
        max_incoming_per_second: int | None,
    ) -> None:
        self.symbols = symbols
        self.max_incoming_per_second = max_incoming_per_second
        self._feeds = feeds
        self._faults = faults
        self._rng = rng
        self._counts = counts
        self.conns: set[Conn] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self._next_cid = 0

    def create_connection(self, protocol: Any, server: Any, **kwargs: Any) -> SimConnection:
        """``serve(create_connection=...)``: a :class:`SimConnection` with the faults' pings."""
        faults = self._faults()
        kwargs["ping_interval"] = faults.ping_interval
        kwargs["ping_timeout"] = faults.ping_timeout
        conn = SimConnection(protocol, server, **kwargs)
        conn.endpoint = self
        return conn

    def count_incoming(self, ws: SimConnection) -> None:
        """Count one incoming frame; close the connection past the per-second limit."""
        limit = self.max_incoming_per_second
        c = ws.conn
        if limit is None or c is None or c.close_reason is not None:
            return
        now = time.monotonic()
        c.incoming.append(now)
        while c.incoming and c.incoming[0] <= now - 1.0:
            c.incoming.popleft()
        if len(c.incoming) > limit:
            log.warning(
                "Simulator closing connection %d: more than %d incoming messages per second",
                c.cid,
                limit,
                extra={"connection": c.cid, "limit": limit},
            )
            self.disconnect(c, "rate_limit", 1008, "Too many messages")

    def disconnect(self, c: Conn, reason: str, code: int | None, text: str = "") -> None:
        """Close (``code``) or abort (``code=None``) a connection, counting the reason."""
        if c.close_reason is not None:
            return
        c.close_reason = reason
        self._counts[f"closed_{reason}"] += 1
        if c.stalled_until:
            c.stalled_until = 0.0
            c.ws.thaw()
        if code is None:
            c.ws.transport.abort()
        else:
            task = asyncio.get_running_loop().create_task(c.ws.close(code, text))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def handle(self, ws: ServerConnection) -> None:
        """``serve()``'s handler: one client from its handshake until it is closed."""
        assert isinstance(ws, SimConnection) and ws.target is not None
        self._next_cid += 1
        target = ws.target
        c = Conn(ws, self._next_cid, target.combined, target.micro, [], time.monotonic())
        ws.conn = c
        faults = self._faults()
        if faults.stall_every:
            c.next_stall_at = c.opened + faults.stall_every
        self.conns.add(c)
        self._counts["connections_opened"] += 1
        for s in target.streams:
            self._subscribe(c, s)
        log.info(
            "Simulator connection %d opened: %s",
            c.cid,
            ",".join(target.streams) or "-",
            extra={"connection": c.cid, "streams": list(target.streams)},
        )
        sender = asyncio.create_task(self._sender(c))
        watcher = asyncio.create_task(self._watch(c))
        try:
            async for message in ws:
                await self._control(c, message)
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            watcher.cancel()
            await asyncio.gather(sender, watcher, return_exceptions=True)
            for s in list(c.streams):
                self._unsubscribe(c, s)
            self.conns.discard(c)
            reason = c.close_reason
            if reason is None:
                sent = ws.protocol.close_sent
                if sent is not None and sent.code == 1011 and "keepalive" in sent.reason:
                    reason = "ping_timeout"
                else:
                    reason = "client"
                self._counts[f"closed_{reason}"] += 1
            log.info(
                "Simulator connection %d closed (%s) after %d frames",
                c.cid,
                reason,
                c.frames_sent,
                extra={"connection": c.cid, "reason": reason, "frames": c.frames_sent},
            )

    def _subscribe(self, c: Conn, stream: str) -> None:
        if stream in c.streams:
            return
        c.streams.append(stream)
        sym = stream.split("@", 1)[0].upper()
        feed = self._feeds.get(sym)
        if feed is None:
            log.warning(
                "Simulator: stream %s has no data here (symbols: %s)",
                stream,
                ",".join(self.symbols),
                extra={"stream": stream},
            )
            return
        feed.subscribers.add(c)
        feed.has_subscriber.set()

    def _unsubscribe(self, c: Conn, stream: str) -> None:
        if stream in c.streams:
            c.streams.remove(stream)
        feed = self._feeds.get(stream.split("@", 1)[0].upper())
        if feed is not None:
            feed.subscribers.discard(c)

    async def _control(self, c: Conn, message: str | bytes) -> None:
        try:
            req = proto.parse_control(message)
        except proto.ApiError as err:
            reply: dict[str, object] = {
                "error": {"code": err.code, "msg": err.msg},
                "id": err.req_id,
            }
        else:
            if req.method == "SUBSCRIBE":
                if len(set(c.streams) | set(req.params)) > proto.MAX_STREAMS:
                    reply = {
                        "error": {
                            "code": 2,
                            "msg": f"Invalid request: more than {proto.MAX_STREAMS} streams",
                        },
                        "id": req.id,
                    }
                else:
                    for s in req.params:
                        self._subscribe(c, s)
                    reply = {"result": None, "id": req.id}
            elif req.method == "UNSUBSCRIBE":
                for s in req.params:
                    self._unsubscribe(c, s)
                reply = {"result": None, "id": req.id}
            else:
                reply = {"result": list(c.streams), "id": req.id}
        self._counts["control_messages"] += 1
        with contextlib.suppress(ConnectionClosed):
            await c.ws.send(_compact(reply))

    async def _sender(self, c: Conn) -> None:
        ws = c.ws
        with contextlib.suppress(ConnectionClosed):
            while True:
                if not c.queue:
                    c.drained.set()
                    c.wakeup.clear()
                    await c.wakeup.wait()
                    continue
                frames, c.queue = c.queue, []
                # Send in slices so a big backlog neither blocks the loop nor bloats buffers.
                for i in range(0, len(frames), 256):
                    if c.stalled_until or c.close_reason is not None:
                        break
                    part = frames[i : i + 256]
                    async with ws.send_context():
                        protocol = ws.protocol
                        for frame in part:
                            protocol.send_text(frame.encode())
                        # One socket write per slice instead of one per frame.
                        ws.transport.write(b"".join(protocol.data_to_send()))
                    c.frames_sent += len(part)
                    self._counts["frames_sent"] += len(part)

    @staticmethod
    def _next_wake(c: Conn, f: Faults, now: float) -> float:
        """Seconds until the next connection-fault deadline (bounded to 2 ms .. 0.25 s)."""
        deadlines = [now + _IDLE_TICK]
        if f.drop_every is not None:
            deadlines.append(c.opened + f.drop_every)
        if f.lifetime is not None:
            deadlines.append(c.opened + f.lifetime)
        if f.shutdown_after is not None:
            deadlines.append(
                c.opened + f.shutdown_after + (f.shutdown_grace if c.shutdown_sent else 0.0)
            )
        if c.stalled_until:
            deadlines.append(c.stalled_until)
        elif f.stall_every is not None:
            deadlines.append(c.next_stall_at if c.next_stall_at != math.inf else now)
        if f.drop_probability:
            deadlines.append(now + _WATCH_TICK)
        return min(max(min(deadlines) - now, 0.002), _IDLE_TICK)

    async def _watch(self, c: Conn) -> None:
        """Apply the connection faults, waking at the next deadline (at least every 0.25 s,
        so faults switched at runtime take effect promptly)."""
        last = time.monotonic()
        while c.close_reason is None:
            await asyncio.sleep(self._next_wake(c, self._faults(), time.monotonic()))
            f = self._faults()
            now = time.monotonic()
            age = now - c.opened
            elapsed, last = now - last, now
            if f.drop_every is not None and age >= f.drop_every:
                self._counts["drops"] += 1
                self.disconnect(c, "drop", None)
                return
            if f.drop_probability and self._rng.random() < 1 - (1 - f.drop_probability) ** (
                elapsed
            ):
                self._counts["drops"] += 1
                self.disconnect(c, "drop", None)
                return
            if f.lifetime is not None and age >= f.lifetime:
                self.disconnect(c, "lifetime", 1000, "connection lifetime reached")
                return
            if f.shutdown_after is not None and not c.shutdown_sent and age >= f.shutdown_after:
                c.shutdown_sent = True
                self._counts["shutdown_events"] += 1
                frame = proto.shutdown_frame(now_ms(), style=f.shutdown_style, combined=c.combined)
                with contextlib.suppress(ConnectionClosed):
                    await c.ws.send(frame)
                log.info(
                    "Simulator sent serverShutdown on connection %d",
                    c.cid,
                    extra={"connection": c.cid},
                )
            if c.shutdown_sent and age >= (f.shutdown_after or 0) + f.shutdown_grace:
                self.disconnect(c, "shutdown", 1001, "server shutdown")
                return
            if c.stalled_until and now >= c.stalled_until:
                c.stalled_until = 0.0
                c.ws.thaw()
                c.next_stall_at = now + (f.stall_every or math.inf)
            elif not c.stalled_until and f.stall_every is not None:
                if c.next_stall_at == math.inf:
                    c.next_stall_at = now + f.stall_every
                elif now >= c.next_stall_at and f.stall_seconds > 0:
                    c.stalled_until = now + f.stall_seconds
                    c.queue.clear()
                    self._counts["stalls"] += 1
                    c.ws.freeze()
                    log.info(
                        "Simulator stalls connection %d for %.1f s",
                        c.cid,
                        f.stall_seconds,
                        extra={"connection": c.cid},
                    )
