"""The ``tradelab`` command: a thin argparse front over the Python API.

Each subcommand group lives in ``tradelab/cli/<name>.py`` and exposes ``register(subparsers)``;
the handler it installs (``func(args) -> int``) parses nothing itself beyond argparse and calls
the same public function an analyst would call in a notebook. Errors derived from
:class:`~tradelab.exceptions.TradelabError` are printed as one line (``tradelab: error: ...``)
with exit code 2 — never a traceback.

A reader that stops early (``tradelab vacuums BTCUSDT | head -3``) closes the pipe under
stdout: the command then stops quietly with exit code 141 (128 + SIGPIPE), what a shell
reports for ``cat`` or ``grep`` in the same place — so ``set -o pipefail`` scripts see that
the output was cut, as with any Unix tool, while an interactive user sees no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from tradelab import __version__
from tradelab.exceptions import TradelabError
from tradelab.logs import configure_logging

__all__ = ["COMMAND_MODULES", "EXIT_BROKEN_PIPE", "build_parser", "main"]

EXIT_BROKEN_PIPE = 141
"""Exit code when stdout's reader went away: 128 + SIGPIPE (13), as a shell reports it."""

# One module per subcommand group; each defines register(subparsers).
COMMAND_MODULES: tuple[str, ...] = (
    "tradelab.cli.data",
    "tradelab.cli.check",
    "tradelab.cli.serve",
    "tradelab.cli.simulate",
    "tradelab.cli.collect",
    "tradelab.cli.analyze",
    "tradelab.cli.sessions",
    "tradelab.cli.demo",
    "tradelab.cli.backfill",
    "tradelab.cli.importing",
    "tradelab.cli.export",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="tradelab",
        description="Collect Binance aggTrades into RocksDB and analyse volume profiles.",
    )
    parser.add_argument("--version", action="version", version=f"tradelab {__version__}")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as human-readable text (default) or one JSON object per line",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="minimum level of log lines (default INFO)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tradelab`` console script; returns the exit code."""
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit:  # --help, --version or a usage error: flush what argparse printed
            sys.stdout.flush()
            raise
        configure_logging(args.log_level, args.log_format)
        try:
            code = int(args.func(args) or 0)
        except TradelabError as exc:
            print(f"tradelab: error: {exc}", file=sys.stderr)
            code = 2
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush of what is still
    buffered cannot fail again (the recipe of the Python docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (tests): nothing to silence
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
