"""Shared fixtures: a fresh store, a store filled with recent trades, a running simulator, the
shared recordings (skipped cleanly when ../shared is absent), and a clean slate after each
test (no store, session or logging configuration survives a test)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from helpers import Records
from hypothesis import settings

from tradelab.recordings import shared_data_dir, synthetic_trades
from tradelab.simulator import Simulator
from tradelab.store import TradeStore, close_stores, open_store

# Property tests draw the same examples on every run (seeded by the test), so `make test` and CI
# pass or fail alike; HYPOTHESIS_PROFILE=explore draws new ones each run, to look for more.
settings.register_profile("tradelab", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "tradelab"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real Binance recordings; skips the test when it is not on this machine."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data/binance is not present on this machine")
    return path


@pytest.fixture(autouse=True)
def _restore_tradelab_logging() -> Iterator[None]:
    """In-process CLI runs configure the ``tradelab`` logger; put it back after each test so
    one test's handlers, level or propagation never change what the next test captures."""
    logger = logging.getLogger("tradelab")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.level, logger.propagate = saved[1], saved[2]


@pytest.fixture(autouse=True)
def _no_state_between_tests() -> Iterator[None]:
    """Stop a collection session a test left running and close every cached store, so no test
    sees another's writer, reader or collector."""
    yield
    session = sys.modules.get("tradelab.jupyter.session")
    if session is not None and session.current() is not None:
        session.stop()
    close_stores()


@pytest.fixture
def logs() -> Iterator[Records]:
    """Every ``tradelab`` log record of the test (DEBUG and up), found by its ``event``."""
    handler = Records()
    logger = logging.getLogger("tradelab")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TradeStore]:
    """A fresh, empty store (this process writes it) in ``tmp_path / "data"``."""
    with TradeStore(tmp_path / "data") as s:
        yield s


@dataclass(frozen=True)
class RecentStore:
    """A store path and the frames written to it."""

    path: Path
    frames: dict[str, pl.DataFrame]

    @property
    def data(self) -> str:
        """The path as the CLI, magic and MCP take it (``--data``)."""
        return str(self.path)


@pytest.fixture
def recent_store(tmp_path: Path) -> RecentStore:
    """A store holding 6,000 BTCUSDT trades from the last 20 minutes (enough to analyse) and
    150 ETHUSDT trades from the last 5 minutes (too few), opened as this process's writer."""
    path = tmp_path / "recent"
    now_ms = int(time.time() * 1000)
    frames = {
        "BTCUSDT": synthetic_trades("BTCUSDT", now_ms - 20 * 60_000, 6000, rate_per_s=8.0, seed=3),
        "ETHUSDT": synthetic_trades(
            "ETHUSDT", now_ms - 5 * 60_000, 150, rate_per_s=1.0, price=3000.0
        ),
    }
    store = open_store(path, write=True)
    for symbol, frame in frames.items():
        assert store.append(symbol, frame) == frame.height
    return RecentStore(path, frames)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A running simulator (its own thread) publishing BTCUSDT and ETHUSDT at 20x, seed 3."""
    with Simulator(("BTCUSDT", "ETHUSDT"), speed=20, seed=3) as s:
        yield s
