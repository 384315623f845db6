"""The shared Delta table (tradelab.scale): export exactly once — re-runs, a process killed
between writing files and committing, two exporting processes at once, holes held back —
and reading it back equal to the store. Real Delta tables in tmp dirs, real subprocesses."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from tradelab.cli import main
from tradelab.exceptions import (
    InsufficientTradesError,
    InvalidParameterError,
    InvalidSymbolError,
    InvalidWindowError,
    NoDataError,
)
from tradelab.recordings import synthetic_trades
from tradelab.scale import (
    INSTALL_HINT,
    ScaleExtraMissingError,
    app_id,
    export,
    export_hour,
    hour_number,
    scan_trades,
    vacuum_older_than,
    volume_profile_from,
)
from tradelab.scale.hours import HOUR_MS, HoleSpan, hour_state
from tradelab.store import TradeStore

DAY0 = 1_723_161_600_000  # 2024-08-09 00:00 UTC
START = DAY0 - 3 * HOUR_MS  # 2024-08-08 21:00: the data crosses a date partition
NOW = DAY0 + 30 * 24 * HOUR_MS
ROOT = Path(__file__).resolve().parent.parent


def _frames(hours: int = 6) -> dict[str, pl.DataFrame]:
    """BTCUSDT and ETHUSDT trades over ``hours`` hours from START (the last hour is open)."""
    return {
        "BTCUSDT": synthetic_trades("BTCUSDT", START, hours * 3600, rate_per_s=1.0, seed=5),
        "ETHUSDT": synthetic_trades(
            "ETHUSDT", START, hours * 1800, rate_per_s=0.5, seed=6, price=3000.0
        ),
    }


def _fill(path: Path, frames: dict[str, pl.DataFrame]) -> TradeStore:
    store = TradeStore(path)
    for sym, frame in frames.items():
        assert store.append(sym, frame) == frame.height
    return store


def _closed_end(frame: pl.DataFrame) -> int:
    """End of the last closed hour: the hour holding the last trade stays open."""
    last = int(frame["time"].dt.epoch("ms").max())
    return last - last % HOUR_MS


def _table_files(uri: Path) -> set[str]:
    return {str(p.relative_to(uri)) for p in uri.rglob("*.parquet")}


def _logged_files(uri: Path) -> set[str]:
    return set(pl.DataFrame(DeltaTable(str(uri)).get_add_actions())["path"].to_list())


def _all_rows(uri: Path) -> pl.DataFrame:
    return pl.scan_delta(str(uri)).collect()


# --- the rules (pure) --------------------------------------------------------------------------


def test_hour_rules_closed_complete_and_held() -> None:
    h = DAY0
    assert not hour_state(h, [], DAY0 + HOUR_MS + 5, now_ms=h + HOUR_MS - 1).ready  # not ended
    open_ = hour_state(h, [], h + HOUR_MS - 1, now_ms=NOW)  # no later trade stored
    assert not open_.ready and "open" in (open_.reason or "")
    assert hour_state(h, [], h + HOUR_MS, now_ms=NOW).ready  # a trade at the next hour seals it
    hole = HoleSpan(100, 109, 10, h - 5, h + 10, unrepairable=False)
    held = hour_state(h, [hole], NOW, now_ms=NOW)
    assert not held.ready and "10 missing ids (100–109)" in (held.reason or "")
    assert not hour_state(h - HOUR_MS, [hole], NOW, now_ms=NOW).ready  # ids may be in either
    assert hour_state(h + HOUR_MS, [hole], NOW, now_ms=NOW).ready  # before_time < this hour
    lost = hour_state(h, [HoleSpan(100, 109, 10, h - 5, h + 10, True)], NOW, now_ms=NOW)
    assert lost.ready and not lost.complete and lost.unrepairable_ids == 10
    assert lost.holes == ((100, 109),)


# --- export and read back ------------------------------------------------------------------------


def test_export_reads_back_equal_to_the_store_and_records_each_hour(tmp_path: Path) -> None:
    frames = _frames()
    uri = tmp_path / "table"
    with _fill(tmp_path / "data", frames) as store:
        report = export(store, uri, now_ms=NOW)
        assert {s.symbol: s.hours for s in report.symbols} == {"BTCUSDT": 5, "ETHUSDT": 5}
        for sym, frame in frames.items():
            end = _closed_end(frame)
            assert_frame_equal(scan_trades(uri, sym, START, end), store.trades(sym, START, end))
            # any window inside, cutting hours and the date boundary, equals the store too
            lo, hi = DAY0 - HOUR_MS - 1234, DAY0 + HOUR_MS + 777
            assert_frame_equal(scan_trades(uri, sym, lo, hi), store.trades(sym, lo, hi))
            # the open hour is not in the table
            assert scan_trades(uri, sym, end, end + HOUR_MS).height == 0
            assert "is open" in next(s.waiting for s in report.symbols if s.symbol == sym)
    table = DeltaTable(str(uri))
    assert table.metadata().partition_columns == ["symbol", "date"]
    rows = _all_rows(uri)
    assert rows.columns == [*frames["BTCUSDT"].columns, "symbol", "date"]
    assert rows.group_by("symbol", "date").len().height == 4  # 2 symbols x 2 days
    assert rows.filter(pl.col("date") != pl.col("time").dt.date()).height == 0
    # one commit per symbol-hour, each with its app id version and metadata
    commits = [c for c in table.history() if c.get("operation") == "WRITE"]
    meta = sorted((c["tradelab"]["symbol"], c["tradelab"]["hour_number"]) for c in commits)
    assert meta == sorted((sym, hour_number(START) + i) for sym in frames for i in range(5))
    assert all(c["tradelab"]["complete"] for c in commits)
    assert table.transaction_version(app_id("BTCUSDT")) == hour_number(START) + 4
    # zstd-compressed Parquet (the zstd frame magic in the pages)
    files = list(uri.rglob("*.parquet"))
    assert files and all(b"\x28\xb5\x2f\xfd" in f.read_bytes() for f in files)


def test_re_export_is_a_no_op(tmp_path: Path) -> None:
    uri = tmp_path / "table"
    with _fill(tmp_path / "data", _frames(3)) as store:
        export(store, uri, now_ms=NOW)
        version, files = DeltaTable(str(uri)).version(), _table_files(uri)
        again = export(store, uri, now_ms=NOW)
        assert again.hours == 0 and again.version == version
        assert export_hour(store, uri, "BTCUSDT", START + HOUR_MS, now_ms=NOW).hours == 0
    assert DeltaTable(str(uri)).version() == version and _table_files(uri) == files
    rows = _all_rows(uri)
    assert rows.height == rows.select("symbol", "agg_id").unique().height


def test_export_hour_exports_in_order_up_to_the_hour(tmp_path: Path) -> None:
    uri = tmp_path / "table"
    frame = _frames()["BTCUSDT"]
    with _fill(tmp_path / "data", {"BTCUSDT": frame}) as store:
        first = export_hour(store, uri, "BTCUSDT", START + 2 * HOUR_MS + 59_000, now_ms=NOW)
        assert first.hours == 3 and first.through_ms == START + 2 * HOUR_MS
        table_rows = scan_trades(uri, "BTCUSDT", START, NOW)
        assert_frame_equal(table_rows, store.trades("BTCUSDT", START, START + 3 * HOUR_MS))
        assert export_hour(store, uri, "BTCUSDT", START + 4 * HOUR_MS, now_ms=NOW).hours == 2


def test_an_hour_with_a_hole_is_held_back_until_repaired(tmp_path: Path) -> None:
    uri = tmp_path / "table"
    frame = _frames(5)["BTCUSDT"]
    t = frame["time"].dt.epoch("ms")
    missing = frame.filter(
        (t >= START + 2 * HOUR_MS + 600_000) & (t < START + 2 * HOUR_MS + 601_000 * 2)
    )
    assert 0 < missing.height < 1000
    with _fill(
        tmp_path / "data", {"BTCUSDT": frame.join(missing, on="agg_id", how="anti")}
    ) as store:
        held = export(store, uri, now_ms=NOW).symbols[0]
        assert held.hours == 2 and held.through_ms == START + HOUR_MS
        assert f"waits for {missing.height:,} missing ids" in (held.waiting or "")
        assert (
            scan_trades(uri, "BTCUSDT", START, NOW).height
            == store.trades("BTCUSDT", START, START + 2 * HOUR_MS).height
        )
        assert store.append("BTCUSDT", missing) == missing.height  # the repair
        done = export(store, uri, now_ms=NOW).symbols[0]
        assert done.hours == 2 and done.through_ms == START + 3 * HOUR_MS
        end = START + 4 * HOUR_MS
        assert_frame_equal(
            scan_trades(uri, "BTCUSDT", START, end), store.trades("BTCUSDT", START, end)
        )


def test_an_hour_with_unrepairable_ids_is_exported_and_marked_incomplete(tmp_path: Path) -> None:
    uri = tmp_path / "table"
    frame = _frames(3)["BTCUSDT"]
    hole = frame.filter(pl.col("agg_id").is_between(1500, 1509))
    with _fill(tmp_path / "data", {"BTCUSDT": frame.join(hole, on="agg_id", how="anti")}) as store:
        assert export(store, uri, now_ms=NOW).symbols[0].hours == 0  # hour 0 waits
        store.mark_unrepairable("BTCUSDT", [(1500, 1509)])
        report = export(store, uri, now_ms=NOW).symbols[0]
        assert report.hours == 2 and report.incomplete_hours == 1
        assert "1 hour(s) recorded incomplete" in report.line()
    commits = {
        c["tradelab"]["hour_number"]: c["tradelab"]
        for c in DeltaTable(str(uri)).history()
        if "tradelab" in c
    }
    first = commits[hour_number(START)]
    assert not first["complete"] and first["unrepairable_ids"] == 10
    assert first["unrepairable_holes"] == [[1500, 1509]]
    assert commits[hour_number(START) + 1]["complete"]


def test_vacuum_older_than_keeps_the_last_days_and_deletes_orphans(tmp_path: Path) -> None:
    uri = tmp_path / "table"
    with _fill(tmp_path / "data", _frames()) as store:
        export(store, uri, now_ms=NOW)
    orphan = uri / "symbol=BTCUSDT" / "date=2024-08-09" / "part-0-orphan.zstd.parquet"
    orphan.write_bytes(b"left by a crashed export")
    old = os.stat(orphan).st_mtime - 3600
    os.utime(orphan, (old, old))
    kept = _all_rows(uri).filter(pl.col("date") == pl.date(2024, 8, 9)).height
    report = vacuum_older_than(uri, 1, now_ms=DAY0 + 12 * HOUR_MS, file_retention_hours=0)
    assert report.kept_from == "2024-08-08" and report.trades_removed == 0
    report = vacuum_older_than(uri, 0.5, now_ms=DAY0 + 13 * HOUR_MS, file_retention_hours=0)
    assert report.kept_from == "2024-08-09" and report.trades_removed > 0
    rows = _all_rows(uri)
    assert rows["date"].unique().to_list() == [dt.date(2024, 8, 9)]
    assert rows.height == kept
    assert not orphan.exists() and _table_files(uri) == _logged_files(uri)


# --- crashes and concurrent exporters (real processes) ------------------------------------------


def _export_process(
    data: Path, uri: Path, *args: str, pause: str | None = None
) -> subprocess.Popen[str]:
    env = dict(os.environ, TRADELAB_EXPORT_TEST_PAUSE=pause or "")
    return subprocess.Popen(
        [sys.executable, "-m", "tradelab", "export", "--data", str(data), "--to", str(uri), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


def _wait_for_pause(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "pausing" in line:
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"the exporter never paused (exit {proc.poll()})")


def test_a_process_killed_between_writing_and_committing_leaves_every_trade_once(
    tmp_path: Path,
) -> None:
    data, uri = tmp_path / "data", tmp_path / "table"
    frames = {"BTCUSDT": _frames()["BTCUSDT"]}
    _fill(data, frames).close()
    proc = _export_process(data, uri, pause="3,60")  # files of the 3rd hour written, then stop
    line = _wait_for_pause(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert "BTCUSDT 2024-08-08 23:00" in line
    table = DeltaTable(str(uri))
    assert table.transaction_version(app_id("BTCUSDT")) == hour_number(START) + 1
    orphans = _table_files(uri) - _logged_files(uri)
    assert len(orphans) == 1 and "part-" + str(hour_number(START) + 2) in orphans.pop()
    with TradeStore(data, readonly=True) as store:
        end = _closed_end(frames["BTCUSDT"])
        assert_frame_equal(
            scan_trades(uri, "BTCUSDT", START, end),
            store.trades("BTCUSDT", START, START + 2 * HOUR_MS),
        )
        rerun = export(store, uri, now_ms=NOW).symbols[0]
        assert rerun.hours == 3
        assert_frame_equal(
            scan_trades(uri, "BTCUSDT", START, end), store.trades("BTCUSDT", START, end)
        )
    rows = _all_rows(uri)
    assert (
        rows.height
        == rows["agg_id"].n_unique()
        == frames["BTCUSDT"].filter(pl.col("time").dt.epoch("ms") < end).height
    )


def test_two_processes_export_different_symbols_into_one_table_at_once(tmp_path: Path) -> None:
    uri = tmp_path / "table"
    frames = _frames()
    for sym, frame in frames.items():  # two machines, each collecting its own symbol
        _fill(tmp_path / sym, {sym: frame}).close()
    # BTCUSDT holds its first hour's files while ETHUSDT exports all its hours, then commits
    # on a table five versions newer than the one it prepared the commit on
    btc = _export_process(tmp_path / "BTCUSDT", uri, pause="1,3")
    _wait_for_pause(btc)
    eth = _export_process(tmp_path / "ETHUSDT", uri)
    outs = [p.communicate(timeout=120) for p in (btc, eth)]
    assert [btc.returncode, eth.returncode] == [0, 0], outs
    for (out, _), sym in zip(outs, frames, strict=True):
        assert f"{sym}: 5 hours exported" in out
    rows = _all_rows(uri)
    assert rows.height == rows.select("symbol", "agg_id").unique().height
    for sym, frame in frames.items():
        end = _closed_end(frame)
        expected = frame.filter(pl.col("time").dt.epoch("ms") < end)
        assert_frame_equal(scan_trades(uri, sym, START, end), expected)
    commits = {
        (c["tradelab"]["symbol"], c["tradelab"]["hour_number"]): c
        for c in DeltaTable(str(uri)).history()
        if "tradelab" in c
    }
    rebased = commits[("BTCUSDT", hour_number(START))]
    assert rebased["version"] > rebased["readVersion"] + 1  # committed over ETHUSDT's commits
    assert {s for s, _ in commits} == {"BTCUSDT", "ETHUSDT"} and len(commits) == 10


def test_two_processes_exporting_the_same_symbol_still_store_every_trade_once(
    tmp_path: Path,
) -> None:
    uri = tmp_path / "table"
    frame = _frames()["BTCUSDT"]
    for name in ("a", "b"):  # two collectors misconfigured to the same symbol
        _fill(tmp_path / name, {"BTCUSDT": frame}).close()
    slow = _export_process(tmp_path / "a", uri, pause="1,4")  # holds its first hour's files
    _wait_for_pause(slow)
    fast = _export_process(tmp_path / "b", uri)
    out_fast, _ = fast.communicate(timeout=120)
    out_slow, err_slow = slow.communicate(timeout=120)
    assert fast.returncode == 0 and slow.returncode == 0, err_slow
    assert "BTCUSDT: 5 hours exported" in out_fast
    assert "BTCUSDT: nothing new" in out_slow and "committed by another exporter first" in out_slow
    rows = _all_rows(uri)
    assert rows.height == rows["agg_id"].n_unique()
    assert _table_files(uri) == _logged_files(uri)  # the loser deleted its uncommitted file


# --- input errors and the missing extra ----------------------------------------------------------


def test_bad_input_is_one_clear_error(tmp_path: Path, store: TradeStore) -> None:
    with pytest.raises(InvalidParameterError, match="scheme 'ftp'"):
        export(store, "ftp://host/table")
    with pytest.raises(InvalidParameterError, match="uri must be a Delta table location"):
        export(store, 42)  # type: ignore[arg-type]
    with pytest.raises(InvalidSymbolError):
        export(store, tmp_path / "t", symbols=["BTC/USDT"])
    with pytest.raises(InvalidWindowError, match="since"):
        export(store, tmp_path / "t", since="yesterday")
    with pytest.raises(InvalidWindowError, match="must be after start"):
        scan_trades(tmp_path / "t", "BTCUSDT", DAY0, DAY0)
    with pytest.raises(NoDataError, match="no Delta table at"):
        scan_trades(tmp_path / "nothing", "BTCUSDT", DAY0, DAY0 + 1)
    with pytest.raises(InvalidParameterError, match="days must be a number > 0"):
        vacuum_older_than(tmp_path / "t", 0)


def test_profile_from_the_table_names_what_it_holds(tmp_path: Path) -> None:
    uri = tmp_path / "table"
    with _fill(tmp_path / "data", _frames(3)) as store:
        export(store, uri, now_ms=NOW)
        vp = volume_profile_from(uri, "BTCUSDT", START, START + HOUR_MS, row_size=5.0)
        assert vp.trade_count == store.trades("BTCUSDT", START, START + HOUR_MS).height
    with pytest.raises(
        InsufficientTradesError, match=r"BTCUSDT has trades in .* from 2024-08-08 21:00"
    ):
        volume_profile_from(uri, "BTCUSDT", DAY0 + 9 * HOUR_MS, DAY0 + 10 * HOUR_MS)


def test_without_the_extra_the_answer_is_how_to_install_it(
    tmp_path: Path,
    store: TradeStore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "deltalake", None)  # import deltalake -> ImportError
    with pytest.raises(ScaleExtraMissingError, match=r"pip install 'tradelab\[scale\]'"):
        export(store, tmp_path / "t")
    store.close()
    code = main(["export", "--data", str(tmp_path / "data"), "--to", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and INSTALL_HINT in err and "Traceback" not in err


def test_cli_export_and_vacuum(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, uri = tmp_path / "data", tmp_path / "table"
    _fill(data, _frames(3)).close()
    assert main(["export", "--data", str(data), "--to", str(uri), "--symbols", "BTCUSDT"]) == 0
    out = capsys.readouterr().out
    assert "BTCUSDT: 2 hours exported" in out and "ETHUSDT" not in out
    code = main(["export", "--data", str(data), "--to", str(uri), "--vacuum-older-than", "7"])
    out = capsys.readouterr().out
    assert code == 0 and "ETHUSDT: 2 hours exported" in out and "BTCUSDT: nothing new" in out
    assert "removed 0 trades" not in out and "dated before" in out  # 2024 is long gone
    assert _all_rows(uri).height == 0
    assert main(["export", "--data", str(data), "--to", "ftp://x"]) == 2
    assert "scheme 'ftp'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--data", str(data), "--to", str(uri), "--vacuum-older-than", "-1"])


def test_table_errors_are_one_plain_line() -> None:
    """delta-rs chains causes with terminal colour codes and line breaks; an error message (and
    the collector's log) gets one plain line."""
    from tradelab.scale.extra import one_line

    raw = "Generic LocalFileSystem error \x1b[31m↳\x1b[0m Unable to open\n  file: Not a directory"
    assert one_line(RuntimeError(raw)) == (
        "Generic LocalFileSystem error - Unable to open file: Not a directory"
    )
    assert (
        one_line(RuntimeError("x" * 400)).endswith("...")
        and len(one_line(RuntimeError("x" * 400))) == 300
    )
    assert one_line(RuntimeError("")) == "RuntimeError"
