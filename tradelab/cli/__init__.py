"""The ``tradelab`` command: each subcommand parses its arguments, calls the public API and
prints the result. :mod:`.main` builds the parser; one module per group of commands
(:mod:`.collect`, :mod:`.analyze`, :mod:`.data`, :mod:`.serve`, :mod:`.simulate`,
:mod:`.demo`).
"""

from __future__ import annotations

from tradelab.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
