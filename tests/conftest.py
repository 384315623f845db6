"""Shared fixtures: the shared recordings (skipped cleanly when ../shared is absent)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tradelab.recordings import shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real Binance recordings; skips the test when it is not on this machine."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data/binance is not present on this machine")
    return path


@pytest.fixture(autouse=True)
def _restore_tradelab_logging():
    """In-process CLI runs configure the ``tradelab`` logger; put it back after each test so
    one test's handlers, level or propagation never change what the next test captures."""
    logger = logging.getLogger("tradelab")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.level, logger.propagate = saved[1], saved[2]
