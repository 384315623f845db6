"""Shared fixtures: the shared recordings (skipped cleanly when ../shared is absent)."""

from __future__ import annotations

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
