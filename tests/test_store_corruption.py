"""Damaged stores and odd mounts: one line naming the file and what to do, never a traceback;
readers on read-only media; readers' scratch directories gone even after a kill."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tradelab.cli.main import main
from tradelab.exceptions import StorageError, TradelabError
from tradelab.recordings import synthetic_trades
from tradelab.store import TradeStore
from tradelab.store.errors import CorruptStoreError
from tradelab.store.scratch import SCRATCH_PREFIX

T0 = 1_700_002_800_000
FAR = 10**13
N = 30_000


def _make_store(path: Path) -> None:
    with TradeStore(path) as s:
        s.append("BTCUSDT", synthetic_trades("BTCUSDT", T0, N))
        s.roll_up()
        s.compact()  # everything in table files, no write-ahead log left to replay


def _largest_sst(path: Path) -> Path:
    return max(path.glob("*.sst"), key=lambda f: f.stat().st_size)


def _one_line(exc: BaseException, *words: str) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    for w in words:
        assert w in text, (w, text)
    return text


def _every_access(path: Path, readonly: bool) -> None:
    """Open the store and query it the ways the front-ends do."""
    with TradeStore(path, readonly=readonly) as s:
        s.stats("BTCUSDT")
        s.trades("BTCUSDT", 0, FAR)
        s.holes("BTCUSDT")


@pytest.mark.parametrize("readonly", [True, False])
def test_a_bit_flipped_table_file_is_one_line_naming_it(tmp_path, readonly):
    path = tmp_path / "db"
    _make_store(path)
    sst = _largest_sst(path)
    raw = bytearray(sst.read_bytes())
    for off in range(len(raw) // 2, len(raw) // 2 + 32):
        raw[off] ^= 0xFF
    sst.write_bytes(bytes(raw))
    with pytest.raises(CorruptStoreError) as info:
        _every_access(path, readonly)
    assert isinstance(info.value, TradelabError)
    _one_line(info.value, sst.name, "damaged", "tradelab check", "backup")


def test_a_bit_flipped_table_file_in_the_cli_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "db"
    _make_store(path)
    sst = _largest_sst(path)
    raw = bytearray(sst.read_bytes())
    raw[len(raw) // 3] ^= 0x5A
    raw[len(raw) // 3 + 1] ^= 0x5A
    sst.write_bytes(bytes(raw))
    for argv in (
        ["stats", "--data", str(path)],
        ["check", "--data", str(path)],
        [
            "profile",
            "BTCUSDT",
            "--data",
            str(path),
            "--start",
            "2023-11-14T22:00",
            "--end",
            "2023-11-15T02:00",
        ],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tradelab: error:"), err
        assert sst.name in lines[0] and "damaged" in lines[0]


def test_a_deleted_table_file_says_the_same_to_readers_and_writers(tmp_path):
    path = tmp_path / "db"
    _make_store(path)
    sst = _largest_sst(path)
    sst.unlink()
    with pytest.raises(CorruptStoreError) as as_reader:
        TradeStore(path, readonly=True)
    with pytest.raises(CorruptStoreError) as as_writer:
        TradeStore(path)
    text = _one_line(as_reader.value, sst.name, "is missing", "tradelab check")
    assert str(as_writer.value) == text
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob(f"{SCRATCH_PREFIX}{os.getpid()}-*"))


def _read_all(path: Path) -> tuple[int, int]:
    with TradeStore(path, readonly=True) as r:
        return r.stats("BTCUSDT").trade_count, r.trades("BTCUSDT", 0, FAR).height


def test_a_store_on_a_read_only_mount_can_be_read(tmp_path):
    src = tmp_path / "src"
    _make_store(src / "db")
    mnt = tmp_path / "ro"
    mnt.mkdir()
    bind = subprocess.run(["mount", "--bind", str(src), str(mnt)], capture_output=True, text=True)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root): {bind.stderr.strip()}")
    try:
        ro = subprocess.run(
            ["mount", "-o", "remount,ro,bind", str(mnt)], capture_output=True, text=True
        )
        assert ro.returncode == 0, ro.stderr
        with pytest.raises(OSError):  # really read-only, even for root
            (mnt / "db" / "probe").write_text("x")
        assert _read_all(mnt / "db") == (N, N)
        with pytest.raises(StorageError) as info:
            TradeStore(mnt / "db")
        _one_line(info.value, "read-only file system", "readonly=True")
        assert sorted(p.name for p in (src / "db").iterdir()) == sorted(
            p.name for p in (mnt / "db").iterdir()
        )
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_an_immutable_store_directory_can_be_read(tmp_path):
    path = tmp_path / "db"
    _make_store(path)
    lock = subprocess.run(["chattr", "-R", "+i", str(path)], capture_output=True, text=True)
    if lock.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {lock.stderr.strip()}")
    try:
        with pytest.raises(OSError):  # root too may not write there
            (path / "probe").write_text("x")
        assert _read_all(path) == (N, N)
    finally:
        subprocess.run(["chattr", "-R", "-i", str(path)], capture_output=True)


READER = """
    import sys, time
    from tradelab.store import TradeStore
    r = TradeStore(sys.argv[1], readonly=True)
    print(r._follower._dir, flush=True)
    time.sleep(60)
"""


def test_a_killed_readers_scratch_is_removed_on_the_next_open(tmp_path):
    path = tmp_path / "db"
    _make_store(path)
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(READER), str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        scratch = Path(proc.stdout.readline().strip())
        assert scratch.is_dir() and scratch.name.startswith(f"{SCRATCH_PREFIX}{proc.pid}-")
        assert not str(scratch).startswith(str(path))  # never inside the store
        with TradeStore(path, readonly=True):
            assert scratch.is_dir()  # its reader is alive: kept
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert scratch.is_dir()  # a killed reader cannot clean up
        with TradeStore(path, readonly=True) as r:
            assert not scratch.exists()  # the next reader did
            assert r.stats("BTCUSDT").trade_count == N
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(scratch, ignore_errors=True) if "scratch" in locals() else None
