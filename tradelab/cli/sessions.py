"""``tradelab sessions``: one volume profile per session, side by side, and the naked POCs.

::

    tradelab sessions BTCUSDT --days 7 [--session london] [--data DIR] [--png out.png] [--json]
    tradelab sessions BTCUSDT --start 2024-08-08 --end 2024-08-10 --session 08:00-16:30
    tradelab sessions BTCUSDT --days 30 --source s3://team/trades   # a shared Delta table

Calls :func:`tradelab.session_profiles` (which validates the arguments and reads the store) and
prints its table (date, trades, open → close, POC, VAH, VAL, volume, delta, value-area
migration) and the naked POCs; ``--json`` prints the summary as JSON, ``--png`` saves the
sessions drawn side by side on one price axis.
"""

from __future__ import annotations

import argparse

import tradelab
from tradelab.cli.analyze import add_range, add_source
from tradelab.cli.args import add_data_dir
from tradelab.cli.output import emit

__all__ = ["cmd_sessions", "register"]


def _days(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"days must be a whole number of UTC days (1 = today so far), got {text!r}"
        ) from None


def _row_size(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"row size must be a number > 0, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sessions`` subcommand."""
    p = subparsers.add_parser(
        "sessions",
        help="one volume profile per session (UTC day or trading session), and naked POCs",
        description="Session volume profiles of SYMBOL: one profile per UTC day (or per "
        "--session: asia, london, new-york or HH:MM-HH:MM in UTC) over the last --days days or "
        "the range --start/--end, with POC, value area, volume, delta and the value area's "
        "migration against the previous session, then the POCs no later trade has revisited.",
    )
    p.add_argument("symbol", help="the symbol, e.g. BTCUSDT")
    p.add_argument(
        "--days",
        type=_days,
        default=None,
        help="the last N UTC days, today included (default 1); or --start/--end",
    )
    add_range(p)
    p.add_argument(
        "--session",
        default="utc-day",
        help="utc-day (default), asia, london, new-york, or UTC hours HH:MM-HH:MM",
    )
    p.add_argument(
        "--row-size",
        type=_row_size,
        default=None,
        help="row height in price, shared by every session (default: automatic)",
    )
    add_data_dir(p)
    add_source(p)
    p.add_argument("--json", action="store_true", help="print the sessions as JSON")
    p.add_argument(
        "--png", metavar="FILE", default=None, help="save the sessions side by side as a PNG"
    )
    p.set_defaults(func=cmd_sessions)


def cmd_sessions(args: argparse.Namespace) -> int:
    """``tradelab sessions``."""
    sp = tradelab.session_profiles(
        args.symbol,
        days=args.days,
        start=args.start,
        end=args.end,
        session=args.session,
        row_size=args.row_size,
        data=args.data,
        source=args.source,
    )
    return emit(args, sp.to_dict, sp.to_text, sp.plot)
