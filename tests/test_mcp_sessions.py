"""MCP over streamable HTTP frees abandoned sessions (issue 12, item 8).

A real ``tradelab mcp --transport http --port 0`` process on 127.0.0.1; clients that send
``initialize`` and never DELETE their session. With ``--session-idle-timeout`` short, the
sessions expire: the server's session count returns to 0 — seen from outside through
``--max-sessions``: while N are open the next one is refused (503), once they expired N new ones
fit again — an expired id answers 404 with one line saying what to do, and the memory the
sessions took is reused rather than grown: a second flood of abandoned sessions adds a fraction
of what the first one did.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tradelab.cli import main

pytestmark = pytest.mark.slow

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "abandoning-client", "version": "1"},
    },
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@contextmanager
def mcp_http(data: Path, *options: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A ``tradelab mcp --transport http --port 0`` process and its URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELAB_")}
    cmd = [sys.executable, "-m", "tradelab", "mcp", "--transport", "http", "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--data", str(data), *options], stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stderr is not None
        line = ""
        while "serving http://" not in line:
            ready, _, _ = select.select([proc.stderr], [], [], 30)
            assert ready, "the server did not start within 30 s"
            line = proc.stderr.readline()
            assert line, "the server exited before serving"
        yield proc, line.split("serving ", 1)[1].strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def open_session(client: httpx.Client, url: str) -> tuple[int, str | None]:
    """``initialize`` and walk away (no DELETE): the HTTP status and the session id."""
    r = client.post(url, json=INIT, headers=HEADERS)
    return r.status_code, r.headers.get("mcp-session-id")


def open_sessions(url: str, n: int) -> list[tuple[int, str | None]]:
    with httpx.Client(timeout=30) as client, cf.ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: open_session(client, url), range(n)))


def use(url: str, session: str) -> httpx.Response:
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    return httpx.post(url, json=ping, headers={**HEADERS, "mcp-session-id": session}, timeout=30)


def wait_for_a_free_slot(url: str, *, within: float) -> str:
    """Try ``initialize`` until the full table has room again — without touching the open
    sessions (any request to one would push its idle deadline forward); the new session's id."""
    deadline = time.monotonic() + within
    with httpx.Client(timeout=30) as client:
        while True:
            status, sid = open_session(client, url)
            if status == 200 and sid:
                return sid
            assert status == 503, status
            assert time.monotonic() < deadline, f"no session expired within {within} s"
            time.sleep(0.2)


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def test_abandoned_sessions_expire_and_free_their_slots(tmp_path: Path) -> None:
    limit, idle = 20, 2
    with mcp_http(
        tmp_path / "data", "--session-idle-timeout", str(idle), "--max-sessions", str(limit)
    ) as (_, url):
        started = time.monotonic()
        first = open_sessions(url, limit)
        assert {status for status, _ in first} == {200}
        ids = [sid or "" for _, sid in first]
        assert "" not in ids and len(set(ids)) == limit
        # The table is full: the next initialize is refused, and a session in use still works
        # (the request also pushes its idle deadline forward).
        assert open_sessions(url, 1)[0][0] == 503
        assert use(url, ids[0]).status_code == 200
        spread = time.monotonic() - started

        probe = wait_for_a_free_slot(url, within=idle + 30)
        time.sleep(spread + 1)  # the others expire as they were opened, within `spread`
        # All 20 are gone: 19 new sessions fit beside the probe (the count went back to 0).
        again = open_sessions(url, limit - 1)
        assert {status for status, _ in again} == {200}
        assert not ({sid for _, sid in again} | {probe}) & set(ids)
        for sid in ids:
            gone = use(url, sid)
            assert gone.status_code == 404
            assert gone.json()["error"] == {
                "code": -32600,
                "message": (
                    "Session not found: it was closed, or expired after 2 s without a request; "
                    "send initialize again without an mcp-session-id header to start a new "
                    "session"
                ),
            }


def test_memory_of_expired_sessions_is_reused_not_grown(tmp_path: Path) -> None:
    """4,000 abandoned sessions once took +135 MB for good. Now they expire, and the memory they
    held serves the next ones: a second flood of the same size grows RSS by far less."""
    n, idle, warm = 1000, 2, 20
    with mcp_http(
        tmp_path / "data", "--session-idle-timeout", str(idle), "--max-sessions", str(n)
    ) as (proc, url):
        assert {status for status, _ in open_sessions(url, warm)} == {200}  # one-time set-up
        base = rss_mb(proc.pid)
        started = time.monotonic()
        flood = open_sessions(url, n - warm)
        assert {status for status, _ in flood} == {200}
        spread = time.monotonic() - started
        grown = rss_mb(proc.pid) - base
        assert grown > 5, f"{n} sessions should take memory, took {grown:.1f} MB"

        wait_for_a_free_slot(url, within=idle + 30)
        time.sleep(spread + 1)
        after_expiry = rss_mb(proc.pid)
        second = open_sessions(url, n - 1)  # beside the probe: only if all n expired
        assert {status for status, _ in second} == {200}
        regrown = rss_mb(proc.pid) - after_expiry
        print(
            f"RSS {base:.0f} MB; +{grown:.1f} MB for {n - warm} sessions; {after_expiry:.0f} MB "
            f"after they expired; +{regrown:.1f} MB for {n - 1} more"
        )
        assert regrown < grown / 2


def test_session_options_are_checked_in_one_line(capsys: Any) -> None:
    for argv, expected in (
        (
            ["mcp", "--session-idle-timeout", "60"],
            "--host, --port, --session-idle-timeout and --max-sessions apply to --transport "
            "http only",
        ),
        (
            ["mcp", "--transport", "http", "--session-idle-timeout", "0"],
            "session idle timeout must be a number of seconds from 1 to 604,800 (7 days), got 0.0",
        ),
        (
            ["mcp", "--transport", "http", "--max-sessions", "0"],
            "max sessions must be a whole number from 1 to 100,000, got 0",
        ),
    ):
        assert main(argv) == 2
        assert capsys.readouterr().err == f"tradelab: error: {expected}\n"
