"""Faults: a disk that refuses writes leaves the store exactly as it was."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from typing import Any

import polars as pl
import pytest

from tradelab.exceptions import StorageError, StorageWriteError
from tradelab.recordings import synthetic_trades
from tradelab.store import TradeStore, recovery
from tradelab.store.keys import HOUR_MS

T0 = 1_700_002_800_000
FAR = 10**13


class _RefusingDB:
    """The real database, except that every write call fails like a full disk."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def write(self, batch: Any, *args: Any) -> None:
        raise Exception("IO error: No space left on device: While appending to file: 000009.log")

    def put(self, *args: Any) -> None:
        raise Exception("IO error: No space left on device")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def _snapshot(store: TradeStore) -> tuple:
    # bytes_on_disk is the files' size, not the content: reopening after a refused write
    # flushes the write-ahead log into a table file
    return (
        store.trades("BTCUSDT", 0, FAR),
        dataclasses.replace(store.stats("BTCUSDT"), bytes_on_disk=0),
        store.symbols(),
        store.get_meta("status"),
        store.block_count("BTCUSDT", 0, FAR),
    )


def _same(a: tuple, b: tuple) -> None:
    assert a[0].equals(b[0])
    assert a[1:] == b[1:]


def test_failed_writes_leave_the_store_and_its_counters_unchanged(tmp_path, monkeypatch):
    df = synthetic_trades("BTCUSDT", T0 - HOUR_MS + 1_000, 120_000, rate_per_s=30)
    with TradeStore(tmp_path / "db") as store:
        store.append("BTCUSDT", df[:60_000])  # into the open hour, so later appends roll up
        store.put_meta("status", {"ok": True})
        assert store.wait_idle()
        before = _snapshot(store)
        # the disk refuses writes: the store's handle, and every handle it reopens meanwhile
        refusing = [True]
        real_open = recovery.open_writer

        def open_writer(p: Any) -> Any:
            db = real_open(p)
            return _RefusingDB(db) if refusing[0] else db

        monkeypatch.setattr(recovery, "open_writer", open_writer)
        store._recovery.every_s = 0.0  # try to reopen before every write
        store._db = _RefusingDB(store._db)
        try:
            # a plain append, one that closes an hour (roll-up), a backfill, retention, meta
            for frame in (df[60_000:60_030], df[60_000:], pl.concat([df[:10], df[70_000:]])):
                with pytest.raises(StorageWriteError, match="unchanged"):
                    store.append("BTCUSDT", frame)
            with pytest.raises(StorageWriteError):
                store.delete_before(T0)
            with pytest.raises(StorageWriteError):
                store.put_meta("status", {"ok": False})
            with pytest.raises(StorageWriteError):
                store.append("ETHUSDT", synthetic_trades("ETHUSDT", T0, 10))
            _same(_snapshot(store), before)
        finally:
            refusing[0] = False
        _same(_snapshot(store), before)
        # the in-memory counters were not advanced either: the retry (which reopens the
        # database first) stores everything
        assert store.append("BTCUSDT", df[60_000:]) == 60_000
        assert store.trades("BTCUSDT", 0, FAR).equals(df)
    with TradeStore(tmp_path / "db") as store:
        assert store.trades("BTCUSDT", 0, FAR).equals(df)
        assert store.symbols() == ["BTCUSDT"]


FULL_DISK = """
    import json, resource, signal, sys
    from pathlib import Path
    from tradelab.exceptions import StorageWriteError
    from tradelab.recordings import synthetic_trades
    from tradelab.store import TradeStore

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    path = Path(sys.argv[1])
    df = synthetic_trades("BTCUSDT", 1_700_002_800_000, 200_000)
    store = TradeStore(path)
    store.append("BTCUSDT", df[:1_000])
    largest = max(f.stat().st_size for f in path.iterdir() if f.is_file())
    # from now on no file may grow past its current size + 64 KiB: the disk is "full"
    resource.setrlimit(resource.RLIMIT_FSIZE, (largest + 65_536, resource.RLIM_INFINITY))
    out = {}
    try:
        store.append("BTCUSDT", df[1_000:])
        out["error"] = None
    except StorageWriteError as exc:
        out["error"] = str(exc)
    out["count"] = store.stats("BTCUSDT").trade_count
    out["rows"] = store.trades("BTCUSDT", 0, 10**13).height
    print(json.dumps(out), flush=True)
    try:
        store.close()
    except Exception:
        pass
"""


def test_a_disk_that_refuses_writes_gives_a_clear_error_and_keeps_the_data(tmp_path):
    path = tmp_path / "db"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FULL_DISK), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["error"] and "nothing of it was stored" in out["error"]
    assert out["count"] == 1_000 and out["rows"] == 1_000
    # reopened with a healthy disk: exactly the first batch, and writable again
    df = synthetic_trades("BTCUSDT", 1_700_002_800_000, 200_000)
    with TradeStore(path) as store:
        assert store.trades("BTCUSDT", 0, FAR).equals(df[:1_000])
        assert store.append("BTCUSDT", df) == 199_000


def test_unwritable_location_is_a_storage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="cannot create"):
        TradeStore(blocker / "db")
