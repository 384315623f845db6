"""``tradelab collect`` and ``tradelab status``: run the collector; show what it is doing.

::

    tradelab collect --symbols BTCUSDT,ETHUSDT --data DIR [--ws-url URL] [--rest-url URL]
                     [--history HOURS] [--archive-url URL] [--export-to URI]
                     [--log-format json] [--duration SECONDS]
    tradelab status --data DIR [--json]

``collect`` runs until SIGTERM or SIGINT (Ctrl-C), then stops gracefully: every trade published
before the signal is written before it exits (exit code 0) — what was received, and what REST
still has of what was missed (within 10 s; the rest is a hole the next start repairs). At start
it checks its configuration once — symbol format, URLs, that the REST API knows each symbol and
that the stream accepts a connection — and exits with code 2 and a one-line message if not; it
repairs every hole the store reports (a killed earlier run's). ``--history H`` also fills the
last H hours from the daily archives and REST while going live. ``--export-to URI`` (or
``$TRADELAB_EXPORT_TO``) exports each closed hour to a Delta table as it closes (the ``scale``
extra; see docs/scale.md). Once running, it never gives
up: lost connections are retried forever with backoff, each failure logged as an ERROR.

``status`` reads the status the collector publishes in the store every 5 s; it works from any
process while the collector runs (and says "NOT RUNNING" if the collector died).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from tradelab.cli.args import add_data_dir
from tradelab.collector import Collector, format_status, read_collector_status
from tradelab.config import Settings, resolve_data_dir
from tradelab.exceptions import InvalidParameterError
from tradelab.logs import configure_logging, get_logger
from tradelab.store import close_stores, open_store

__all__ = ["cmd_collect", "cmd_status", "register"]

log = get_logger("tradelab.cli")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds > 0, got {text!r}"
        ) from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer > 0, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected an integer > 0, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``collect`` and ``status`` subcommands."""
    p = subparsers.add_parser(
        "collect",
        help="collect aggTrades from Binance (or the simulator) into the store",
        description="Collect every aggregate trade of the symbols into the store until SIGTERM "
        "or Ctrl-C, then store everything received and exit. Gaps are backfilled "
        "through REST; connection failures are retried forever.",
    )
    p.add_argument(
        "--symbols",
        default=None,
        help="comma-separated symbols (default $TRADELAB_SYMBOLS or BTCUSDT,ETHUSDT)",
    )
    add_data_dir(p)
    p.add_argument(
        "--ws-url",
        default=None,
        help="stream base URL (default wss://stream.binance.com:9443); the collector "
        "appends /stream?streams=...",
    )
    p.add_argument(
        "--rest-url",
        default=None,
        help="REST base URL (default https://api.binance.com); the collector appends "
        "/api/v3/aggTrades?...",
    )
    p.add_argument(
        "--history",
        type=float,
        default=None,
        metavar="HOURS",
        help="also fill the last HOURS hours (1 to the retention, 168 by default) from the "
        "daily archives and REST while going live (default: collect from now)",
    )
    p.add_argument(
        "--archive-url",
        default=None,
        help="daily archives base URL for --history (default $TRADELAB_ARCHIVE_URL or "
        "https://data.binance.vision)",
    )
    p.add_argument(
        "--export-to",
        default=None,
        metavar="URI",
        help="export each closed hour to this Delta table (a directory or s3://, gs://, az:// "
        "URL) as it closes (default $TRADELAB_EXPORT_TO; none); needs tradelab[scale]",
    )
    p.add_argument(
        "--duration",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="stop by itself after this many seconds (default: run until signalled)",
    )
    p.add_argument(
        "--max-buffered",
        type=_positive_int,
        default=500_000,
        metavar="N",
        help="trades kept in memory while the store fails before intake pauses (default 500000)",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=argparse.SUPPRESS,
        help="log lines as text (default) or one JSON object per line",
    )
    p.set_defaults(func=cmd_collect)

    p = subparsers.add_parser(
        "status",
        help="what the collector writing to a store is doing",
        description="Per symbol: connected, trades stored, rate over the last minute, last trade, "
        "gaps detected/backfilled/unrepairable, connection uptime, buffered trades, "
        "last error. Reads the status the collector publishes every 5 s.",
    )
    add_data_dir(p)
    p.add_argument("--json", action="store_true", help="print the status document as JSON")
    p.set_defaults(func=cmd_status)


def cmd_collect(args: argparse.Namespace) -> int:
    """Run a collector until signalled (or ``--duration``); exit 0 after a graceful stop."""
    if getattr(args, "log_format", None):
        configure_logging(getattr(args, "log_level", "INFO"), args.log_format)
    settings = Settings.resolve(
        data_dir=args.data, symbols=args.symbols, ws_url=args.ws_url, rest_url=args.rest_url
    )
    collector = Collector(
        settings.symbols,
        store=settings.data_dir,
        ws_url=settings.ws_url,
        rest_url=settings.rest_url,
        max_buffered=args.max_buffered,
        history_hours=args.history,
        archive_url=args.archive_url,
        export_to=args.export_to,
    )
    try:
        return asyncio.run(_run(collector, args.duration))
    finally:
        close_stores()


async def _run(collector: Collector, duration: float | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        log.info(
            "Received %s: stopping gracefully",
            sig.name,
            extra={"event": "signal", "signal": sig.name},
        )
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    await collector.start(check=True)
    try:
        await asyncio.wait_for(stop.wait(), duration)
    except TimeoutError:
        pass
    finally:
        await collector.stop()
    doc = collector.status()
    for sym, s in doc["symbols"].items():
        print(
            f"{sym}: {s['trades_stored']} trades stored this run, last agg id "
            f"{s['last_agg_id']}, gaps {s['gaps_detected']} detected / "
            f"{s['gaps_backfilled']} backfilled / {s['gaps_unrepairable']} unrepairable, "
            f"{s['missing']} ids still missing"
        )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print the collector status of the store at ``--data``."""
    path = resolve_data_dir(args.data)
    if not path.exists():
        raise InvalidParameterError(
            f"no store at {path}: nothing was collected there yet (tradelab collect --data DIR)"
        )
    doc = read_collector_status(open_store(path))
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(format_status(doc))
    sys.stdout.flush()
    return 0
