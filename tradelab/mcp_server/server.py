"""The MCP server: tradelab's analytics as tools an AI assistant can call.

Built on the official ``mcp`` SDK 2.x (:class:`mcp.server.mcpserver.MCPServer`). Every tool is a
thin typed wrapper over the same public function an analyst calls in a notebook
(:func:`tradelab.get_volume_profile`, :func:`tradelab.vacuum_report`,
:func:`tradelab.where_collection_runs`); this module adds only argument schemas, a
bounded JSON-ready presentation and a one-line reading written for a language model. The
presentation (output models, row merging, readings) lives in :mod:`tradelab.mcp_server.presentation`
and is re-exported here; this module holds the server, its tools and its transports.

Tools:

- ``get_volume_profile(symbol, duration_hours=24, tick_size=None)`` — POC/VAH/VAL, volumes and
  the profile rows (at most :data:`MAX_ROWS`, merged when the full resolution has more).
- ``get_liquidity_vacuums(symbol, duration_hours=24)`` — thin price zones, each with a reading.
- ``get_session_profiles(symbol, days=None, start=None, end=None, session="utc-day")`` — one
  profile per session, value-area migration, naked POCs.

Every window tool takes ``start``/``end`` (ISO-8601 or unix ms, no zone = UTC) as the
alternative to ``duration_hours``, for fixed ranges such as imported history.
- ``get_collection_status()`` — what is collected, since when, rates, gaps, last trade times,
  so the assistant can explain *why* data is missing.
- ``get_volume_profile_chart(symbol, duration_hours=24, tick_size=None)`` — the profile as PNG.

Errors: every :class:`~tradelab.exceptions.TradelabError` becomes a tool error (``isError``)
carrying the Python API's message unchanged (the SDK prefixes ``Error executing tool <name>:``);
anything unexpected reaches the client only as ``Error executing tool <name>`` and is logged here
with its traceback. Arguments are validated by the Python API itself, so a bad symbol or an
out-of-range window gets the same message as in a notebook; the input schemas still state the
ranges and patterns so that clients can check before calling.

The store: the server normally opens it as a *reader* (a notebook kernel or ``tradelab collect``
writes it) and catches up with the writer before every call; ``collect=`` makes the server run a
:class:`~tradelab.collector.Collector` itself, on the server's event loop, for as long as it
serves. A store that does not exist yet is not fatal: the tools say so and how to start
collecting, and the server opens it as soon as it appears.

A team's shared Delta table: ``source=`` (``tradelab mcp --source URI``) makes a reader-only
server over the table that collectors elsewhere export into (``tradelab export``): every
analytics tool reads the table (lazily, the window's partitions only) with the same answers as
a store, and ``get_collection_status`` says the source is a table and what it holds
(:mod:`.table`). No store is opened and nothing is collected.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import socket
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, cast

from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel

from tradelab import __version__
from tradelab.analytics import get_volume_profile as profile_api
from tradelab.analytics import session_profiles as session_profiles_api
from tradelab.analytics import vacuum_report
from tradelab.collection import where_collection_runs
from tradelab.collector import Collector
from tradelab.config import (
    DEFAULT_MAX_SESSIONS,
    DEFAULT_SESSION_IDLE_TIMEOUT,
    DEFAULT_WINDOW_HOURS,
    Settings,
    resolve_data_dir,
    validate_session_limits,
)
from tradelab.exceptions import ConfigurationError, NoDataError, TradelabError
from tradelab.logs import get_logger
from tradelab.mcp_server.arguments import (
    DaysArg,
    EndArg,
    HoursArg,
    SessionArg,
    StartArg,
    SymbolArg,
    TickArg,
    ToolServer,
)
from tradelab.mcp_server.http_sessions import SessionGoneMessage
from tradelab.mcp_server.presentation import (
    MAX_ROWS,
    CollectionStatus,
    CollectorInfo,
    LiquidityVacuums,
    ProfileRow,
    SymbolStatus,
    VacuumZone,
    VolumeProfileResult,
    collection_status,
    format_price,
    liquidity_vacuums_result,
    merge_rows,
    profile_chart_png,
    vacuum_reading,
    volume_profile_result,
)
from tradelab.mcp_server.sessions import SessionProfilesResult, session_profiles_result
from tradelab.mcp_server.table import table_status
from tradelab.store import open_store

__all__ = [
    "DEFAULT_HTTP_PATH",
    "MAX_ROWS",
    "CollectionStatus",
    "CollectorInfo",
    "LiquidityVacuums",
    "ProfileRow",
    "ServerState",
    "SymbolStatus",
    "VacuumZone",
    "VolumeProfileResult",
    "collection_status",
    "create_server",
    "format_price",
    "liquidity_vacuums_result",
    "merge_rows",
    "profile_chart_png",
    "run_http",
    "run_stdio",
    "vacuum_reading",
    "volume_profile_result",
]

log = get_logger("tradelab.mcp")

DEFAULT_HTTP_PATH = "/mcp"

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

SERVER_INSTRUCTIONS = (
    "tradelab holds a complete history of Binance aggregate trades (aggTrades) that a collector "
    "records into a local store, and computes volume profiles from it. Use get_volume_profile "
    "for 'where is the point of control / value area' questions, get_liquidity_vacuums for thin "
    "price zones the market tends to cross fast, and get_collection_status to explain why data "
    "is missing or too thin (collector stopped, just started, gaps), get_session_profiles for "
    "one profile per day or trading session and the naked POCs. Windows are the last 1-168 "
    "hours, ending now, or a range start/end (ISO-8601, UTC). Volumes are in the base asset "
    "(BTC for BTCUSDT), prices in the quote asset (USDT). An analysis needs at least 1,000 "
    "trades in its window; below that the error says how many there are and about how long to "
    "wait (for a range, where the store does have data)."
)

TABLE_NOTE = (
    " This server reads a team's shared Delta table (read-only) instead of a local store: "
    "collectors elsewhere export each hour once it has closed, so the current hour is not there "
    "yet — prefer ranges (start/end) of past hours; get_collection_status says what it holds."
)

# --- the server -------------------------------------------------------------------------------


@dataclass
class ServerState:
    """What the tools share: the store handle (opened lazily) and the optional collector, or
    the URI of the shared Delta table the server reads instead (``table``)."""

    data_dir: Path
    store: Any = None
    collector: Any = None
    table: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def get_store(self, *, required: bool = True) -> Any:
        """The store: :func:`tradelab.open_store` on first use (a reader that catches up with
        the writing process before every query, or this process's writer if it has one).

        No store yet raises :class:`~tradelab.exceptions.NoDataError` (saying how to start
        collecting), or returns ``None`` when ``required`` is false; the next call tries again.
        """
        with self._lock:
            if self.store is None:
                try:
                    self.store = open_store(self.data_dir)
                except NoDataError:
                    if required:
                        raise
                    return None
            return self.store

    def source(self) -> dict[str, Any]:
        """Where the API reads: ``{"source": uri}`` for a shared table, ``{"store": ...}`` once
        a store is open here, else ``{"data": directory}`` — the API validates the arguments,
        then opens it."""
        if self.table is not None:
            return {"source": self.table}
        with self._lock:
            return {"store": self.store} if self.store is not None else {"data": self.data_dir}


def _state(ctx: Context) -> ServerState:
    # Our lifespan (create_server) yields a ServerState; a bare Context types it as a dict.
    return cast(ServerState, ctx.request_context.lifespan_context)


def _result(model: BaseModel, text: str) -> CallToolResult:
    """Structured content plus a text block (the reading, then the JSON) for every client."""
    payload = model.model_dump(mode="json")
    return CallToolResult(
        content=[TextContent(type="text", text=text + "\n\n" + json.dumps(payload))],
        structured_content=payload,
    )


_READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=False, open_world_hint=False)


def _tool(server: MCPServer, *, title: str, structured_output: bool | None = None) -> Any:
    """Register a read-only tool whose description is its docstring, dedented, and whose
    :class:`~tradelab.exceptions.TradelabError` becomes a tool error carrying the Python API's
    message unchanged (anything else stays a crash the SDK reports without its text)."""

    def decorator(fn: Any) -> Any:
        @functools.wraps(fn)  # the SDK reads the signature and annotations through __wrapped__
        def tool(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except TradelabError as exc:
                raise ToolError(str(exc)) from exc

        server.add_tool(
            tool,
            title=title,
            description=inspect.cleandoc(fn.__doc__ or ""),
            annotations=_READ_ONLY,
            structured_output=structured_output,
        )
        return fn

    return decorator


def _hours(duration_hours: Any, start: Any) -> float | None:
    """The hours to name in a summary: None for a range, else the window's (default 24)."""
    if start is not None:
        return None
    return float(duration_hours) if duration_hours is not None else float(DEFAULT_WINDOW_HOURS)


def _profile(
    ctx: Context, symbol: str, duration_hours: Any, tick_size: Any, start: Any, end: Any
) -> tuple[Any, VolumeProfileResult]:
    """The window's profile from the Python API, and its presentation (the profile tools)."""
    vp = profile_api(
        symbol, duration_hours, tick_size, start=start, end=end, **_state(ctx).source()
    )
    return vp, volume_profile_result(vp, str(vp.symbol), _hours(duration_hours, start))


def _register_tools(server: MCPServer) -> None:
    @_tool(server, title="Volume profile (POC, value area)")
    def get_volume_profile(
        symbol: SymbolArg,
        ctx: Context,
        duration_hours: HoursArg = None,
        tick_size: TickArg = None,
        start: StartArg = None,
        end: EndArg = None,
    ) -> Annotated[CallToolResult, VolumeProfileResult]:
        """Volume profile of a Binance symbol over the last `duration_hours` (1-168, ending now)
        or over a fixed range `start`-`end` (e.g. a day of imported history).

        Returns the point of control (POC: the price row with the most traded volume), the
        value area (VAL to VAH: the price range around the POC holding ~70% of the volume),
        total / taker-buy / taker-sell volume, the trade count and the profile rows (at most
        200, merged when finer; `note` says how). Use it for "where is the POC / value area /
        where did most volume trade". Needs at least 1,000 trades in the window; otherwise the
        error says how many there are and about how long to wait.
        """
        _, result = _profile(ctx, symbol, duration_hours, tick_size, start, end)
        return _result(result, result.summary + "\n" + result.note)

    @_tool(server, title="Liquidity vacuums (thin zones)")
    def get_liquidity_vacuums(
        symbol: SymbolArg,
        ctx: Context,
        duration_hours: HoursArg = None,
        start: StartArg = None,
        end: EndArg = None,
    ) -> Annotated[CallToolResult, LiquidityVacuums]:
        """Liquidity vacuums of a Binance symbol over the last `duration_hours` (1-168) or over
        a fixed range `start`-`end`.

        A vacuum is a price zone the market traded far less than usual (rows below 20% of the
        median row volume): price tends to move fast through such zones, and traders place stops
        beyond them rather than inside. Each zone comes with its bounds, volume, deficit, an
        impact level (fast / moderate / negligible) and a one-line `reading`. Needs at least
        1,000 trades in the window.
        """
        report = vacuum_report(symbol, duration_hours, start=start, end=end, **_state(ctx).source())
        vp = report.profile
        result = liquidity_vacuums_result(
            report.vacuums, vp, str(vp.symbol), _hours(duration_hours, start)
        )
        return _result(result, result.summary)

    @_tool(server, title="Session volume profiles and naked POCs")
    def get_session_profiles(
        symbol: SymbolArg,
        ctx: Context,
        days: DaysArg = None,
        start: StartArg = None,
        end: EndArg = None,
        session: SessionArg = "utc-day",
    ) -> Annotated[CallToolResult, SessionProfilesResult]:
        """One volume profile per session (each UTC day, or a trading session such as london)
        over the last `days` days or the range `start`-`end`: per session its POC, value area
        (VAL-VAH), volume, delta, open/high/low/close and whether its value area moved higher,
        lower or overlapped the previous one (acceptance / migration of value); then the naked
        POCs — earlier sessions' POCs no later trade has revisited, with their age and distance
        from the last price, levels traders watch. Needs at least 1,000 trades in the range.
        """
        sp = session_profiles_api(
            symbol, days=days, start=start, end=end, session=session, **_state(ctx).source()
        )
        result = session_profiles_result(sp)
        return _result(result, result.summary)

    @_tool(server, title="Collection status")
    def get_collection_status(ctx: Context) -> Annotated[CallToolResult, CollectionStatus]:
        """What trade data is collected: symbols, trades stored, first and last trade times,
        whether a collector is running (and where), its rates, gaps and errors.

        Call it to explain why an analysis has too little data (collector stopped, just
        started, disconnected, symbol never collected) or how fresh the answers are.
        """
        state = _state(ctx)
        if state.table is not None:
            table = table_status(state.table)
            return _result(table, table.summary)
        store = state.get_store(required=False)
        where = where_collection_runs(state.data_dir, store=store, collector=state.collector)
        result = collection_status(
            store,
            where.document,
            store_path=getattr(store, "path", None) or state.data_dir,
            in_this_server=state.collector is not None,
        )
        return _result(result, result.summary)

    @_tool(server, title="Volume profile chart (PNG)", structured_output=False)
    def get_volume_profile_chart(
        symbol: SymbolArg,
        ctx: Context,
        duration_hours: HoursArg = None,
        tick_size: TickArg = None,
        start: StartArg = None,
        end: EndArg = None,
    ) -> list[Image | TextContent]:
        """The volume profile of `symbol` over the last `duration_hours` (or the range
        `start`-`end`) drawn as a PNG image
        (buy/sell bars by price, POC line, value area shaded, vacuums hatched), with a one-line
        caption. For clients that display images; use get_volume_profile for the numbers.
        """
        vp, result = _profile(ctx, symbol, duration_hours, tick_size, start, end)
        png = profile_chart_png(vp)
        return [Image(data=png, format="png"), TextContent(type="text", text=result.summary)]


def create_server(
    data: str | os.PathLike[str] | None = None,
    *,
    store: Any = None,
    source: str | os.PathLike[str] | None = None,
    collect: str | Sequence[str] | None = None,
    ws_url: str | None = None,
    rest_url: str | None = None,
) -> MCPServer:
    """Build the tradelab MCP server (serve it with :func:`run_stdio` or :func:`run_http`).

    ``data``: the store's directory (argument > ``$TRADELAB_DATA`` > ``~/.tradelab/data``),
    opened as a reader on first use — another process writes it. ``store``: an open
    :class:`~tradelab.store.TradeStore` to serve instead (the caller closes it).
    ``collect``: symbols (``"BTCUSDT,ETHUSDT"``, a sequence, or ``()`` for the configured
    default) for a :class:`~tradelab.collector.Collector` the server runs itself, on its event
    loop, while it serves; the store is then opened for writing here, so a store another
    process writes fails now with :class:`~tradelab.exceptions.StoreLockedError`.
    ``ws_url``/``rest_url`` point that collector elsewhere than Binance (e.g. the simulator).
    ``source``: a team's shared Delta table (a directory or an ``s3://``, ``gs://``, ``az://``
    URL) to serve instead of a store, reader-only — not with ``data``, ``store`` or
    ``collect``; its URI is checked now, the table read by each call.
    """
    table = _table_uri(source, data=data, store=store, collect=collect)
    settings: Settings | None = None
    if collect is not None:
        settings = Settings.resolve(
            data_dir=getattr(store, "path", None) or data,
            symbols=collect or None,
            ws_url=ws_url,
            rest_url=rest_url,
        )
        data_dir = settings.data_dir
        if store is None:
            store = open_store(data_dir, write=True)
        elif getattr(store, "readonly", False):
            raise ConfigurationError("collect= needs a writable store; this one is read-only")
    elif ws_url or rest_url:
        raise ConfigurationError("ws_url and rest_url configure the collector: give collect= too")
    else:
        data_dir = Path(getattr(store, "path", None) or resolve_data_dir(data))

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[ServerState]:
        state = ServerState(data_dir=data_dir, store=store, table=table)
        if settings is not None:
            state.collector = Collector(
                settings.symbols, store=store, ws_url=settings.ws_url, rest_url=settings.rest_url
            )
            await state.collector.start()
            log.info(
                "MCP server collecting %s into %s",
                ",".join(settings.symbols),
                data_dir,
                extra={"symbols": list(settings.symbols), "data_dir": str(data_dir)},
            )
        try:
            yield state
        finally:
            if state.collector is not None:
                await state.collector.stop()

    server: MCPServer = ToolServer(
        "tradelab",
        title="tradelab: Binance trade history and volume profiles",
        version=__version__,
        instructions=SERVER_INSTRUCTIONS if table is None else SERVER_INSTRUCTIONS + TABLE_NOTE,
        lifespan=lifespan,
        log_level="WARNING",
    )
    _register_tools(server)
    return server


def _table_uri(source: object, *, data: object, store: object, collect: object) -> str | None:
    """``source=`` checked: the normalized table URI, or None to serve a store."""
    if source is None:
        return None
    others = [
        n for n, v in (("data", data), ("store", store), ("collect", collect)) if v is not None
    ]
    if others:
        raise ConfigurationError(
            f"source (a shared Delta table, served read-only) cannot be combined with "
            f"{' or '.join(others)}: serve either the table or a local store"
        )
    from tradelab.scale import normalize_uri  # a URI check needs no deltalake

    try:
        return normalize_uri(source)
    except TradelabError as exc:
        raise ConfigurationError(f"source: {str(exc).removeprefix('uri ')}") from None


def run_stdio(server: MCPServer) -> None:
    """Serve over stdin/stdout (desktop assistants launch ``tradelab mcp`` themselves)."""
    server.run("stdio")


def run_http(
    server: MCPServer,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    path: str = DEFAULT_HTTP_PATH,
    ready: Any = None,
    session_idle_timeout: float = DEFAULT_SESSION_IDLE_TIMEOUT,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
) -> None:
    """Serve streamable HTTP at ``http://host:port/mcp`` until interrupted.

    The socket is bound here (``port=0`` picks a free port) and the URL printed on stderr
    (``tradelab mcp: serving http://127.0.0.1:PORT/mcp``), so callers can find it.

    Sessions: a client that never sends DELETE leaves its session (~15-35 kB) behind. One with
    no request in flight for ``session_idle_timeout`` seconds (default 30 min) is closed and
    freed (its memory serves the next sessions), and its id then answers 404 with one line
    saying to initialize again (:mod:`.http_sessions`). At most ``max_sessions`` (default
    1,000) are open at once; beyond, initialize answers 503 until one ends or expires — memory
    stays bounded even under a flood of initialize. Both are the SDK's session manager's
    settings (``mcp`` 2.3), passed explicitly and validated here.
    """
    import anyio
    import uvicorn

    timeout, limit = validate_session_limits(session_idle_timeout, max_sessions)

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound_port}{path}"
    if host not in LOOPBACK_HOSTS:
        log.warning(
            "Serving MCP on %s without TLS or authentication: put a reverse proxy with TLS and "
            "auth in front of it",
            url,
            extra={"url": url},
        )
    app = server.streamable_http_app(
        streamable_http_path=path,
        host=host,
        session_idle_timeout=timeout,
        max_sessions=limit,
    )
    config = uvicorn.Config(SessionGoneMessage(app, timeout), log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    print(f"tradelab mcp: serving {url}", file=sys.stderr, flush=True)
    if ready is not None:
        ready(url)
    try:
        anyio.run(lambda: uv.serve(sockets=[sock]))
    finally:
        sock.close()
