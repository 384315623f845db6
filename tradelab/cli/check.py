"""``tradelab check``: is the stored history complete? Span, trades and holes per symbol.

::

    tradelab check --data DIR [--symbols BTCUSDT,ETHUSDT]

For each symbol: the time and id span stored, the trade count, and the holes — runs of
aggregate ids missing between the first and the last stored id, from
:meth:`tradelab.store.TradeStore.holes` (block headers only: instant even on a week of data).
A hole is *repairable* when the exchange still serves it (a running collector repairs it on
its next start or reconnect) or *unrepairable* when the exchange said it does not have those
ids. Exit code 0 when no repairable hole exists, 1 when one does (for scripts and monitoring),
2 on bad input. Reads only: safe while a collector writes.
"""

from __future__ import annotations

import argparse

import polars as pl

from tradelab.cli.args import add_data_dir
from tradelab.config import parse_symbols
from tradelab.formatting import utc_text
from tradelab.store import TradeStore, open_store

__all__ = ["cmd_check", "register"]

SHOWN = 10
"""Holes listed per symbol (the summary line counts them all)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``check`` subcommand."""
    p = subparsers.add_parser(
        "check",
        help="is the stored history complete? holes per symbol (exit 1 if one is repairable)",
        description="Per symbol: the span stored, the trade count and the holes (missing "
        "aggregate ids between the first and last stored), repairable or unrepairable. Exit "
        "code 1 when a repairable hole exists (a running collector repairs it), else 0. "
        "Safe while a collector writes.",
    )
    add_data_dir(p)
    p.add_argument(
        "--symbols",
        default=None,
        help="comma-separated symbols (default: every symbol in the store)",
    )
    p.set_defaults(func=cmd_check)


def _ids(n: int) -> str:
    return f"{n:,} id" + ("" if n == 1 else "s")


def report(store: TradeStore, symbol: str) -> tuple[list[str], int]:
    """The lines ``check`` prints for ``symbol`` and its number of repairable holes."""
    s = store.stats(symbol)
    if not s.trade_count:
        return [f"{symbol}: no trades stored"], 0
    holes = store.holes(symbol)
    bad = holes.filter(pl.col("unrepairable"))
    fixable = holes.filter(~pl.col("unrepairable"))
    assert s.first_time is not None and s.last_time is not None
    lines = [
        f"{symbol}: {s.trade_count:,} trades, {utc_text(s.first_time, millis=True)} → "
        f"{utc_text(s.last_time, millis=True)} UTC, ids {s.first_agg_id}–{s.last_agg_id}",
        f"  holes: {fixable.height} repairable ({_ids(int(fixable['count'].sum()))}), "
        f"{bad.height} unrepairable ({_ids(int(bad['count'].sum()))})",
    ]
    for r in holes.head(SHOWN).iter_rows(named=True):
        what = (
            "unrepairable (the exchange does not have them)"
            if r["unrepairable"]
            else ("repairable")
        )
        lines.append(
            f"    ids {r['first_missing']}–{r['last_missing']} ({_ids(r['count'])}) between "
            f"{utc_text(r['after_time'], millis=True)} and "
            f"{utc_text(r['before_time'], millis=True)} UTC: {what}"
        )
    if holes.height > SHOWN:
        lines.append(f"    … and {holes.height - SHOWN} more")
    return lines, fixable.height


def cmd_check(args: argparse.Namespace) -> int:
    """Print span, trades and holes per symbol; 1 if a repairable hole exists, else 0."""
    wanted = list(parse_symbols(args.symbols)) if args.symbols else None
    store = open_store(args.data)
    symbols = wanted if wanted is not None else store.symbols()
    if not symbols:
        print(f"{store.path}: no trades stored yet")
        return 0
    repairable = 0
    for sym in symbols:
        lines, n = report(store, sym)
        repairable += n
        print("\n".join(lines))
    if repairable:
        print(
            f"{repairable} repairable hole(s): a collector repairs them through REST when it "
            "starts (or reconnects): tradelab collect --data DIR --symbols ..."
        )
        return 1
    print("complete: no repairable hole")
    return 0
