"""``tradelab profile | vacuums``: the volume profile and liquidity vacuums of a stored window.

::

    tradelab profile BTCUSDT --hours 1 [--data DIR] [--row-size X] [--png out.png] [--json]
    tradelab profile BTCUSDT --start 2024-08-08T23:54 --end 2024-08-09T00:06   # a fixed range
    tradelab vacuums BTCUSDT --hours 4 [--data DIR] [--threshold 0.2] [--png out.png] [--json]
    tradelab profile BTCUSDT --start 2024-08-01 --end 2024-09-01 --source s3://team/trades

Both read the store (safe while a collector writes) through the same functions a notebook calls,
:func:`tradelab.get_volume_profile` and :func:`tradelab.vacuum_report`, which validate the
arguments and open the store, and print the key figures (or ``--json``, the full result).
``--source URI`` reads a team's shared Delta table (``tradelab export``) instead of a store.
``--png`` saves the chart: price over time beside the profile, POC, value area and vacuums
marked.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from tradelab.analytics import (
    METHODS,
    Vacuum,
    VacuumReport,
    VolumeProfile,
    get_volume_profile,
    vacuum_report,
)
from tradelab.cli.args import add_data_dir
from tradelab.cli.output import emit
from tradelab.config import DEFAULT_WINDOW_HOURS
from tradelab.formatting import fixed_price, hours_text, price_text, split_symbol, window_text
from tradelab.store import open_store
from tradelab.store import trades as read_trades

__all__ = [
    "add_range",
    "add_source",
    "cmd_profile",
    "cmd_vacuums",
    "format_profile",
    "format_vacuums",
    "register",
]


def _positive(kind: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind} must be a number > 0, got {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"{kind} must be a number > 0, got {text!r}")
        return value

    return parse


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"hours must be a number from 1 to 168, got {text!r}"
        ) from None
    return int(value) if value.is_integer() else value


def add_range(p: argparse.ArgumentParser) -> None:
    """``--start`` / ``--end``: a range instead of the last hours (parsed by the API)."""
    p.add_argument(
        "--start",
        metavar="TIME",
        default=None,
        help="start of a range instead of --hours: ISO 8601 (2024-08-08, 2024-08-08T23:54, "
        "...Z or +02:00; no zone = UTC) or unix ms",
    )
    p.add_argument(
        "--end",
        metavar="TIME",
        default=None,
        help="end of the range (exclusive; default now), same formats as --start",
    )


def add_source(p: argparse.ArgumentParser) -> None:
    """``--source URI``: read a shared Delta table instead of the store (checked by the API)."""
    p.add_argument(
        "--source",
        metavar="URI",
        default=None,
        help="read the shared Delta table at URI (tradelab export: a directory or s3://, gs://, "
        "az:// URL) instead of the store; not with --data",
    )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("symbol", help="the symbol, e.g. BTCUSDT")
    p.add_argument(
        "--hours",
        type=_hours,
        default=None,
        help=(
            f"window length in hours, 1-168, ending now (default {DEFAULT_WINDOW_HOURS}); "
            "or --start/--end"
        ),
    )
    add_range(p)
    add_data_dir(p)
    add_source(p)
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument(
        "--png",
        metavar="FILE",
        default=None,
        help="save the chart (price over time and the profile) as a PNG",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``profile`` and ``vacuums`` subcommands."""
    p = subparsers.add_parser(
        "profile",
        help="volume profile (POC, value area) of the last hours or of a range",
        description="Volume profile of SYMBOL over the last --hours hours (or the range "
        "--start/--end) from the store: point of control, value area (VAL-VAH), buy/sell "
        "volume. Needs at least 1,000 trades in the window; otherwise says how many there "
        "are and how long to wait (for a range, where the store has data). --source reads a "
        "team's shared Delta table (tradelab export) instead of the store.",
    )
    _common(p)
    p.add_argument(
        "--row-size",
        type=_positive("row size"),
        default=None,
        help="row height in price (default: automatic, 60-150 nice rows)",
    )
    p.add_argument(
        "--tick-size",
        type=_positive("tick size"),
        default=None,
        help="the symbol's price increment (default: the exchange's, e.g. 0.01)",
    )
    p.add_argument(
        "--value-area",
        type=_positive("value area"),
        default=0.70,
        help="share of volume in the value area, 0 < x <= 1 (default 0.70)",
    )
    p.add_argument(
        "--method",
        choices=METHODS,
        default="cbot",
        help="value-area rule: cbot (two rows at a time, default) or single",
    )
    p.set_defaults(func=cmd_profile)

    p = subparsers.add_parser(
        "vacuums",
        help="liquidity vacuums (thin price zones) of the last hours or of a range",
        description="Price zones of SYMBOL's last --hours hours (or of --start/--end) that "
        "traded far less than the "
        "median row (below --threshold x the median row volume): price tends to "
        "move fast through them.",
    )
    _common(p)
    p.add_argument(
        "--threshold",
        type=_positive("threshold"),
        default=0.20,
        help="share of the median row volume below which a row is thin (0.20)",
    )
    p.add_argument(
        "--min-rows", type=int, default=1, help="shortest zone reported, in rows (default 1)"
    )
    p.set_defaults(func=cmd_vacuums)


# --- presentation ------------------------------------------------------------------------------


def _unit(profile: VolumeProfile) -> tuple[str, str]:
    return split_symbol(profile.symbol)


def _window(profile: VolumeProfile, hours: float | None) -> str:
    note = f" [{profile.window_note}]" if profile.window_note else ""
    if profile.start is None or profile.end is None:
        return f"last {hours_text(hours or DEFAULT_WINDOW_HOURS)}"
    window = window_text(profile.start, profile.end, seconds=False, shorten=False)
    if hours is None:  # a range
        return f"{window}{note}"
    return f"last {hours_text(hours)} ({window}){note}"


def format_profile(profile: VolumeProfile, hours: float | None) -> str:
    """The key figures as aligned text lines; ``hours`` None for a range."""
    d = profile.price_decimals
    base, quote = _unit(profile)

    def px(x: float) -> str:
        return price_text(x, d)

    lines = [
        f"{profile.symbol} volume profile, {_window(profile, hours)}: "
        f"{profile.trade_count:,} trades",
        f"  POC           {px(profile.poc)} {quote}  ({profile.poc_volume:,.4f} {base} in its row)",
        f"  Value area    {px(profile.val)} – {px(profile.vah)}  "
        f"({profile.value_area_volume_pct:.1f}% of volume; target {profile.value_area:.0%}, "
        f"{profile.method})",
        f"  Volume        {profile.total_volume:,.4f} {base}  (buy {profile.buy_volume:,.4f}, "
        f"sell {profile.sell_volume:,.4f}, delta {profile.delta:+,.4f})",
        f"  Traded range  {px(profile.price_min)} – {px(profile.price_max)}",
        f"  Rows          {profile.row_count} × {px(profile.row_size)} {quote}",
    ]
    return "\n".join(lines)


def format_vacuums(profile: VolumeProfile, vacuums: list[Vacuum], hours: float | None) -> str:
    """The vacuums (of :attr:`VacuumReport.vacuums`) as a text table."""
    d = profile.price_decimals
    base, _quote = _unit(profile)
    head = (
        f"{profile.symbol} liquidity vacuums, {_window(profile, hours)}: "
        f"{len(vacuums)} zone{'s' if len(vacuums) != 1 else ''}"
    )
    if not vacuums:
        return head + " — every row traded at least the threshold share of the median row."
    median = vacuums[0].median_row_volume
    rows = [("price low", "price high", "rows", f"volume ({base})", "deficit", "impact")]
    for v in vacuums:
        rows.append(
            (
                fixed_price(v.price_low, d),
                fixed_price(v.price_high, d),
                str(v.rows),
                f"{v.volume:,.5f}",
                f"{v.deficit_pct:.1f}%",
                v.impact,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [head + f" (median row volume {median:,.5f} {base}, POC {price_text(profile.poc, d)})"]
    for r in rows:
        cells = [
            c.rjust(w) if i < 5 else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def _chart(profile: VolumeProfile, args: argparse.Namespace, vacuums: Any = None) -> Any:
    """The chart of ``profile``: price over time (the window's trades, read again from where
    the profile was read) beside the profile, with ``vacuums`` marked."""
    from tradelab.plotting import plot_profile  # matplotlib only for --png

    # Where the profile was read from (open_store keeps one store per path and process).
    trades = None
    if profile.start is not None and profile.end is not None:  # the API always sets both
        sym = str(profile.symbol)
        if args.source is not None:
            trades = read_trades(sym, start=profile.start, end=profile.end, source=args.source)
        else:
            trades = open_store(args.data).trades(sym, profile.start, profile.end)
    return plot_profile(
        profile, trades=trades if trades is not None and trades.height else None, vacuums=vacuums
    )


# --- handlers ----------------------------------------------------------------------------------


def _shown_hours(args: argparse.Namespace) -> float | None:
    """The hours to name in the heading: None for a range, else --hours or the default 24."""
    return None if args.start is not None else (args.hours or DEFAULT_WINDOW_HOURS)


def cmd_profile(args: argparse.Namespace) -> int:
    """``tradelab profile``."""
    profile = get_volume_profile(
        args.symbol,
        args.hours,
        args.tick_size,
        start=args.start,
        end=args.end,
        data=args.data,
        source=args.source,
        row_size=args.row_size,
        value_area=args.value_area,
        method=args.method,
    )
    return emit(
        args,
        profile.to_dict,
        lambda: format_profile(profile, _shown_hours(args)),
        lambda: _chart(profile, args),
    )


def cmd_vacuums(args: argparse.Namespace) -> int:
    """``tradelab vacuums``."""
    report: VacuumReport = vacuum_report(
        args.symbol,
        args.hours,
        start=args.start,
        end=args.end,
        data=args.data,
        source=args.source,
        threshold=args.threshold,
        min_rows=args.min_rows,
    )
    return emit(
        args,
        report.to_dict,
        lambda: format_vacuums(report.profile, report.vacuums, _shown_hours(args)),
        lambda: _chart(report.profile, args, vacuums=report.vacuums),
    )
