"""Helpers the collector's end-to-end tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import logging
from typing import Any


class Records(logging.Handler):
    """Every ``tradelab`` log record of a test, found by its ``event`` field."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self, name: str) -> list[logging.LogRecord]:
        return [r for r in self.records if getattr(r, "event", None) == name]


def fast(**kw: Any) -> dict[str, Any]:
    """Collector settings shortened for tests (same code paths, smaller numbers)."""
    base: dict[str, Any] = dict(
        reconnect_initial=0.05,
        reconnect_max=0.3,
        ping_interval=0.5,
        ping_timeout=0.8,
        status_interval=0.5,
        log_interval=2.0,
        write_retry_initial=0.05,
        write_retry_max=0.3,
        stop_timeout=10.0,
        stop_fetch_timeout=3.0,
        open_timeout=5.0,
    )
    base.update(kw)
    return base
