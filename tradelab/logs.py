"""Logging: everything goes through the ``tradelab`` logger hierarchy; this is the one place
that configures handlers (for the CLI and services — a library never configures logging).

Modules log with structured fields in ``extra`` (e.g. ``extra={"symbol": "BTCUSDT",
"trades": 1234}``) and a human sentence as the message. The text format prints the sentence;
the JSON format (``--log-format json``) prints one object per line with the fields, so
operators can aggregate trades/minute, gaps and reconnects without parsing prose.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import IO, Literal

__all__ = ["JsonFormatter", "configure_logging", "get_logger"]

LogFormat = Literal["text", "json"]

# Attributes every LogRecord has; anything else was passed through ``extra``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}


def get_logger(name: str) -> logging.Logger:
    """A logger under the ``tradelab`` hierarchy (``tradelab.<name>``)."""
    return logging.getLogger(name if name.startswith("tradelab") else f"tradelab.{name}")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record (not at set-up), so a
    replaced stderr (pytest's capture, a notebook's stream) never leaves a dangling handle."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def configure_logging(
    level: str | int = "INFO", fmt: LogFormat = "text", stream: IO[str] | None = None
) -> logging.Handler:
    """Route the ``tradelab`` loggers to ``stream`` (stderr) in text or JSON; idempotent."""
    if fmt not in ("text", "json"):
        from tradelab.exceptions import ConfigurationError

        raise ConfigurationError(f"log format {fmt!r} is not one of: text, json")
    root = logging.getLogger("tradelab")
    for old in list(root.handlers):
        if getattr(old, "_tradelab", False):
            root.removeHandler(old)
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler._tradelab = True  # type: ignore[attr-defined]  # our marker attribute, read above
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    root.propagate = False
    return handler
