"""tradelab.where_collection_runs and its rendering (Status): every source, on real stores."""

from __future__ import annotations

import os
import sys
import time
from types import SimpleNamespace
from typing import Any

import pytest

import tradelab
from tradelab.collection import SESSION_MODULE, Status, where_collection_runs
from tradelab.store import TradeStore


def now_ms() -> int:
    return int(time.time() * 1000)


def doc(*, pid: int = 4242, running: bool = True, age_s: float = 1.0, **symbol: Any) -> dict:
    now = now_ms()
    return {
        "pid": pid,
        "host": "box",
        "running": running,
        "started_at": now - 605_000,
        "updated_at": now - int(age_s * 1000),
        "ws_url": "ws://127.0.0.1:1",
        "rest_url": "http://127.0.0.1:1",
        "store_path": "x",
        "symbols": {
            "BTCUSDT": {
                "connected": True,
                "trades_stored": 6000,
                "rate_per_min": 41.0,
                "last_trade_time": 1_767_225_661_039,
                "last_agg_id": 6000,
                "gaps_detected": 2,
                "gaps_backfilled": 1,
                "gaps_unrepairable": 0,
                "uptime_ratio": 0.995,
                "buffered": 1234,
                "last_error": None,
                **symbol,
            }
        },
    }


class FakeCollector:
    """What where_collection_runs needs of a collector: ``status()``."""

    def __init__(self, running: bool) -> None:
        self.running = running

    def status(self) -> dict[str, Any]:
        return {**doc(pid=os.getpid()), "running": self.running}


def test_no_store_and_no_status_is_none(tmp_path) -> None:
    for where in (where_collection_runs(tmp_path / "nothing"), tradelab.status(tmp_path / "x")):
        assert isinstance(where, Status) and where.source == "none"
        assert where["running"] is False and where.document is None
        assert where.headline().startswith("No collector is running for ")
    with TradeStore(tmp_path / "empty") as store:  # a store no collector ever wrote to
        where = where_collection_runs(store=store)
        assert where.source == "none" and where["store_path"] == str(store.path)


def test_another_process_from_the_published_document(store: TradeStore) -> None:
    store.put_meta("collector_status", doc())
    where = where_collection_runs(store=store)
    assert where.source == "another process" and where["running"] is True
    assert where["stale"] is False and where.document is not None
    assert where.headline().startswith("Collector running in pid 4242, up 10 min ")
    assert where.headline().endswith(" s, store x")
    same = where_collection_runs(store.path)  # by directory: the same answer
    assert same.source == "another process" and same["pid"] == 4242


def test_a_stale_document_is_a_collector_that_died(store: TradeStore) -> None:
    store.put_meta("collector_status", doc(age_s=300))
    where = where_collection_runs(store=store)
    assert where.source == "another process"
    assert where["running"] is False and where["stale"] is True and where["reported_running"]
    assert "not updating (its last status is over 30 s old: it may have died)" in str(where)
    store.put_meta("collector_status", doc(running=False))
    assert where_collection_runs(store=store).headline().startswith("Collector stopped in pid")


def test_this_process_by_its_pid(store: TradeStore) -> None:
    store.put_meta("collector_status", doc(pid=os.getpid()))
    where = where_collection_runs(store=store)
    assert where.source == "this process"
    assert f"in this process (pid {os.getpid()})" in where.headline()


def test_the_callers_own_collector_wins(store: TradeStore) -> None:
    store.put_meta("collector_status", doc())  # another process's, older
    live = where_collection_runs(store=store, collector=FakeCollector(running=True))
    assert live.source == "this process" and live["running"] is True and live["stale"] is False
    stopped = where_collection_runs(store=store, collector=FakeCollector(running=False))
    assert stopped["stale"] is True and stopped["reported_running"] is False


def test_this_process_session_is_asked_first(store: TradeStore, monkeypatch) -> None:
    asked: list[Any] = []

    def live_status(path: Any) -> dict[str, Any] | None:
        asked.append(path)
        return {**doc(pid=os.getpid()), "source": "this process", "stale": False}

    monkeypatch.setitem(sys.modules, SESSION_MODULE, SimpleNamespace(live_status=live_status))
    store.put_meta("collector_status", doc())
    assert where_collection_runs(store=store).source == "this process"
    assert where_collection_runs().source == "this process"
    assert asked == [store.path, None]  # a store asks about its path; nothing: any session's


def test_the_rendering_text_and_html(store: TradeStore) -> None:
    store.put_meta("collector_status", doc(last_error="e" * 80))
    where = where_collection_runs(store=store)
    head, columns, row = where.to_text().splitlines()
    assert head == where.headline()
    assert columns.split()[:4] == ["symbol", "connected", "stored", "trades/min"]
    cells = row.split()
    assert cells[:4] == ["BTCUSDT", "yes", "6,000", "41.0"]
    assert "2026-01-01 00:01:01.039" in row and "99.5%" in row and "1,234" in row
    assert row.endswith("e" * 57 + "...")
    html = where._repr_html_()
    assert html.startswith(f"<p>{where.headline()}</p><table>") and "<td>BTCUSDT</td>" in html
    assert str(where) == where.to_text()


@pytest.mark.parametrize("source", ["this process", "another process", "none"])
def test_sources_are_the_documented_ones(source: str) -> None:
    assert Status({"source": source}).source == source


SILENT_WRITER = """
    import json, os, sys, time
    from tradelab.store import TradeStore
    with TradeStore(sys.argv[1]) as w:
        # a collector that stopped publishing 2 minutes ago (e.g. it cannot write: disk full)
        now = int(time.time() * 1000)
        w.put_meta("collector_status", {"running": True, "pid": os.getpid(),
                   "host": "h", "started_at": now - 600_000, "updated_at": now - 120_000,
                   "symbols": {}})
        print(json.dumps({"pid": os.getpid()}), flush=True)
        sys.stdin.readline()
"""


def test_a_silent_but_alive_collector_is_not_called_dead(tmp_path) -> None:
    import json
    import signal
    import subprocess
    import textwrap

    from tradelab.collector import format_status, read_collector_status

    path = tmp_path / "db"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SILENT_WRITER), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pid = json.loads(proc.stdout.readline())["pid"]
        with TradeStore(path, readonly=True) as reader:
            doc = read_collector_status(reader)
            assert doc["stale"] and doc["writer_alive"] is True
            text = format_status(doc)
            assert f"collector pid {pid} is alive but has not published its status" in text
            assert "disk full?" in text and "died" not in text
            status = where_collection_runs(store=reader)
            assert "alive but silent" in status.headline() and "died" not in status.headline()

            proc.send_signal(signal.SIGKILL)  # now it really dies (its owner file stays)
            proc.wait(10)
            doc = read_collector_status(reader)
            assert doc["writer_alive"] is False
            assert "NOT RUNNING" in format_status(doc) and "died?" in format_status(doc)
            assert "may have died" in where_collection_runs(store=reader).headline()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
