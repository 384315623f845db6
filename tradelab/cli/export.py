"""``tradelab export``: copy the store's closed hours into a shared Delta Lake table.

::

    tradelab export --data DIR --to URI [--symbols A,B] [--since T] [--vacuum-older-than DAYS]

Exactly once per symbol-hour (re-running is a no-op; a crashed run is completed by the next),
safe while a collector writes the store and while other machines export other symbols into
the same table. ``URI`` is a local directory or ``s3://``, ``gs://``, ``az://`` (credentials
from the environment). Needs the ``scale`` extra; see ``docs/scale.md``.
"""

from __future__ import annotations

import argparse

from tradelab.cli.args import add_data_dir
from tradelab.config import parse_symbols
from tradelab.scale import export, normalize_uri, vacuum_older_than
from tradelab.store import open_store
from tradelab.timerange import TIME_FORMATS, parse_time

__all__ = ["cmd_export", "register"]


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"days must be a number > 0, got {text!r}") from None
    if not 0 < days < 1e6:
        raise argparse.ArgumentTypeError(f"days must be a number > 0, got {text!r}")
    return days


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    p = subparsers.add_parser(
        "export",
        help="export closed hours of the store to a shared Delta Lake table",
        description="Commit every closed hour of the store's symbols that the Delta table at "
        "URI lacks, one transaction per symbol-hour carrying an application id (exactly once "
        "across re-runs, crashes and several exporters), partitioned by symbol and date, zstd "
        "Parquet. An hour is closed once a later trade is stored; an hour with missing ids "
        "waits until they are repaired or declared unrepairable. Needs the scale extra: "
        "pip install 'tradelab[scale]'.",
    )
    p.add_argument(
        "--to",
        required=True,
        metavar="URI",
        help="the Delta table: a local directory or s3://, gs://, az:// URL (credentials "
        "from the environment)",
    )
    p.add_argument(
        "--symbols", default=None, help="comma-separated symbols (default: all in the store)"
    )
    p.add_argument(
        "--since",
        default=None,
        metavar="TIME",
        help="first hour to export when the table has none of a symbol yet: " + TIME_FORMATS,
    )
    p.add_argument(
        "--vacuum-older-than",
        type=_days,
        default=None,
        metavar="DAYS",
        help="afterwards, remove the table's days that ended more than DAYS days ago and "
        "delete files unreferenced for 7 days",
    )
    add_data_dir(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """Export, print the report (and the vacuum's)."""
    uri = normalize_uri(args.to)  # bad input fails before the store is opened
    symbols = parse_symbols(args.symbols) if args.symbols else None
    if args.since is not None:
        parse_time(args.since, "--since")
    store = open_store(args.data)
    print(export(store, uri, symbols=symbols, since=args.since))
    if args.vacuum_older_than is not None:
        print(vacuum_older_than(uri, args.vacuum_older_than))
    return 0
