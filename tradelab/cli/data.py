"""``tradelab stats | retention``: look into the store, trim it.

::

    tradelab stats --data DIR [SYMBOL]          # trades, time span, agg ids, holes, bytes
    tradelab retention --data DIR [--days N]    # delete trades older than N days (default 7)

``stats`` reads (it works while a collector writes); ``retention`` needs the
writer, so it fails with a clear message naming the collector's process while one runs — the
collector applies retention itself every hour.
"""

from __future__ import annotations

import argparse
import datetime as dt

from tradelab.cli.args import add_data_dir
from tradelab.config import resolve_data_dir, validate_symbol
from tradelab.formatting import utc_text
from tradelab.store import TradeStore, open_store

__all__ = ["cmd_retention", "cmd_stats", "register"]


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"days must be a number > 0, got {text!r}") from None
    if not days > 0 or days == float("inf"):
        raise argparse.ArgumentTypeError(f"days must be a number > 0, got {text!r}")
    return days


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``stats`` and ``retention`` subcommands."""
    p = subparsers.add_parser(
        "stats",
        help="what the store holds per symbol",
        description="Trade count, first/last trade time and agg id, holes (missing agg ids "
        "between them: repairable/unrepairable, see `tradelab check`) and bytes on disk, per "
        "symbol (all symbols unless one is named). Safe while a collector writes.",
    )
    p.add_argument("symbol", nargs="?", default=None, help="one symbol, e.g. BTCUSDT")
    add_data_dir(p)
    p.set_defaults(func=cmd_stats)

    p = subparsers.add_parser(
        "retention",
        help="delete trades older than the retention period",
        description="Delete every trade older than --days days (default $TRADELAB_RETENTION_DAYS "
        "or 7) and log what was removed. Needs the writer: while a collector runs "
        "it applies retention itself every hour.",
    )
    p.add_argument("--days", type=_days, default=None, help="retention in days (default 7)")
    add_data_dir(p)
    p.set_defaults(func=cmd_retention)


def _fmt_time(t: dt.datetime | None) -> str:
    return "-" if t is None else utc_text(t, millis=True)


def cmd_stats(args: argparse.Namespace) -> int:
    """Print one line per symbol."""
    wanted = validate_symbol(args.symbol) if args.symbol else None
    store = open_store(args.data)
    symbols = [wanted] if wanted else store.symbols()
    if not symbols:
        print(f"{store.path}: no trades stored yet")
        return 0
    print(
        f"{'symbol':<10} {'trades':>12} {'first trade (UTC)':<24} {'last trade (UTC)':<24} "
        f"{'first id':>12} {'last id':>12} {'holes r/u':>10} {'bytes':>12} {'B/trade':>8}"
    )
    for sym in symbols:
        s = store.stats(sym)
        per = f"{s.bytes_on_disk / s.trade_count:.1f}" if s.trade_count else "-"
        holes = store.holes(sym)
        bad = int(holes["unrepairable"].sum()) if holes.height else 0
        counts = f"{holes.height - bad}/{bad}"
        print(
            f"{sym:<10} {s.trade_count:>12,} {_fmt_time(s.first_time):<24} "
            f"{_fmt_time(s.last_time):<24} {s.first_agg_id or '-':>12} "
            f"{s.last_agg_id or '-':>12} {counts:>10} {s.bytes_on_disk:>12,} {per:>8}"
        )
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    """Apply retention now and print how many trades went."""
    with TradeStore(resolve_data_dir(args.data), retention_days=args.days) as store:
        removed = store.enforce_retention()
        print(
            f"removed {removed:,} trades older than {store.retention_days:g} days from {store.path}"
        )
    return 0
