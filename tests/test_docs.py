"""README.md documents every command, and every command it shows is one that runs.

In the spirit of sqlite-utils' ``test_docs.py``: the parsers are the truth. Every ``tradelab``
CLI command and every ``%tradelab`` subcommand has a row in the README's reference tables naming
all of its options, and every command line the README shows (in a code block or inline code)
parses with the real parser — a renamed or removed option fails here, not in a user's terminal.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from tradelab.cli import build_parser
from tradelab.jupyter.magic import build_parser as build_magic_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("parser has no subcommands")


def long_options(parser: argparse.ArgumentParser) -> set[str]:
    return {
        opt
        for action in parser._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt != "--help"
    }


def reference_row(prefix: str) -> str | None:
    """The README table row documenting ``prefix`` (e.g. "tradelab profile")."""
    for line in README.splitlines():
        if line.startswith(f"| `{prefix}`") or line.startswith(f"| `{prefix} "):
            return line
    return None


CLI = subcommands(build_parser())
MAGIC = subcommands(build_magic_parser())


@pytest.mark.parametrize("command", sorted(CLI))
def test_every_cli_command_is_in_the_reference_with_its_options(command: str) -> None:
    row = reference_row(f"tradelab {command}")
    assert row is not None, f"README's command reference has no row for `tradelab {command}`"
    missing = {opt for opt in long_options(CLI[command]) if opt not in row}
    assert missing == set(), f"`tradelab {command}` options missing from its README row"


@pytest.mark.parametrize("command", sorted(MAGIC))
def test_every_magic_subcommand_is_in_the_reference_with_its_options(command: str) -> None:
    row = reference_row(f"%tradelab {command}")
    assert row is not None, f"README's magic reference has no row for `%tradelab {command}`"
    missing = {opt for opt in long_options(MAGIC[command]) if opt not in row}
    assert missing == set(), f"`%tradelab {command}` options missing from its README row"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)


def command_lines(text: str) -> list[str]:
    """Every ``tradelab ...`` / ``%tradelab ...`` command line the text shows, comments cut."""
    found = []
    for block in code_blocks(text):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if re.match(r"%?tradelab\s", line):
                found.append(line)
    # inline code, outside the reference tables (their rows list options, not command lines)
    prose = "\n".join(ln for ln in text.splitlines() if not ln.startswith("| `"))
    prose = re.sub(r"^```.*?^```", "", prose, flags=re.M | re.S)
    found += re.findall(r"`(%?tradelab\s[^`]+)`", prose)
    return found


def parse(line: str) -> str | None:
    """None if ``line`` parses with the real parser, else argparse's complaint."""
    magic = line.startswith("%")
    words = shlex.split(line.lstrip("%"), comments=True)[1:]
    if len(words) == 1:  # a command named in prose ("`tradelab backfill` does it"): it exists
        return None if words[0] in (MAGIC if magic else CLI) else f"{line!r}: no such command"
    parser = build_magic_parser() if magic else build_parser()
    parser.exit_on_error = False
    for sub in subcommands(parser).values():
        sub.exit_on_error = False
    try:
        parser.parse_args(words)
    except (argparse.ArgumentError, SystemExit, Exception) as exc:  # magic raises UsageError
        if words and words[-1] in ("--help", "-h"):
            return None
        return f"{line!r}: {exc}"
    return None


def test_the_readme_shows_commands() -> None:
    lines = command_lines(README)
    assert any(ln.startswith("tradelab ") for ln in lines)
    assert any(ln.startswith("%tradelab ") for ln in lines)


def test_the_checker_catches_a_wrong_option() -> None:
    assert parse("tradelab profile BTCUSDT --hours 1") is None
    assert parse("tradelab profile BTCUSDT --no-such-option 1") is not None
    assert parse("%tradelab profile BTCUSDT --hours 1") is None
    assert parse("%tradelab profile BTCUSDT --no-such-option") is not None
    assert parse("tradelab backfill") is None and parse("tradelab nonesuch") is not None


def test_every_command_line_in_the_readme_parses() -> None:
    problems = [p for line in command_lines(README) if (p := parse(line)) is not None]
    assert problems == []
