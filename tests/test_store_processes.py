"""One writer, many readers in other processes: locking, catching up, no raw LOCK errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import polars as pl
import pytest

from tradelab.exceptions import StorageWriteError, StoreLockedError
from tradelab.recordings import synthetic_trades
from tradelab.store import OWNER_FILE, TradeStore

T0 = 1_700_002_800_000
FAR = 10**13
pytestmark = pytest.mark.slow


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


READER = """
    import json, sys, time
    from tradelab.store import TradeStore
    path, want = sys.argv[1], int(sys.argv[2])
    with TradeStore(path, readonly=True) as r:
        print(json.dumps({"ready": r.last_agg_id("BTCUSDT")}), flush=True)
        sys.stdin.readline()  # the writer has appended more: time how long until we see it
        t0 = time.monotonic()
        seen = r.last_agg_id("BTCUSDT")
        while seen != want and time.monotonic() - t0 < 20:
            time.sleep(0.05)
            seen = r.last_agg_id("BTCUSDT")
        n = r.trades("BTCUSDT", 0, 10**13).height
        print(json.dumps({"seen": seen, "after_s": time.monotonic() - t0, "rows": n}), flush=True)
"""


def test_reader_in_another_process_sees_new_writes(tmp_path):
    path = tmp_path / "db"
    df = synthetic_trades("BTCUSDT", T0, 6_000)
    with TradeStore(path) as w:
        w.append("BTCUSDT", df[:3_000])
        proc = _spawn(READER, str(path), "6000")
        try:
            first = json.loads(proc.stdout.readline())
            assert first == {"ready": 3_000}
            for _, batch in df[3_000:].group_by(pl.col("agg_id") // 500, maintain_order=True):
                w.append("BTCUSDT", batch)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            result = json.loads(line)
        finally:
            proc.stdin.close()
            proc.wait(30)
    assert result["seen"] == 6_000 and result["rows"] == 6_000
    assert proc.returncode == 0


HOLDER = """
    import json, os, sys
    from tradelab.store import TradeStore
    with TradeStore(sys.argv[1]) as w:
        print(json.dumps({"pid": os.getpid()}), flush=True)
        sys.stdin.readline()
"""


def test_second_writer_process_gets_a_clear_error_naming_the_holder(tmp_path):
    path = tmp_path / "db"
    TradeStore(path).close()
    proc = _spawn(HOLDER, str(path))
    try:
        pid = json.loads(proc.stdout.readline())["pid"]
        with pytest.raises(StoreLockedError) as info:
            TradeStore(path)
        msg = str(info.value)
        assert f"process {pid}" in msg and "readonly=True" in msg
        assert "LOCK" not in msg and "Resource temporarily unavailable" not in msg
        # reading while it writes is fine, writing through a reader is refused clearly
        with TradeStore(path, readonly=True) as r:
            assert r.symbols() == []
            with pytest.raises(StorageWriteError, match="reader"):
                r.append("BTCUSDT", synthetic_trades("BTCUSDT", T0, 3))
            with pytest.raises(StorageWriteError, match="reader"):
                r.put_meta("x", {})
    finally:
        proc.stdin.close()
        proc.wait(30)
    assert not (path / OWNER_FILE).exists()  # released on close
    TradeStore(path).close()  # and the lock with it


def test_a_killed_writer_leaves_a_store_the_next_writer_opens(tmp_path):
    path = tmp_path / "db"
    proc = _spawn(HOLDER, str(path))
    json.loads(proc.stdout.readline())
    proc.kill()
    proc.wait(30)
    assert (path / OWNER_FILE).exists()  # stale owner file: the OS released the lock anyway
    with TradeStore(path) as w:
        assert json.loads((path / OWNER_FILE).read_text())["pid"] == os.getpid()
        w.append("BTCUSDT", synthetic_trades("BTCUSDT", T0, 10))
    with TradeStore(path, readonly=True) as r:
        assert r.trades("BTCUSDT", 0, FAR).height == 10


WRITER = """
    import sys
    import polars as pl
    from tradelab.recordings import synthetic_trades
    from tradelab.store import TradeStore
    df = synthetic_trades("ETHUSDT", 1_700_002_800_000, 4_000)
    with TradeStore(sys.argv[1]) as w:
        w.append("ETHUSDT", df[:2_000])
        w.put_meta("collector_status", {"running": True, "n": 2000})
        print("half", flush=True)
        sys.stdin.readline()
        w.append("ETHUSDT", df[2_000:])
        w.put_meta("collector_status", {"running": True, "n": 4000})
        print("all", flush=True)
        sys.stdin.readline()
"""


def test_reader_here_follows_a_writer_in_another_process(tmp_path):
    path = tmp_path / "db"
    proc = _spawn(WRITER, str(path))
    try:
        assert proc.stdout.readline().strip() == "half", proc.stderr.read()
        with TradeStore(path, readonly=True) as r:
            assert r.get_meta("collector_status") == {"running": True, "n": 2000}
            assert r.stats("ETHUSDT").trade_count == 2_000
            proc.stdin.write("more\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "all"
            deadline = time.monotonic() + 20
            while r.stats("ETHUSDT").trade_count < 4_000 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert r.trades("ETHUSDT", 0, FAR).equals(
                synthetic_trades("ETHUSDT", 1_700_002_800_000, 4_000)
            )
            assert r.get_meta("collector_status") == {"running": True, "n": 4000}
            assert r.symbols() == ["ETHUSDT"]
    finally:
        proc.stdin.close()
        proc.wait(30)


def test_reader_stays_exact_across_writer_flush_compaction_and_restart(tmp_path):
    """RocksDB secondaries can serve stale memtable entries after the primary flushes
    (facebook/rocksdb#15051): stale counters from get(), and roll-up parts resurrected once a
    bottommost compaction drops their tombstones. The reader must re-open and stay exact."""
    path = tmp_path / "db"
    df = synthetic_trades("BTCUSDT", T0, 9_000, rate_per_s=40)
    w = TradeStore(path)
    w.append("BTCUSDT", df[:3_000])
    r = TradeStore(path, readonly=True)
    assert r.last_agg_id("BTCUSDT") == 3_000
    # small blocks the reader replays from the WAL...
    for _, batch in df[3_000:6_000].group_by(pl.col("agg_id") // 40, maintain_order=True):
        w.append("BTCUSDT", batch)
    assert r.trades("BTCUSDT", 0, FAR).equals(df[:6_000])
    # ...which the writer then rolls up (deleting them), flushes and compacts to the bottom
    assert w.wait_idle()
    w.roll_up()
    w.compact()
    w.append("BTCUSDT", df[6_000:7_000])
    w.close()  # flushes again
    for _ in range(2):
        assert r.last_agg_id("BTCUSDT") == 7_000
        assert r.stats("BTCUSDT").trade_count == 7_000
        assert r.trades("BTCUSDT", 0, FAR).equals(df[:7_000])
    # the writer restarts (a new WAL) and writes more: the reader follows
    with TradeStore(path) as w2:
        w2.append("BTCUSDT", df[7_000:])
        w2.compact()
        assert r.last_agg_id("BTCUSDT") == 9_000
        assert r.trades("BTCUSDT", 0, FAR).equals(df)
    r.close()
