"""Ranges, sessions and the live view at every front-end: ``tradelab profile|vacuums|sessions``
(CLI), ``%tradelab profile|vacuums|sessions|watch`` (a real IPython shell) and the MCP tools —
the same answers as the Python API, and every bad input as one line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from mcp import Client

import tradelab
from tradelab.cli import main
from tradelab.jupyter import live
from tradelab.mcp_server import create_server
from tradelab.recordings import synthetic_trades
from tradelab.store import TradeStore, close_stores

DAY = 86_400_000
D0 = 1_723_075_200_000  # 2024-08-08 00:00 UTC


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> str:
    """Three UTC days of BTCUSDT history in 2024 (an imported past, not the last hours)."""
    path = tmp_path_factory.mktemp("ranges") / "data"
    with TradeStore(path, retention_days=36500) as s:
        s.append("BTCUSDT", synthetic_trades("BTCUSDT", D0, 30_000, rate_per_s=0.116, seed=5))
    yield str(path)
    close_stores()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_profile_and_vacuums_over_a_range(history, capsys) -> None:
    code, out, _ = run(
        capsys, "profile", "BTCUSDT", "--start", "2024-08-08", "--end", "2024-08-09", "--data",
        history, "--json",
    )  # fmt: skip
    assert code == 0
    got = json.loads(out)
    vp = tradelab.get_volume_profile("BTCUSDT", start=D0, end=D0 + DAY, data=history)
    assert (got["poc"], got["vah"], got["val"]) == (vp.poc, vp.vah, vp.val)
    assert got["window_note"] == "start and end had no time zone: read as UTC"
    code, out, _ = run(
        capsys, "profile", "BTCUSDT", "--start", "2024-08-08T00:00Z", "--end",
        "2024-08-09T00:00Z", "--data", history,
    )  # fmt: skip
    assert code == 0
    assert out.startswith("BTCUSDT volume profile, 2024-08-08 00:00 → 2024-08-09 00:00 UTC: ")
    code, out, _ = run(
        capsys, "vacuums", "BTCUSDT", "--start", str(D0), "--end", str(D0 + DAY), "--data", history
    )
    assert code == 0 and out.startswith("BTCUSDT liquidity vacuums, 2024-08-08 00:00 → ")


def test_cli_sessions_table_json_and_png(history, capsys, tmp_path) -> None:
    png = tmp_path / "s.png"
    code, out, _ = run(
        capsys, "sessions", "BTCUSDT", "--start", "2024-08-08T00:00Z", "--end",
        "2024-08-11T00:00Z", "--data", history, "--png", str(png),
    )  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("BTCUSDT utc-day (00:00-24:00 UTC) 2024-08-08 00:00 → 2024-08-11")
    assert "3 sessions" in lines[0]
    assert [ln.split()[0] for ln in lines[2:5]] == ["2024-08-08", "2024-08-09", "2024-08-10"]
    assert "Naked POC" in out and f"Saved the chart to {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = run(
        capsys, "sessions", "BTCUSDT", "--start", str(D0), "--end", str(D0 + 3 * DAY),
        "--session", "london", "--data", history, "--json",
    )  # fmt: skip
    got = json.loads(out)
    sp = tradelab.session_profiles(
        "BTCUSDT", start=D0, end=D0 + 3 * DAY, session="london", data=history
    )
    assert got["session_hours"] == "07:00-16:00 UTC"
    assert [s["poc"] for s in got["sessions"]] == sp.summary["poc"].to_list()
    assert len(got["naked_pocs"]) == sp.naked_pocs().height


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["profile", "BTCUSDT", "--hours", "2", "--start", "2024-08-08"], "give either"),
        (["profile", "BTCUSDT", "--start", "2024-08-09", "--end", "2024-08-08"], "after start"),
        (["vacuums", "BTCUSDT", "--start", "2024-06-01", "--end", "2024-08-08"], "at most 168 h"),
        (["profile", "BTCUSDT", "--start", "yesterday"], "is not a time"),
        (["sessions", "BTCUSDT", "--days", "9"], "whole number of UTC days"),
        (["sessions", "BTCUSDT", "--session", "tokyo"], "not a session"),
        (["sessions", "BTCUSDT", "--days", "2", "--start", "2024-08-08"], "give either days"),
        (
            ["sessions", "BTCUSDT", "--start", "2024-07-01", "--end", "2024-07-02"],
            "BTCUSDT has trades from 2024-08-08 00:00",
        ),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(history, capsys, argv, message) -> None:
    code, out, err = run(capsys, *argv, "--data", history)
    assert code == 2 and out == ""
    assert err.startswith("tradelab: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


# --- the magic ---------------------------------------------------------------------------------


@pytest.fixture
def ip(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADELAB_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("TRADELAB_AUTOSTART", raising=False)
    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("tradelab")
    yield shell
    shell.extension_manager.unload_extension("tradelab")
    live.stop_watching()
    close_stores()


def test_magic_range_and_sessions(ip, history, capsys) -> None:
    ip.run_line_magic(
        "tradelab", f"profile BTCUSDT --start 2024-08-08 --end 2024-08-09 --data {history}"
    )
    out = capsys.readouterr().out
    assert "BTCUSDT volume profile, 2024-08-08 00:00:00 → 2024-08-09 00:00:00 UTC" in out
    assert "read as UTC" in out
    ip.run_line_magic("tradelab", f"vacuums BTCUSDT --start {D0} --end {D0 + DAY} --data {history}")
    assert "liquidity vacuums, 2024-08-08 00:00:00 → " in capsys.readouterr().out
    ip.run_line_magic(
        "tradelab", f"sessions BTCUSDT --start {D0} --end {D0 + 3 * DAY} --data {history}"
    )
    out = capsys.readouterr().out
    assert "BTCUSDT session volume profiles" in out and "2024-08-10" in out


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("profile BTCUSDT --hours 2 --start 2024-08-08", "give either"),
        ("vacuums BTCUSDT --start 2024-08-09 --end 2024-08-08", "after start"),
        ("sessions BTCUSDT --session tokyo", "not a session"),
        ("sessions BTCUSDT --days x", "invalid int value"),
        ("watch", "give a SYMBOL to watch"),
        ("watch BTCUSDT --every 0", "not a step"),
        ("watch BTCUSDT --every 7200", "redraw every 1 to 3600 seconds"),
        ("watch BTC/USDT", "invalid symbol"),
        ("watch BTCUSDT --hours 500", "outside the allowed window"),
    ],
)
def test_magic_bad_input_is_one_line(ip, history, line, message) -> None:
    with pytest.raises(UsageError, match=message) as err:
        ip.run_line_magic("tradelab", f"{line} --data {history}")
    assert "\n" not in str(err.value)


def test_watch_outside_a_kernel_redraws_on_its_own_thread_and_stops(ip, recent_store, capsys):
    """No running loop (a terminal shell): the view gets its own loop on a thread."""
    ip.run_line_magic("tradelab", f"watch BTCUSDT --hours 1 --every 1 --data {recent_store.data}")
    out = capsys.readouterr().out
    assert "BTCUSDT volume profile, last 1 h" in out and "Live view of BTCUSDT" in out
    second = tradelab.jupyter.watch("ETHUSDT", 1, "1s", data=recent_store.data)
    assert "waiting: ETHUSDT: 150 of the 1,000 trades" in str(second.last_error)
    (view, other) = live.watching()
    assert other is second
    deadline = time.monotonic() + 20
    while view.redraws < 2 or second.updates < 2:
        assert time.monotonic() < deadline, (view, second)
        time.sleep(0.05)
    second.stop()
    assert live.watching() == [view] and not second.running
    ip.run_line_magic("tradelab", "watch --stop")
    assert "Stopped 1 live view (BTCUSDT)." in capsys.readouterr().out
    n = view.updates
    time.sleep(1.5)
    assert view.updates == n and live.watching() == []


# --- MCP ---------------------------------------------------------------------------------------


def call(server: Any, name: str, args: dict[str, Any]) -> Any:
    async def go() -> Any:
        async with Client(server) as client:
            return await client.call_tool(name, args)

    return anyio.run(go)


def test_mcp_tools_take_a_range_and_sessions(history) -> None:
    server = create_server(Path(history))
    vp = tradelab.get_volume_profile("BTCUSDT", start=D0, end=D0 + DAY, data=history)
    r = call(server, "get_volume_profile", {"symbol": "BTCUSDT", "start": "2024-08-08T00:00Z",
                                            "end": "2024-08-09T00:00Z"})  # fmt: skip
    assert not r.is_error
    got = r.structured_content
    assert (got["poc"], got["vah"], got["val"]) == (vp.poc, vp.vah, vp.val)
    assert got["window"]["hours"] == 24.0
    assert got["summary"].startswith("BTCUSDT from 2024-08-08 00:00 to 2024-08-09 00:00 UTC: ")
    r = call(server, "get_liquidity_vacuums", {"symbol": "BTCUSDT", "start": D0, "end": D0 + DAY})
    assert not r.is_error and r.structured_content["summary"].startswith("BTCUSDT from 2024-08-08")
    r = call(server, "get_volume_profile_chart", {"symbol": "BTCUSDT", "start": "2024-08-09"})
    assert r.is_error  # 2024-08-09 to now is longer than the retention
    r = call(server, "get_volume_profile_chart",
             {"symbol": "BTCUSDT", "start": "2024-08-09", "end": "2024-08-10"})  # fmt: skip
    assert not r.is_error and r.content[0].type == "image"
    r = call(server, "get_session_profiles",
             {"symbol": "BTCUSDT", "start": D0, "end": D0 + 3 * DAY})  # fmt: skip
    assert not r.is_error
    sp = tradelab.session_profiles("BTCUSDT", start=D0, end=D0 + 3 * DAY, data=history)
    got = r.structured_content
    assert [s["poc"] for s in got["sessions"]] == sp.summary["poc"].to_list()
    assert [s["va_migration"] for s in got["sessions"]] == sp.summary["va_migration"].to_list()
    assert [n["poc"] for n in got["naked_pocs"]] == sp.naked_pocs()["poc"].to_list()
    assert "2024-08-08: POC" in got["summary"]


@pytest.mark.parametrize(
    ("tool", "args", "message"),
    [
        ("get_volume_profile", {"duration_hours": 2, "start": D0}, "give either duration_hours"),
        ("get_liquidity_vacuums", {"start": D0 + DAY, "end": D0}, "must be after start"),
        ("get_volume_profile_chart", {"start": "2024-06-01", "end": "2024-08-08"}, "at most"),
        ("get_session_profiles", {"session": "tokyo"}, "not a session"),
        ("get_session_profiles", {"days": 30}, "whole number of UTC days"),
        ("get_session_profiles", {"start": "2024-07-01", "end": "2024-07-02"}, "has trades from"),
    ],
)
def test_mcp_bad_input_is_a_tool_error(history, tool, args, message) -> None:
    r = call(create_server(Path(history)), tool, {"symbol": "BTCUSDT", **args})
    assert r.is_error
    text = r.content[0].text
    assert message in text and "Traceback" not in text and text.count("\n") == 0
