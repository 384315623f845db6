"""``%tradelab``: the IPython magic, a thin dispatcher over the session and the public API.

::

    %load_ext tradelab
    %tradelab start BTCUSDT ETHUSDT [--data DIR] [--ws-url URL] [--rest-url URL] [--background]
                                    [--history H] [--archive-url URL] [--export-to URI]
    %tradelab status [--data DIR]
    %tradelab profile BTCUSDT [--hours H | --start T [--end T]] [--data DIR]   # default 24 h
    %tradelab vacuums BTCUSDT [--hours H | --start T [--end T]] [--data DIR]   # default 24 h
    %tradelab sessions BTCUSDT [--days N | --start T [--end T]] [--session S] [--data DIR]
    %tradelab profile BTCUSDT --start 2024-08-01 --end 2024-09-01 --source s3://team/trades
    %tradelab watch BTCUSDT [--hours H] [--every S] [--data DIR]     # live view, redrawn
    %tradelab watch --stop [SYMBOL]
    %tradelab stop

Each subcommand calls the function an analyst can call from Python (``tradelab.start``,
``tradelab.stop``, ``tradelab.status``, ``tradelab.get_volume_profile``,
``tradelab.vacuum_report``, ``tradelab.session_profiles``, ``tradelab.jupyter.watch``) with the
values it parsed, and only adds presentation: the API
validates them and opens the store (or, with ``--source URI``, reads a team's shared Delta
table, ``tradelab export``). Bad arguments and every
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

from tradelab.config import DEFAULT_WINDOW_HOURS
from tradelab.exceptions import TradelabError
from tradelab.jupyter import live, session
from tradelab.jupyter.figures import KeyFigures

__all__ = [
    "KeyFigures",
    "TradelabMagics",
    "build_parser",
    "load_ipython_extension",
    "settle",
    "unload_ipython_extension",
]

SUBCOMMANDS = ("start", "stop", "status", "profile", "vacuums", "sessions", "watch")


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


def _range(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--start",
        metavar="TIME",
        help="a range instead of --hours: ISO 8601 or unix ms (no zone = UTC)",
    )
    p.add_argument("--end", metavar="TIME", help="end of the range (default now)")


def _source(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--source",
        metavar="URI",
        help="read the shared Delta table at URI (a directory or s3://, gs://, az:// URL) "
        "instead of the store; not with --data",
    )


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
    p.add_argument(
        "--history",
        type=float,
        metavar="H",
        help="also fill the last H hours (1 to the retention) from the archives and REST",
    )
    p.add_argument("--archive-url", metavar="URL", help="daily archives base URL (default Binance)")
    p.add_argument(
        "--export-to",
        metavar="URI",
        help="export each closed hour to this Delta table (a directory or s3://, gs://, az:// "
        "URL) as it closes (default $TRADELAB_EXPORT_TO; none); needs tradelab[scale]",
    )

    sub.add_parser("stop", help="flush every received trade and stop")

    p = sub.add_parser("status", help="the collector's status (this kernel's or another's)")
    p.add_argument("--data", metavar="DIR", help="store directory to read the status from")

    for name, what in (("profile", "volume profile"), ("vacuums", "liquidity vacuums")):
        p = sub.add_parser(name, help=f"the {what} of a symbol, plotted with its key figures")
        p.add_argument("symbol", metavar="SYMBOL")
        p.add_argument(
            "--hours",
            type=_hours,
            default=None,
            help=f"window: 1 to 168 (default {DEFAULT_WINDOW_HOURS}, as everywhere)",
        )
        _range(p)
        p.add_argument("--data", metavar="DIR", help="store directory (default: the session's)")
        _source(p)

    p = sub.add_parser("sessions", help="one volume profile per session, side by side")
    p.add_argument("symbol", metavar="SYMBOL")
    p.add_argument("--days", type=int, default=None, help="the last N UTC days (default 1)")
    _range(p)
    p.add_argument(
        "--session",
        default="utc-day",
        help="utc-day (default), asia, london, new-york or HH:MM-HH:MM (UTC)",
    )
    p.add_argument("--data", metavar="DIR", help="store directory (default: the session's)")
    _source(p)

    p = sub.add_parser("watch", help="a live view: the profile redrawn in place every few s")
    p.add_argument("symbol", metavar="SYMBOL", nargs="?")
    p.add_argument("--hours", type=_hours, default=1, help="window: 1 to 168 (default 1)")
    p.add_argument("--every", default="5", help="seconds between redraws, 1-3600 (default 5)")
    p.add_argument("--data", metavar="DIR", help="store directory (default: the session's)")
    p.add_argument("--stop", action="store_true", help="stop the live views (all, or SYMBOL's)")
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
        [--background] [--history H] [--archive-url URL] [--export-to URI]``,
        ``%tradelab stop``, ``%tradelab status [--data DIR]``,
        ``%tradelab profile SYMBOL [--hours H | --start T --end T] [--data DIR | --source
        URI]``, ``%tradelab vacuums SYMBOL [...]``, ``%tradelab sessions SYMBOL [--days N |
        --start T --end T] [--session S]``, ``%tradelab watch SYMBOL [--hours H] [--every S]``,
        ``%tradelab watch --stop [SYMBOL]``.
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
            history=args.history,
            archive_url=args.archive_url,
            export_to=args.export_to,
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

        hours = _hours_or_default(args)
        profile = get_volume_profile(
            args.symbol, hours, start=args.start, end=args.end, data=args.data, source=args.source
        )
        _show_figure(profile.plot())
        _display(KeyFigures.of_profile(profile, hours))

    def _vacuums(self, args: argparse.Namespace) -> None:
        from tradelab.analytics import vacuum_report

        hours = _hours_or_default(args)
        report = vacuum_report(
            args.symbol, hours, start=args.start, end=args.end, data=args.data, source=args.source
        )
        _show_figure(report.profile.plot(vacuums=report.vacuums))
        _display(KeyFigures.of_vacuums(report, hours))

    def _sessions(self, args: argparse.Namespace) -> None:
        from tradelab.analytics import session_profiles

        sp = session_profiles(
            args.symbol,
            days=args.days,
            start=args.start,
            end=args.end,
            session=args.session,
            data=args.data,
            source=args.source,
        )
        _show_figure(sp.plot())
        _display(KeyFigures.of_sessions(sp))

    def _watch(self, args: argparse.Namespace) -> Any:
        if args.stop:
            stopped = live.stop_watching(args.symbol)
            names = ", ".join(v.symbol for v in stopped)
            print(
                f"Stopped {len(stopped)} live view{'' if len(stopped) == 1 else 's'}"
                + (f" ({names})." if names else " (none was running).")
            )
            return None
        if args.symbol is None:
            raise UsageError(
                "%tradelab watch: give a SYMBOL to watch, or --stop to stop the live views"
            )
        every: Any = args.every
        with contextlib.suppress(ValueError):
            every = float(args.every)
        view = live.watch(args.symbol, args.hours, every, data=args.data)
        print(repr(view))
        return None


def _hours_or_default(args: argparse.Namespace) -> float | None:
    """--hours, or the API's default window (:data:`tradelab.config.DEFAULT_WINDOW_HOURS`, 24 h,
    as the CLI and the MCP tools) when neither --hours nor --start is given (a range: None)."""
    if args.hours is None and args.start is None:
        return DEFAULT_WINDOW_HOURS
    return args.hours


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
    """``%unload_ext tradelab``: stop live views and collection (flushing), unregister."""
    live.stop_watching()
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
