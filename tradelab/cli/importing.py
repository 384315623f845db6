"""``tradelab import``: load a spot aggTrades file into the store, keeping id spaces apart.

::

    tradelab import FILE --data DIR [--symbol S]

The file is recognised by its content: an aggTrade stream recording or a Binance Vision spot
aggTrades CSV is imported (exactly once per agg id); a raw ``@trade`` recording, futures data,
another symbol, or a file holding an aggregate id the store has with different values is
refused with one line saying what the file is — and the store is left untouched.
"""

from __future__ import annotations

import argparse
import sys

from tradelab.cli.args import add_data_dir
from tradelab.history import import_file

__all__ = ["cmd_import", "register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``import`` subcommand."""
    p = subparsers.add_parser(
        "import",
        help="load a spot aggTrade recording or Binance aggTrades CSV into the store",
        description="Load FILE into the store, exactly once per agg id: a spot aggTrade "
        "stream recording (*.aggTrade.tsv[.gz]) or a Binance Vision spot aggTrades export "
        "(*.csv, named SYMBOL-aggTrades-DAY.csv or given --symbol). Raw @trade recordings, "
        "futures data, other symbols and files whose ids the store holds with other values "
        "are refused, leaving the store untouched.",
    )
    p.add_argument("file", help="the file to load")
    p.add_argument("--symbol", default=None, help="the symbol to import (default: the file's own)")
    add_data_dir(p)
    p.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    """Import the file and print one line per symbol."""
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if total < 1_000_000:
            return
        if bar is None:
            from tqdm.auto import tqdm  # type: ignore[import-untyped]

            bar = tqdm(total=total, unit=" trades", unit_scale=True, file=sys.stderr)
        bar.n = done
        bar.refresh()

    try:
        results = import_file(args.file, args.data, symbol=args.symbol, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    for r in results:
        print(r.summary())
    return 0
