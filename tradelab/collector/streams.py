"""The collector's stream side: WebSocket connections, their supervision and the hot read path.

One :class:`~tradelab.collector.state.StreamGroup` per combined-stream connection (up to 1024
symbols). Its supervisor keeps one connection open until stop: it reconnects forever with a
:class:`~tradelab.binance.ReconnectPolicy`, rotates the connection before ``rotate_after`` and on
``serverShutdown`` (the new one opens first, the old one closes once the new one delivers), and
sends keepalive pings only on a silent connection, paced by the connection's token bucket.
The read loop feeds every frame through :func:`~tradelab.binance.parse_frame` and the symbol's
gap tracker into the symbol's pending buffer, and pauses intake when the buffer is full
(:meth:`StreamsMixin._pause`; the writer resumes it through :meth:`StreamsMixin._maybe_resume`).
"""

from __future__ import annotations

import asyncio
import contextlib

import websockets
from websockets.exceptions import ConnectionClosed

from tradelab.binance.backoff import ReconnectPolicy
from tradelab.binance.protocol import ControlResponse, Rejection, ServerShutdown, Trade, parse_frame
from tradelab.collector.state import CollectorCore, Connection, StreamGroup
from tradelab.exceptions import EndpointUnreachableError
from tradelab.logs import get_logger

__all__ = ["StreamsMixin"]

log = get_logger("tradelab.collector")

_COALESCE_BELOW = 200  # frames per coalescing window (800/s at 0.25 s); busier feeds never pause
_MALFORMED_LOG_CAP = 50  # malformed-frame ERROR lines per minute; the rest are counted


class StreamsMixin(CollectorCore):
    """The stream connections of :class:`~tradelab.collector.Collector` (a part of it)."""

    async def _supervise(self, group: StreamGroup) -> None:
        """Keep one connection open for ``group`` until stop; survives its own bugs loudly."""
        while not self._stopping:
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
                        EndpointUnreachableError(f"cannot collect from {self.ws_url}: {exc!r}")
                    )
                await self._sleep(1.0)

    async def _supervise_once(self, group: StreamGroup) -> None:
        loop = asyncio.get_running_loop()
        policy = ReconnectPolicy(
            initial=self.reconnect_initial,
            max_delay=self.reconnect_max,
            healthy_after=self.healthy_after,
        )
        first = True
        delay = 0.0
        try:
            while not self._stopping:
                if self._paused:
                    if group.active is not None:
                        await self._close_conn(group.active, "buffer full, intake paused")
                        self._mark_down(group, loop.time())
                        group.active = None
                    assert self._resume is not None
                    await self._resume.wait()
                    delay = 0.0
                    continue
                if group.active is None:
                    if delay and await self._sleep(delay):
                        return
                    try:
                        conn = await self._open(group)
                    except Exception as exc:
                        delay = policy.next_delay(loop.time())
                        reason = self._describe(exc)
                        for s in group.symbols:
                            self._syms[s].last_error = f"connect failed: {reason}"
                        log.error(
                            "Connection to %s failed: %s; retrying in %.1f s",
                            group.url,
                            reason,
                            delay,
                            extra={
                                "event": "connect_failed",
                                "url": group.url,
                                "error": reason,
                                "retry_in": round(delay, 3),
                                "attempt": policy.failures,
                            },
                        )
                        if first and group.first_result is not None:
                            group.first_result.set_exception(
                                EndpointUnreachableError(
                                    f"cannot open the stream at {self.ws_url}: {reason}; check "
                                    "--ws-url (the collector retries forever once it has started)"
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
                if self._stopping:
                    return
                if reason == "closed" and self._paused:
                    continue  # the top of the loop closes it and waits for the store
                if reason == "closed":
                    self._mark_down(group, loop.time())
                    group.active = None
                    delay = policy.next_delay(loop.time())
                    code, why = conn.ws.close_code, conn.ws.close_reason
                    msg = f"code {code}" + (f" ({why})" if why else "")
                    for s in group.symbols:
                        self._syms[s].last_error = f"disconnected: {msg}"
                    log.error(
                        "Connection #%d to %s lost: %s; reconnecting in %.1f s",
                        conn.number,
                        group.url,
                        msg,
                        delay,
                        extra={
                            "event": "disconnected",
                            "url": group.url,
                            "close_code": code,
                            "retry_in": round(delay, 3),
                        },
                    )
                elif reason in ("rotate", "shutdown"):
                    await self._rotate(group, conn, reason, policy)
                    if group.active is conn and not conn.closed.is_set():
                        # rotation failed: retry after a backoff delay, keep the old one
                        conn.opened_at = (
                            loop.time() - self.rotate_after + policy.next_delay(loop.time())
                        )
                        conn.shutdown.clear()
        finally:
            if group.active is not None:
                await self._close_conn(group.active, "collector stopping")
                self._mark_down(group, loop.time())
                group.active = None

    async def _wait_for_trouble(self, conn: Connection) -> str:
        loop = asyncio.get_running_loop()
        assert self._stop_event is not None
        rotate_in = conn.opened_at + self.rotate_after - loop.time()
        waits = {
            asyncio.ensure_future(conn.closed.wait()): "closed",
            asyncio.ensure_future(conn.shutdown.wait()): "shutdown",
            asyncio.ensure_future(self._stop_event.wait()): "stop",
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
        ws = await websockets.connect(
            group.url,
            open_timeout=self.open_timeout,
            ping_interval=None,  # our own keepalive, through the token bucket
            ping_timeout=None,
            close_timeout=2.0,
            compression=None,
            max_size=2**20,
            max_queue=1024,
            user_agent_header="tradelab/0.1",
        )
        self._conn_counter += 1
        group.connects += 1
        return Connection(ws, group.url, loop.time(), self._conn_counter)

    def _attach(
        self, group: StreamGroup, conn: Connection, *, reconnect: bool, reason: str = ""
    ) -> None:
        loop = asyncio.get_running_loop()
        group.active = conn
        if group.connected_since is None:
            group.connected_since = loop.time()
        conn.tasks.append(self._spawn(self._read(conn), f"read-{conn.number}"))
        conn.tasks.append(self._spawn(self._keepalive(conn), f"ping-{conn.number}"))
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
        for s in group.symbols:
            sym = self._syms[s]
            if sym.tracker.high is not None:
                sym.probe = True  # whatever was published while we were away: fetch via REST
        assert self._backfill_wake is not None
        self._backfill_wake.set()

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
                waits, timeout=self.handover_timeout, return_when=asyncio.FIRST_COMPLETED
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
            await asyncio.sleep(self.ping_interval)
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
                await asyncio.wait_for(pong, self.ping_timeout)
            except TimeoutError:
                log.error(
                    "No pong on connection #%d within %.1f s: the connection is dead, closing it",
                    conn.number,
                    self.ping_timeout,
                    extra={"event": "ping_timeout", "connection": conn.number},
                )
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.ws.close(1011, "ping timeout"), 2.0)
                conn.ws.transport.abort()
                return
            except ConnectionClosed:
                return

    async def _read(self, conn: Connection) -> None:
        """The hot path: every frame of one connection.

        Read coalescing: at low rates each frame would wake the event loop on its own (most of
        the CPU a quiet feed costs). So when a window of ``read_coalesce`` seconds brought fewer
        than ``_COALESCE_BELOW`` frames, reading pauses for one window and the kernel buffers
        the frames meanwhile; they are then parsed in one go. Busy feeds never pause.
        """
        syms = self._syms
        ws = conn.ws
        pace = self.read_coalesce
        transport = ws.transport
        # websockets' queue of received frames (to know whether recv() would wait)
        queue = getattr(getattr(ws, "recv_messages", None), "frames", None)
        if queue is None or not hasattr(queue, "__len__"):
            pace = None
        clock = asyncio.get_running_loop().time
        window_end = clock() + (pace or 0.0)
        in_window = 0
        try:
            while True:
                raw = await ws.recv()
                if pace is not None:
                    in_window += 1
                    if not len(queue) and (now := clock()) >= window_end:  # type: ignore[arg-type]
                        quiet = in_window < _COALESCE_BELOW
                        in_window = 0
                        window_end = now + pace
                        if quiet and transport.is_reading():
                            transport.pause_reading()
                            try:
                                await asyncio.sleep(pace)
                            finally:
                                if not transport.is_closing():
                                    transport.resume_reading()
                ev = parse_frame(raw)
                if type(ev) is Trade:
                    st = syms.get(ev.symbol)
                    if st is None:
                        self._bad_frame(
                            Rejection(
                                f"trade for unsubscribed symbol {ev.symbol!r}", str(raw)[:120]
                            ),
                            conn,
                        )
                        continue
                    verdict = st.tracker.observe(ev.agg_id, ev.time)
                    if verdict is False:
                        continue
                    st.pending.append(ev)
                    self._buffered += 1
                    if verdict is not True:
                        self._gap_detected(verdict)
                    if not conn.delivered:
                        conn.first_data.set()
                    conn.delivered += 1
                    if self._buffered >= self.max_buffered:
                        self._pause()
                        return
                elif type(ev) is Rejection:
                    self._bad_frame(ev, conn)
                elif type(ev) is ServerShutdown:
                    log.warning(
                        "Server announced shutdown on connection #%d: reconnecting now",
                        conn.number,
                        extra={"event": "server_shutdown", "connection": conn.number},
                    )
                    conn.shutdown.set()
                elif type(ev) is ControlResponse:
                    log.debug("Control response %r", ev)
        except ConnectionClosed:
            pass
        finally:
            conn.closed.set()

    def _bad_frame(self, ev: Rejection, conn: Connection) -> None:
        self._malformed += 1
        if self._malformed_logged < _MALFORMED_LOG_CAP:
            self._malformed_logged += 1
            log.error(
                "Skipped a malformed frame on connection #%d: %s; frame starts %r",
                conn.number,
                ev.reason,
                ev.excerpt,
                extra={
                    "event": "malformed_frame",
                    "reason": ev.reason,
                    "excerpt": ev.excerpt,
                    "connection": conn.number,
                },
            )

    def _pause(self) -> None:
        if self._paused:
            return
        self._paused = True
        assert self._resume is not None
        self._resume.clear()
        log.error(
            "BUFFER FULL: %d trades are waiting for the store (max_buffered=%d). Pausing intake: "
            "closing the stream until the store accepts writes; trades published meanwhile "
            "will be backfilled through REST. Nothing buffered is dropped.",
            self._buffered_total(),
            self.max_buffered,
            extra={
                "event": "buffer_full",
                "buffered": self._buffered_total(),
                "max_buffered": self.max_buffered,
            },
        )
        for g in self._groups:
            if g.active is not None:
                g.active.closed.set()  # wakes the supervisor, which closes and waits

    def _maybe_resume(self) -> None:
        if self._paused and self._buffered_total() <= self.max_buffered // 2:
            self._paused = False
            assert self._resume is not None
            self._resume.set()
            log.warning(
                "The store caught up (%d trades buffered): resuming intake",
                self._buffered_total(),
                extra={"event": "buffer_resumed", "buffered": self._buffered_total()},
            )

    @staticmethod
    def _describe(exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
            return f"{type(exc).__name__}: {text}"
        if isinstance(exc, TimeoutError):
            return "timed out"
        return text
