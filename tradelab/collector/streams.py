"""The stream supervisor: WebSocket connections, their supervision and the hot read path.

One :class:`StreamGroup` per combined-stream connection (up to ``max_streams`` symbols). Its
supervising task keeps one connection open until stop: it reconnects forever with a
:class:`~tradelab.binance.ReconnectPolicy`, rotates the connection before ``rotate_after`` and
on ``serverShutdown`` (the new one opens first, the old one closes once the new one delivers),
and sends keepalive pings only on a silent connection, paced by the connection's token bucket.

The read loop (:mod:`~tradelab.collector.reader`) feeds every frame through the protocol's
parser and the symbol's :class:`~tradelab.binance.GapTracker`; a new trade enters the
:class:`~tradelab.collector.gate.IntakeGate`, a gap goes to ``on_gap`` (the backfiller). When
the gate pauses intake (buffer full) the supervisor closes its connections and waits for the
gate to open again; after every (re)connect it calls ``on_connected`` (the backfiller fetches
the tail published meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tradelab.binance.backoff import AttemptWindow, ReconnectPolicy, TokenBucket
from tradelab.binance.gaps import Gap, GapTracker
from tradelab.binance.protocol import (
    Plausibility,
    Rejection,
    Trade,
    build_stream_urls,
    split_streams,
)
from tradelab.collector import reports
from tradelab.collector.gate import IntakeGate
from tradelab.collector.reader import read_stream
from tradelab.collector.runtime import LastErrors, StopSignal, TaskSet
from tradelab.collector.settings import CollectorSettings
from tradelab.exceptions import EndpointUnreachableError
from tradelab.logs import get_logger

__all__ = ["Connection", "StreamGroup", "StreamSpec", "StreamSupervisor"]

log = get_logger("tradelab.collector")

# The read side's memory bound: websockets stops reading the socket once _MAX_QUEUE frames wait
# (so a flood stays in the kernel's buffer and the server's: backpressure is the socket), and
# refuses a frame over _MAX_FRAME bytes (an aggTrade frame is ~250 bytes; the largest control
# answer, 1024 stream names, ~30 KB): at most 32 MiB however fast the input, ~130 KB in practice.
_MAX_FRAME = 2**16
_MAX_QUEUE = 512
_MALFORMED_LOG_CAP = 50  # malformed-frame ERROR lines per minute; the rest are counted


class StreamSpec(NamedTuple):
    """One planned combined-stream connection: its symbols and its URL (read-only)."""

    symbols: tuple[str, ...]
    url: str


class Connection:
    """One open WebSocket connection and its tasks."""

    def __init__(self, ws: ClientConnection, url: str, opened_at: float, n: int) -> None:
        self.ws = ws
        self.url = url
        self.opened_at = opened_at
        self.number = n
        self.delivered = 0
        self.first_data = asyncio.Event()
        self.closed = asyncio.Event()
        self.shutdown = asyncio.Event()
        self.retiring = False
        self.bucket = TokenBucket(4.0, 1.0, now=opened_at)  # <= 5 messages in any second
        self.tasks: list[asyncio.Task[Any]] = []


class StreamGroup:
    """The symbols sharing one combined-stream connection, and that connection's uptime."""

    def __init__(self, symbols: tuple[str, ...], url: str) -> None:
        self.symbols = symbols
        self.url = url
        self.active: Connection | None = None
        self.connected_since: float | None = None
        self.connected_total = 0.0
        self.connects = 0
        self.first_result: asyncio.Future[None] | None = None

    def uptime(self, now: float) -> float:
        """Seconds connected so far (loop time ``now``)."""
        extra = now - self.connected_since if self.connected_since is not None else 0.0
        return self.connected_total + extra

    @property
    def connected(self) -> bool:
        """True while a connection is open (not closed nor being closed)."""
        return self.active is not None and not self.active.closed.is_set()


class StreamSupervisor:
    """The stream connections of a collector: one supervising task per :class:`StreamGroup`."""

    def __init__(
        self,
        settings: CollectorSettings,
        trackers: Mapping[str, GapTracker],
        gate: IntakeGate,
        stop: StopSignal,
        errors: LastErrors,
        *,
        on_gap: Callable[[Gap], None],
        on_connected: Callable[[tuple[str, ...]], None],
        on_suspect: Callable[[Trade, str], None] | None = None,
        plausibility: Plausibility | None = None,
    ) -> None:
        self._settings = settings
        self._trackers = trackers
        self._gate = gate
        self._stop = stop
        self._errors = errors
        self._on_gap = on_gap
        self._on_connected = on_connected
        self._on_suspect = on_suspect
        self.plausibility = plausibility or Plausibility(settings.max_id_jump)
        """The rules a streamed trade must meet to be taken without asking REST (the
        collector sets it from the store's retention at start)."""
        self.implausible = 0
        """Streamed trades skipped as implausible (handed to ``on_suspect``)."""
        self._tasks = TaskSet()
        self._malformed = 0
        self._malformed_logged = 0
        self._conn_counter = 0
        # connection attempts of every group (Binance counts them per IP), sliding window
        self.attempts = AttemptWindow(settings.max_connect_attempts, settings.connect_window)
        symbols = settings.symbols
        urls = build_stream_urls(settings.ws_url, symbols, max_streams=settings.max_streams)
        self.groups: tuple[StreamGroup, ...] = tuple(
            StreamGroup(g, u)
            for g, u in zip(split_streams(symbols, settings.max_streams), urls, strict=True)
        )
        gate.on_pause(self._interrupt_all)

    # --- for the collector ------------------------------------------------------------------

    @property
    def specs(self) -> tuple[StreamSpec, ...]:
        """The planned connections (symbols and URL of each), read-only."""
        return tuple(StreamSpec(g.symbols, g.url) for g in self.groups)

    def launch(self, *, check: bool) -> list[asyncio.Task[Any]]:
        """Start one supervising task per group; their handles. With ``check`` each group's
        first connection attempt is reported to :meth:`first_attempts`."""
        loop = asyncio.get_running_loop()
        handles = []
        for group in self.groups:
            group.first_result = loop.create_future() if check else None
            handles.append(self._tasks.spawn(self._supervise(group), f"stream-{group.symbols[0]}"))
        return handles

    async def first_attempts(self) -> None:
        """Wait for every group's first connection attempt (after ``launch(check=True)``);
        raises :class:`EndpointUnreachableError` if one failed."""
        for group in self.groups:
            assert group.first_result is not None
            await group.first_result

    async def close_all(self) -> None:
        """Close every open connection (stop: no new frames)."""
        conns = [g.active for g in self.groups if g.active is not None]
        await asyncio.gather(
            *(self._close_conn(c, "collector stopping") for c in conns), return_exceptions=True
        )

    def live_tasks(self) -> list[asyncio.Task[Any]]:
        """Tasks of this part still running (supervisors, readers, keepalives)."""
        return self._tasks.live()

    def link_state(self, now: float) -> dict[str, tuple[bool, float]]:
        """Per symbol: (its connection is open, seconds connected so far) at loop time ``now``."""
        return {s: (g.connected, g.uptime(now)) for g in self.groups for s in g.symbols}

    def _interrupt_all(self) -> None:
        """Intake paused: wake every supervisor, which closes its connection and waits."""
        for g in self.groups:
            if g.active is not None:
                g.active.closed.set()

    # --- supervision ------------------------------------------------------------------------

    async def _supervise(self, group: StreamGroup) -> None:
        """Keep one connection open for ``group`` until stop; survives its own bugs loudly."""
        while not self._stop.stopping:
            try:
                await self._supervise_once(group)
                return
            except Exception as exc:
                log.critical(
                    "Stream supervisor for %s failed unexpectedly: %r; restarting it",
                    group.url,
                    exc,
                    exc_info=exc,
                    extra={"event": "supervisor_crashed", "url": group.url},
                )
                if group.first_result is not None and not group.first_result.done():
                    group.first_result.set_exception(
                        EndpointUnreachableError(
                            f"cannot collect from {self._settings.ws_url}: {exc!r}"
                        )
                    )
                await self._stop.sleep(1.0)

    async def _supervise_once(self, group: StreamGroup) -> None:
        loop = asyncio.get_running_loop()
        st = self._settings
        policy = ReconnectPolicy(
            initial=st.reconnect_initial,
            max_delay=st.reconnect_max,
            healthy_after=st.healthy_after,
        )
        first = True
        delay = 0.0
        try:
            while not self._stop.stopping:
                if self._gate.paused:
                    if group.active is not None:
                        await self._close_conn(group.active, "buffer full, intake paused")
                        self._mark_down(group, loop.time())
                        group.active = None
                    await self._gate.wait_open()
                    delay = 0.0
                    continue
                if group.active is None:
                    if delay and await self._stop.sleep(delay):
                        return
                    try:
                        conn = await self._open(group)
                    except Exception as exc:
                        if self._stop.stopping:
                            return
                        delay = policy.next_delay(loop.time())
                        reason = self._describe(exc)
                        for s in group.symbols:
                            self._errors.report(s, f"connect failed: {reason}")
                        reports.connect_failed(group.url, reason, delay, policy.failures)
                        if first and group.first_result is not None:
                            group.first_result.set_exception(
                                EndpointUnreachableError(
                                    f"cannot open the stream at {self._settings.ws_url}: "
                                    f"{reason}; check --ws-url (the collector retries "
                                    "forever once it has started)"
                                )
                            )
                            group.first_result.exception()  # mark retrieved
                            return
                        continue
                    first = False
                    if group.first_result is not None and not group.first_result.done():
                        group.first_result.set_result(None)
                    policy.connected(loop.time())
                    self._attach(group, conn, reconnect=group.connects > 1)
                    continue
                conn = group.active
                reason = await self._wait_for_trouble(conn)
                if self._stop.stopping:
                    return
                if reason == "closed" and self._gate.paused:
                    continue  # the top of the loop closes it and waits for the store
                if reason == "closed":
                    self._mark_down(group, loop.time())
                    group.active = None
                    delay = policy.next_delay(loop.time(), delivered=conn.delivered > 0)
                    code, why = conn.ws.close_code, conn.ws.close_reason
                    msg = f"code {code}" + (f" ({why})" if why else "")
                    for s in group.symbols:
                        self._errors.report(s, f"disconnected: {msg}")
                    reports.disconnected(conn.number, group.url, code, msg, delay)
                elif reason in ("rotate", "shutdown"):
                    await self._rotate(group, conn, reason, policy)
                    if group.active is conn and not conn.closed.is_set():
                        # rotation failed: retry after a backoff delay, keep the old one
                        conn.opened_at = (
                            loop.time()
                            - self._settings.rotate_after
                            + policy.next_delay(loop.time())
                        )
                        conn.shutdown.clear()
        finally:
            if group.active is not None:
                await self._close_conn(group.active, "collector stopping")
                self._mark_down(group, loop.time())
                group.active = None

    async def _wait_for_trouble(self, conn: Connection) -> str:
        loop = asyncio.get_running_loop()
        rotate_in = conn.opened_at + self._settings.rotate_after - loop.time()
        waits = {
            asyncio.ensure_future(conn.closed.wait()): "closed",
            asyncio.ensure_future(conn.shutdown.wait()): "shutdown",
            asyncio.ensure_future(self._stop.wait()): "stop",
            asyncio.ensure_future(asyncio.sleep(max(0.0, rotate_in))): "rotate",
        }
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in waits:
                f.cancel()
        for key in ("stop", "closed", "shutdown", "rotate"):
            if any(waits[f] == key for f in done):
                return key
        return "closed"  # pragma: no cover

    async def _open(self, group: StreamGroup) -> Connection:
        loop = asyncio.get_running_loop()
        await self._attempt_allowed()
        self.attempts.record(loop.time())
        ws = await websockets.connect(
            group.url,
            open_timeout=self._settings.open_timeout,
            ping_interval=None,  # our own keepalive, through the token bucket
            ping_timeout=None,
            close_timeout=2.0,
            compression=None,
            max_size=_MAX_FRAME,
            max_queue=_MAX_QUEUE,
            user_agent_header="tradelab/0.1",
        )
        self._conn_counter += 1
        group.connects += 1
        return Connection(ws, group.url, loop.time(), self._conn_counter)

    async def _attempt_allowed(self) -> None:
        """Wait until one more connection attempt fits ``max_connect_attempts`` per
        ``connect_window`` (Binance: 300 per 5 minutes per IP); raises ConnectionAbortedError
        if the collector stops meanwhile."""
        loop = asyncio.get_running_loop()
        window = self.attempts
        while (wait := window.delay(loop.time())) > 0:
            if wait >= 1.0:
                reports.attempts_paced(window.count(loop.time()), window, wait)
            if await self._stop.sleep(wait):
                raise ConnectionAbortedError("the collector is stopping")

    def _attach(
        self, group: StreamGroup, conn: Connection, *, reconnect: bool, reason: str = ""
    ) -> None:
        loop = asyncio.get_running_loop()
        group.active = conn
        if group.connected_since is None:
            group.connected_since = loop.time()
        conn.tasks.append(self._tasks.spawn(self._read(conn), f"read-{conn.number}"))
        conn.tasks.append(self._tasks.spawn(self._keepalive(conn), f"ping-{conn.number}"))
        what = "Reconnected" if reconnect else "Connected"
        if reason:
            what = f"Connected ({reason})"
        log.info(
            "%s to %s (connection #%d, %d symbols)",
            what,
            group.url,
            conn.number,
            len(group.symbols),
            extra={
                "event": "connected",
                "url": group.url,
                "connection": conn.number,
                "symbols": list(group.symbols),
                "reconnect": reconnect,
            },
        )
        self._on_connected(group.symbols)  # whatever was published while we were away: REST

    def _mark_down(self, group: StreamGroup, now: float) -> None:
        if group.connected_since is not None:
            group.connected_total += now - group.connected_since
            group.connected_since = None

    async def _rotate(
        self, group: StreamGroup, old: Connection, reason: str, policy: ReconnectPolicy
    ) -> None:
        loop = asyncio.get_running_loop()
        why = (
            "the server announced a shutdown"
            if reason == "shutdown"
            else f"connection #{old.number} is {loop.time() - old.opened_at:.0f} s old"
        )
        log.info(
            "Rotating the stream connection: %s; opening the new one first",
            why,
            extra={"event": "rotate", "reason": reason, "connection": old.number},
        )
        try:
            new = await self._open(group)
        except Exception as exc:
            log.error(
                "Opening the replacement connection failed: %s; keeping #%d for now",
                self._describe(exc),
                old.number,
                extra={"event": "rotate_failed", "error": self._describe(exc)},
            )
            return
        policy.connected(loop.time())
        old.retiring = True
        self._attach(group, new, reconnect=True, reason=f"replacing #{old.number}")
        waits = [
            asyncio.ensure_future(new.first_data.wait()),
            asyncio.ensure_future(new.closed.wait()),
            asyncio.ensure_future(old.closed.wait()),
        ]
        try:
            await asyncio.wait(
                waits, timeout=self._settings.handover_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for w in waits:
                w.cancel()
        await self._close_conn(old, "rotated")
        log.info(
            "Connection #%d closed after #%d delivered %d frames",
            old.number,
            new.number,
            new.delivered,
            extra={"event": "rotated", "old": old.number, "new": new.number},
        )

    async def _close_conn(self, conn: Connection, why: str) -> None:
        conn.retiring = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(1000, why[:100]), 3.0)
        for t in conn.tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*conn.tasks, return_exceptions=True)
        conn.closed.set()

    async def _keepalive(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        seen = -1
        while True:
            await asyncio.sleep(self._settings.ping_interval)
            if conn.delivered != seen:  # frames arrive: the connection is alive, no ping needed
                seen = conn.delivered
                continue
            while (d := conn.bucket.acquire_delay(loop.time())) > 0:
                await asyncio.sleep(d)
            try:
                pong = await conn.ws.ping()
            except ConnectionClosed:
                return
            try:
                await asyncio.wait_for(pong, self._settings.ping_timeout)
            except TimeoutError:
                log.error(
                    "No pong on connection #%d within %.1f s: the connection is dead, closing it",
                    conn.number,
                    self._settings.ping_timeout,
                    extra={"event": "ping_timeout", "connection": conn.number},
                )
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.ws.close(1011, "ping timeout"), 2.0)
                conn.ws.transport.abort()
                return
            except ConnectionClosed:
                return

    async def _read(self, conn: Connection) -> None:
        """The hot path (:func:`~tradelab.collector.reader.read_stream`) for one connection."""
        try:
            await read_stream(
                conn,
                trackers=self._trackers,
                gate=self._gate,
                plausibility=self.plausibility,
                pace=self._settings.read_coalesce,
                on_gap=self._on_gap,
                on_bad=self._bad_frame,
                on_implausible=self._implausible,
            )
        except ConnectionClosed:
            pass
        finally:
            conn.closed.set()

    def _implausible(self, trade: Trade, why: str, conn: Connection) -> None:
        """A well-formed but implausible trade: skipped, logged (capped like malformed
        frames), and handed over to be verified against REST before anything is stored."""
        self.implausible += 1
        if self._malformed_logged < _MALFORMED_LOG_CAP:
            self._malformed_logged += 1
            reports.implausible_trade(trade, why, conn.number)
        if self._on_suspect is not None:
            self._on_suspect(trade, why)

    def _bad_frame(self, ev: Rejection, conn: Connection) -> None:
        self._malformed += 1
        if self._malformed_logged < _MALFORMED_LOG_CAP:
            self._malformed_logged += 1
            reports.malformed_frame(ev.reason, ev.excerpt, conn.number)

    @staticmethod
    def _describe(exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
            return f"{type(exc).__name__}: {text}"
        if isinstance(exc, TimeoutError):
            return "timed out"
        return text
