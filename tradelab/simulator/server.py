"""The Binance-compatible simulator: WebSocket streams and REST on one asyncio port.

One ``websockets`` server answers both: WebSocket upgrades on ``/ws/<stream>``, ``/ws`` and
``/stream?streams=a/b`` go to the stream handler, and plain HTTP ``GET /api/v3/...`` requests
are answered from the ``process_request`` hook (``Connection: close``, one request per TCP
connection, which every HTTP client handles).

Per symbol a feed task pulls trades from its source, maps source time onto the wall clock,
applies the stream faults (skipped ids, malformed frames), records what it made available in
a :class:`~tradelab.simulator.history.TradeHistory` (served by REST, exposed by
:meth:`Simulator.published`) and queues the frames for each subscribed connection
(:mod:`tradelab.simulator.feeds`). Each connection has a sender task and a watcher that applies
the connection faults (drops, stalls, lifetime, ``serverShutdown``); keepalive pings are
websockets' own (:mod:`tradelab.simulator.connections`). :class:`Simulator` is assembled from
those parts — a :class:`~tradelab.simulator.connections.StreamEndpoint`, a
:class:`~tradelab.simulator.feeds.FeedRunner` and a
:class:`~tradelab.simulator.restapi.RestApi` — which share its counters, random source and
faults; this module holds its settings, lifecycle (also in a background thread) and the
dispatch of HTTP requests.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from tradelab.config import parse_symbols
from tradelab.exceptions import CollectorStateError, ConfigurationError, InvalidParameterError
from tradelab.logs import get_logger
from tradelab.simulator import protocol as proto
from tradelab.simulator.archives import ArchiveServer
from tradelab.simulator.connections import SimConnection, StreamEndpoint, now_ms
from tradelab.simulator.faults import Faults
from tradelab.simulator.feeds import Feed, FeedRunner
from tradelab.simulator.history import RangeSet, TradeHistory
from tradelab.simulator.restapi import RequestRecord, RestApi
from tradelab.simulator.sources import (
    ReplaySource,
    SyntheticSource,
    TradeSource,
    infer_tick,
    load_recordings,
)

__all__ = ["Simulator"]

log = get_logger("tradelab.simulator")


class Simulator:
    """A local Binance: aggTrade streams and REST history for ``symbols``, with faults.

    Args:
        symbols: symbols to serve (``"BTCUSDT,ETHUSDT"`` or an iterable).
        source: ``"synthetic"`` (random walk, any symbol), ``"recordings"`` (each symbol's
            shared recording), a recording file name/path, or a mapping symbol -> trade frame.
        speed: 1 = recorded pace, N = N× faster; 0 or ``math.inf`` = as fast as clients read
            (then production pauses while nobody subscribes, unless ``max_trades`` is set).
        faults: the :class:`Faults` to inject (none by default); see :meth:`set_faults`.
        host, port: where to listen; port 0 picks a free port (see :attr:`port`).
        seed: seeds the synthetic data and every random fault decision.
        rate_per_s: synthetic trades per second per symbol at speed 1 (default ~24 for BTC).
        first_agg_id: the first agg id of the first symbol (the next symbols get + 1e9 each);
            default: synthetic ids start at a realistic, time-based number, replays keep the
            recorded ids.
        loop: replay recordings forever (ids and times shifted each round) or once.
        max_trades: stop producing after this many trades per symbol (None: never).
        history_limit: trades kept per symbol for REST and :meth:`published_frame` (the id
            accounting of :meth:`published` is never trimmed).
        weight_limit: REST weight per minute before HTTP 429 (Binance: 6000); a client that
            comes back before its ``Retry-After`` twice is banned: HTTP 418 for
            ``ban_seconds``.
        rest_clock: the REST side's clock (unix seconds) for its per-minute weight and bans;
            tests run it faster than the wall clock to see minutes pass in seconds.
        history_hours: seed this many hours of synthetic history before going live (trades
            up to now, served by REST and, for every UTC day that has ended, as daily
            archives under ``/data/spot/daily/aggTrades/...``); synthetic source only.
        max_incoming_per_second: incoming frames per connection per second before the
            connection is closed (Binance: 5; None disables).
        send_queue_limit: frames queued for one slow client before it is disconnected.
    """

    def __init__(
        self,
        symbols: str | Sequence[str] = ("BTCUSDT", "ETHUSDT"),
        *,
        source: str | Path | Mapping[str, pl.DataFrame] = "synthetic",
        speed: float = 1.0,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        rate_per_s: float | None = None,
        first_agg_id: int | None = None,
        loop: bool = True,
        max_trades: int | None = None,
        history_limit: int | None = 2_000_000,
        weight_limit: int = 6000,
        max_incoming_per_second: int | None = 5,
        send_queue_limit: int = 200_000,
        history_hours: float = 0.0,
        ban_seconds: int = 120,
        rest_clock: Callable[[], float] = time.time,
    ) -> None:
        self.symbols = parse_symbols(symbols)
        if (
            isinstance(speed, bool)
            or not isinstance(speed, int | float)
            or speed < 0
            or (speed != speed)
        ):
            raise InvalidParameterError(
                f"speed must be a number >= 0 (1 = real time, 10 = ten times faster, 0 or inf "
                f"= as fast as possible), got {speed!r}"
            )
        self.speed = math.inf if speed in (0, math.inf) else float(speed)
        if faults is not None and not isinstance(faults, Faults):
            raise InvalidParameterError(f"faults must be a Faults value, got {type(faults)}")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidParameterError(f"port must be an integer 0..65535, got {port!r}")
        for name, value, low in (
            ("max_trades", max_trades, 1),
            ("history_limit", history_limit, 1000),
            ("max_incoming_per_second", max_incoming_per_second, 1),
        ):
            if value is not None and (not isinstance(value, int) or value < low):
                raise InvalidParameterError(
                    f"{name} must be an integer >= {low} or None, got {value!r}"
                )
        for name, value, low in (
            ("weight_limit", weight_limit, 1),
            ("send_queue_limit", send_queue_limit, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise InvalidParameterError(f"{name} must be an integer >= {low}, got {value!r}")
        if (
            isinstance(source, str)
            and source not in ("synthetic", "recordings")
            and not (source.endswith((".gz", ".csv", ".tsv", ".txt")))
        ):
            raise InvalidParameterError(
                f"source must be 'synthetic', 'recordings', a recording file name or path, or "
                f"a mapping of symbol -> trades frame; got {source!r}"
            )
        if rate_per_s is not None and (
            isinstance(rate_per_s, bool)
            or not isinstance(rate_per_s, int | float)
            or not 0 < rate_per_s < math.inf
        ):
            raise InvalidParameterError(
                f"rate_per_s must be a number of trades per second > 0, got {rate_per_s!r}"
            )
        if first_agg_id is not None and (
            isinstance(first_agg_id, bool) or not isinstance(first_agg_id, int) or first_agg_id < 1
        ):
            raise InvalidParameterError(
                f"first_agg_id must be an integer >= 1 or None, got {first_agg_id!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidParameterError(f"seed must be an integer, got {seed!r}")
        if (
            isinstance(history_hours, bool)
            or not isinstance(history_hours, int | float)
            or not 0 <= history_hours <= 24 * 31
        ):
            raise InvalidParameterError(
                f"history_hours must be a number of hours from 0 to 744, got {history_hours!r}"
            )
        if history_hours and source != "synthetic":
            raise InvalidParameterError(
                "history_hours seeds synthetic history: use source='synthetic' with it"
            )
        if isinstance(ban_seconds, bool) or not isinstance(ban_seconds, int) or ban_seconds < 1:
            raise InvalidParameterError(f"ban_seconds must be an integer >= 1, got {ban_seconds!r}")
        self.history_hours = float(history_hours)
        self.source = source
        self.host = host
        self.requested_port = port
        self.seed = seed
        self.rate_per_s = rate_per_s
        self.first_agg_id = first_agg_id
        self.loop = loop
        self.max_trades = max_trades
        self.history_limit = history_limit
        self.weight_limit = weight_limit
        self.max_incoming_per_second = max_incoming_per_second
        self.send_queue_limit = send_queue_limit
        self._faults = faults or Faults()
        self._rng = random.Random(seed)
        self._histories = {s: TradeHistory(s, limit=history_limit) for s in self.symbols}
        self._feeds: dict[str, Feed] = {}
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._counts: Counter[str] = Counter()
        self._endpoint = StreamEndpoint(
            symbols=self.symbols,
            feeds=self._feeds,
            faults=lambda: self._faults,
            rng=self._rng,
            counts=self._counts,
            max_incoming_per_second=max_incoming_per_second,
        )
        self._requests: deque[RequestRecord] = deque(maxlen=200_000)  # the request log
        self._rest = RestApi(
            self._histories,
            faults=self._faults,
            counts=self._counts,
            rng=self._rng,
            weight_limit=weight_limit,
            requests=self._requests,
            ban_seconds=ban_seconds,
            clock=rest_clock,
        )
        self._archives = ArchiveServer(self._histories, faults=lambda: self._faults)
        self._thread: _SimThread | None = None
        self.port: int | None = None

    # --- public API ---------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults

    def set_faults(self, faults: Faults) -> None:
        """Switch faults at runtime (thread-safe); the REST countdown restarts."""
        if not isinstance(faults, Faults):
            raise InvalidParameterError(f"faults must be a Faults value, got {type(faults)}")
        self._faults = faults
        self._rest.set_faults(faults)
        log.info(
            "Simulator faults set: %s",
            faults.active or "none",
            extra={"faults": {k: str(v) for k, v in faults.active.items()}},
        )

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def ws_url(self) -> str:
        """Stream base URL (clients append ``/stream?streams=...`` or ``/ws/<stream>``)."""
        return f"ws://{self._url_host}:{self._require_port()}"

    @property
    def rest_url(self) -> str:
        """REST base URL (clients append ``/api/v3/aggTrades?...``)."""
        return f"http://{self._url_host}:{self._require_port()}"

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def _require_port(self) -> int:
        if self.port is None:
            raise CollectorStateError("the simulator is not started: call start() first")
        return self.port

    @property
    def archive_url(self) -> str:
        """Daily-archive base URL (clients append ``/data/spot/daily/aggTrades/...``): the
        simulator's data.binance.vision, on the same port."""
        return self.rest_url

    @property
    def requests(self) -> list[RequestRecord]:
        """The HTTP requests answered (REST and archives; the last 200,000), oldest first."""
        return list(self._requests)

    def history_frame(self, symbol: str, start_ms: int, end_ms: int) -> pl.DataFrame:
        """The published trades of ``symbol`` with ``start_ms <= time < end_ms`` (trade
        schema): what a complete store holds for that window."""
        return self._history(symbol).between(start_ms, end_ms)

    def published(self, symbol: str) -> list[int]:
        """Every agg id made available for ``symbol`` (stream or REST), ascending."""
        return RangeSet(self._history(symbol).published_ranges()).to_list()

    def published_ranges(self, symbol: str) -> RangeSet:
        """The published agg ids of ``symbol`` as compact inclusive ranges."""
        return RangeSet(self._history(symbol).published_ranges())

    def published_frame(self, symbol: str) -> pl.DataFrame:
        """The published trades of ``symbol`` in the trade schema (the last ``history_limit``
        of them; compare with what a collector stored)."""
        return self._history(symbol).frame()

    def rest_malformed_ids(self, symbol: str) -> list[int]:
        """The agg ids REST served malformed so far (``Faults.rest_malformed_every``),
        ascending."""
        self._history(symbol)
        return sorted(self._rest.malformed_served.get(symbol.upper(), ()))

    def unrepairable(self, symbol: str) -> list[tuple[int, int]]:
        """The id ranges skipped on both stream and REST (holes in :meth:`published`)."""
        return RangeSet(self._history(symbol).published_ranges()).gaps()

    def stats(self) -> dict[str, Any]:
        """Counters since start (a snapshot; safe from any thread).

        Keys (absent while zero): ``connections_opened``, ``connections_open``,
        ``closed_<reason>`` for reason in client, drop, lifetime, shutdown, ping_timeout,
        rate_limit, slow_consumer, server_stop; ``drops``, ``stalls``, ``shutdown_events``;
        ``gaps_injected``, ``gaps_unrepairable``, ``skipped_ids_repairable``,
        ``skipped_ids_unrepairable``; ``malformed_frames`` and ``malformed_<kind>``;
        ``absurd_frames`` and ``absurd_<kind>``; ``rest_items_malformed``;
        ``trades_published``, ``frames_sent``, ``frames_dropped_stalled``,
        ``control_messages``; ``rest_requests``, ``rest_agg_trades``, ``rest_400``,
        ``rest_404``, ``rest_429``, ``rest_418``, ``rest_errors_injected``; and
        ``published`` = {symbol: ids published}.
        """
        out: dict[str, Any] = dict(sorted(dict(self._counts).items()))
        out["connections_open"] = len(self._endpoint.conns)
        out["published"] = {s: len(h.published) for s, h in self._histories.items()}
        return out

    def _history(self, symbol: str) -> TradeHistory:
        sym = symbol.upper() if isinstance(symbol, str) else symbol
        if sym not in self._histories:
            raise InvalidParameterError(
                f"{symbol!r} is not simulated; symbols: {', '.join(self.symbols)}"
            )
        return self._histories[sym]

    def __repr__(self) -> str:
        where = f" on {self.ws_url}" if self.port is not None else ""
        return (
            f"Simulator({','.join(self.symbols)}, source={self._source_label()!r}, "
            f"speed={self.speed:g}{where}, faults={self._faults.active or 'none'})"
        )

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> Simulator:
        """Build the sources, listen on ``host:port`` and start publishing; returns self."""
        if self._server is not None:
            raise CollectorStateError("the simulator is already running")
        sources = self._build_sources()
        if self.history_hours:
            await asyncio.to_thread(self._seed_history, sources)
        try:
            self._server = await serve(
                self._endpoint.handle,
                self.host,
                self.requested_port,
                process_request=self._process_request,
                create_connection=self._endpoint.create_connection,  # type: ignore[arg-type]
                compression=None,
                max_size=2**16,
                close_timeout=2,
            )
        except OSError as exc:
            raise ConfigurationError(
                f"the simulator cannot listen on {self.host}:{self.requested_port}: "
                f"{exc.strerror or exc} (choose another --port, or 0 for any free port)"
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]
        runner = FeedRunner(
            endpoint=self._endpoint,
            faults=lambda: self._faults,
            rng=self._rng,
            counts=self._counts,
            speed=self.speed,
            max_trades=self.max_trades,
            send_queue_limit=self.send_queue_limit,
        )
        wall0 = time.time() * 1000.0
        for sym, src in sources.items():
            feed = Feed(sym, src, self._histories[sym], wall0=wall0)
            self._feeds[sym] = feed
            self._tasks.append(asyncio.create_task(runner.run(feed), name=f"sim-feed-{sym}"))
        log.info(
            "Simulator serving %s on %s (REST %s), source %s, speed %s",
            ",".join(self.symbols),
            self.ws_url,
            self.rest_url,
            self._source_label(),
            "max" if self.speed == math.inf else f"{self.speed:g}x",
            extra={
                "symbols": list(self.symbols),
                "ws_url": self.ws_url,
                "rest_url": self.rest_url,
                "speed": self.speed,
            },
        )
        return self

    async def stop(self) -> None:
        """Stop publishing, close every connection (1001) and the listening socket."""
        server, self._server = self._server, None
        if server is None:
            return
        for t in self._tasks:
            t.cancel()
        for c in list(self._endpoint.conns):
            if c.stalled_until:
                c.stalled_until = 0.0
                c.ws.thaw()
            if c.close_reason is None:
                c.close_reason = "server_stop"
        server.close(close_connections=True)
        await server.wait_closed()
        for t in [*self._tasks, *self._endpoint.tasks]:
            t.cancel()
        await asyncio.gather(*self._tasks, *self._endpoint.tasks, return_exceptions=True)
        self._tasks.clear()
        self._feeds.clear()
        log.info("Simulator stopped", extra={"stats": self.stats()})

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def run_in_thread(self) -> Simulator:
        """Start in a background thread with its own event loop (for synchronous tests and
        notebooks); stop with :meth:`stop_thread` or use ``with Simulator(...) as sim:``."""
        if self._thread is not None:
            raise CollectorStateError("the simulator already runs in a thread")
        self._thread = _SimThread(self)
        try:
            self._thread.begin()
        except BaseException:
            self._thread = None
            raise
        return self

    def stop_thread(self) -> None:
        """Stop a simulator started by :meth:`run_in_thread` and join its thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.end()

    def __enter__(self) -> Simulator:
        return self.run_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()

    def _seed_history(self, sources: Mapping[str, TradeSource]) -> None:
        """Publish ``history_hours`` of synthetic trades up to now (REST and archives only)."""
        end = now_ms()
        for sym, src in sources.items():
            assert isinstance(src, SyntheticSource)
            frame = src.take_until(end)
            hist = self._histories[sym]
            hist.append_frame(frame)
            if hist.limit is not None:  # keep the seeded history whole
                hist.limit = max(hist.limit, frame.height + hist.limit)
            self._counts["trades_seeded"] += frame.height

    def _source_label(self) -> str:
        return "mapping" if isinstance(self.source, Mapping) else str(self.source)

    def _build_sources(self) -> dict[str, TradeSource]:
        if self.source == "synthetic":
            start = now_ms() - int(self.history_hours * 3_600_000)
            return {
                s: SyntheticSource(
                    s,
                    start_ms=start,
                    first_agg_id=None
                    if self.first_agg_id is None
                    else self.first_agg_id + 10**9 * i,
                    rate_per_s=self.rate_per_s,
                    seed=self.seed + i,
                )
                for i, s in enumerate(self.symbols)
            }
        frames = load_recordings(self.symbols, self.source)
        for sym, frame in frames.items():
            if frame.height:
                self._rest.tick_sizes[sym] = infer_tick(frame["price"].head(5000).to_list())
        return {
            s: ReplaySource(
                s,
                frames[s],
                loop=self.loop,
                first_agg_id=None if self.first_agg_id is None else self.first_agg_id + 10**9 * i,
            )
            for i, s in enumerate(self.symbols)
        }

    # --- REST ---------------------------------------------------------------------------------

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if self._archives.handles(parts.path):
            status, body, ctype = await asyncio.to_thread(self._archives.handle, parts.path)
            self._requests.append(
                RequestRecord("archive", parts.path, parts.query, status, at=time.time())
            )
            self._counts[f"archive_{status}"] += 1
            return self._response(status, body, ctype)
        if parts.path.startswith("/api/"):
            return self._json_response(*self._rest.handle(parts.path, parts.query))
        try:
            target = proto.parse_stream_path(request.path)
        except proto.ApiError as err:
            return self._json_response(err.status, err.body())
        assert isinstance(ws, SimConnection)
        ws.target = target
        return None  # proceed with the WebSocket handshake

    def _json_response(
        self, status: int, body: str, headers: Sequence[tuple[str, str]] = ()
    ) -> Response:
        return self._response(status, body.encode(), "application/json;charset=UTF-8", headers)

    def _response(
        self, status: int, data: bytes, ctype: str, headers: Sequence[tuple[str, str]] = ()
    ) -> Response:
        hdrs = Headers(
            [
                ("Date", email.utils.formatdate(usegmt=True)),
                ("Content-Type", ctype),
                ("Content-Length", str(len(data))),
                ("Connection", "close"),
                *headers,
            ]
        )
        return Response(status, http.HTTPStatus(status).phrase, hdrs, data)


class _SimThread:
    """Runs a Simulator on its own event loop in a daemon thread."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="tradelab-simulator", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.sim.start())
        except BaseException as exc:  # report start failures to the caller's thread
            self.error = exc
            self.ready.set()
            self.loop.close()
            return
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def begin(self) -> None:
        self.thread.start()
        self.ready.wait()
        if self.error is not None:
            raise self.error

    def end(self) -> None:
        if not self.thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop)
        fut.result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
