"""The hot path of a stream connection: every frame, from the socket to the intake gate.

:func:`read_stream` is the read loop the :class:`~tradelab.collector.streams.StreamSupervisor`
runs per connection. Per frame it costs one ``ws.recv()``, one regular-expression match of the
canonical aggTrade frame (:func:`~tradelab.binance.protocol.match_trade`: values, no dict, no
:class:`~tradelab.binance.Trade`), the plausibility bounds (two comparisons), the symbol's
:class:`~tradelab.binance.GapTracker` (one comparison when ids are in order) and one packed
append to the gate (:meth:`~tradelab.collector.gate.IntakeGate.admit_values`). Any other frame
goes through :func:`~tradelab.binance.parse_frame` and the same checks, so a trade in another
layout is taken exactly as before, and a malformed frame is reported and skipped.

Memory: websockets keeps at most ``max_queue`` frames of at most ``max_size`` bytes (the
supervisor's settings) and stops reading the socket beyond that, so a flood waits in the
kernel's and the server's buffers (backpressure is the socket); what the reader takes goes to
the gate, whose bound pauses intake. What the server drops meanwhile is a gap the backfill
repairs.
"""

from __future__ import annotations

import asyncio
import time
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
    match_trade,
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

    Read coalescing: at low rates each frame would wake the event loop on its own (most of the
    CPU a quiet feed costs). So when a window of ``pace`` seconds brought fewer than
    :data:`COALESCE_BELOW` frames, reading pauses for one window and the kernel buffers the
    frames meanwhile; they are then parsed in one go. Busy feeds never pause. ``pace`` None
    reads every frame as it comes. Raises websockets' ``ConnectionClosed`` when the connection
    ends.
    """
    admit = gate.admit_values
    fast = match_trade
    ws = conn.ws
    recv = ws.recv
    transport = ws.transport
    # websockets' queue of received frames (to know whether recv() would wait)
    queue = getattr(getattr(ws, "recv_messages", None), "frames", None)
    queue = getattr(queue, "queue", queue)  # its deque, if it has one: len() without a call
    if queue is None or not hasattr(queue, "__len__"):
        pace = None
    clock = asyncio.get_running_loop().time
    window_end = clock() + (pace or 0.0)
    in_window = 0
    jump = plausibility.max_id_jump
    oldest, newest = plausibility.bounds(int(time.time() * 1000))
    frames = 0
    while True:
        raw = await recv()
        frames += 1
        if not frames & 1023:  # the time bounds move with the clock
            oldest, newest = plausibility.bounds(int(time.time() * 1000))
        if pace is not None:
            in_window += 1
            if not len(queue) and (now := clock()) >= window_end:  # type: ignore[arg-type]
                quiet = in_window < COALESCE_BELOW
                in_window = 0
                window_end = now + pace
                if quiet and transport.is_reading():
                    transport.pause_reading()
                    try:
                        await asyncio.sleep(pace)
                    finally:
                        if not transport.is_closing():
                            transport.resume_reading()
        values = fast(raw)
        if values is None:
            ev = parse_frame(raw)
            if type(ev) is not Trade:
                _other_event(ev, conn, on_bad)
                continue
            values = cast(TradeValues, tuple(ev))
        sym, a, p, q, f, last, t, m = values
        tracker = trackers.get(sym)
        if tracker is None:
            on_bad(Rejection(f"trade for unsubscribed symbol {sym!r}", str(raw)[:120]), conn)
            continue
        high = tracker.high
        if (high is not None and a - high > jump) or not (oldest <= t <= newest):
            now_ms = int(time.time() * 1000)
            oldest, newest = plausibility.bounds(now_ms)
            why = plausibility.check(a, t, high, now_ms)
            if why is not None:
                on_implausible(Trade(*values), why, conn)
                continue
        if high is not None and a == high + 1:  # GapTracker.observe's common case, inlined
            tracker.high = a
            tracker.last_time = t
        else:
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
