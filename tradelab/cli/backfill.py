"""``tradelab backfill``: fill the last H hours of symbols from Binance's archives and REST.

::

    tradelab backfill BTCUSDT ETHUSDT --hours 30 --data DIR [--rest-url URL] [--archive-url URL]

Whole past days come from the daily archives (checksum verified), the rest from REST within
half of the weight budget; only what the store lacks is fetched, exactly once, so a second run
(or a run after a crash) costs almost nothing. A progress bar per symbol goes to stderr, one
summary line per symbol to stdout. Exit code 1 when part of the window could not be fetched.
"""

from __future__ import annotations

import argparse
import time

from tradelab.cli.args import add_data_dir
from tradelab.config import DEFAULT_REST_URL, environment_urls, parse_symbols, validate_url
from tradelab.exceptions import InvalidWindowError
from tradelab.history import ProgressBar, fill_window, resolve_archive_url
from tradelab.store import TradeStore

__all__ = ["cmd_backfill", "register"]


def _hours(text: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"hours must be a number >= 1, got {text!r}") from None
    if not 1 <= hours < float("inf"):
        raise argparse.ArgumentTypeError(f"hours must be a number >= 1, got {text!r}")
    return hours


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``backfill`` subcommand."""
    p = subparsers.add_parser(
        "backfill",
        help="fill the last H hours of symbols from Binance's archives and REST",
        description="Fetch what the store lacks in the last --hours hours of each SYMBOL: whole "
        "past days from the daily archives (data.binance.vision, checksum verified), the "
        "rest through REST aggTrades within half of the weight budget. Exactly once; a "
        "second run fetches only what is still missing. Needs the writer (stop a running "
        "collector, or use `tradelab collect --history H`).",
    )
    p.add_argument("symbols", nargs="+", metavar="SYMBOL", help="symbols, e.g. BTCUSDT ETHUSDT")
    p.add_argument(
        "--hours", type=_hours, required=True, help="hours back from now, 1 to the retention"
    )
    add_data_dir(p)
    p.add_argument(
        "--rest-url",
        default=None,
        help="REST base URL (default $TRADELAB_REST_URL, else https://api.binance.com)",
    )
    p.add_argument(
        "--archive-url",
        default=None,
        help="daily-archive base URL (default $TRADELAB_ARCHIVE_URL, else "
        "https://data.binance.vision)",
    )
    p.set_defaults(func=cmd_backfill)


def cmd_backfill(args: argparse.Namespace) -> int:
    """Fill each symbol's window and print one summary line per symbol."""
    symbols = parse_symbols(args.symbols)
    rest_url = validate_url(
        args.rest_url or environment_urls()[1] or DEFAULT_REST_URL,
        schemes=("http", "https"),
        name="REST URL",
    )
    archive_url = resolve_archive_url(args.archive_url)
    with TradeStore(args.data) as store:
        limit = store.retention_days * 24
        if args.hours > limit:
            raise InvalidWindowError(
                f"--hours {args.hours:g} reaches past the store's retention: allowed 1 to "
                f"{limit:g} hours ({store.retention_days:g} days)"
            )
        end = int(time.time() * 1000)
        start = end - int(args.hours * 3_600_000)
        complete = True
        bar = ProgressBar()
        for sym in symbols:
            report = fill_window(
                store,
                sym,
                start,
                end,
                rest_url=rest_url,
                archive_url=archive_url,
                progress=bar,
            )
            print(report.summary(), flush=True)
            complete = complete and report.complete
    return 0 if complete else 1
