"""The public surface: what ``tradelab`` exports exists, and every CLI command has help."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import tradelab
from tradelab.cli.main import COMMAND_MODULES, build_parser, main


def test_every_export_resolves() -> None:
    for name in tradelab.__all__:
        assert getattr(tradelab, name) is not None, name


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = tradelab.nope  # type: ignore[attr-defined]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_cli_command_has_help_and_a_handler() -> None:
    commands = _subcommands(build_parser())
    assert len(commands) >= len(COMMAND_MODULES)
    for name, sub in commands.items():
        assert sub.description or sub.format_help().strip(), name
        assert sub.get_default("func") is not None, f"{name} has no handler"
        help_text = sub.format_help()
        assert name in help_text


def test_cli_help_runs_as_a_process() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tradelab", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: tradelab" in out.stdout


def test_cli_error_is_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
