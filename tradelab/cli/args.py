"""Argument types shared by several subcommands (argparse ``type=`` callables)."""

from __future__ import annotations

import argparse

__all__ = ["add_data_dir", "port"]


def port(text: str) -> int:
    """A TCP port 0–65535 (0 = any free port), or an argparse error saying so."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number 0-65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535 (0 = any free port), got {value}")
    return value


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """The ``--data DIR`` option every command that touches the store takes."""
    parser.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="store directory (default $TRADELAB_DATA, else ~/.tradelab/data)",
    )
