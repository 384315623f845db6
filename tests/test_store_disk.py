"""A full disk, for real: the writer recovers by itself once space returns, loses and doubles
nothing, and never raises on close.

Two ways to fill a disk, both real kernel refusals:

* a small tmpfs mounted for the test (``ENOSPC``, exactly what a full disk does). Mounting needs
  root (CI runs as root); the test skips only when ``mount`` itself is impossible here.
* ``RLIMIT_FSIZE`` in a child process (``EFBIG``: "File too large"), which works everywhere:
  RocksDB keeps that error exactly as it keeps ``ENOSPC``.
"""

from __future__ import annotations

import errno
import json
import logging
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest

from tradelab.exceptions import StorageWriteError
from tradelab.recordings import synthetic_trades
from tradelab.store import TradeStore

T0 = 1_700_002_800_000
FAR = 10**13
BATCH = 20_000


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB tmpfs mounted at tmp_path/disk (skips only if mounting is impossible)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(store: TradeStore, df: pl.DataFrame, start: int) -> tuple[int, StorageWriteError]:
    """Append batches from ``start`` until the disk refuses one; (rows stored, the error)."""
    at = start
    while at < df.height:
        try:
            store.append("BTCUSDT", df[at : at + BATCH])
        except StorageWriteError as exc:
            return at, exc
        at += BATCH
    raise AssertionError("the disk never filled up")


def _take_space(filler: Path, leave: int) -> None:
    """Fill the disk with ``filler`` but for ``leave`` bytes; RocksDB may grow meanwhile, so
    running out of space on the way is the same outcome (the disk is full)."""
    want = max(0, shutil.disk_usage(filler.parent).free - leave)
    try:
        with filler.open("wb") as f:
            while want > 0:
                n = min(want, 1 << 20)
                f.write(b"\0" * n)
                f.flush()
                want -= n
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise


def test_a_full_disk_is_recovered_from_in_the_same_process(small_disk, caplog):
    path = small_disk / "db"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (10 << 20))  # what the operator deletes to free space
    df = synthetic_trades("BTCUSDT", T0, 2_000_000, rate_per_s=200)
    store = TradeStore(path)
    stored, err = _fill(store, df, 0)
    assert stored > 0
    msg = str(err)
    assert "\n" not in msg and "disk holding" in msg and "is full" in msg
    # the append's own failure ("... failed, nothing of it was stored"), or — when the
    # background roll-up met the full disk first — "cannot write yet, nothing was stored"
    assert re.search(r"nothing (of it )?was stored", msg) and "free space there" in msg
    # still full: the retry says so again (RocksDB keeps its error until reopened)
    with pytest.raises(StorageWriteError, match="full"):
        store.append("BTCUSDT", df[stored : stored + BATCH])
    with pytest.raises(StorageWriteError):
        store.put_meta("status", {"n": 1})
    # what it acknowledged is readable meanwhile, from the same store
    assert store.trades("BTCUSDT", 0, FAR).equals(df[:stored])

    filler.unlink()  # the operator frees space
    assert store.append("BTCUSDT", df[stored : stored + BATCH]) == BATCH
    store.put_meta("status", {"n": 2})
    assert store.get_meta("status") == {"n": 2}
    assert store.trades("BTCUSDT", 0, FAR).equals(df[: stored + BATCH])
    assert store.stats("BTCUSDT").trade_count == stored + BATCH
    assert store.append("BTCUSDT", df[: stored + BATCH]) == 0  # nothing doubled
    assert store.holes("BTCUSDT").height == 0

    # full again; this time the process stops while the disk is full: close() logs one
    # line instead of raising, and the next open (space freed) has every acknowledged trade
    # leave 1 MiB free, whatever RocksDB's flushes and compactions freed meanwhile (a fixed
    # 8 MiB filler left room for the rest of the trades in one fresh-clone run)
    _take_space(filler, leave=1 << 20)
    total, _ = _fill(store, df, stored + BATCH)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tradelab.store"):
        store.close()
    closing = [r for r in caplog.records if "did not close cleanly" in r.getMessage()]
    assert len(closing) == 1 and "\n" not in closing[0].getMessage()
    filler.unlink()
    with TradeStore(path) as again:
        assert again.trades("BTCUSDT", 0, FAR).equals(df[:total])
        assert again.get_meta("status") == {"n": 2}


FILE_LIMIT = """
    import json, resource, signal, sys
    from pathlib import Path
    from tradelab.exceptions import StorageWriteError
    from tradelab.recordings import synthetic_trades
    from tradelab.store import TradeStore

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    path = Path(sys.argv[1])
    df = synthetic_trades("BTCUSDT", 1_700_002_800_000, 60_000)
    store = TradeStore(path)
    store.append("BTCUSDT", df[:1_000])
    largest = max(f.stat().st_size for f in path.iterdir() if f.is_file())
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (largest + 65_536, hard))  # the disk is "full"
    out = {"errors": []}
    for _ in range(3):  # RocksDB keeps the error: every retry fails the same way
        try:
            store.append("BTCUSDT", df[1_000:])
            out["errors"].append(None)
        except StorageWriteError as exc:
            out["errors"].append(str(exc))
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space returns
    out["new"] = store.append("BTCUSDT", df[1_000:])  # same process, same TradeStore
    out["exact"] = store.trades("BTCUSDT", 0, 10**13).equals(df)
    out["again"] = store.append("BTCUSDT", df)
    store.close()  # raises nothing
    print(json.dumps(out), flush=True)
"""


def test_a_file_size_limit_is_recovered_from_in_the_same_process(tmp_path):
    path = tmp_path / "db"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FILE_LIMIT), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(e and "nothing" in e and "\n" not in e for e in out["errors"]), out
    assert "size limit" in out["errors"][0]
    assert out["new"] == 59_000 and out["exact"] is True and out["again"] == 0
    with TradeStore(path) as store:
        df = synthetic_trades("BTCUSDT", T0, 60_000)
        assert store.trades("BTCUSDT", 0, FAR).equals(df)


def test_readonly_must_be_a_boolean(tmp_path):
    from tradelab.exceptions import InvalidParameterError

    for bad in ("no", "yes", 1, 0, None):
        with pytest.raises(InvalidParameterError, match="readonly must be True or False"):
            TradeStore(tmp_path / "db", readonly=bad)  # type: ignore[arg-type]
    assert not Path(tmp_path / "db").exists()  # refused before anything was created
