"""``tradelab mcp``: serve the analytics to AI assistants over MCP (stdio or streamable HTTP).

::

    tradelab mcp                                   # stdio, for a desktop assistant
    tradelab mcp --transport http --port 8000      # http://127.0.0.1:8000/mcp
    tradelab mcp --data DIR --collect BTCUSDT,ETHUSDT   # also run the collector itself
    tradelab mcp --transport http --session-idle-timeout 600 --max-sessions 100
    tradelab mcp --source s3://team/trades        # reader-only, over a team's Delta table

Without ``--collect`` the server reads the store another process writes (a notebook kernel or
``tradelab collect``); with ``--source URI`` it reads a team's shared Delta table instead
(``tradelab export``), reader-only. The handler only parses arguments and calls
:func:`tradelab.mcp_server.create_server` and ``run_stdio``/``run_http``.
"""

from __future__ import annotations

import argparse

from tradelab.cli.analyze import add_source
from tradelab.cli.args import add_data_dir, port
from tradelab.config import (
    DEFAULT_MAX_SESSIONS,
    DEFAULT_SESSION_IDLE_TIMEOUT,
    validate_session_limits,
)
from tradelab.exceptions import ConfigurationError

__all__ = ["register", "run_mcp"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``mcp`` subcommand."""
    p = subparsers.add_parser(
        "mcp",
        help="serve volume profiles and collection status to AI assistants (MCP)",
        description=(
            "Run the tradelab MCP server. stdio (default) is for desktop assistants that launch "
            "the command themselves; http serves streamable HTTP at http://HOST:PORT/mcp for "
            "remote connectors. HTTP binds to 127.0.0.1 unless --host says otherwise; expose it "
            "only behind a reverse proxy that adds TLS and authentication."
        ),
    )
    p.add_argument(
        "--transport",
        choices=("stdio", "http"),
        default="stdio",
        help="stdio (default) or http (streamable HTTP, path /mcp)",
    )
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    p.add_argument(
        "--port", type=port, default=8000, help="HTTP port (default 8000; 0 = any free port)"
    )
    p.add_argument(
        "--session-idle-timeout",
        metavar="SECONDS",
        type=float,
        default=None,
        help=(
            "HTTP: close and free a session after this many seconds without a request "
            f"(default {DEFAULT_SESSION_IDLE_TIMEOUT:.0f} = 30 min; 1 to 604800); its id then "
            "answers 404 and the client initializes again"
        ),
    )
    p.add_argument(
        "--max-sessions",
        metavar="N",
        type=int,
        default=None,
        help=(
            f"HTTP: sessions open at once at most (default {DEFAULT_MAX_SESSIONS:,}; 1 to "
            "100000); beyond, a new session is refused with 503 until one ends or expires"
        ),
    )
    add_data_dir(p)
    add_source(p)
    p.add_argument(
        "--collect",
        metavar="SYMBOLS",
        nargs="?",
        const="",
        default=None,
        help=(
            "also run the collector in this server for SYMBOLS (comma-separated; without a "
            "value $TRADELAB_SYMBOLS or BTCUSDT,ETHUSDT)"
        ),
    )
    p.add_argument("--ws-url", default=None, help="collector stream base URL (with --collect)")
    p.add_argument("--rest-url", default=None, help="collector REST base URL (with --collect)")
    p.set_defaults(func=run_mcp)


def run_mcp(args: argparse.Namespace) -> int:
    """Handler of ``tradelab mcp``: build the server and serve until stdin closes or Ctrl-C."""
    from tradelab.mcp_server import create_server, run_http, run_stdio  # the SDK only when serving

    if args.collect is None and (args.ws_url or args.rest_url):
        raise ConfigurationError(
            "--ws-url and --rest-url configure the collector: use them with --collect"
        )
    http_only = (args.session_idle_timeout, args.max_sessions)
    if args.transport == "stdio" and (
        args.host != "127.0.0.1" or args.port != 8000 or http_only != (None, None)
    ):
        raise ConfigurationError(
            "--host, --port, --session-idle-timeout and --max-sessions apply to "
            "--transport http only"
        )
    idle, limit = validate_session_limits(
        DEFAULT_SESSION_IDLE_TIMEOUT
        if args.session_idle_timeout is None
        else args.session_idle_timeout,
        DEFAULT_MAX_SESSIONS if args.max_sessions is None else args.max_sessions,
    )
    from tradelab.store import close_stores

    try:
        server = create_server(
            args.data,
            source=args.source,
            collect=None if args.collect is None else (args.collect or ()),
            ws_url=args.ws_url,
            rest_url=args.rest_url,
        )
        if args.transport == "http":
            run_http(server, args.host, args.port, session_idle_timeout=idle, max_sessions=limit)
        else:
            run_stdio(server)
    finally:
        close_stores()  # release the writer lock (--collect) and reader directories
    return 0
