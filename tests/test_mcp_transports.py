"""The ``tradelab mcp`` command over its real transports, with the SDK's own clients.

- stdio: a ``tradelab mcp --data DIR`` subprocess reads (as a RocksDB secondary) a store that
  ANOTHER process writes — a ``tradelab collect`` subprocess fed by the simulator — and sees new
  trades as they arrive; once the writer stops, its answers must equal the Python API's.
- streamable HTTP: ``tradelab mcp --transport http --port 0`` on 127.0.0.1, called through the
  SDK's HTTP client session.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

import tradelab
from tradelab.recordings import synthetic_trades
from tradelab.simulator import Simulator
from tradelab.store.tradestore import TradeStore

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELAB_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def _process(args: list[str], **kwargs: Any) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(args, text=True, env=_env(), **kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _readline(stream: Any, timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no output within {timeout} s"
    return stream.readline()


def _stdio(data: Path, errlog: Any) -> Client:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "tradelab", "mcp", "--data", str(data)], env=_env()
    )
    return Client(stdio_client(params, errlog=errlog))


async def _until(client: Client, check: Any, *, attempts: int = 240, pause: float = 0.25) -> Any:
    """Call get_collection_status until ``check(result)`` holds (bounded)."""
    for _ in range(attempts):
        got = (await client.call_tool("get_collection_status", {})).structured_content
        if check(got):
            return got
        await anyio.sleep(pause)
    raise AssertionError(f"condition never held; last status: {got}")


def _btc(status: dict[str, Any]) -> dict[str, Any]:
    return next((s for s in status["symbols"] if s["symbol"] == "BTCUSDT"), {"trades_stored": 0})


def test_stdio_server_follows_a_store_another_process_writes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    errlog = (tmp_path / "mcp-stderr.txt").open("w")
    with (
        Simulator(("BTCUSDT",), source="synthetic", speed=1, rate_per_s=500.0, seed=7) as sim,
        _process(
            [
                sys.executable,
                "-m",
                "tradelab",
                "collect",
                "--symbols",
                "BTCUSDT",
                "--data",
                str(data),
                "--ws-url",
                sim.ws_url,
                "--rest-url",
                sim.rest_url,
                "--duration",
                "120",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as writer,
    ):

        async def session() -> None:
            async with _stdio(data, errlog) as client:
                tools = {t.name for t in (await client.list_tools()).tools}
                assert "get_volume_profile" in tools
                # The collector process reports itself through the store; we see its trades.
                status = await _until(
                    client,
                    lambda s: (
                        s["collector"] is not None
                        and s["collector"]["running"]
                        and _btc(s)["trades_stored"] >= 1200
                    ),
                )
                assert status["collector"]["pid"] == writer.pid
                assert status["collector"]["in_this_server"] is False
                assert _btc(status)["collecting"] is True
                first = await client.call_tool(
                    "get_volume_profile", {"symbol": "BTCUSDT", "duration_hours": 1}
                )
                assert not first.is_error, first.content
                n1 = first.structured_content["trade_count"]
                assert n1 >= 1200
                # New trades keep arriving in the other process and show up here.
                await _until(client, lambda s: _btc(s)["trades_stored"] >= n1 + 400)
                second = await client.call_tool(
                    "get_volume_profile", {"symbol": "BTCUSDT", "duration_hours": 1}
                )
                assert second.structured_content["trade_count"] >= n1 + 400

                # Stop the writer: the status says so, and the figures freeze.
                writer.send_signal(signal.SIGTERM)
                assert writer.wait(timeout=30) == 0
                status = await _until(client, lambda s: not s["collector"]["running"])
                assert (
                    "is not running" in status["summary"] or "A collector" not in status["summary"]
                )
                profile = await client.call_tool(
                    "get_volume_profile", {"symbol": "btcusdt", "duration_hours": 1}
                )
                vacuums = await client.call_tool(
                    "get_liquidity_vacuums", {"symbol": "BTCUSDT", "duration_hours": 1}
                )
                bad = await client.call_tool(
                    "get_volume_profile", {"symbol": "BTCUSDT", "duration_hours": 0.5}
                )
            # Same window, same store, through the Python API in this process.
            with TradeStore(data, readonly=True) as store:
                vp = tradelab.get_volume_profile("BTCUSDT", 1, store=store)
                zones = tradelab.get_liquidity_vacuums("BTCUSDT", 1, store=store)
                stored = store.stats("BTCUSDT").trade_count
            got = profile.structured_content
            assert got["trade_count"] == vp.trade_count == stored
            for key in ("poc", "vah", "val", "row_size", "total_volume", "buy_volume"):
                assert got[key] == pytest.approx(getattr(vp, key)), key
            assert [
                (z["price_low"], z["price_high"]) for z in vacuums.structured_content["vacuums"]
            ] == [(z.price_low, z.price_high) for z in zones]
            assert bad.is_error
            assert "duration_hours=0.5 is outside the allowed window: 1 to 168 hours" in (
                bad.content[0].text
            )

        anyio.run(session)
    errlog.close()
    assert "Traceback" not in (tmp_path / "mcp-stderr.txt").read_text()


def test_streamable_http_on_loopback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with TradeStore(data) as store:
        now_ms = int(time.time() * 1000)
        store.append("BTCUSDT", synthetic_trades("BTCUSDT", now_ms - 600_000, 3000, seed=5))
    cmd = [
        sys.executable,
        "-m",
        "tradelab",
        "mcp",
        "--transport",
        "http",
        "--port",
        "0",
        "--data",
        str(data),
    ]
    with _process(cmd, stderr=subprocess.PIPE) as server:
        line = ""
        while "serving http://" not in line:
            line = _readline(server.stderr, 30)
            assert line, "the server exited before serving"
        url = line.split("serving ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")

        async def session() -> tuple[Any, Any, Any]:
            async with Client(url) as client:
                tools = (await client.list_tools()).tools
                profile = await client.call_tool(
                    "get_volume_profile", {"symbol": "BTCUSDT", "duration_hours": 1}
                )
                bad = await client.call_tool("get_volume_profile", {"symbol": "BTC_USDT"})
                return tools, profile, bad

        tools, profile, bad = anyio.run(session)
        assert {t.name for t in tools} >= {
            "get_volume_profile",
            "get_liquidity_vacuums",
            "get_collection_status",
        }
        assert not profile.is_error, profile.content
        with TradeStore(data, readonly=True) as store:
            vp = tradelab.get_volume_profile("BTCUSDT", 1, store=store)
        assert profile.structured_content["trade_count"] == 3000
        assert profile.structured_content["poc"] == pytest.approx(vp.poc)
        assert bad.is_error and "invalid symbol 'BTC_USDT'" in bad.content[0].text


def test_server_runs_its_own_collector_with_collect(tmp_path: Path) -> None:
    from tradelab.mcp_server.server import create_server
    from tradelab.store.registry import close_stores, open_store

    data = tmp_path / "data"
    try:
        with Simulator(("BTCUSDT",), source="synthetic", speed=1, rate_per_s=500.0, seed=11) as sim:
            server = create_server(
                data, collect="btcusdt", ws_url=sim.ws_url, rest_url=sim.rest_url
            )

            async def session() -> tuple[dict[str, Any], Any]:
                async with Client(server) as client:
                    status = await _until(
                        client,
                        lambda s: (
                            s["collector"] is not None
                            and s["collector"]["running"]
                            and _btc(s)["trades_stored"] >= 1200
                        ),
                    )
                    profile = await client.call_tool(
                        "get_volume_profile", {"symbol": "BTCUSDT", "duration_hours": 1}
                    )
                    return status, profile

            status, profile = anyio.run(session)
        assert status["collector"]["in_this_server"] is True
        assert status["collector"]["pid"] == os.getpid()
        assert status["collector"]["ws_url"] == sim.ws_url
        assert "inside this MCP server" in status["summary"]
        assert not profile.is_error, profile.content
        assert profile.structured_content["trade_count"] >= 1200
        # Leaving the session stopped the collector; the store says so.
        store = open_store(data)
        assert not store.readonly
        doc = store.get_meta("collector_status")
        assert doc is not None and doc["running"] is False
        assert store.stats("BTCUSDT").trade_count >= profile.structured_content["trade_count"]
    finally:
        close_stores()
