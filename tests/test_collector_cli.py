"""``tradelab collect`` / ``tradelab status`` as operators use them: real processes, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tradelab.cli import main
from tradelab.collector import format_status, read_collector_status
from tradelab.simulator import Simulator
from tradelab.store import TradeStore

ROOT = Path(__file__).resolve().parents[1]


def tradelab(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``tradelab ARGS`` in this process: (exit code, stdout, stderr). Only the SIGTERM test
    needs a real process (a signal and the console script's exit code are its point)."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse: --help, or a bad option
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--symbols", "BTC-USD"], "invalid symbol 'BTC-USD'"),
        (
            ["--symbols", "BTCUSDT", "--ws-url", "http://x"],
            "WebSocket URL 'http://x' is not usable",
        ),
        (
            ["--symbols", "BTCUSDT", "--rest-url", "http://127.0.0.1:9"],
            "REST endpoint http://127.0.0.1:9 unreachable",
        ),
        (["--max-buffered", "0"], "expected an integer > 0"),
    ],
)
def test_bad_configuration_gives_one_clear_line(tmp_path, capsys, args, message) -> None:
    code, _, err = tradelab(capsys, "collect", "--data", str(tmp_path / "d"), *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_unknown_symbol_and_unreachable_stream_are_refused_at_start(tmp_path, capsys) -> None:
    with Simulator(("BTCUSDT",), source="synthetic", speed=1) as sim:
        code, _, err = tradelab(
            capsys,
            "collect",
            "--symbols",
            "DOGEUSDT",
            "--data",
            str(tmp_path / "d"),
            "--ws-url",
            sim.ws_url,
            "--rest-url",
            sim.rest_url,
        )
        assert code == 2 and "does not know symbol 'DOGEUSDT'" in err
        code, _, err = tradelab(
            capsys,
            "collect",
            "--symbols",
            "BTCUSDT",
            "--data",
            str(tmp_path / "d"),
            "--ws-url",
            "ws://127.0.0.1:9",
            "--rest-url",
            sim.rest_url,
        )
    assert code == 2 and "cannot open the stream at ws://127.0.0.1:9" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_sigterm_mid_burst_stores_everything_received(tmp_path, capsys) -> None:
    data = tmp_path / "d"
    with Simulator(("BTCUSDT", "ETHUSDT"), source="synthetic", speed=60, seed=9) as sim:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tradelab",
                "collect",
                "--log-format",  # after the subcommand, as the issue writes it
                "json",
                "--symbols",
                "BTCUSDT,ETHUSDT",
                "--data",
                str(data),
                "--ws-url",
                sim.ws_url,
                "--rest-url",
                sim.rest_url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        lines = []
        assert proc.stderr is not None
        for line in proc.stderr:  # wait for the connection (bounded by the simulator's feed)
            lines.append(line)
            if '"event": "connected"' in line:
                break
        time.sleep(1.5)  # ~1,400 trades/s per symbol are flowing: a burst
        published_at_term = {s: sim.published(s)[-1] for s in ("BTCUSDT", "ETHUSDT")}
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        lines += err.splitlines()
    assert proc.returncode == 0, err
    events = [json.loads(x) for x in lines if x.strip()]  # every log line is one JSON object
    assert all(isinstance(e, dict) and {"ts", "level", "msg"} <= set(e) for e in events)
    start = next(e for e in events if e.get("event") == "collector_start")
    assert start["symbols"] == ["BTCUSDT", "ETHUSDT"] and start["store_path"] == str(data)
    assert any(e.get("event") == "signal" and e["signal"] == "SIGTERM" for e in events)
    stop = next(e for e in events if e.get("event") == "collector_stop")
    assert stop["unstored"] == 0
    with TradeStore(data) as store:
        for sym in ("BTCUSDT", "ETHUSDT"):
            ids = store.trades(sym, 0, 2**42)["agg_id"].to_list()
            # everything received was stored: up to the last id received, nothing missing
            assert ids[-1] == stop["last_received"][sym]
            assert ids[-1] >= published_at_term[sym] - 2000  # it was mid-burst, not idle
            expected = [a for a in sim.published(sym) if ids[0] <= a <= ids[-1]]
            assert ids == expected
            assert len(ids) == stop["stored"][sym] > 1000
            assert f"{sym}: {len(ids)} trades stored this run" in out
        doc = read_collector_status(store)
    assert doc is not None and doc["running"] is False and doc["stale"] is True
    assert set(doc["symbols"]) == {"BTCUSDT", "ETHUSDT"}
    code, out, _ = tradelab(capsys, "status", "--data", str(data))
    assert code == 0 and "Collector stopped" in out and "BTCUSDT" in out


def test_status_freshness_rule_and_table() -> None:
    class Meta:
        def __init__(self, doc):
            self.doc = doc

        def get_meta(self, name):
            assert name == "collector_status"
            return self.doc

    now = 1_700_000_000_000
    doc = {
        "pid": 1,
        "host": "h",
        "running": True,
        "started_at": now - 60_000,
        "updated_at": now - 5_000,
        "ws_url": "ws://x",
        "rest_url": "http://x",
        "store_path": "/d",
        "symbols": {
            "BTCUSDT": {
                "connected": True,
                "trades_stored": 1234,
                "rate_per_min": 1500.0,
                "last_trade_time": now - 6_000,
                "last_agg_id": 99,
                "gaps_detected": 2,
                "gaps_backfilled": 1,
                "gaps_unrepairable": 1,
                "uptime_ratio": 0.995,
                "buffered": 0,
                "last_error": None,
            }
        },
    }
    fresh = read_collector_status(Meta(doc), now_ms=now)
    assert fresh["running"] is True and fresh["stale"] is False and fresh["age_s"] == 5.0
    old = read_collector_status(Meta(doc), now_ms=now + 31_000)
    assert old["running"] is False and old["stale"] is True
    assert read_collector_status(Meta(None)) is None
    table = format_status(fresh)
    assert "Collector running" in table and "1234" in table and "2/1/1" in table
    assert "99.5%" in table
    assert "NOT RUNNING" in format_status(old)
    assert "No collector has run" in format_status(None)


def test_status_command_without_store(tmp_path, capsys) -> None:
    code, _, err = tradelab(capsys, "status", "--data", str(tmp_path / "nothing"))
    assert code == 2 and "no store at" in err


def test_commands_have_help(capsys) -> None:
    for cmd in ("collect", "status"):
        code, out, _ = tradelab(capsys, cmd, "--help")
        assert code == 0 and "--data" in out
    assert os.path.exists(ROOT / "tradelab" / "cli" / "collect.py")
