"""Helpers the collector's end-to-end tests share (fixtures live in conftest.py): log records,
short settings, a store that refuses writes, the flooding exchange in its own process."""

from __future__ import annotations

import logging
import multiprocessing as mp
from pathlib import Path
from typing import Any

from tradelab.exceptions import StorageWriteError
from tradelab.simulator import Simulator
from tradelab.store import TradeStore


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


class FailingStore(TradeStore):
    """A real store whose writes fail while ``failing`` is set — a full disk, or one that does
    not answer — injected at the collector's TradeSink boundary (the store's own recovery is
    the store's tests' business). ``failures`` counts the refused writes."""

    failing = False
    failures = 0

    def append(self, symbol, trades, **kw):  # type: ignore[override]
        if self.failing:
            self.failures += 1
            raise StorageWriteError("injected: the disk is not answering")
        return super().append(symbol, trades, **kw)


def rss_mb() -> float:
    """This process's resident memory (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


FLOOD_SYMBOL = "BTCUSDT"


def _flood_child(conn: Any, kwargs: dict[str, Any]) -> None:  # the flooding exchange's process
    sim = Simulator(**kwargs).run_in_thread()
    conn.send((sim.ws_url, sim.rest_url))
    while (msg := conn.recv()) != "stop":
        if msg == "ranges":
            conn.send(sim.published_ranges(FLOOD_SYMBOL).ranges)
        elif msg == "stats":
            stats = sim.stats()
            ranges = sim.published_ranges(FLOOD_SYMBOL).ranges
            stats["last_id"] = ranges[-1][1] if ranges else None
            conn.send(stats)
    sim.stop_thread()
    conn.send("stopped")


class FloodExchange:
    """A simulator flooding ``trades`` BTCUSDT trades at ~132,000 a second without waiting for
    its clients, like the exchange, in a process of its own (so the test's process measures
    only itself); a context manager that starts it and stops it.

    ``ws_url`` / ``rest_url`` once entered; :meth:`stats` is the simulator's counters plus
    ``last_id`` (the last published id, None before the first), :meth:`published_ids` every
    id it published."""

    def __init__(self, trades: int, seed: int) -> None:
        self.trades = trades
        self._kwargs: dict[str, Any] = dict(
            symbols=(FLOOD_SYMBOL,),
            source="synthetic",
            speed=132_000 / 50,
            rate_per_s=50.0,
            max_trades=trades,
            history_limit=trades + 1000,
            seed=seed,
        )
        self.ws_url = self.rest_url = ""

    def __enter__(self) -> FloodExchange:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_flood_child, args=(child, self._kwargs), daemon=True)
        self._proc.start()
        try:
            self.ws_url, self.rest_url = self._conn.recv()
        except BaseException:
            self._proc.kill()
            raise
        return self

    def stats(self) -> dict[str, Any]:
        self._conn.send("stats")
        return self._conn.recv()

    def published_ids(self) -> list[int]:
        self._conn.send("ranges")
        return [a for lo, hi in self._conn.recv() for a in range(lo, hi + 1)]

    def __exit__(self, *exc: object) -> None:
        self._conn.send("stop")
        self._conn.recv()
        self._proc.join(10)
