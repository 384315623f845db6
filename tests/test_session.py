"""``tradelab.start()/stop()/status()`` outside Jupyter: in plain asyncio programs, in
synchronous code (the collector gets a thread), and at interpreter exit.

Real pieces only: the simulator on 127.0.0.1, the collector, RocksDB in tmp_path.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import tradelab
from tradelab.exceptions import (
    CollectorStateError,
    InvalidParameterError,
    InvalidSymbolError,
    StoreLockedError,
)
from tradelab.jupyter import session
from tradelab.jupyter.notebook import agg_id_gaps
from tradelab.simulator import Simulator
from tradelab.store import TradeStore, close_stores, open_store

pytestmark = pytest.mark.slow


@pytest.fixture
def sim():
    with Simulator(("BTCUSDT", "ETHUSDT"), speed=20, seed=5) as s:
        yield s


@pytest.fixture(autouse=True)
def _clean(monkeypatch, tmp_path):
    monkeypatch.setenv("TRADELAB_DATA", str(tmp_path / "default-data"))
    yield
    if session.current() is not None:
        session.stop()
    close_stores()


def stored_ids(path: Path, symbol: str) -> list[int]:
    return open_store(path).trades(symbol, 0, 10**13)["agg_id"].to_list()


def assert_nothing_lost(path: Path, sim: Simulator, symbol: str) -> list[int]:
    """Stored ids are exactly the ids published from the first stored one on, without holes."""
    ids = stored_ids(path, symbol)
    assert ids, f"nothing stored for {symbol}"
    published = [i for i in sim.published(symbol) if i >= ids[0]]
    assert ids == published[: len(ids)]
    assert agg_id_gaps(open_store(path), symbol) == []
    return ids


def test_plain_asyncio_program_collects_on_its_loop(sim, tmp_path):
    path = tmp_path / "data"

    async def main():
        info = tradelab.start("BTCUSDT", data=path, ws_url=sim.ws_url, rest_url=sim.rest_url)
        assert not info.background
        assert session._active.loop is asyncio.get_running_loop()
        assert await session.wait_for_trades("BTCUSDT", 200, timeout=30) >= 200
        status = tradelab.status()
        assert status["source"] == "this process" and status["running"]
        assert status["symbols"]["BTCUSDT"]["connected"] is True
        handle = tradelab.stop()  # inside the loop: cannot block, returns an awaitable
        assert isinstance(handle, session.Stopping)
        summary = await handle
        assert handle.done() and "stopped" in repr(handle)
        return summary

    summary = asyncio.run(main())
    ids = assert_nothing_lost(path, sim, "BTCUSDT")
    assert summary["symbols"]["BTCUSDT"]["trades_stored"] == len(ids)
    assert session.current() is None


def test_asyncio_run_ending_without_stop_still_flushes(sim, tmp_path):
    path = tmp_path / "data"
    seen: dict[str, int] = {}

    async def main():
        tradelab.start("ETHUSDT", data=path, ws_url=sim.ws_url, rest_url=sim.rest_url)
        await session.wait_for_trades("ETHUSDT", 50, timeout=30)
        while True:  # return while trades are received but not yet written
            s = tradelab.status()["symbols"]["ETHUSDT"]
            if s["buffered"]:
                seen.update(stored=s["trades_stored"], buffered=s["buffered"])
                return
            await asyncio.sleep(0.005)

    asyncio.run(main())  # cancels the session's task: it flushes before letting go
    assert session.current() is None
    ids = assert_nothing_lost(path, sim, "ETHUSDT")
    assert len(ids) >= seen["stored"] + seen["buffered"]


def test_synchronous_code_gets_a_thread_and_stop_blocks(sim, tmp_path):
    path = tmp_path / "data"
    info = tradelab.start(
        ["BTCUSDT", "ETHUSDT"], data=path, ws_url=sim.ws_url, rest_url=sim.rest_url
    )
    assert info.background and "background thread" in repr(info)
    deadline = time.monotonic() + 30
    while any((s.get("trades_stored") or 0) < 100 for s in tradelab.status()["symbols"].values()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    summary = tradelab.stop()
    assert isinstance(summary, dict)
    TradeStore(path).close()  # the writer lock was released: someone else may collect here now
    for symbol in ("BTCUSDT", "ETHUSDT"):
        ids = assert_nothing_lost(path, sim, symbol)
        assert summary["symbols"][symbol]["trades_stored"] == len(ids)
    # the collector published its final status in the store: readable after the stop
    after = tradelab.status(path)
    assert after["running"] is False
    assert (
        after["symbols"]["BTCUSDT"]["trades_stored"]
        == summary["symbols"]["BTCUSDT"]["trades_stored"]
    )


def test_background_collector_keeps_reading_while_the_loop_blocks(sim, tmp_path):
    """The design for blocking cells: the collector on its own thread is not paused."""
    path = tmp_path / "data"

    async def main():
        tradelab.start(
            "BTCUSDT", data=path, ws_url=sim.ws_url, rest_url=sim.rest_url, background=True
        )
        await session.wait_for_trades("BTCUSDT", 50, timeout=30)
        before = tradelab.status()["symbols"]["BTCUSDT"]["trades_stored"]
        time.sleep(2.5)  # blocks this loop, like a long notebook cell
        during = tradelab.status()["symbols"]["BTCUSDT"]["trades_stored"]
        assert during > before + 200  # ~480 trades/s kept arriving and being stored
        return await session.astop()

    summary = asyncio.run(main())
    assert summary["symbols"]["BTCUSDT"]["gaps_detected"] == 0
    assert_nothing_lost(path, sim, "BTCUSDT")


def test_state_errors_are_clear(sim, tmp_path):
    with pytest.raises(CollectorStateError, match="not running in this process"):
        tradelab.stop()
    with pytest.raises(CollectorStateError, match="not running in this process"):
        asyncio.run(session.astop())
    tradelab.start("BTCUSDT", data=tmp_path / "d", ws_url=sim.ws_url, rest_url=sim.rest_url)
    with pytest.raises(CollectorStateError, match=r"already running \(BTCUSDT into"):
        tradelab.start("ETHUSDT", data=tmp_path / "other")
    tradelab.stop()
    with pytest.raises(CollectorStateError, match="not running"):
        tradelab.stop()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"symbols": "BTC-USDT"}, InvalidSymbolError, "invalid symbol 'BTC-USDT'"),
        ({"symbols": []}, InvalidSymbolError, "no symbols given"),
        ({"ws_url": "http://127.0.0.1:1"}, tradelab.ConfigurationError, "expected ws or wss"),
        ({"background": "yes"}, InvalidParameterError, "background must be True or False"),
        ({"frobnicate": 1}, InvalidParameterError, "unknown collector option"),
        ({"batch_interval": -1}, InvalidParameterError, "batch_interval"),
    ],
)
def test_bad_input_starts_nothing(tmp_path, kwargs, error, message):
    kwargs = {"symbols": "BTCUSDT", "data": tmp_path / "d", **kwargs}
    symbols = kwargs.pop("symbols")
    with pytest.raises(error, match=message):
        tradelab.start(symbols, **kwargs)
    assert session.current() is None


def test_store_written_by_someone_else_is_refused(tmp_path):
    path = tmp_path / "locked"
    other = TradeStore(path)  # another writer (in real life: another notebook's kernel)
    try:
        with pytest.raises(StoreLockedError):
            tradelab.start(
                "BTCUSDT", data=path, ws_url="ws://127.0.0.1:9", rest_url="http://127.0.0.1:9"
            )
        assert session.current() is None
    finally:
        other.close()


def test_status_without_any_collector(tmp_path):
    status = tradelab.status(tmp_path / "empty")
    assert status["running"] is False and status["source"] == "none"
    assert "No collector is running" in str(status)


SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import tradelab
    tradelab.start("BTCUSDT", data=sys.argv[1], ws_url=sys.argv[2], rest_url=sys.argv[3])
    deadline = time.monotonic() + 30
    while True:
        s = tradelab.status()["symbols"]["BTCUSDT"]
        if s["trades_stored"] and s["buffered"]:
            break
        assert time.monotonic() < deadline
        time.sleep(0.005)
    print(json.dumps({"stored": s["trades_stored"], "buffered": s["buffered"]}), flush=True)
    # exit without tradelab.stop(): the exit hook must flush what was received
    """
)


def test_process_exit_flushes_every_received_trade(sim, tmp_path):
    path = tmp_path / "data"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path), sim.ws_url, sim.rest_url],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["buffered"] > 0
    ids = assert_nothing_lost(path, sim, "BTCUSDT")
    assert len(ids) >= seen["stored"] + seen["buffered"]


def test_public_names_survive_importing_every_module():
    """No submodule shadows a public function (``tradelab.status`` stays callable)."""
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(tradelab.__path__, "tradelab."):
        if not info.name.endswith("__main__"):  # running it would parse pytest's argv
            importlib.import_module(info.name)
    assert tradelab.status is session.status
    assert tradelab.start is session.start and tradelab.stop is session.stop
