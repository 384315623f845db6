"""``tradelab simulate``: run the local Binance-compatible simulator until SIGINT/SIGTERM.

::

    tradelab simulate --port 9001 --symbols BTCUSDT,ETHUSDT --source recordings --speed 10
    tradelab simulate --drop-every 30 --skip-rate 0.001 --malformed-rate 0.01

It prints the URLs to give ``tradelab collect --ws-url ... --rest-url ...``. The handler only
parses arguments and runs :class:`tradelab.simulator.Simulator`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
from typing import TYPE_CHECKING

from tradelab.cli.args import port

if TYPE_CHECKING:
    from tradelab.simulator import Simulator

__all__ = ["register", "run_simulate"]


def _number(kind: str, low: float, high: float = math.inf, *, low_open: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if value != value or value > high or value < low or (low_open and value == low):
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            upper = "" if high == math.inf else f" and <= {high:g}"
            raise argparse.ArgumentTypeError(f"expected {kind} {bound}{upper}, got {text!r}")
        return value

    return parse


_SECONDS = _number("a number of seconds", 0, low_open=True)
_RATE = _number("a probability", 0, 1)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` subcommand."""
    p = subparsers.add_parser(
        "simulate",
        help="run a local Binance-compatible stream + REST server (synthetic or recorded data)",
        description=(
            "Serve Binance's aggTrade WebSocket streams (/ws/<sym>@aggTrade, "
            "/stream?streams=...) and REST (/api/v3/aggTrades, /exchangeInfo, /ping) on one "
            "port, from synthetic data or the shared recordings, with optional faults. Stops "
            "on Ctrl-C or SIGTERM."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=9001, help="port (default 9001; 0 = any free)")
    p.add_argument(
        "--symbols",
        default="BTCUSDT,ETHUSDT",
        help="comma-separated symbols (default BTCUSDT,ETHUSDT)",
    )
    p.add_argument(
        "--source",
        default="synthetic",
        help="synthetic (default), recordings, or a recording file name/path",
    )
    p.add_argument(
        "--speed",
        type=_number("a speed", 0),
        default=1.0,
        help="1 = real pace (default), 10 = ten times faster, 0 = as fast as possible",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--rate",
        type=_number("trades per second", 0, low_open=True),
        default=None,
        help="synthetic trades per second per symbol at speed 1 (default ~24)",
    )
    p.add_argument(
        "--max-trades",
        type=int,
        default=None,
        help="stop producing after this many trades per symbol",
    )
    p.add_argument(
        "--first-id",
        type=int,
        default=None,
        metavar="ID",
        help="first agg id (default: realistic for synthetic, recorded for replays); "
        "raise it above a previous run's ids to reuse a store",
    )
    p.add_argument("--no-loop", action="store_true", help="replay the recordings only once")
    p.add_argument(
        "--history-hours",
        type=float,
        default=0.0,
        metavar="H",
        help="seed H hours of synthetic history before going live, served through REST and as "
        "daily archives (for `tradelab backfill` and `collect --history`; default 0)",
    )
    f = p.add_argument_group("faults (all off by default)")
    f.add_argument(
        "--drop-every",
        type=_SECONDS,
        metavar="S",
        help="abort every connection S seconds after it opened",
    )
    f.add_argument(
        "--drop-rate",
        type=_RATE,
        default=0.0,
        metavar="P",
        help="probability per second that a connection is aborted",
    )
    f.add_argument(
        "--skip-rate",
        type=_RATE,
        default=0.0,
        metavar="P",
        help="probability per trade that a gap of --skip-length ids starts",
    )
    f.add_argument(
        "--skip-length", type=int, default=3, metavar="N", help="ids per gap (default 3)"
    )
    f.add_argument(
        "--unrepairable",
        type=_RATE,
        default=0.0,
        metavar="F",
        help="fraction of gaps also absent from REST (default 0)",
    )
    f.add_argument(
        "--malformed-rate",
        type=_RATE,
        default=0.0,
        metavar="P",
        help="probability per trade of an extra malformed frame",
    )
    f.add_argument(
        "--stall-every",
        type=_SECONDS,
        metavar="S",
        help="stall each connection every S seconds ...",
    )
    f.add_argument(
        "--stall-seconds",
        type=_number("seconds", 0),
        default=0.0,
        metavar="S",
        help="... for S seconds (no frames, no pongs)",
    )
    f.add_argument(
        "--ping-interval",
        type=_SECONDS,
        default=20.0,
        metavar="S",
        help="server ping interval (default 20)",
    )
    f.add_argument(
        "--ping-timeout",
        type=_SECONDS,
        default=60.0,
        metavar="S",
        help="close connections whose pong is this late (default 60)",
    )
    f.add_argument(
        "--lifetime",
        type=_SECONDS,
        default=24 * 3600.0,
        metavar="S",
        help="close each connection after S seconds (default 86400, Binance's 24 h)",
    )
    f.add_argument(
        "--shutdown-after",
        type=_SECONDS,
        metavar="S",
        help="send serverShutdown S seconds into each connection, close 1 s later",
    )
    f.add_argument(
        "--rest-fail-rate",
        type=_RATE,
        default=0.0,
        metavar="P",
        help="probability per REST request of --rest-fail-status",
    )
    f.add_argument(
        "--rest-fail-status",
        type=int,
        choices=(429, 418),
        default=429,
        help="status of injected REST failures (default 429)",
    )
    f.add_argument(
        "--retry-after",
        type=int,
        default=1,
        metavar="S",
        help="Retry-After seconds of injected REST failures (default 1)",
    )
    p.set_defaults(func=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    """Handler of ``tradelab simulate``: serve until SIGINT/SIGTERM, then print the stats."""
    from tradelab.simulator import Faults, Simulator

    faults = Faults(
        drop_every=args.drop_every,
        drop_probability=args.drop_rate,
        skip_rate=args.skip_rate,
        skip_length=args.skip_length,
        skip_unrepairable=args.unrepairable,
        malformed_rate=args.malformed_rate,
        stall_every=args.stall_every,
        stall_seconds=args.stall_seconds,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        lifetime=args.lifetime,
        shutdown_after=args.shutdown_after,
        rest_fail_rate=args.rest_fail_rate,
        rest_fail_status=args.rest_fail_status,
        retry_after=args.retry_after,
    )
    sim = Simulator(
        args.symbols,
        source=args.source,
        speed=args.speed,
        faults=faults,
        host=args.host,
        port=args.port,
        seed=args.seed,
        rate_per_s=args.rate,
        max_trades=args.max_trades,
        first_agg_id=args.first_id,
        loop=not args.no_loop,
        history_hours=args.history_hours,
    )
    return asyncio.run(_serve(sim))


async def _serve(sim: Simulator) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await sim.start()
    print(f"Simulating {','.join(sim.symbols)} on {sim.ws_url}", flush=True)
    print(
        f"  stream: {sim.ws_url}/stream?streams="
        + "/".join(f"{s.lower()}@aggTrade" for s in sim.symbols),
        flush=True,
    )
    print(f"  REST:   {sim.rest_url}/api/v3/aggTrades?symbol={sim.symbols[0]}", flush=True)
    print(
        f"  collect with: tradelab collect --symbols {','.join(sim.symbols)} "
        f"--ws-url {sim.ws_url} --rest-url {sim.rest_url}",
        flush=True,
    )
    if sim.history_hours:
        print(f"  archives: {sim.archive_url} ({sim.history_hours:g} h of history)", flush=True)
        print(
            f"  backfill with: tradelab backfill {' '.join(sim.symbols)} --hours "
            f"{max(1, int(sim.history_hours))} --rest-url {sim.rest_url} "
            f"--archive-url {sim.archive_url}",
            flush=True,
        )
    if sim.faults.active:
        print(f"  faults: {sim.faults.active}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()
    stats = sim.stats()
    print(
        "Stopped. Published: "
        + ", ".join(f"{s} {n}" for s, n in stats["published"].items())
        + f"; connections: {stats.get('connections_opened', 0)}",
        file=sys.stderr,
        flush=True,
    )
    return 0
