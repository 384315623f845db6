"""``%tradelab`` in a real Jupyter kernel (ipykernel, driven through jupyter_client).

The simulator runs in this test process on its own thread; the kernel collects from it on its
own event loop while it is idle; this process reads the same RocksDB store as a reader and
compares what was stored with the ids the simulator published.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

from tradelab.notebook_support import agg_id_gaps
from tradelab.simulator import Faults, Simulator
from tradelab.store import TradeStore

pytestmark = pytest.mark.slow


@dataclass
class Outputs:
    status: str
    text: str = ""  # streams and text/plain of results and displays
    html: list[str] = field(default_factory=list)
    png: int = 0  # number of image/png displays
    error: str = ""


class Kernel:
    """A real ipykernel with a tiny, blocking execute() helper."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(cwd), env=env)

    def execute(self, code: str, timeout: float = 60) -> Outputs:
        out = Outputs(status="")
        parts: list[str] = []

        def hook(msg: dict) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                parts.append(content["text"])
            elif kind in ("execute_result", "display_data"):
                data = content["data"]
                parts.append(data.get("text/plain", "") + "\n")
                if "text/html" in data:
                    out.html.append(data["text/html"])
                if "image/png" in data:
                    out.png += 1
            elif kind == "error":
                out.error = f"{content['ename']}: {content['evalue']}"

        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook)
        out.status = reply["content"]["status"]
        out.text = "".join(parts)
        return out

    def ok(self, code: str, timeout: float = 60) -> Outputs:
        out = self.execute(code, timeout)
        assert out.status == "ok", f"{code!r} failed: {out.error}\n{out.text}"
        return out

    def shutdown(self) -> None:
        if self.km.is_alive():
            self.kc.stop_channels()
            self.km.shutdown_kernel(now=False)


@pytest.fixture
def kernel(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELAB_")}
    env.update(TRADELAB_DATA=str(tmp_path / "default"), MPLBACKEND="Agg")
    k = Kernel(tmp_path, env)
    yield k
    k.shutdown()


def read_store(path: Path) -> TradeStore:
    return TradeStore(path, readonly=True)


def stored_count(path: Path, symbol: str) -> int:
    if not path.exists() or not any(path.iterdir()):
        return 0
    with read_store(path) as store:
        return store.stats(symbol).trade_count if symbol in store.symbols() else 0


def wait_until(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def assert_nothing_lost(path: Path, sim: Simulator, symbol: str) -> list[int]:
    with read_store(path) as store:
        ids = store.trades(symbol, 0, 10**13)["agg_id"].to_list()
        assert agg_id_gaps(store, symbol) == []
    assert ids, f"nothing stored for {symbol}"
    published = [i for i in sim.published(symbol) if i >= ids[0]]
    assert ids == published[: len(ids)]
    return ids


def start_line(path: Path, sim: Simulator, symbols: str = "BTCUSDT") -> str:
    return (f"%tradelab start {symbols} --data {path} --ws-url {sim.ws_url} "
            f"--rest-url {sim.rest_url}")


def test_collects_while_idle_then_status_profile_stop(kernel, tmp_path):
    path = tmp_path / "store"
    with Simulator(("BTCUSDT",), speed=60, seed=11) as sim:
        kernel.ok("%load_ext tradelab")
        out = kernel.ok(start_line(path, sim))
        assert "Collecting BTCUSDT" in out.text and "(on this event loop)" in out.text

        # No cell runs now: the kernel is idle and its loop collects.
        wait_until(lambda: stored_count(path, "BTCUSDT") >= 1500, what="1,500 trades")

        out = kernel.ok("%tradelab status")
        assert out.html and "<table>" in out.html[0]
        assert "Collector running in this kernel" in out.html[0]
        assert "<td>BTCUSDT</td><td>yes</td>" in out.html[0]

        out = kernel.ok("%tradelab profile BTCUSDT --hours 1")
        assert out.png == 1
        assert "BTCUSDT volume profile, last 1 h" in out.text and "POC" in out.text
        poc, vah, val = (float(kernel.ok(f"import tradelab; print(tradelab.get_volume_profile("
                                         f"'BTCUSDT', 1).{k})").text) for k in ("poc", "vah", "val"))
        assert val <= poc <= vah

        out = kernel.ok("%tradelab vacuums BTCUSDT")
        assert out.png == 1 and "liquidity vacuums, last 1 h" in out.text

        out = kernel.ok("%tradelab stop")
        assert "Collection stopped; every received trade is in the store." in out.text
        ids = assert_nothing_lost(path, sim, "BTCUSDT")
        assert f"{len(ids):,} BTCUSDT" in out.text
        out = kernel.execute("%tradelab stop")
        assert out.status == "error" and out.error.startswith("UsageError: collection is not")


@pytest.mark.parametrize("how", ["restart", "shutdown"])
def test_kernel_restart_or_shutdown_loses_nothing_received(kernel, tmp_path, how):
    path = tmp_path / "store"
    with Simulator(("BTCUSDT", "ETHUSDT"), speed=40, seed=12) as sim:
        kernel.ok("%load_ext tradelab")
        kernel.ok(start_line(path, sim, "BTCUSDT ETHUSDT"))
        wait_until(lambda: stored_count(path, "ETHUSDT") >= 200, what="first trades")
        # Return at a moment when trades are received but not yet written (flushes are ~1 s
        # apart), and report how many: the restart comes right after.
        out = kernel.ok(
            "import asyncio, json, tradelab\n"
            "while not all(s['buffered'] for s in tradelab.status()['symbols'].values()):\n"
            "    await asyncio.sleep(0.005)\n"
            "print(json.dumps({k: s['trades_stored'] + s['buffered']\n"
            "                  for k, s in tradelab.status()['symbols'].items()}))"
        )
        received = json.loads(out.text.strip().splitlines()[-1])
        if how == "restart":
            kernel.km.restart_kernel(now=False)
            kernel.kc.wait_for_ready(timeout=60)
            # the new kernel sees the collector's final status in the store
            out = kernel.ok(f"import tradelab\nprint(tradelab.status({str(path)!r}))")
            assert "Collector stopped" in out.text
        else:
            kernel.km.shutdown_kernel(now=False)
        for symbol, n in received.items():
            ids = assert_nothing_lost(path, sim, symbol)
            assert len(ids) >= n, f"{symbol}: {n} received, only {len(ids)} stored"


def test_blocking_cell_then_reconnect_and_backfill(kernel, tmp_path):
    path = tmp_path / "store"
    # The simulator pings every 0.3 s and drops a client that has not answered within 0.8 s.
    faults = Faults(ping_interval=0.3, ping_timeout=0.8)
    with Simulator(("BTCUSDT",), speed=20, seed=13, faults=faults) as sim:
        kernel.ok("%load_ext tradelab")
        kernel.ok(start_line(path, sim))
        wait_until(lambda: stored_count(path, "BTCUSDT") >= 100, what="first trades")

        kernel.ok("import time\ntime.sleep(3)  # a long computation: the loop is blocked")

        # Afterwards the collector finds its connection closed, reconnects and backfills.
        status_code = (
            "import tradelab, json; print(json.dumps(tradelab.status()['symbols']['BTCUSDT']))"
        )

        def repaired() -> bool:
            s = json.loads(kernel.ok(status_code).text.strip().splitlines()[-1])
            return s["connected"] and s["gaps_detected"] >= 1 and s["gaps_backfilled"] >= \
                s["gaps_detected"]

        wait_until(repaired, what="reconnect and backfill")
        kernel.ok("%tradelab stop")
        assert sim.stats()["connections_opened"] >= 2  # dropped for the missed pongs
        assert_nothing_lost(path, sim, "BTCUSDT")
