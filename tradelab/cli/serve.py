"""``tradelab mcp``: serve the analytics to AI assistants over MCP (stdio or streamable HTTP).

::

    tradelab mcp                                   # stdio, for a desktop assistant
    tradelab mcp --transport http --port 8000      # http://127.0.0.1:8000/mcp
    tradelab mcp --data DIR --collect BTCUSDT,ETHUSDT   # also run the collector itself

Without ``--collect`` the server reads the store another process writes (a notebook kernel or
``tradelab collect``). The handler only parses arguments and calls
:func:`tradelab.mcp_server.create_server` and ``run_stdio``/``run_http``.
"""

from __future__ import annotations

import argparse

from tradelab.cli.args import add_data_dir, port
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
    add_data_dir(p)
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
    if args.transport == "stdio" and (args.host != "127.0.0.1" or args.port != 8000):
        raise ConfigurationError("--host and --port apply to --transport http only")
    from tradelab.store import close_stores

    try:
        server = create_server(
            args.data,
            collect=None if args.collect is None else (args.collect or ()),
            ws_url=args.ws_url,
            rest_url=args.rest_url,
        )
        if args.transport == "http":
            run_http(server, args.host, args.port)
        else:
            run_stdio(server)
    finally:
        close_stores()  # release the writer lock (--collect) and reader directories
    return 0
