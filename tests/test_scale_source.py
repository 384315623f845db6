"""``source=URI``: every reader of a window reads a team's shared Delta table the way it reads
the store — the Python API, the CLI, the ``%tradelab`` magic and a reader-only MCP server.

A real store in a tmp dir is exported with :func:`tradelab.scale.export` into a real Delta
table; every answer read from the table is compared with the same answer read from the store.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import polars as pl
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from mcp import Client
from mcp.types import CallToolResult, TextContent
from polars.testing import assert_frame_equal

import tradelab
from tradelab.cli import main
from tradelab.exceptions import (
    ConfigurationError,
    InsufficientTradesError,
    InvalidParameterError,
    InvalidWindowError,
    NoDataError,
    TradelabError,
)
from tradelab.jupyter import session
from tradelab.mcp_server import create_server
from tradelab.recordings import synthetic_trades
from tradelab.scale import export
from tradelab.schema import TRADE_SCHEMA
from tradelab.store import TradeStore, close_stores, open_store

HOUR = 3_600_000
DAY0 = 1_723_161_600_000  # 2024-08-09 00:00 UTC
START = DAY0 - 3 * HOUR  # 2024-08-08 21:00: the windows cross a date partition
EARLY = START - 10 * 24 * HOUR  # 2024-07-29 21:00: 10 days before, beyond a store's retention
CLOSED = START + 4 * HOUR  # the hour holding the last trade stays open: not in the table
NOW = DAY0 + 30 * 24 * HOUR


def iso(ms: int) -> str:
    """``2024-08-08T21:30:00.123Z``: what the CLI, the magic and the MCP tools take."""
    return (
        dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    )


@dataclass(frozen=True)
class Shared:
    data: Path  # the store the table was exported from
    uri: Path  # the Delta table
    early: int  # trades of the early half hour


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    """BTCUSDT: half an hour 10 days back, then 5 hours from START (agg ids contiguous, so no
    hole holds an hour back); exported up to CLOSED."""
    root = tmp_path_factory.mktemp("source")
    early = synthetic_trades("BTCUSDT", EARLY, 1800, rate_per_s=1.0, seed=4)
    main_part = synthetic_trades(
        "BTCUSDT", START, 5 * 3600, rate_per_s=1.0, seed=5, first_agg_id=1801
    )
    store = TradeStore(root / "data")
    try:
        assert store.append("BTCUSDT", early) == early.height
        assert store.append("BTCUSDT", main_part) == main_part.height
        report = export(store, root / "table", now_ms=NOW)
    finally:
        store.close()
    assert (
        report.trades
        == early.height + main_part.filter(pl.col("time").dt.epoch("ms") < CLOSED).height
    )
    return Shared(root / "data", root / "table", early.height)


WINDOWS = [
    (START, CLOSED),  # every closed hour, across 2024-08-08 / 2024-08-09
    (START + 30 * 60_000 + 123, START + 3 * HOUR + 10 * 60_000),  # cuts inside hour files
    (DAY0, DAY0 + HOUR),  # one hour, one date partition
]


# --- the Python API ------------------------------------------------------------------------------


@pytest.mark.parametrize(("lo", "hi"), WINDOWS)
def test_trades_from_the_table_equal_the_store(shared: Shared, lo: int, hi: int) -> None:
    got = tradelab.trades("BTCUSDT", start=lo, end=hi, source=str(shared.uri))
    want = tradelab.trades("BTCUSDT", start=lo, end=hi, store=open_store(shared.data))
    assert got.height > 1000
    assert got.schema == TRADE_SCHEMA
    assert_frame_equal(got, want)
    # last hours ending at `end`, ISO strings and a pathlib.Path: the same reader
    by_hours = tradelab.trades("BTCUSDT", 2, end=iso(CLOSED), source=shared.uri)
    assert_frame_equal(
        by_hours, tradelab.trades("BTCUSDT", 2, end=CLOSED, store=open_store(shared.data))
    )


def test_profiles_vacuums_sessions_from_the_table_equal_the_store(shared: Shared) -> None:
    lo, hi = WINDOWS[1]
    table = {"source": str(shared.uri)}
    store = {"data": shared.data}
    got = tradelab.get_volume_profile("BTCUSDT", start=lo, end=hi, **table)
    want = tradelab.get_volume_profile("BTCUSDT", start=lo, end=hi, **store)
    assert got.to_dict() == want.to_dict()
    assert_frame_equal(got.rows, want.rows)
    assert got.trade_count > 9_000
    a = tradelab.vacuum_report("BTCUSDT", start=lo, end=hi, threshold=0.5, **table)
    b = tradelab.vacuum_report("BTCUSDT", start=lo, end=hi, threshold=0.5, **store)
    assert a.to_dict() == b.to_dict()
    assert tradelab.get_liquidity_vacuums("BTCUSDT", start=lo, end=hi, **table) == (
        tradelab.get_liquidity_vacuums("BTCUSDT", start=lo, end=hi, **store)
    )
    sa = tradelab.session_profiles("BTCUSDT", start=START, end=CLOSED, **table)
    sb = tradelab.session_profiles("BTCUSDT", start=START, end=CLOSED, **store)
    assert sa.summary.height == 2  # 2024-08-08 and 2024-08-09
    assert_frame_equal(sa.summary, sb.summary)
    from tradelab.analytics import developing_profile

    assert_frame_equal(
        developing_profile("BTCUSDT", "30m", start=lo, end=hi, **table),
        developing_profile("BTCUSDT", "30m", start=lo, end=hi, **store),
    )


def test_a_range_is_not_capped_at_the_stores_retention(shared: Shared) -> None:
    vp = tradelab.get_volume_profile("BTCUSDT", start=EARLY, end=CLOSED, source=shared.uri)
    in_store = tradelab.trades("BTCUSDT", start=START, end=CLOSED, store=open_store(shared.data))
    assert vp.trade_count == shared.early + in_store.height
    with pytest.raises(InvalidWindowError, match="at most 168 h"):
        tradelab.get_volume_profile("BTCUSDT", start=EARLY, end=CLOSED, data=shared.data)
    sp = tradelab.session_profiles("BTCUSDT", start=EARLY, end=CLOSED, source=shared.uri)
    assert sp.summary["trades"].sum() == vp.trade_count
    # still validated: an inverted range, hours with start, a bad time
    with pytest.raises(InvalidWindowError, match="must be after start"):
        tradelab.get_volume_profile("BTCUSDT", start=CLOSED, end=START, source=shared.uri)
    with pytest.raises(InvalidWindowError, match="not both"):
        tradelab.trades("BTCUSDT", 2, start=START, source=shared.uri)
    with pytest.raises(InvalidWindowError, match="outside the allowed window"):
        tradelab.get_volume_profile("BTCUSDT", 500, source=shared.uri)
    with pytest.raises(InvalidWindowError, match="days=0 is not allowed"):
        tradelab.session_profiles("BTCUSDT", days=0, source=shared.uri)


def test_too_few_trades_says_where_the_table_has_data(shared: Shared) -> None:
    with pytest.raises(InsufficientTradesError) as info:
        tradelab.get_volume_profile(
            "BTCUSDT", start="2024-08-20", end="2024-08-21", source=shared.uri
        )
    text = str(info.value)
    assert text == (
        "BTCUSDT: 0 of the 1,000 trades needed from 2024-08-20 00:00 to 2024-08-21 00:00 UTC; "
        f"BTCUSDT has trades in {shared.uri} from 2024-07-29 21:00 to 2024-08-09 00:59 UTC"
    )
    assert info.value.found == 0
    with pytest.raises(InsufficientTradesError, match=r"the table at .* holds no ETHUSDT"):
        tradelab.get_volume_profile("ETHUSDT", 24, source=shared.uri)


def test_bad_source_is_one_line_at_the_api(shared: Shared, tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], type[TradelabError], str]] = [
        ({"source": shared.uri, "data": shared.data}, InvalidParameterError, "not both"),
        ({"source": "ftp://host/t"}, InvalidParameterError, "source: 'ftp://host/t' has the "),
        ({"source": "s3://"}, InvalidParameterError, "names no bucket"),
        ({"source": "  "}, InvalidParameterError, "source: must be a Delta table location"),
        ({"source": tmp_path / "none"}, NoDataError, "no Delta table at"),
    ]
    for kwargs, kind, text in cases:
        for fn in (tradelab.get_volume_profile, tradelab.vacuum_report, tradelab.session_profiles):
            with pytest.raises(kind) as info:
                fn("BTCUSDT", start=START, end=CLOSED, **kwargs)  # type: ignore[operator]
            assert text in str(info.value) and "\n" not in str(info.value), fn
    with pytest.raises(InvalidParameterError, match=r"source .* or store"):
        tradelab.trades("BTCUSDT", source=shared.uri, store=open_store(shared.data))
    # the symbol is checked before the source, the source before anything is read
    with pytest.raises(tradelab.InvalidSymbolError):
        tradelab.get_volume_profile("BTC-USDT", source="ftp://x/y")


# --- the CLI -------------------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_source_prints_what_data_prints(
    shared: Shared, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rng = ["--start", iso(WINDOWS[1][0]), "--end", iso(WINDOWS[1][1])]
    for cmd, extra in (("profile", []), ("vacuums", ["--json"]), ("sessions", [])):
        if cmd == "sessions":
            rng = ["--start", iso(START), "--end", iso(CLOSED)]
        code, from_table, err = run(
            capsys, cmd, "BTCUSDT", *rng, *extra, "--source", str(shared.uri)
        )
        assert code == 0, err
        code, from_store, err = run(
            capsys, cmd, "BTCUSDT", *rng, *extra, "--data", str(shared.data)
        )
        assert code == 0, err
        assert from_table == from_store, cmd
    assert (
        "BTCUSDT volume profile"
        in run(capsys, "profile", "BTCUSDT", *rng, "--source", str(shared.uri))[1]
    )
    png = tmp_path / "p.png"
    code, out, err = run(
        capsys, "profile", "BTCUSDT", *rng, "--source", str(shared.uri), "--png", str(png)
    )
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"Saved the chart to {png}" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--source", "{uri}", "--data", "{data}"], "not both"),
        (["--source", "ftp://host/t"], "has the scheme 'ftp'"),
        (["--source", "{missing}"], "no Delta table at"),
    ],
)
def test_cli_bad_source_is_one_line_exit_2(
    shared: Shared,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    argv: list[str],
    message: str,
) -> None:
    values = {"uri": str(shared.uri), "data": str(shared.data), "missing": str(tmp_path / "m")}
    argv = [a.format(**values) for a in argv]
    for cmd in ("profile", "vacuums", "sessions"):
        code, out, err = run(capsys, cmd, "BTCUSDT", "--start", iso(START), *argv)
        assert code == 2 and out == ""
        assert err.startswith("tradelab: error: ") and message in err, err
        assert err.count("\n") == 1


# --- the magic -----------------------------------------------------------------------------------


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """A shell with the extension loaded, as tests/test_magic.py makes it."""
    monkeypatch.setenv("TRADELAB_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("TRADELAB_AUTOSTART", raising=False)
    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("tradelab")
    yield shell
    if session.current() is not None:
        session.stop()
    shell.extension_manager.unload_extension("tradelab")
    close_stores()


def test_magic_reads_the_table(
    ip: InteractiveShell, shared: Shared, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rng = f"--start {iso(WINDOWS[1][0])} --end {iso(WINDOWS[1][1])}"
    for sub in ("profile", "vacuums", "sessions"):
        assert ip.run_line_magic("tradelab", f"{sub} BTCUSDT {rng} --source {shared.uri}") is None
        from_table = capsys.readouterr().out
        assert ip.run_line_magic("tradelab", f"{sub} BTCUSDT {rng} --data {shared.data}") is None
        assert from_table == capsys.readouterr().out, sub
    vp = tradelab.get_volume_profile(
        "BTCUSDT", start=WINDOWS[1][0], end=WINDOWS[1][1], data=shared.data
    )
    ip.run_line_magic("tradelab", f"profile BTCUSDT {rng} --source {shared.uri}")
    out = capsys.readouterr().out
    assert f"POC         {vp.poc:,.{vp.price_decimals}f}" in out
    assert f"trades      {vp.trade_count:,}" in out
    for line, message in [
        (f"profile BTCUSDT --source {shared.uri} --data {shared.data}", "not both"),
        ("vacuums BTCUSDT --source ftp://host/t", "has the scheme 'ftp'"),
        (f"sessions BTCUSDT --source {tmp_path / 'missing'}", "no Delta table at"),
        ("profile BTCUSDT --source", "expected one argument"),
    ]:
        with pytest.raises(UsageError) as info:
            ip.run_line_magic("tradelab", line)
        assert message in str(info.value) and "\n" not in str(info.value)


# --- the MCP server ------------------------------------------------------------------------------


def call(server: Any, name: str, args: dict[str, Any] | None = None) -> CallToolResult:
    async def go() -> CallToolResult:
        async with Client(server) as client:
            return await client.call_tool(name, args or {})

    return anyio.run(go)


def test_mcp_server_over_the_table(shared: Shared) -> None:
    server = create_server(source=str(shared.uri))
    lo, hi = WINDOWS[1]
    result = call(
        server, "get_volume_profile", {"symbol": "BTCUSDT", "start": iso(lo), "end": iso(hi)}
    )
    assert not result.is_error, result.content
    got = result.structured_content
    vp = tradelab.get_volume_profile("BTCUSDT", start=lo, end=hi, data=shared.data)
    assert got is not None
    assert got["poc"] == vp.poc and got["trade_count"] == vp.trade_count
    assert (got["vah"], got["val"]) == (vp.vah, vp.val)
    sessions = call(
        server,
        "get_session_profiles",
        {"symbol": "BTCUSDT", "start": iso(START), "end": iso(CLOSED)},
    )
    assert not sessions.is_error, sessions.content
    assert [s["poc"] for s in sessions.structured_content["sessions"]] == (
        tradelab.session_profiles("BTCUSDT", start=START, end=CLOSED, data=shared.data)
        .summary["poc"]
        .to_list()
    )
    status = call(server, "get_collection_status").structured_content
    assert status is not None
    assert status["source"] == "delta-table" and status["store_path"] == str(shared.uri)
    assert status["collector"] is None
    (btc,) = status["symbols"]
    in_table = tradelab.trades("BTCUSDT", start=EARLY, end=NOW, source=shared.uri).height
    assert btc["symbol"] == "BTCUSDT" and btc["trades_stored"] == in_table
    assert btc["first_trade_time"].startswith("2024-07-29T21:00")
    assert "shared Delta table" in status["summary"]
    # a store-backed server says it reads a store
    assert (
        call(create_server(shared.data), "get_collection_status").structured_content["source"]
        == "store"
    )


def test_mcp_bad_source(shared: Shared, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = create_server(source=tmp_path / "missing")
    result = call(missing, "get_volume_profile", {"symbol": "BTCUSDT", "duration_hours": 1})
    assert result.is_error
    (block,) = result.content
    assert isinstance(block, TextContent)
    assert "no Delta table at" in block.text and "Traceback" not in block.text
    status = call(missing, "get_collection_status").structured_content
    assert status["store_exists"] is False and "no Delta table at" in status["summary"]
    with pytest.raises(ConfigurationError, match="cannot be combined with data"):
        create_server(shared.data, source=shared.uri)
    with pytest.raises(ConfigurationError, match="cannot be combined with collect"):
        create_server(source=shared.uri, collect="BTCUSDT")
    with pytest.raises(ConfigurationError, match="source: 'ftp://h/t' has the scheme"):
        create_server(source="ftp://h/t")
    for argv, message in [
        (["--source", "ftp://h/t"], "has the scheme 'ftp'"),
        (["--source", str(shared.uri), "--data", str(shared.data)], "cannot be combined"),
        (["--source", str(shared.uri), "--collect", "BTCUSDT"], "cannot be combined"),
    ]:
        code, _, err = run(capsys, "mcp", *argv)
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert json.dumps(status)  # JSON-ready
