"""``%tradelab``: the IPython magic, a thin dispatcher over the session and the public API.

::

    %load_ext tradelab
    %tradelab start BTCUSDT ETHUSDT [--data DIR] [--ws-url URL] [--rest-url URL] [--background]
    %tradelab status [--data DIR]
    %tradelab profile BTCUSDT [--hours H] [--data DIR]
    %tradelab vacuums BTCUSDT [--hours H] [--data DIR]
    %tradelab stop

Each subcommand calls the function an analyst can call from Python (``tradelab.start``,
``tradelab.stop``, ``tradelab.status``, ``tradelab.get_volume_profile``,
``tradelab.vacuum_report``) with the values it parsed, and only adds presentation: the API
validates them and opens the store. Bad arguments and every
:class:`~tradelab.exceptions.TradelabError` surface as one-line IPython ``UsageError`` messages,
never as tracebacks.

``%tradelab stop`` waits for the flush while the kernel's loop keeps running: the extension
adds an input transformer that turns a cell line ``%tradelab stop`` into a top-level ``await``
(IPython's autoawait), so the cell ends only once every received trade is in the store.

Autostart: with ``TRADELAB_AUTOSTART=BTCUSDT,ETHUSDT`` (or ``1`` for the configured symbols) in
the environment, loading the extension starts collection — at kernel start-up
(``c.InteractiveShellApp.extensions = ["tradelab"]`` or ``--ext tradelab``) the kernel's loop is
not running yet, so the start is deferred until it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import re
import shlex
import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from tradelab.exceptions import TradelabError
from tradelab.formatting import fixed_price, hours_text, qty_text_short, utc_text
from tradelab.jupyter import session

__all__ = [
    "KeyFigures",
    "TradelabMagics",
    "build_parser",
    "load_ipython_extension",
    "settle",
    "unload_ipython_extension",
]

SUBCOMMANDS = ("start", "stop", "status", "profile", "vacuums")


class _ParserExit(Exception):
    """argparse wanted to exit after printing help: not an error."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` (one line) instead of exiting the kernel."""

    def error(self, message: str) -> Any:
        raise UsageError(f"%{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if message:
            print(message, file=sys.stderr)
        raise _ParserExit()


def _hours(text: str) -> int | float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hours must be a number of hours from 1 to 168, got {text!r}"
        ) from None
    return int(value) if value.is_integer() else value


def build_parser() -> argparse.ArgumentParser:
    """The ``%tradelab`` argument parser (one sub-parser per subcommand)."""
    parser = _Parser(
        prog="tradelab",
        description="Collect Binance trades in the background and look at volume profiles.",
        exit_on_error=False,
    )
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")

    p = sub.add_parser("start", help="start collecting in the background (returns at once)")
    p.add_argument("symbols", nargs="*", metavar="SYMBOL", help="e.g. BTCUSDT ETHUSDT")
    p.add_argument("--data", metavar="DIR", help="store directory (default $TRADELAB_DATA)")
    p.add_argument("--ws-url", metavar="URL", help="stream base URL (default Binance)")
    p.add_argument("--rest-url", metavar="URL", help="REST base URL (default Binance)")
    p.add_argument(
        "--background",
        action="store_true",
        help="collect on a thread of its own, so blocking cells do not pause it",
    )

    sub.add_parser("stop", help="flush every received trade and stop")

    p = sub.add_parser("status", help="the collector's status (this kernel's or another's)")
    p.add_argument("--data", metavar="DIR", help="store directory to read the status from")

    for name, what in (("profile", "volume profile"), ("vacuums", "liquidity vacuums")):
        p = sub.add_parser(name, help=f"the {what} of a symbol, plotted with its key figures")
        p.add_argument("symbol", metavar="SYMBOL")
        p.add_argument("--hours", type=_hours, default=1, help="window: 1 to 168 (default 1)")
        p.add_argument("--data", metavar="DIR", help="store directory (default: the session's)")
    for action in sub.choices.values():
        action.prog = f"tradelab {action.prog.split()[-1]}"
        action.__class__ = _Parser
    return parser


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError as exc:
        raise UsageError(f"%tradelab: cannot parse arguments ({exc})") from None


@magics_class
class TradelabMagics(Magics):
    """The ``%tradelab`` line magic."""

    @line_magic
    def tradelab(self, line: str = "") -> Any:
        """Collect Binance trades and look at volume profiles; ``%tradelab --help`` for usage.

        ``%tradelab start [SYMBOL ...] [--data DIR] [--ws-url URL] [--rest-url URL]
        [--background]``, ``%tradelab stop``, ``%tradelab status [--data DIR]``,
        ``%tradelab profile SYMBOL [--hours H]``, ``%tradelab vacuums SYMBOL [--hours H]``.
        """
        argv = _split(line)
        if not argv:
            raise UsageError(
                "%tradelab needs a subcommand: "
                + ", ".join(SUBCOMMANDS)
                + " (%tradelab --help for details)"
            )
        if argv[0] not in SUBCOMMANDS and not argv[0].startswith("-"):
            raise UsageError(
                f"%tradelab: unknown subcommand {argv[0]!r}; use one of: " + ", ".join(SUBCOMMANDS)
            )
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except _ParserExit:
            return None
        except argparse.ArgumentError as exc:
            raise UsageError(f"%tradelab {argv[0]}: {exc}") from None
        handler = getattr(self, f"_{args.command}")
        try:
            return handler(args)
        except TradelabError as exc:
            raise UsageError(str(exc)) from None

    # -- subcommands: parse, call the public API, present ------------------------------

    def _start(self, args: argparse.Namespace) -> None:
        info = session.start(
            args.symbols or None,
            data=args.data,
            ws_url=args.ws_url,
            rest_url=args.rest_url,
            background=args.background,
        )
        print(repr(info))

    def _stop(self, args: argparse.Namespace) -> Any:
        result = session.stop()
        if isinstance(result, session.Stopping):
            # On the kernel's own loop: finish (and report) once the flush is done. The input
            # transformer awaits this; if nothing awaits it, it still completes after the cell.
            async def report() -> None:
                print(_stopped_line(await result))

            task = asyncio.get_running_loop().create_task(report())
            return session.Stopping(task)
        print(_stopped_line(result))
        return None

    def _status(self, args: argparse.Namespace) -> None:
        _display(session.status(args.data))

    def _profile(self, args: argparse.Namespace) -> None:
        from tradelab.analytics import get_volume_profile

        profile = get_volume_profile(args.symbol, args.hours, data=args.data)
        _show_figure(profile.plot())
        _display(KeyFigures.of_profile(profile, args.hours))

    def _vacuums(self, args: argparse.Namespace) -> None:
        from tradelab.analytics import vacuum_report

        report = vacuum_report(args.symbol, args.hours, data=args.data)
        _show_figure(report.profile.plot(vacuums=report.vacuums))
        _display(KeyFigures.of_vacuums(report, args.hours))


def _stopped_line(summary: dict[str, Any] | None) -> str:
    symbols = (summary or {}).get("symbols") or {}
    parts = [f"{int(s.get('trades_stored') or 0):,} {sym}" for sym, s in sorted(symbols.items())]
    stored = f" Trades stored this session: {', '.join(parts)}." if parts else ""
    return f"Collection stopped; every received trade is in the store.{stored}"


def _display(obj: Any) -> None:
    from IPython.display import display

    display(obj)


def _show_figure(fig_or_ax: Any) -> None:
    """Display a figure once, as a PNG in a kernel even when matplotlib's inline backend is
    not active (e.g. ``MPLBACKEND=Agg``), and close it so the inline backend does not show it
    a second time at the end of the cell."""
    from IPython import get_ipython

    fig = getattr(fig_or_ax, "figure", None) or fig_or_ax
    ip = get_ipython()
    png_formatter = None
    if ip is not None:
        png_formatter = ip.display_formatter.formatters.get("image/png")
    has_png = False
    if png_formatter is not None:
        with contextlib.suppress(KeyError):
            has_png = png_formatter.lookup(fig) is not None
    if has_png or hasattr(fig, "_repr_png_") or getattr(ip, "kernel", None) is None:
        _display(fig)
    else:
        from IPython.display import Image

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        _display(Image(data=buf.getvalue(), format="png"))
    with contextlib.suppress(Exception):
        import matplotlib.pyplot as plt

        plt.close(fig)


class KeyFigures:
    """A small two-column table of key figures: HTML in notebooks, text elsewhere."""

    def __init__(self, title: str, rows: list[tuple[str, str]], table: Any = None) -> None:
        self.title = title
        self.rows = rows
        self.table = table  # optional extra rows (e.g. vacuums): list of dicts

    @classmethod
    def of_profile(cls, p: Any, hours: float) -> KeyFigures:
        """The key figures of a :class:`~tradelab.analytics.VolumeProfile` of the last ``hours``."""
        d = _decimals(p)
        rows = [
            ("POC", fixed_price(p.poc, d)),
            ("VAH", fixed_price(p.vah, d)),
            ("VAL", fixed_price(p.val, d)),
            ("value area", f"{p.value_area_volume_pct:.1f}% of the volume ({p.method})"),
            (
                "volume",
                f"{qty_text_short(p.total_volume)} (buy {qty_text_short(p.buy_volume)}, "
                f"sell {qty_text_short(p.sell_volume)})",
            ),
            ("trades", f"{int(p.trade_count):,}"),
            ("rows", f"{p.row_count} of {fixed_price(p.row_size, d)}"),
            ("window", f"{utc_text(p.start)} → {utc_text(p.end)} UTC"),
        ]
        return cls(f"{p.symbol or ''} volume profile, last {hours_text(hours)}".strip(), rows)

    @classmethod
    def of_vacuums(cls, report: Any, hours: float) -> KeyFigures:
        """The key figures of a :class:`~tradelab.analytics.VacuumReport`, and its zones."""
        p = report.profile
        d = _decimals(p)
        table = [
            {
                "from": fixed_price(v.price_low, d),
                "to": fixed_price(v.price_high, d),
                "rows": str(v.rows),
                "volume": qty_text_short(v.volume),
                "deficit": f"{v.deficit_pct:.0f}%",
                "impact": str(v.impact),
            }
            for v in report.vacuums
        ]
        rows = [
            ("vacuums", f"{len(table)} (rows under 20% of the median row volume)"),
            ("POC", fixed_price(p.poc, d)),
            ("value area", f"{fixed_price(p.val, d)} – {fixed_price(p.vah, d)}"),
            ("trades", f"{int(p.trade_count):,}"),
        ]
        return cls(
            f"{p.symbol or ''} liquidity vacuums, last {hours_text(hours)}".strip(), rows, table
        )

    def to_text(self) -> str:
        width = max(len(k) for k, _ in self.rows)
        lines = [self.title] + [f"  {k.ljust(width)}  {v}" for k, v in self.rows]
        if self.table:
            keys = list(self.table[0])
            widths = [max(len(k), *(len(r[k]) for r in self.table)) for k in keys]
            lines.append("  " + "  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
            for r in self.table:
                lines.append(
                    "  " + "  ".join(r[k].ljust(w) for k, w in zip(keys, widths, strict=True))
                )
        return "\n".join(line.rstrip() for line in lines)

    def __repr__(self) -> str:
        return self.to_text()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.to_text())

    def _repr_html_(self) -> str:
        import html

        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in self.rows
        )
        out = f"<p><b>{html.escape(self.title)}</b></p><table>{body}</table>"
        if self.table:
            keys = list(self.table[0])
            head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(r[k])}</td>" for k in keys) + "</tr>"
                for r in self.table
            )
            out += f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        return out


def _decimals(p: Any) -> int:
    return int(getattr(p, "price_decimals", 2))


# --------------------------------------------------------------------------- stop awaiting

_STOP_CALL = re.compile(r"^get_ipython\(\)\.run_line_magic\('tradelab', '\s*stop\b.*\)\s*$")


async def settle(result: Any) -> None:
    """Await what ``%tradelab stop`` returned if it is still in progress (used by the input
    transformer; returns ``None`` so the cell shows only the printed summary)."""
    if isinstance(result, session.Stopping):
        await result


def _make_transformer(shell: Any) -> Any:
    def await_tradelab_stop(lines: list[str]) -> list[str]:
        """Turn a top-level ``%tradelab stop`` line into ``await settle(...)`` (autoawait)."""
        if not getattr(shell, "autoawait", False):
            return lines
        out = []
        for line in lines:
            body = line.rstrip("\n")
            if _STOP_CALL.match(body):
                ending = line[len(body) :]
                settle_fn = "__import__('tradelab.jupyter.magic').jupyter.magic.settle"
                line = f"await {settle_fn}({body.strip()}){ending}"
            out.append(line)
        return out

    await_tradelab_stop.tradelab = True  # type: ignore[attr-defined]
    return await_tradelab_stop


# --------------------------------------------------------------------------- extension


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%tradelab`` (``%load_ext tradelab``) and autostart if configured."""
    ipython.register_magics(TradelabMagics)
    transformers = ipython.input_transformers_post
    if not any(getattr(t, "tradelab", False) for t in transformers):
        transformers.append(_make_transformer(ipython))
    spec = os.environ.get("TRADELAB_AUTOSTART", "").strip()
    if spec and spec.lower() not in ("0", "false", "no", "off"):
        symbols = None if spec.lower() in ("1", "true", "yes", "on") else spec
        _schedule_autostart(ipython, symbols)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext tradelab``: stop collection (flushing) and unregister the magic."""
    if session.current() is not None:
        with contextlib.suppress(TradelabError):
            session.stop()
    transformers = ipython.input_transformers_post
    transformers[:] = [t for t in transformers if not getattr(t, "tradelab", False)]
    ipython.magics_manager.magics["line"].pop("tradelab", None)


def _autostart(symbols: str | None) -> None:
    if session.current() is not None:
        return
    try:
        info = session.start(symbols)
        print(f"tradelab autostart: {info!r}", file=sys.stderr)
    except TradelabError as exc:
        print(f"tradelab autostart failed: {exc}", file=sys.stderr)


def _schedule_autostart(ipython: Any, symbols: str | None) -> None:
    """Start now if a loop runs (or none ever will); in a starting kernel, once its loop runs."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        _autostart(symbols)
        return
    if getattr(ipython, "kernel", None) is None:
        _autostart(symbols)  # terminal IPython: no loop runs between cells -> its own thread
        return
    attempted = False

    def once() -> None:
        nonlocal attempted
        if not attempted:
            attempted = True
            _autostart(symbols)

    def before_first_cell(*_: Any) -> None:  # fallback, should the loop callback not have run
        ipython.events.unregister("pre_run_cell", before_first_cell)
        once()

    # ipykernel: the loop tornado is about to run is this thread's asyncio event loop; the
    # callback runs as soon as it starts, before any cell.
    with contextlib.redirect_stderr(io.StringIO()):
        loop = asyncio.get_event_loop_policy().get_event_loop()
    loop.call_soon(once)
    ipython.events.register("pre_run_cell", before_first_cell)
