"""The hot path of a stream connection: every frame, from the socket to the intake gate.

:func:`read_stream` is the read loop the :class:`~tradelab.collector.streams.StreamSupervisor`
runs per connection. A trade frame costs: taking it from the queue of frames websockets has
already parsed (no ``ws.recv()`` call chain, no copy, no UTF-8 decode, while frames wait there),
one regular-expression match of the canonical aggTrade frame over its bytes
(:func:`~tradelab.binance.protocol.match_trade_bytes`: values, no dict, no
:class:`~tradelab.binance.Trade`), the plausibility bounds (two comparisons), the symbol's
:class:`~tradelab.binance.GapTracker` (one comparison when ids are in order) and one packed
append to the gate (:meth:`~tradelab.collector.gate.IntakeGate.admit_values`). Any other frame
goes through ``ws.recv()`` and :func:`~tradelab.binance.parse_frame` and the same checks, so a
trade in another layout is taken exactly as before, and a malformed frame is reported and
skipped.

Memory: websockets keeps at most ``max_queue`` frames of at most ``max_size`` bytes (the
supervisor's settings) and stops reading the socket beyond that, so a flood waits in the
kernel's and the server's buffers (backpressure is the socket); what the reader takes goes to
the gate, whose bound pauses intake. What the server drops meanwhile is a gap the backfill
repairs.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

from tradelab.binance.gaps import Gap, GapTracker
from tradelab.binance.protocol import (
    ControlResponse,
    Plausibility,
    Rejection,
    ServerShutdown,
    Trade,
    TradeValues,
    excerpt,
    match_trade,
    match_trade_bytes,
    parse_frame,
)
from tradelab.collector.gate import IntakeGate
from tradelab.logs import get_logger

__all__ = ["COALESCE_BELOW", "ReadTarget", "read_stream"]

log = get_logger("tradelab.collector")

COALESCE_BELOW = 200
"""Frames per coalescing window below which reading pauses for a window (800/s at 0.25 s);
busier feeds never pause."""


class ReadTarget(Protocol):
    """What the read loop needs of a connection (a ``streams.Connection``)."""

    ws: Any
    number: int
    delivered: int
    first_data: asyncio.Event
    shutdown: asyncio.Event


async def read_stream(
    conn: ReadTarget,
    *,
    trackers: Mapping[str, GapTracker],
    gate: IntakeGate,
    plausibility: Plausibility,
    pace: float | None,
    on_gap: Callable[[Gap], None],
    on_bad: Callable[[Rejection, Any], None],
    on_implausible: Callable[[Trade, str, Any], None],
) -> None:
    """Read ``conn`` until it closes, or until the gate pauses intake (then return).

    Draining: when data arrives, websockets parses every frame of it at once into its queue of
    received frames. The frames there that are whole canonical trade frames (one fragment,
    :func:`~tradelab.binance.protocol.match_trade_bytes`; a binary frame with that text would
    give the same values through ``recv()``) are taken straight from that queue, undecoded,
    in order, with websockets' flow control kept (its ``maybe_resume``); the first frame that
    is anything else, and every frame once the queue is empty, goes through ``ws.recv()`` as
    before. So a frame is never skipped, reordered or read twice, and the cost of ``recv()``
    (three coroutines, a copy, the UTF-8 decode) is paid only by the frames that need it.
    Without that queue (another websockets version, a test double), every frame goes through
    ``recv()``.

    Read coalescing: at low rates each frame would wake the event loop on its own (most of the
    CPU a quiet feed costs). So when a window of ``pace`` seconds brought fewer than
    :data:`COALESCE_BELOW` frames, reading pauses for one window and the kernel buffers the
    frames meanwhile; they are then parsed in one go. Busy feeds never pause. ``pace`` None
    reads every frame as it comes. Raises websockets' ``ConnectionClosed`` when the connection
    ends.
    """
    admit = gate.admit_values
    fast, fast_bytes = match_trade, match_trade_bytes
    ws = conn.ws
    recv = ws.recv
    transport = ws.transport
    assembler, queue = _frame_queue(ws)
    if queue is None:
        pace = None
        queue = ()  # never holds a frame: every frame through recv()
    else:
        take = queue.popleft
        resume = assembler.maybe_resume
    clock = asyncio.get_running_loop().time
    window_end = clock() + (pace or 0.0)
    window_first = 0
    jump = plausibility.max_id_jump
    oldest, newest = plausibility.bounds(int(time.time() * 1000))
    frames = 0
    raw: Any = None
    while True:
        values = None
        if queue:  # websockets holds frames already: take a canonical trade without awaiting
            frame = queue[0]
            if frame.fin:  # a whole message (text or binary: the same values either way)
                values = fast_bytes(frame.data)
                if values is not None:
                    take()
                    if assembler.paused:
                        resume()
        elif pace is not None and (now := clock()) >= window_end:
            quiet = frames - window_first < COALESCE_BELOW
            window_first = frames
            window_end = now + pace
            if quiet and transport.is_reading():
                transport.pause_reading()
                try:
                    await asyncio.sleep(pace)
                finally:
                    if not transport.is_closing():
                        transport.resume_reading()
        if values is None:  # anything else, or nothing buffered: websockets' own way
            raw = await recv()
            values = fast(raw)
            if values is None:
                ev = parse_frame(raw)
                if type(ev) is not Trade:
                    frames += 1
                    _other_event(ev, conn, on_bad)
                    continue
                values = cast(TradeValues, tuple(ev))
        else:
            raw = frame.data
        frames += 1
        if not frames & 1023:  # the time bounds move with the clock
            oldest, newest = plausibility.bounds(int(time.time() * 1000))
        sym, a, p, q, f, last, t, m = values
        tracker = trackers.get(sym)
        if tracker is None:
            on_bad(Rejection(f"trade for unsubscribed symbol {sym!r}", excerpt(raw)), conn)
            continue
        high = tracker.high
        if high is not None and a == high + 1 and oldest <= t <= newest:
            tracker.high = a  # the next id, in time: GapTracker.observe's common case, inlined
            tracker.last_time = t
        else:
            if (high is not None and a - high > jump) or not (oldest <= t <= newest):
                now_ms = int(time.time() * 1000)
                oldest, newest = plausibility.bounds(now_ms)
                why = plausibility.check(a, t, high, now_ms)
                if why is not None:
                    on_implausible(Trade(*values), why, conn)
                    continue
            verdict = tracker.observe(a, t)
            if verdict is False:
                continue
            if verdict is not True:
                on_gap(verdict)
        if not conn.delivered:
            conn.first_data.set()
        conn.delivered += 1
        if admit(sym, a, p, q, f, last, t, m):  # the buffer is full: intake paused
            return


def _frame_queue(ws: Any) -> tuple[Any, Any]:
    """websockets' assembler of received messages and its deque of frames, or (None, None)
    when the connection does not have them in the shape this module knows (then every frame
    goes through ``recv()`` and reading never pauses)."""
    assembler = getattr(ws, "recv_messages", None)
    frames = getattr(assembler, "frames", None)
    queue = getattr(frames, "queue", None)
    if (
        type(queue) is not deque
        or not callable(getattr(assembler, "maybe_resume", None))
        or type(getattr(assembler, "paused", None)) is not bool
    ):
        return None, None
    return assembler, queue


def _other_event(ev: Any, conn: ReadTarget, on_bad: Callable[[Rejection, Any], None]) -> None:
    """A frame that is not a trade: a rejection, a shutdown notice or a control answer."""
    if type(ev) is Rejection:
        on_bad(ev, conn)
    elif type(ev) is ServerShutdown:
        log.warning(
            "Server announced shutdown on connection #%d: reconnecting now",
            conn.number,
            extra={"event": "server_shutdown", "connection": conn.number},
        )
        conn.shutdown.set()
    elif type(ev) is ControlResponse:
        log.debug("Control response %r", ev)
