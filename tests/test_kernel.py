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

from tradelab.jupyter.notebook import agg_id_gaps
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

    def __init__(self, cwd: Path, env: dict[str, str], args: tuple[str, ...] = ()) -> None:
        self.km, self.kc = start_new_kernel(
            kernel_name="python3", cwd=str(cwd), env=env, extra_arguments=list(args)
        )

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


def kernel_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELAB_")}
    env.update(MPLBACKEND="Agg", **extra)
    return env


@pytest.fixture
def kernel(tmp_path):
    k = Kernel(tmp_path, kernel_env(TRADELAB_DATA=str(tmp_path / "default")))
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
    return (
        f"%tradelab start {symbols} --data {path} --ws-url {sim.ws_url} --rest-url {sim.rest_url}"
    )


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
        poc, vah, val = (
            float(
                kernel.ok(
                    f"import tradelab; print(tradelab.get_volume_profile('BTCUSDT', 1).{k})"
                ).text
            )
            for k in ("poc", "vah", "val")
        )
        assert val <= poc <= vah

        out = kernel.ok("%tradelab vacuums BTCUSDT")  # the default window: 24 h, as the API
        assert out.png == 1 and "liquidity vacuums, last 24 h" in out.text

        out = kernel.ok("%tradelab stop")
        assert "Collection stopped; every received trade is in the store." in out.text
        ids = assert_nothing_lost(path, sim, "BTCUSDT")
        assert f"{len(ids):,} BTCUSDT" in out.text
        out = kernel.execute("%tradelab stop")
        assert out.status == "error"
        assert out.text.startswith("UsageError: collection is not running in this process")
        assert "Traceback" not in out.text


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

        # Afterwards the collector finds its connection closed, reconnects and fetches what it
        # missed through REST (the tail after its last id, or a gap in the stream's ids).
        published_by_now = sim.published("BTCUSDT")[-1]
        status_code = (
            "import tradelab, json; print(json.dumps(tradelab.status()['symbols']['BTCUSDT']))"
        )

        def caught_up() -> bool:
            s = json.loads(kernel.ok(status_code).text.strip().splitlines()[-1])
            return s["connected"] and (s["last_agg_id"] or 0) >= published_by_now

        wait_until(caught_up, what="reconnect and backfill")
        kernel.ok("%tradelab stop")
        assert sim.stats()["connections_opened"] >= 2  # dropped for the missed pongs
        assert_nothing_lost(path, sim, "BTCUSDT")


def test_autostart_at_kernel_start_collects_before_any_cell(tmp_path):
    """``--ext tradelab`` + ``TRADELAB_AUTOSTART``: the extension loads before the kernel's loop
    runs; collection starts as soon as it does, with no cell executed."""
    path = tmp_path / "store"
    with Simulator(("BTCUSDT", "ETHUSDT"), speed=20, seed=14) as sim:
        env = kernel_env(
            TRADELAB_AUTOSTART="BTCUSDT,ETHUSDT",
            TRADELAB_DATA=str(path),
            TRADELAB_WS_URL=sim.ws_url,
            TRADELAB_REST_URL=sim.rest_url,
        )
        k = Kernel(tmp_path, env, ("--ext=tradelab",))
        try:
            wait_until(lambda: stored_count(path, "ETHUSDT") >= 100, what="autostarted trades")
            out = k.ok("%tradelab stop")
            assert "Collection stopped" in out.text
        finally:
            k.shutdown()
        for symbol in ("BTCUSDT", "ETHUSDT"):
            assert_nothing_lost(path, sim, symbol)


def test_background_collector_keeps_collecting_through_a_blocking_cell(kernel, tmp_path):
    """``--background``: the collector has its own thread and loop; a blocking cell does not
    stop it reading, so there is no disconnect and no gap at all."""
    path = tmp_path / "store"
    faults = Faults(ping_interval=0.3, ping_timeout=0.8)
    with Simulator(("BTCUSDT",), speed=20, seed=15, faults=faults) as sim:
        kernel.ok("%load_ext tradelab")
        out = kernel.ok(start_line(path, sim) + " --background")
        assert "(on a background thread)" in out.text
        wait_until(lambda: stored_count(path, "BTCUSDT") >= 100, what="first trades")
        out = kernel.ok(
            "import time, tradelab\n"
            "before = tradelab.status()['symbols']['BTCUSDT']['trades_stored']\n"
            "time.sleep(3)\n"
            "print(tradelab.status()['symbols']['BTCUSDT']['trades_stored'] - before)"
        )
        assert int(out.text.strip().splitlines()[-1]) > 500  # ~480/s stored while blocked
        out = kernel.ok("%tradelab stop")
        assert "Collection stopped" in out.text
        assert sim.stats()["connections_opened"] == 1
        assert_nothing_lost(path, sim, "BTCUSDT")


def test_second_notebook_reads_the_store_and_sees_the_status(kernel, tmp_path):
    """Two kernels on one machine: the first collects (the writer), the second reads."""
    path = tmp_path / "store"
    with Simulator(("BTCUSDT",), speed=60, seed=16) as sim:
        kernel.ok("%load_ext tradelab")
        kernel.ok(start_line(path, sim) + " --background")
        pid = kernel.ok("import os; print(os.getpid())").text.strip()
        wait_until(lambda: stored_count(path, "BTCUSDT") >= 1200, what="trades")
        other = Kernel(tmp_path, kernel_env(TRADELAB_DATA=str(path)))
        try:
            other.ok("%load_ext tradelab")
            # the collector publishes its status every 5 s: wait for a fresh one
            other.ok(
                "import asyncio, tradelab\n"
                "while not tradelab.status()['symbols'].get('BTCUSDT', {}).get('trades_stored'):\n"
                "    await asyncio.sleep(0.2)"
            )
            out = other.ok("%tradelab status")
            assert f"Collector running in pid {pid}" in out.html[0]
            out = other.ok("%tradelab profile BTCUSDT")  # reads the writer's store
            assert out.png == 1 and "POC" in out.text
            out = other.execute("%tradelab start BTCUSDT")  # only one writer per store
            assert out.status == "error" and out.text.startswith("UsageError: ")
            assert "Traceback" not in out.text
        finally:
            other.shutdown()
        kernel.ok("%tradelab stop")
        assert_nothing_lost(path, sim, "BTCUSDT")


def test_live_view_redraws_in_place_on_the_kernels_loop_and_stops(kernel, tmp_path):
    """``%tradelab watch``: one output, replaced in place (update_display_data) while the
    kernel runs other cells; two views at once; ``--stop`` ends them and nothing follows."""
    from tradelab.recordings import synthetic_trades

    path = tmp_path / "store"
    now = int(time.time() * 1000)
    with TradeStore(path) as store:
        store.append("BTCUSDT", synthetic_trades("BTCUSDT", now - 600_000, 3000, rate_per_s=5))
    kernel.ok("%load_ext tradelab")
    out = kernel.ok(f"%tradelab watch BTCUSDT --hours 1 --every 1 --data {path}")
    assert out.png == 1 and "Live view of BTCUSDT" in out.text
    kernel.ok(
        f"import tradelab\nh2 = tradelab.jupyter.watch('BTCUSDT', 2, '1s', data={str(path)!r})"
    )
    # a later cell runs while the views redraw on the loop; the updates arrive on iopub
    # (attributed to the cell that created each view, as their outputs are that cell's)

    def run_collecting_updates(code: str, timeout: float = 60) -> tuple[str, list[dict]]:
        msg_id = kernel.kc.execute(code)
        found: list[dict] = []
        deadline = time.monotonic() + timeout
        while True:
            msg = kernel.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["msg_type"] == "update_display_data":
                found.append(msg)
            parent = msg.get("parent_header", {}).get("msg_id")
            if (
                parent == msg_id
                and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"
            ):
                break
        reply = kernel.kc.get_shell_msg(timeout=timeout)
        return reply["content"]["status"], found

    code = (
        "import asyncio, tradelab\n"
        "views = tradelab.jupyter.watching()\n"
        "while min(v.redraws for v in views) < 2:\n"
        "    await asyncio.sleep(0.1)\n"
        "print(len(views), [v.redraws >= 2 for v in views])"
    )
    status, found = run_collecting_updates(code)
    assert status == "ok"
    updates = [m for m in found if "image/png" in m["content"]["data"]]
    assert len(updates) >= 4  # two views, at least two redraws each
    assert len({m["content"]["transient"]["display_id"] for m in updates}) == 2
    out = kernel.ok("h2.stop(); print(len(tradelab.jupyter.watching()))")
    assert out.text.strip().endswith("1")
    out = kernel.ok("%tradelab watch --stop")
    assert "Stopped 1 live view (BTCUSDT)." in out.text
    status, late = run_collecting_updates("await asyncio.sleep(2.5)")
    assert status == "ok" and late == []
