"""``%tradelab`` in a real IPython ``InteractiveShell``: every subcommand, every bad argument.

Collection runs against the simulator on 127.0.0.1 (no running loop in a plain shell, so the
session puts the collector on its own thread); profiles read a real RocksDB store in tmp_path.
"""

from __future__ import annotations

import html
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import tradelab
from tradelab.collector import format_status
from tradelab.jupyter import session
from tradelab.jupyter.magic import KeyFigures, build_parser
from tradelab.jupyter.notebook import agg_id_gaps
from tradelab.recordings import synthetic_trades
from tradelab.simulator import Simulator
from tradelab.store import close_stores, open_store


@pytest.fixture
def ip(tmp_path, monkeypatch):
    """A shell with the extension loaded; the data dir defaults to tmp_path/data."""
    monkeypatch.setenv("TRADELAB_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("TRADELAB_AUTOSTART", raising=False)
    monkeypatch.delenv("TRADELAB_WS_URL", raising=False)
    monkeypatch.delenv("TRADELAB_REST_URL", raising=False)
    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("tradelab")
    yield shell
    if session.current() is not None:
        session.stop()
    shell.extension_manager.unload_extension("tradelab")
    close_stores()


@pytest.fixture
def filled(recent_store):
    """The shared store of recent trades (6,000 BTCUSDT from the last 20 minutes)."""
    return recent_store.path, recent_store.frames["BTCUSDT"]


def magic(ip: InteractiveShell, line: str):
    return ip.run_line_magic("tradelab", line)


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "needs a subcommand: start, stop, status, profile, vacuums"),
        ("bogus", "unknown subcommand 'bogus'"),
        ("START", "unknown subcommand 'START'"),
        ("start --frobnicate", "unrecognized arguments: --frobnicate"),
        ("start BTC-USDT", "invalid symbol 'BTC-USDT'"),
        ("start B", "invalid symbol 'B'"),
        ("start BTCUSDT --ws-url http://127.0.0.1:1", "expected ws or wss"),
        ("start BTCUSDT --rest-url ftp://127.0.0.1:1", "expected http or https"),
        ("start BTCUSDT --ws-url ws://127.0.0.1:99999", "invalid port"),
        ("start BTCUSDT --ws-url", "expected one argument"),
        ("stop now", "unrecognized arguments: now"),
        ("stop", "not running in this process"),
        ("status --verbose", "unrecognized arguments: --verbose"),
        ("profile", "the following arguments are required: SYMBOL"),
        ("profile BTCUSDT ETHUSDT", "unrecognized arguments: ETHUSDT"),
        ("profile BTCUSDT --hours abc", "--hours must be a number of hours from 1 to 168"),
        ("profile BTCUSDT --hours 0", "outside the allowed window: 1 to 168"),
        ("profile BTCUSDT --hours 169", "outside the allowed window: 1 to 168"),
        ("profile btc/usdt", "invalid symbol"),
        ("vacuums", "the following arguments are required: SYMBOL"),
        ("vacuums BTCUSDT --hours -3", "outside the allowed window"),
        ("vacuums BTCUSDT --rows 3", "unrecognized arguments: --rows 3"),
        ("start 'BTCUSDT", "cannot parse arguments"),
    ],
)
def test_bad_arguments_are_one_line_usage_errors(ip, line, message):
    with pytest.raises(UsageError) as info:
        magic(ip, line)
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    assert session.current() is None  # nothing was started by a bad command


def test_usage_error_shows_one_line_and_no_traceback(ip, capsys):
    result = ip.run_cell("%tradelab start BTC-USDT")
    out = capsys.readouterr()
    text = out.out + out.err
    assert isinstance(result.error_in_exec, UsageError)
    assert "UsageError: invalid symbol 'BTC-USDT'" in text
    assert "Traceback" not in text


def test_data_dir_that_is_a_file_is_refused(ip, tmp_path):
    f = tmp_path / "not-a-dir"
    f.write_text("x")
    with pytest.raises(UsageError, match="exists but is not a directory"):
        magic(ip, f"start BTCUSDT --data {f}")
    with pytest.raises(UsageError, match="exists but is not a directory"):
        magic(ip, f"profile BTCUSDT --data {f}")


def test_profile_without_a_store_says_how_to_start(ip, tmp_path):
    with pytest.raises(UsageError, match=r"no trade store at .*%tradelab start"):
        magic(ip, f"profile BTCUSDT --data {tmp_path / 'nothing-here'}")


def test_help_prints_usage_without_error(ip, capsys):
    assert magic(ip, "--help") is None
    assert magic(ip, "profile --help") is None
    out = capsys.readouterr().out
    assert "{start,stop,status,profile,vacuums,sessions,watch}" in out
    assert "--hours HOURS" in out


def test_parser_knows_every_subcommand():
    parser = build_parser()
    for line, command in [
        (["start", "BTCUSDT", "ETHUSDT", "--background"], "start"),
        (["stop"], "stop"),
        (["status", "--data", "/x"], "status"),
        (["profile", "BTCUSDT", "--hours", "24"], "profile"),
        (["vacuums", "ETHUSDT", "--hours", "1.5"], "vacuums"),
    ]:
        args = parser.parse_args(line)
        assert args.command == command
    args = parser.parse_args(["profile", "BTCUSDT", "--hours", "24"])
    assert args.hours == 24 and isinstance(args.hours, int)
    assert parser.parse_args(["vacuums", "X1", "--hours", "1.5"]).hours == 1.5


# --------------------------------------------------------------------------- status


def test_status_when_nothing_runs(ip, capsys, tmp_path):
    magic(ip, "status")
    out = capsys.readouterr().out
    assert "No collector is running" in out
    assert str(tmp_path / "data") in out


def test_status_shows_another_process_collector(ip, capsys, tmp_path):
    """Another notebook (or `tradelab collect`) publishes its status in the store."""
    path = tmp_path / "shared-store"
    store = open_store(path, write=True)
    now = int(time.time() * 1000)
    doc = {
        "pid": 999_999,
        "host": "elsewhere",
        "running": True,
        "started_at": now - 65_000,
        "updated_at": now,
        "ws_url": "ws://127.0.0.1:9",
        "rest_url": "http://127.0.0.1:9",
        "store_path": str(path),
        "symbols": {
            "ETHUSDT": {
                "connected": True,
                "trades_stored": 4321,
                "rate_per_min": 812.5,
                "last_trade_time": now - 200,
                "last_agg_id": 77,
                "gaps_detected": 2,
                "gaps_backfilled": 2,
                "gaps_unrepairable": 0,
                "uptime_ratio": 0.995,
                "buffered": 12,
                "last_error": None,
            }
        },
    }
    store.put_meta("collector_status", doc)
    magic(ip, f"status --data {path}")
    out = capsys.readouterr().out
    assert "Collector running in pid 999999" in out
    assert "ETHUSDT" in out and "4,321" in out and "812.5" in out and "99.5%" in out
    status = tradelab.status(path)
    assert status["source"] == "another process"
    assert status["symbols"]["ETHUSDT"]["trades_stored"] == 4321
    assert "<table>" in status._repr_html_() and "ETHUSDT" in status._repr_html_()


# --------------------------------------------------------------------------- profile / vacuums


def _assert_figure_displayed(text: str) -> None:
    assert "Figure size" in text


def test_profile_displays_plot_and_key_figures(ip, capsys, filled):
    path, frame = filled
    assert magic(ip, f"profile BTCUSDT --hours 1 --data {path}") is None
    out = capsys.readouterr().out
    _assert_figure_displayed(out)
    vp = tradelab.get_volume_profile("BTCUSDT", 1, store=open_store(path))
    d = vp.price_decimals
    assert "BTCUSDT volume profile, last 1 h" in out
    assert f"POC         {vp.poc:,.{d}f}" in out
    assert f"VAH         {vp.vah:,.{d}f}" in out
    assert f"VAL         {vp.val:,.{d}f}" in out
    assert f"trades      {frame.height:,}" in out
    assert vp.val <= vp.poc <= vp.vah


def test_profile_too_few_trades_is_one_clear_line(ip, tmp_path):
    path = tmp_path / "small"
    open_store(path, write=True).append(
        "BTCUSDT", synthetic_trades("BTCUSDT", int(time.time() * 1000) - 60_000, 50)
    )
    with pytest.raises(UsageError) as info:
        magic(ip, f"profile BTCUSDT --data {path}")
    assert "50" in str(info.value) and "1,000" in str(info.value)
    assert "\n" not in str(info.value)


def test_vacuums_display_plot_and_table(ip, capsys, filled):
    path, _ = filled
    magic(ip, f"vacuums BTCUSDT --data {path}")
    out = capsys.readouterr().out
    _assert_figure_displayed(out)
    assert "BTCUSDT liquidity vacuums, last 24 h" in out  # the API's default window
    vp = tradelab.get_volume_profile("BTCUSDT", store=open_store(path))
    vacuums = tradelab.liquidity_vacuums(vp)
    assert f"vacuums     {len(vacuums)} " in out
    for v in vacuums[:3]:
        assert f"{v.price_low:,.{vp.price_decimals}f}" in out


@pytest.mark.parametrize("command", ["profile", "vacuums"])
def test_default_window_is_the_apis_24_hours(ip, capsys, tmp_path, command):
    """Without --hours the magic analyses the last 24 h, like the CLI, the MCP tools and
    tradelab.get_volume_profile: trades from 3 h ago are in the window (a 1-h default saw none)."""
    path = tmp_path / "older"
    frame = synthetic_trades("BTCUSDT", int(time.time() * 1000) - 3 * 3_600_000, 2_000)
    open_store(path, write=True).append("BTCUSDT", frame)
    magic(ip, f"{command} BTCUSDT --data {path}")
    out = capsys.readouterr().out
    assert ", last 24 h" in out
    assert f"trades      {frame.height:,}" in out
    api = tradelab.get_volume_profile("BTCUSDT", store=open_store(path))
    assert f"POC         {api.poc:,.{api.price_decimals}f}" in out


def test_key_figures_html_and_text():
    k = KeyFigures("T", [("POC", "1.00")], [{"from": "1", "to": "2"}])
    assert "<th style='text-align:left'>POC</th><td>1.00</td>" in k._repr_html_()
    assert "<th>from</th>" in k._repr_html_()
    assert k.to_text().splitlines() == ["T", "  POC  1.00", "  from  to", "  1     2"]


# --------------------------------------------------------------------------- start / stop


def _stored_ids(path: Path, symbol: str) -> list[int]:
    store = open_store(path)
    return store.trades(symbol, 0, 10**13)["agg_id"].to_list()


def _wait(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def _assert_nothing_lost(path: Path, sim: Simulator, symbol: str) -> list[int]:
    stored = _stored_ids(path, symbol)
    assert stored, f"no {symbol} trades stored"
    published = [i for i in sim.published(symbol) if i >= stored[0]]
    assert stored == published[: len(stored)]
    return stored


@pytest.mark.slow
def test_start_status_stop_through_the_magic(ip, sim, tmp_path, capsys):
    path = tmp_path / "collect"
    magic(
        ip, f"start BTCUSDT ETHUSDT --data {path} --ws-url {sim.ws_url} --rest-url {sim.rest_url}"
    )
    out = capsys.readouterr().out
    assert f"Collecting BTCUSDT, ETHUSDT from {sim.ws_url} into {path}" in out
    assert session.current() is not None and session.current().background  # no loop: a thread

    with pytest.raises(UsageError, match="already running"):
        magic(ip, "start ETHUSDT")

    _wait(
        lambda: all(
            (s.get("trades_stored") or 0) > 50 for s in tradelab.status()["symbols"].values()
        )
    )
    magic(ip, "status")
    out = capsys.readouterr().out
    assert "Collector running in this process (pid" in out
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert set(lines) == {"BTCUSDT", "ETHUSDT"}
    assert all(" yes " in line for line in lines.values())

    # Stop through a cell: the input transformer awaits the flush.
    result = ip.run_cell("%tradelab stop")
    assert result.success
    out = capsys.readouterr().out
    assert "Collection stopped; every received trade is in the store." in out
    assert session.current() is None
    for symbol in ("BTCUSDT", "ETHUSDT"):
        stored = _assert_nothing_lost(path, sim, symbol)
        assert agg_id_gaps(open_store(path), symbol) == []
        assert f"{len(stored):,} {symbol}" in out

    with pytest.raises(UsageError, match="not running"):
        magic(ip, "stop")


@pytest.mark.slow
def test_unload_extension_stops_and_flushes(ip, sim, tmp_path):
    path = tmp_path / "unload"
    magic(ip, f"start BTCUSDT --data {path} --ws-url {sim.ws_url} --rest-url {sim.rest_url}")
    _wait(lambda: (tradelab.status()["symbols"]["BTCUSDT"].get("trades_stored") or 0) > 20)
    ip.extension_manager.unload_extension("tradelab")
    assert session.current() is None
    assert "tradelab" not in ip.magics_manager.magics["line"]
    assert not any(getattr(t, "tradelab", False) for t in ip.input_transformers_post)
    _assert_nothing_lost(path, sim, "BTCUSDT")
    ip.extension_manager.load_extension("tradelab")  # for the fixture's teardown


@pytest.mark.slow
def test_autostart_from_environment(tmp_path, monkeypatch, sim):
    path = tmp_path / "auto"
    monkeypatch.setenv("TRADELAB_AUTOSTART", "ETHUSDT")
    monkeypatch.setenv("TRADELAB_DATA", str(path))
    monkeypatch.setenv("TRADELAB_WS_URL", sim.ws_url)
    monkeypatch.setenv("TRADELAB_REST_URL", sim.rest_url)
    shell = InteractiveShell.instance()
    try:
        shell.extension_manager.load_extension("tradelab")
        info = session.current()
        assert info is not None and info.symbols == ("ETHUSDT",) and info.data_dir == path
        _wait(lambda: (tradelab.status()["symbols"]["ETHUSDT"].get("trades_stored") or 0) > 5)
    finally:
        shell.extension_manager.unload_extension("tradelab")
        close_stores()
    assert session.current() is None
    _assert_nothing_lost(path, sim, "ETHUSDT")


def test_autostart_with_a_bad_symbol_reports_and_does_not_start(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRADELAB_AUTOSTART", "BTC-USDT")
    monkeypatch.setenv("TRADELAB_DATA", str(tmp_path / "d"))
    shell = InteractiveShell.instance()
    try:
        shell.extension_manager.load_extension("tradelab")
    finally:
        shell.extension_manager.unload_extension("tradelab")
    assert session.current() is None
    assert "tradelab autostart failed: invalid symbol 'BTC-USDT'" in capsys.readouterr().err


def test_stop_line_becomes_an_await_only_at_top_level(ip):
    t = next(t for t in ip.input_transformers_post if getattr(t, "tradelab", False))
    cell = ip.transform_cell("%tradelab stop\nx = 1\n")
    assert cell.startswith("await __import__('tradelab.jupyter.magic').jupyter.magic.settle(")
    assert ip.transform_cell("%tradelab status\n").startswith("get_ipython().run_line_magic")
    assert t(["    get_ipython().run_line_magic('tradelab', 'stop')\n"])[0].startswith("    get_")
    ip.autoawait = False
    try:
        assert ip.transform_cell("%tradelab stop\n").startswith("get_ipython().run_line_magic")
    finally:
        ip.autoawait = True


def test_stored_frame_helper_sees_gaps(tmp_path):
    store = open_store(tmp_path / "g", write=True)
    frame = synthetic_trades("BTCUSDT", int(time.time() * 1000) - 60_000, 20)
    store.append("BTCUSDT", frame.filter(~pl.col("agg_id").is_in([5, 6, 12])))
    assert agg_id_gaps(store, "BTCUSDT") == [(5, 6), (12, 12)]


def test_start_with_history_opens_with_the_last_hours_filled(ip, tmp_path, capsys):
    path = tmp_path / "history"
    with Simulator(("BTCUSDT",), speed=1, seed=4, history_hours=2.5) as sim:
        magic(
            ip,
            f"start BTCUSDT --data {path} --ws-url {sim.ws_url} --rest-url {sim.rest_url} "
            f"--history 2 --archive-url {sim.archive_url}",
        )

        def history() -> dict:
            return tradelab.status()["symbols"]["BTCUSDT"].get("history") or {}

        _wait(lambda: history().get("done"), timeout=90)
        now = int(time.time() * 1000)
        vp = tradelab.get_volume_profile("BTCUSDT", 1, data=path)
        published = sim.history_frame("BTCUSDT", now - 3_600_000, now).height
        # the hour before the fill ended is there, not just the seconds since start
        assert vp.trade_count >= 0.95 * published > 10_000
        assert history()["trades"] > 0 and history()["days_total"] > 0
        magic(ip, "stop")
    capsys.readouterr()


def test_start_with_an_impossible_history_is_one_line(ip, sim):
    with pytest.raises(UsageError, match="history_hours") as exc:
        magic(ip, f"start BTCUSDT --ws-url {sim.ws_url} --rest-url {sim.rest_url} --history 0.5")
    assert "\n" not in str(exc.value)
    with pytest.raises(UsageError, match="--history"):
        magic(ip, "start BTCUSDT --history soon")
    assert session.current() is None


@pytest.mark.slow
def test_start_with_export_to_hands_the_table_to_the_collector(ip, sim, tmp_path, capsys):
    path, table = tmp_path / "exporting", tmp_path / "team-table"
    magic(
        ip,
        f"start BTCUSDT --data {path} --ws-url {sim.ws_url} --rest-url {sim.rest_url} "
        f"--export-to {table}",
    )
    assert f"Collecting BTCUSDT from {sim.ws_url} into {path}" in capsys.readouterr().out

    def published() -> dict:  # the status document the collector writes into its store
        return open_store(path).get_meta("collector_status") or {}

    # the collector exports to the table at start, then publishes how it went (every 5 s)
    _wait(lambda: published().get("export", {}).get("exports", 0) >= 1, timeout=30)
    export = published()["export"]
    assert export["uri"] == str(table) and export["last_error"] is None
    assert set(export["through"]) == {"BTCUSDT"}  # it exported (or checked) the collected symbol
    # what `tradelab status` prints for this store names the table
    assert f"  export to {table}: BTCUSDT through " in format_status(published())
    # and so does the kernel's own live status (`%tradelab status`, text and HTML)
    live = tradelab.status()
    assert live.source == "this process" and live["export"]["uri"] == str(table)
    assert f"export to {table}: BTCUSDT through " in live.to_text()
    assert f"export to {html.escape(str(table))}: BTCUSDT through " in live._repr_html_()
    capsys.readouterr()
    magic(ip, "status")
    assert f"export to {table}: BTCUSDT through " in capsys.readouterr().out
    magic(ip, "stop")
    assert session.current() is None
    _assert_nothing_lost(path, sim, "BTCUSDT")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("ftp://host/table", r"^export_to: uri 'ftp://host/table' has the scheme 'ftp'; allowed: "),
        ("s3://", r"^export_to: uri 's3://' names no bucket or container$"),
    ],
)
def test_start_with_a_bad_export_uri_is_one_line(ip, tmp_path, uri, message):
    with pytest.raises(UsageError, match=message) as exc:
        magic(ip, f"start BTCUSDT --data {tmp_path / 'd'} --export-to {uri}")
    assert "\n" not in str(exc.value)
    assert session.current() is None
    # the refused start let go of the store: another process may write there now
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tradelab.store import TradeStore; TradeStore(sys.argv[1]).close()",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr[-300:]
