"""``tradelab simulate --history-hours``: a real process serving past days as daily archives."""

from __future__ import annotations

import datetime as dt
import hashlib
import signal
import subprocess
import sys
import time
import urllib.request


def test_simulate_serves_its_history_as_daily_archives() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tradelab",
            "simulate",
            "--port",
            "0",
            "--symbols",
            "BTCUSDT",
            "--history-hours",
            "30",
            "--rate",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while "backfill with" not in lines and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "simulate exited before printing its endpoints"
            key, _, value = line.strip().partition(": ")
            lines[key] = value
        assert lines["archives"].endswith("(30 h of history)")
        base = lines["archives"].split(" ")[0]
        assert f"--archive-url {base}" in lines["backfill with"]
        day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).strftime("%Y-%m-%d")
        name = f"BTCUSDT-aggTrades-{day}.zip"
        url = f"{base}/data/spot/daily/aggTrades/BTCUSDT/{name}"
        with urllib.request.urlopen(url + ".CHECKSUM", timeout=30) as r:
            digest, _, listed = r.read().decode().strip().partition("  ")
        with urllib.request.urlopen(url, timeout=30) as r:
            body = r.read()
        assert listed == name and hashlib.sha256(body).hexdigest() == digest
        assert body[:2] == b"PK"  # a zip
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
