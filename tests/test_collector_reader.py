"""The stream reader (``tradelab.collector.reader.read_stream``) over a real WebSocket connection.

The reader takes canonical trade frames straight from the queue of frames websockets has
already parsed, and leaves every other frame to ``ws.recv()``. These tests run it against a
real websockets server on 127.0.0.1 (port 0) that sends scripted frames, with a real intake
gate and gap trackers, and check what must never change: every frame is taken once, in order,
whichever way it goes (canonical, another layout, fragmented, binary, malformed, a control
answer, a duplicate, a gap, an unsubscribed symbol); websockets' flow control still resumes a
paused connection; a quiet feed is coalesced and still delivered; the reader stops at the
gate's bound; a text frame that is not UTF-8 still fails the connection as websockets does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import websockets
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from tradelab.binance.gaps import Gap, GapTracker
from tradelab.binance.protocol import Plausibility, Rejection, Trade
from tradelab.collector.gate import IntakeGate
from tradelab.collector.reader import read_stream

SYMS = ("BTCUSDT", "ETHUSDT")
NOW = int(time.time() * 1000)


def frame(a: int, sym: str = "BTCUSDT", *, spaced: bool = False) -> str:
    """A combined-stream aggTrade frame as Binance writes it (``spaced``: the same JSON with a
    space after the opening brace, which only the full path takes)."""
    text = (
        f'{{"stream":"{sym.lower()}@aggTrade","data":{{"e":"aggTrade","E":{NOW + a},'
        f'"s":"{sym}","a":{a},"p":"61837.{a % 100:02d}000000","q":"0.0{a % 7}000000",'
        f'"f":{10 * a},"l":{10 * a + a % 3},"T":{NOW + a},"m":{"true" if a % 2 else "false"},'
        f'"M":true}}}}'
    )
    return "{ " + text[1:] if spaced else text


def values(a: int, sym: str = "BTCUSDT") -> Trade:
    """The trade ``frame(a, sym)`` carries."""
    return Trade(
        sym, a, float(f"61837.{a % 100:02d}"), float(f"0.0{a % 7}"), 10 * a, 10 * a + a % 3,
        NOW + a, bool(a % 2),
    )  # fmt: skip


class Conn:
    """What the reader needs of a connection (``ReadTarget``), around a real client socket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.number = 1
        self.delivered = 0
        self.first_data = asyncio.Event()
        self.shutdown = asyncio.Event()
        self.recv_calls = 0
        recv = ws.recv

        async def counted(*args: Any, **kw: Any) -> Any:
            self.recv_calls += 1
            return await recv(*args, **kw)

        ws.recv = counted  # the reader looks recv up on the connection: count its calls


class Seen:
    """What the reader reported: gaps, bad frames, implausible trades."""

    def __init__(self) -> None:
        self.gaps: list[Gap] = []
        self.bad: list[Rejection] = []
        self.implausible: list[tuple[Trade, str]] = []


async def run_reader(
    script: Callable[[ServerConnection], Awaitable[None]],
    *,
    max_buffered: int = 1_000_000,
    pace: float | None = None,
    max_queue: int | tuple[int, int] = 1024,
    on_connected: Callable[[Conn, IntakeGate], None] = lambda conn, gate: None,
) -> tuple[IntakeGate, dict[str, GapTracker], Seen, Conn, BaseException | None]:
    """Serve ``script`` to one client, read that connection with ``read_stream`` until it
    returns or the connection ends (bounded: 30 s); what the reader did, and how it ended."""
    gate = IntakeGate(SYMS, max_buffered)
    gate.begin()
    trackers = {s: GapTracker(s) for s in SYMS}
    seen = Seen()

    async def handler(ws: ServerConnection) -> None:
        await script(ws)

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/stream",
            compression=None,
            ping_interval=None,
            max_queue=max_queue,
        ) as ws:
            conn = Conn(ws)
            on_connected(conn, gate)
            ended: BaseException | None = None
            try:
                await asyncio.wait_for(
                    read_stream(
                        conn,
                        trackers=trackers,
                        gate=gate,
                        plausibility=Plausibility(),
                        pace=pace,
                        on_gap=seen.gaps.append,
                        on_bad=lambda rej, c: seen.bad.append(rej),
                        on_implausible=lambda t, why, c: seen.implausible.append((t, why)),
                    ),
                    30,
                )
            except ConnectionClosed as exc:
                ended = exc
    return gate, trackers, seen, conn, ended


def test_every_kind_of_frame_is_taken_once_in_order() -> None:
    """One burst (websockets parses it at once): canonical trades drained from its queue,
    interleaved with frames only ``recv()`` and the full path handle."""
    burst: list[Any] = [frame(a) for a in range(1, 301)]
    burst += [
        frame(301, spaced=True),  # a trade in another layout: the full path
        "not json",  # malformed: reported, skipped
        [frame(302)[:40], frame(302)[40:]],  # one message in two fragments
        [frame(5000), "x"],  # a canonical first fragment of a message that is not JSON
        frame(303).encode(),  # a binary frame
        json.dumps({"result": None, "id": 1}),  # a control answer
        *(frame(a) for a in range(304, 601)),
        frame(100),  # a duplicate: dropped
        frame(7, "XRPUSDT"),  # a symbol this connection did not subscribe
        frame(1, "ETHUSDT"),
        frame(650),  # past a gap: 601..649
        frame(651),
    ]

    async def script(ws: ServerConnection) -> None:
        for message in burst:
            await ws.send(message)
        await ws.close()

    gate, trackers, seen, conn, ended = asyncio.run(run_reader(script))
    assert isinstance(ended, ConnectionClosed)  # the reader reads until the connection ends
    btc = gate.take("BTCUSDT")
    assert btc.ids() == [*range(1, 601), 650, 651]
    assert list(btc) == [values(a) for a in [*range(1, 601), 650, 651]]  # every value, exactly
    assert list(gate.take("ETHUSDT")) == [values(1, "ETHUSDT")]
    assert [(g.first_id, g.last_id) for g in seen.gaps] == [(601, 649)]
    assert trackers["BTCUSDT"].duplicates == 1 and trackers["BTCUSDT"].high == 651
    assert [r.reason.split(" (")[0] for r in seen.bad] == [
        "not valid JSON",
        "not valid JSON",
        "trade for unsubscribed symbol 'XRPUSDT'",
    ]
    assert "xrpusdt@aggTrade" in seen.bad[2].excerpt and not seen.implausible
    assert conn.delivered == 603 and conn.first_data.is_set()
    # the canonical frames did not go through recv(): only the others and the waits did
    assert conn.recv_calls < 100


def test_flow_control_resumes_a_connection_paused_by_a_full_queue() -> None:
    """websockets stops reading the socket above ``max_queue`` frames and resumes below a
    quarter of it; the frames drained from its queue must resume it as ``recv()`` would, or
    the connection stalls (then this test times out)."""
    n = 20_000

    async def script(ws: ServerConnection) -> None:
        for a in range(1, n + 1):
            await ws.send(frame(a))
        await ws.close()

    pauses: list[int] = []

    def watch(conn: Conn, gate: IntakeGate) -> None:
        assembler = conn.ws.recv_messages
        pause = assembler.pause

        def counted_pause() -> None:
            pauses.append(len(assembler.frames))
            pause()

        assembler.pause = counted_pause

    gate, _, seen, _, ended = asyncio.run(run_reader(script, max_queue=(16, 4), on_connected=watch))
    assert isinstance(ended, ConnectionClosed)
    assert gate.take("BTCUSDT").ids() == list(range(1, n + 1)) and not seen.gaps
    assert pauses  # the queue did fill up, and reading resumed every time


def test_a_quiet_feed_is_coalesced_and_every_frame_still_arrives() -> None:
    """At a few frames per window the reader pauses the socket for a window and then takes
    what arrived meanwhile in one go; no frame waits longer than about a window."""
    n, every, pace = 30, 0.02, 0.1
    sent: dict[int, float] = {}

    async def script(ws: ServerConnection) -> None:
        for a in range(1, n + 1):
            sent[a] = time.perf_counter()
            await ws.send(frame(a))
            await asyncio.sleep(every)
        await asyncio.sleep(0.3)
        await ws.close()

    pauses: list[float] = []
    lateness: list[float] = []

    def watch(conn: Conn, gate: IntakeGate) -> None:
        transport = conn.ws.transport
        pause = transport.pause_reading

        def counted_pause() -> None:
            pauses.append(time.perf_counter())
            pause()

        transport.pause_reading = counted_pause
        admit = gate.admit_values

        def timed(sym: str, a: int, *rest: Any) -> bool:
            lateness.append(time.perf_counter() - sent[a])
            return admit(sym, a, *rest)

        gate.admit_values = timed  # type: ignore[method-assign]

    gate, *_, ended = asyncio.run(run_reader(script, pace=pace, on_connected=watch))
    assert isinstance(ended, ConnectionClosed)
    assert gate.take("BTCUSDT").ids() == list(range(1, n + 1))
    assert len(pauses) >= 2  # coalesced: the socket was paused window after window
    assert max(lateness) < pace + 0.5  # and nothing waited much longer than a window


def test_the_reader_stops_at_the_gates_bound() -> None:
    async def script(ws: ServerConnection) -> None:
        for a in range(1, 301):
            await ws.send(frame(a))
        await ws.wait_closed()  # the reader returns long before

    gate, _, _, conn, ended = asyncio.run(run_reader(script, max_buffered=100))
    assert ended is None and gate.paused  # returned: intake paused at the bound
    assert gate.take("BTCUSDT").ids() == list(range(1, 101)) and conn.delivered == 100


def test_a_text_frame_that_is_not_utf8_fails_the_connection_as_websockets_does() -> None:
    """Canonical frames before it are taken; the bad frame is left to ``recv()``, which fails
    the connection (close code 1007) exactly as before the reader drained frames itself."""

    async def script(ws: ServerConnection) -> None:
        for a in range(1, 51):
            await ws.send(frame(a))
        await ws.send(frame(51).encode().replace(b"BTCUSDT", b"BTC\xffSDT"), text=True)
        await ws.send(frame(52))
        await ws.wait_closed()

    gate, _, seen, _, ended = asyncio.run(run_reader(script))
    assert isinstance(ended, ConnectionClosedError)
    assert ended.sent is not None and ended.sent.code == 1007
    assert gate.take("BTCUSDT").ids() == list(range(1, 51)) and not seen.bad


@pytest.mark.parametrize("pace", [None, 0.25])
def test_without_websockets_queue_every_frame_goes_through_recv(pace) -> None:
    """A connection without websockets' frame queue (a test double, another version): the
    reader falls back to ``recv()`` for every frame and never pauses reading."""

    class Plain:
        def __init__(self, messages: list[str]) -> None:
            self.messages = messages
            self.transport = None  # never touched: no queue, no coalescing
            self.calls = 0

        async def recv(self) -> str:
            self.calls += 1
            if not self.messages:
                raise ConnectionClosedError(None, None)
            return self.messages.pop(0)

    async def main() -> tuple[IntakeGate, Plain]:
        ws = Plain([frame(a) for a in range(1, 21)])
        conn = Conn.__new__(Conn)
        conn.ws, conn.number, conn.delivered = ws, 1, 0
        conn.first_data, conn.shutdown = asyncio.Event(), asyncio.Event()
        gate = IntakeGate(SYMS, 1000)
        gate.begin()
        with pytest.raises(ConnectionClosedError):
            await read_stream(
                conn,
                trackers={s: GapTracker(s) for s in SYMS},
                gate=gate,
                plausibility=Plausibility(),
                pace=pace,
                on_gap=lambda gap: None,
                on_bad=lambda rej, c: None,
                on_implausible=lambda t, why, c: None,
            )
        return gate, ws

    gate, ws = asyncio.run(main())
    assert gate.take("BTCUSDT").ids() == list(range(1, 21)) and ws.calls == 21
