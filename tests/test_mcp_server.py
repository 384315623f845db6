"""The MCP server in-process, through the SDK's own client (``mcp.Client`` on the server object).

A real RocksDB store in ``tmp_path`` holds synthetic trades; every tool's answer is compared with
the Python API on the same store and window, and every bad input must come back as a tool error
(``isError``) carrying the Python API's own message.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, ImageContent, TextContent

import tradelab
from tradelab.config import validate_hours, validate_symbol
from tradelab.exceptions import TradelabError
from tradelab.mcp_server import create_server
from tradelab.mcp_server.server import MAX_ROWS, volume_profile_result
from tradelab.store import open_store

TOOLS = {
    "get_volume_profile",
    "get_liquidity_vacuums",
    "get_collection_status",
    "get_volume_profile_chart",
    "get_session_profiles",
}


@pytest.fixture
def store_dir(recent_store: Any) -> Path:
    """The shared store: 6,000 recent BTCUSDT trades and 150 ETHUSDT trades (too few)."""
    return recent_store.path


def call(server: Any, name: str, args: dict[str, Any] | None = None) -> CallToolResult:
    async def go() -> CallToolResult:
        async with Client(server) as client:
            return await client.call_tool(name, args or {})

    return anyio.run(go)


def error_text(result: CallToolResult) -> str:
    assert result.is_error, result
    assert result.structured_content is None
    (block,) = result.content
    assert isinstance(block, TextContent)
    assert "Traceback" not in block.text
    return block.text


def api_error(fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(TradelabError) as exc:
        fn(*args, **kwargs)
    return str(exc.value)


# --- listing and schemas -----------------------------------------------------------------------


def test_tools_are_listed_with_descriptions_and_schemas(store_dir: Path) -> None:
    server = create_server(store_dir)

    async def go() -> Any:
        async with Client(server) as client:
            return (await client.list_tools()).tools

    tools = {t.name: t for t in anyio.run(go)}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert len(tool.description or "") > 150, tool.name
        assert tool.annotations is not None and tool.annotations.read_only_hint
    schema = tools["get_volume_profile"].input_schema
    props = schema["properties"]
    assert schema["required"] == ["symbol"]
    assert props["symbol"]["type"] == "string"
    assert props["symbol"]["pattern"] == "^[A-Za-z0-9]{2,20}$"
    # null by default (24 h when no start is given): a client filling in defaults must not
    # send a window length with a range
    assert props["duration_hours"] == {
        **props["duration_hours"],
        "type": "number",
        "minimum": 1,
        "maximum": 168,
        "default": None,
    }
    assert "Default 24" in props["duration_hours"]["description"]
    assert {"type": "number", "exclusiveMinimum": 0} in props["tick_size"]["anyOf"]
    assert {"type": "null"} in props["tick_size"]["anyOf"]
    assert "ctx" not in props
    assert set(tools["get_liquidity_vacuums"].input_schema["properties"]) == {
        "symbol",
        "duration_hours",
        "start",
        "end",
    }
    for name in ("get_volume_profile", "get_liquidity_vacuums", "get_volume_profile_chart"):
        props = tools[name].input_schema["properties"]
        assert {"type": "string"} in props["start"]["anyOf"] and "end" in props
    sessions = tools["get_session_profiles"].input_schema
    assert sessions["required"] == ["symbol"]
    assert set(sessions["properties"]) == {"symbol", "days", "start", "end", "session"}
    assert tools["get_collection_status"].input_schema.get("properties", {}) == {}
    out = tools["get_volume_profile"].output_schema
    assert {"poc", "vah", "val", "rows", "window", "value_area_pct"} <= set(out["properties"])
    assert "vacuums" in tools["get_liquidity_vacuums"].output_schema["properties"]
    assert "symbols" in tools["get_collection_status"].output_schema["properties"]
    assert tools["get_volume_profile_chart"].output_schema is None  # image content


def test_symbol_pattern_matches_what_the_python_api_accepts() -> None:
    import re

    pattern = re.compile("^[A-Za-z0-9]{2,20}$")
    for ok in ("BTCUSDT", "btcusdt", "EthUsdt", "1000SATSUSDT"):
        assert pattern.match(ok) and validate_symbol(ok) == ok.upper()
    for bad in ("B", "BTC-USDT", "BTC USDT", "X" * 21, ""):
        assert not pattern.match(bad)
        with pytest.raises(tradelab.InvalidSymbolError):
            validate_symbol(bad)


# --- the tools against the Python API ------------------------------------------------------------


def test_volume_profile_matches_the_python_api(store_dir: Path) -> None:
    server = create_server(store_dir)
    result = call(server, "get_volume_profile", {"symbol": "btcusdt", "duration_hours": 1})
    assert not result.is_error, result.content
    got = result.structured_content
    vp = tradelab.get_volume_profile("BTCUSDT", 1, store=open_store(store_dir))
    assert got["symbol"] == "BTCUSDT"
    assert got["trade_count"] == vp.trade_count == 6000
    for key in ("poc", "vah", "val", "row_size", "total_volume", "buy_volume", "sell_volume"):
        assert got[key] == pytest.approx(getattr(vp, key)), key
    assert got["value_area_pct"] == pytest.approx(vp.value_area_volume_pct)
    assert got["window"]["hours"] == 1
    assert got["window"]["start"] < got["window"]["end"]
    # The rows: within the bound, the full profile when it fits, totals exact.
    assert got["full_resolution_rows"] == vp.rows.height
    assert len(got["rows"]) <= MAX_ROWS
    if vp.rows.height <= MAX_ROWS:
        assert got["rows_merged"] == 1
        assert [r["volume"] for r in got["rows"]] == pytest.approx(vp.rows["volume"].to_list())
    assert sum(r["volume"] for r in got["rows"]) == pytest.approx(vp.total_volume)
    assert sum(r["trades"] for r in got["rows"]) == 6000
    # The text block reads well and carries the same JSON for clients without structured output.
    text = result.content[0].text
    assert text.startswith("BTCUSDT over the last 1 h: 6,000 trades")
    assert "Point of control" in text


def test_profile_rows_are_merged_beyond_the_bound(store_dir: Path) -> None:
    store = open_store(store_dir)
    trades = tradelab.trades("BTCUSDT", 1, store=store)
    fine = tradelab.volume_profile(trades, row_size=0.01, tick_size=0.01)
    assert fine.rows.height > MAX_ROWS
    out = volume_profile_result(fine, "BTCUSDT", 1)
    assert len(out.rows) <= MAX_ROWS
    assert out.rows_merged > 1 and out.full_resolution_rows == fine.rows.height
    assert out.rows_row_size == pytest.approx(0.01 * out.rows_merged)
    assert sum(r.volume for r in out.rows) == pytest.approx(fine.total_volume)
    assert sum(r.trades for r in out.rows) == fine.trade_count
    assert f"merges {out.rows_merged}" in out.note
    assert out.poc == fine.poc and out.vah == fine.vah and out.val == fine.val


def test_tick_size_is_passed_through(store_dir: Path) -> None:
    server = create_server(store_dir)
    result = call(
        server, "get_volume_profile", {"symbol": "BTCUSDT", "duration_hours": 2, "tick_size": 0.5}
    )
    assert not result.is_error, result.content
    vp = tradelab.get_volume_profile("BTCUSDT", 2, 0.5, store=open_store(store_dir))
    got = result.structured_content
    assert got["row_size"] == pytest.approx(vp.row_size)
    assert got["row_size"] / 0.5 == pytest.approx(round(got["row_size"] / 0.5))
    assert got["poc"] == pytest.approx(vp.poc)


def test_liquidity_vacuums_match_the_python_api(store_dir: Path) -> None:
    server = create_server(store_dir)
    result = call(server, "get_liquidity_vacuums", {"symbol": "BTCUSDT", "duration_hours": 3})
    assert not result.is_error, result.content
    got = result.structured_content
    expected = tradelab.get_liquidity_vacuums("BTCUSDT", 3, store=open_store(store_dir))
    assert len(got["vacuums"]) == len(expected)
    for g, e in zip(got["vacuums"], expected, strict=True):
        for key in ("price_low", "price_high", "volume", "median_row_volume", "deficit_pct"):
            assert g[key] == pytest.approx(getattr(e, key)), key
        assert g["impact"] == e.impact
        assert g["reading"].startswith("thin zone ")
        assert "\n" not in g["reading"]
    assert got["trade_count"] == 6000
    assert "vacuum" in got["rule"]


def test_collection_status_without_a_collector(store_dir: Path) -> None:
    server = create_server(store_dir)
    got = call(server, "get_collection_status").structured_content
    store = open_store(store_dir)
    assert got["store_exists"] is True
    assert got["collector"] is None
    by_symbol = {s["symbol"]: s for s in got["symbols"]}
    assert set(by_symbol) == {"BTCUSDT", "ETHUSDT"}
    for name, entry in by_symbol.items():
        stats = store.stats(name)
        assert entry["trades_stored"] == stats.trade_count
        assert entry["last_trade_time"] == stats.last_time.isoformat(timespec="milliseconds")
        assert entry["collecting"] is False
    assert "No collector has reported" in got["summary"]
    assert "BTCUSDT: 6,000 trades" in got["summary"]


def _status_doc(updated_ms: int, running: bool = True) -> dict[str, Any]:
    return {
        "pid": 4242,
        "host": "box",
        "running": running,
        "started_at": updated_ms - 600_000,
        "updated_at": updated_ms,
        "ws_url": "ws://127.0.0.1:1",
        "rest_url": "http://127.0.0.1:1",
        "store_path": "x",
        "symbols": {
            "BTCUSDT": {
                "connected": True,
                "trades_stored": 6000,
                "rate_per_min": 480.0,
                "last_trade_time": updated_ms,
                "last_agg_id": 6000,
                "gaps_detected": 2,
                "gaps_backfilled": 1,
                "gaps_unrepairable": 1,
                "uptime_ratio": 0.99,
                "buffered": 0,
                "last_error": None,
            }
        },
    }


def test_collection_status_reports_a_running_and_a_stale_collector(store_dir: Path) -> None:
    store = open_store(store_dir)
    server = create_server(store_dir)
    now_ms = int(time.time() * 1000)
    store.put_meta("collector_status", _status_doc(now_ms))
    got = call(server, "get_collection_status").structured_content
    assert got["collector"]["running"] is True and got["collector"]["stale"] is False
    assert got["collector"]["pid"] == 4242
    btc = next(s for s in got["symbols"] if s["symbol"] == "BTCUSDT")
    eth = next(s for s in got["symbols"] if s["symbol"] == "ETHUSDT")
    assert btc["collecting"] is True and btc["rate_per_min"] == 480.0
    assert btc["gaps_unrepairable"] == 1
    assert eth["collecting"] is False
    assert "A collector is running (pid 4242 on box)" in got["summary"]
    assert "1 gap(s) could not be backfilled" in got["summary"]
    assert "ETHUSDT: 150 trades" in got["summary"] and "not being collected" in got["summary"]

    store.put_meta("collector_status", _status_doc(now_ms - 10 * 60_000))
    got = call(server, "get_collection_status").structured_content
    assert got["collector"]["running"] is False and got["collector"]["stale"] is True
    assert "is not running" in got["summary"]
    assert not any(s["collecting"] for s in got["symbols"])


def test_chart_is_a_png_image(store_dir: Path) -> None:
    server = create_server(store_dir)
    result = call(server, "get_volume_profile_chart", {"symbol": "BTCUSDT", "duration_hours": 1})
    assert not result.is_error, result.content
    image, caption = result.content
    assert isinstance(image, ImageContent) and image.mime_type == "image/png"
    png = base64.b64decode(image.data)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    assert isinstance(caption, TextContent) and caption.text.startswith("BTCUSDT over the last")


# --- bad input: tool errors with the Python API's messages --------------------------------------


@pytest.mark.parametrize(
    ("args", "check"),
    [
        ({"symbol": "BTC-USDT"}, lambda: validate_symbol("BTC-USDT")),
        ({"symbol": "B"}, lambda: validate_symbol("B")),
        ({"symbol": 42}, lambda: validate_symbol(42)),
        (
            {"symbol": "BTCUSDT", "duration_hours": 0},
            lambda: validate_hours(0, name="duration_hours"),
        ),
        (
            {"symbol": "BTCUSDT", "duration_hours": 169},
            lambda: validate_hours(169, name="duration_hours"),
        ),
        (
            {"symbol": "BTCUSDT", "duration_hours": "soon"},
            lambda: validate_hours("soon", name="duration_hours"),
        ),
        (
            {"symbol": "BTCUSDT", "duration_hours": True},
            lambda: validate_hours(True, name="duration_hours"),
        ),
    ],
)
@pytest.mark.parametrize(
    "tool", ["get_volume_profile", "get_liquidity_vacuums", "get_volume_profile_chart"]
)
def test_bad_arguments_are_tool_errors_with_our_message(
    store_dir: Path, tool: str, args: dict[str, Any], check: Any
) -> None:
    expected = api_error(check)
    text = error_text(call(create_server(store_dir), tool, args))
    assert text == f"Error executing tool {tool}: {expected}"


def test_bad_tick_size_is_a_tool_error_with_our_message(store_dir: Path) -> None:
    store = open_store(store_dir)
    for tick in (-1, 0, "fine"):
        expected = api_error(tradelab.get_volume_profile, "BTCUSDT", 1, tick, store=store)
        text = error_text(
            call(
                create_server(store_dir),
                "get_volume_profile",
                {"symbol": "BTCUSDT", "duration_hours": 1, "tick_size": tick},
            )
        )
        assert text == f"Error executing tool get_volume_profile: {expected}"


@pytest.mark.parametrize(("symbol", "found"), [("ETHUSDT", 150), ("XRPUSDT", 0)])
def test_too_few_trades_says_how_many_and_what_to_do(
    store_dir: Path, symbol: str, found: int
) -> None:
    store = open_store(store_dir)
    with pytest.raises(tradelab.InsufficientTradesError) as exc:
        tradelab.get_volume_profile(symbol, 2, store=store)
    expected = str(exc.value)
    assert exc.value.found == found
    assert expected.startswith(f"{symbol}: {found:,} of the 1,000 trades needed in the last 2 h")
    for tool in ("get_volume_profile", "get_liquidity_vacuums", "get_volume_profile_chart"):
        text = error_text(
            call(create_server(store_dir), tool, {"symbol": symbol.lower(), "duration_hours": 2})
        )
        assert text == f"Error executing tool {tool}: {expected}"


def test_missing_store_is_explained(tmp_path: Path) -> None:
    server = create_server(tmp_path / "nothing-here")
    status = call(server, "get_collection_status")
    assert not status.is_error
    got = status.structured_content
    assert got["store_exists"] is False and got["symbols"] == []
    assert "tradelab collect" in got["summary"]
    text = error_text(call(server, "get_volume_profile", {"symbol": "BTCUSDT"}))
    assert text.startswith("Error executing tool get_volume_profile: no trade store at ")
    # A bad argument is reported before the missing store.
    text = error_text(call(server, "get_volume_profile", {"symbol": "BTC/USDT"}))
    assert "invalid symbol 'BTC/USDT'" in text


@pytest.mark.parametrize("tool", sorted(TOOLS - {"get_collection_status"}))
def test_missing_symbol_argument_is_one_line_saying_what_is_allowed(
    store_dir: Path, tool: str
) -> None:
    """Not pydantic's dump ("1 validation error ... Field required ... visit https://...")."""
    text = error_text(call(create_server(store_dir), tool, {}))
    assert text.startswith(f"Error executing tool {tool}: the argument 'symbol' is missing: ")
    assert "e.g. 'BTCUSDT'" in text
    assert "\n" not in text and "pydantic" not in text and "Field required" not in text


def test_unknown_argument_is_refused_with_the_allowed_ones(store_dir: Path) -> None:
    """A misspelt argument was silently dropped (a 24-h answer to a 2-h question)."""
    text = error_text(
        call(
            create_server(store_dir),
            "get_volume_profile",
            {"symbol": "BTCUSDT", "duration_hour": 2},
        )
    )
    assert text == (
        "Error executing tool get_volume_profile: unknown argument 'duration_hour'; the "
        "arguments are symbol (required), duration_hours, tick_size, start, end"
    )
    status = error_text(call(create_server(store_dir), "get_collection_status", {"x": 1}))
    assert status.endswith("unknown argument 'x'; the arguments are none")


def test_cli_rejects_inconsistent_options(tmp_path: Path) -> None:
    from tradelab.cli.main import main

    assert main(["mcp", "--data", str(tmp_path), "--ws-url", "ws://127.0.0.1:9"]) == 2
    assert main(["mcp", "--port", "9000"]) == 2
    with pytest.raises(SystemExit):
        main(["mcp", "--transport", "carrier-pigeon"])
    with pytest.raises(SystemExit):
        main(["mcp", "--transport", "http", "--port", "70000"])
