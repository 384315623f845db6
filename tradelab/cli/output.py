"""How the analysis commands answer: the result as text or ``--json``, and ``--png`` saved.

``tradelab profile``, ``vacuums`` and ``sessions`` compute one result each and present it the
same way; :func:`emit` is that way, so the three commands differ only in what they compute
and draw:

- text (the default) or ``--json`` (one JSON document and a newline) on stdout;
- with ``--png FILE``, the chart drawn and saved, then ``Saved the chart to FILE`` — on stderr
  with ``--json``, so stdout stays one parseable document.

A missing folder or a write that fails is an :class:`~tradelab.exceptions.InvalidParameterError`
(one line, exit 2), checked before anything is drawn.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tradelab.exceptions import InvalidParameterError

__all__ = ["emit", "save_png"]


def save_png(path: str, draw: Callable[[], Any]) -> Path:
    """Draw (``draw()`` returns a matplotlib figure) and save it as a PNG at ``path``.

    The folder is checked first, so a typo costs no drawing (nor the read a chart may need)."""
    from tradelab.plotting import figure_png  # matplotlib only for --png

    out = Path(path).expanduser()
    if not out.parent.exists():
        raise InvalidParameterError(f"cannot save {out}: the folder {out.parent} does not exist")
    png = figure_png(draw(), dpi=120)
    try:
        out.write_bytes(png)
    except OSError as exc:
        raise InvalidParameterError(f"cannot save {out}: {exc.strerror or exc}") from None
    return out


def emit(
    args: argparse.Namespace,
    to_dict: Callable[[], dict[str, Any]],
    to_text: Callable[[], str],
    draw: Callable[[], Any],
) -> int:
    """Print the result (``to_text()``, or ``to_dict()`` as JSON with ``args.json``), then
    with ``args.png`` save ``draw()`` there and say where; returns the exit status, 0."""
    if args.json:
        json.dump(to_dict(), sys.stdout)
        sys.stdout.write("\n")
    else:
        print(to_text())
    if args.png:
        out = save_png(args.png, draw)
        print(f"Saved the chart to {out}", file=sys.stderr if args.json else sys.stdout)
    return 0
