"""Hostile input (issue 12, item 7): every front-end answers with the same one line, never a
traceback or a nonsense result — tick and row sizes outside the symbol's plausible range,
a malformed URL, non-ASCII symbols that Unicode case rules would turn into another symbol,
flags that are not booleans, and a reader that closes the pipe early.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import polars as pl
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from mcp import Client

import tradelab
from tradelab.analytics import volume_profile
from tradelab.cli import main
from tradelab.config import validate_symbol
from tradelab.exceptions import (
    ConfigurationError,
    InvalidParameterError,
    InvalidSymbolError,
    TradelabError,
)
from tradelab.mcp_server import create_server
from tradelab.recordings import synthetic_trades
from tradelab.store import open_store


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: Any) -> Any:
    """A shell with the extension loaded (as in test_magic)."""
    monkeypatch.setenv("TRADELAB_DATA", str(tmp_path / "data"))
    for name in ("TRADELAB_AUTOSTART", "TRADELAB_WS_URL", "TRADELAB_REST_URL"):
        monkeypatch.delenv(name, raising=False)
    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("tradelab")
    yield shell
    shell.extension_manager.unload_extension("tradelab")


def api_message(fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(TradelabError) as exc:
        fn(*args, **kwargs)
    text = str(exc.value)
    assert "\n" not in text
    return text


def cli(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def mcp_error(data: str, tool: str, args: dict[str, Any]) -> str:
    async def go() -> Any:
        async with Client(create_server(data)) as client:
            return await client.call_tool(tool, args)

    result = anyio.run(go)
    assert result.is_error
    text = result.content[0].text
    assert "\n" not in text and "Traceback" not in text
    return text


# --- tick and row sizes -------------------------------------------------------------------------

TICKS = [
    # finer than Binance's 8 decimals: refused before the store is read (was ZeroDivisionError)
    ("1e-12", "tick_size=1e-12 is finer than 0.00000001"),
    ("1e-9", "tick_size=1e-09 is finer than 0.00000001"),
    # 8 decimals, but finer than 1e-10 of BTCUSDT's price: row numbers would lose precision
    ("0.00000001", "tick_size=1e-08 is not plausible for BTCUSDT traded at "),
    # coarser than the price itself (was a 300-digit POC)
    ("1e300", "tick_size=1e+300 is not plausible for BTCUSDT traded at "),
]


@pytest.mark.parametrize(("tick", "expected"), TICKS)
def test_implausible_tick_size_is_the_same_line_everywhere(
    recent_store: Any, capsys: Any, ip: Any, tick: str, expected: str
) -> None:
    data = recent_store.data
    api = api_message(tradelab.get_volume_profile, "BTCUSDT", 1, float(tick), data=data)
    assert api.startswith(expected)
    if "plausible" in expected:
        assert "give a price step from 0.00001 to 60," in api  # ~60,000: 1e-10 of it, rounded up

    code, out, err = cli(
        capsys, "profile", "BTCUSDT", "--hours", "1", "--tick-size", tick, "--data", data
    )
    assert (code, out, err) == (2, "", f"tradelab: error: {api}\n")

    text = mcp_error(
        data,
        "get_volume_profile",
        {"symbol": "BTCUSDT", "duration_hours": 1, "tick_size": float(tick)},
    )
    assert text == f"Error executing tool get_volume_profile: {api}"

    frame = recent_store.frames["BTCUSDT"]
    assert api_message(volume_profile, frame, tick_size=float(tick), symbol="BTCUSDT") == api


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("1e300", "row_size=1e+300 is not plausible for BTCUSDT traded at "),
        ("1e-12", "row_size=1e-12 is finer than 0.00000001"),
        ("70000", "row_size=70000.0 is not plausible for BTCUSDT traded at "),
    ],
)
def test_implausible_row_size_is_one_line(
    recent_store: Any, capsys: Any, row: str, expected: str
) -> None:
    data = recent_store.data
    api = api_message(tradelab.get_volume_profile, "BTCUSDT", 1, row_size=float(row), data=data)
    assert api.startswith(expected)
    code, _, err = cli(capsys, "profile", "BTCUSDT", "--row-size", row, "--data", data)
    assert (code, err) == (2, f"tradelab: error: {api}\n")


def test_plausible_steps_still_work_and_the_bounds_are_inclusive() -> None:
    frame = pl.DataFrame(
        {"price": [99.0, 99.5, 100.0], "qty": [1.0, 2.0, 1.0], "buyer_is_maker": [True] * 3}
    )
    assert volume_profile(frame, tick_size=1e-8).tick_size == 1e-8  # 1e-10 × 100 = 1e-8
    whole = volume_profile(frame, row_size=100.0)  # a row as tall as the highest price
    assert whole.row_count == 2 and whole.total_volume == 4.0
    with pytest.raises(InvalidParameterError, match=re.escape("from 0.00000001 to 100.00")):
        volume_profile(frame, row_size=100.5)
    # a pricier market: 1e-10 × 2,500,000 = 0.00025, rounded up to a power of ten: 0.001
    pricey = frame.with_columns(pl.col("price") * 25_000)
    with pytest.raises(InvalidParameterError, match=re.escape("from 0.001 to 2,500,000.00")):
        volume_profile(pricey, tick_size=0.0001)
    assert volume_profile(pricey, tick_size=0.001).tick_size == 0.001


def test_session_and_developing_profiles_refuse_the_same(recent_store: Any) -> None:
    data = recent_store.data
    expected = "tick_size=1e+300 is not plausible for BTCUSDT traded at "
    msg = api_message(tradelab.session_profiles, "BTCUSDT", days=2, tick_size=1e300, data=data)
    assert msg.startswith(expected)
    frame = recent_store.frames["BTCUSDT"]
    msg = api_message(tradelab.developing_profile, frame, every="5m", row_size=1e300)
    assert msg.startswith("row_size=1e+300 is not plausible for prices traded at ")


def test_set_tick_size_refuses_a_tick_finer_than_8_decimals() -> None:
    from tradelab.analytics.api import set_tick_size, tick_size_for

    msg = api_message(set_tick_size, "XRPUSDT", 1e-12)
    assert msg.startswith("tick_size=1e-12 is finer than 0.00000001")
    assert tick_size_for("XRPUSDT") is None


# --- URLs ---------------------------------------------------------------------------------------

BAD_URLS = [
    ("ws://[::1", "is not a valid URL (Invalid IPv6 URL)"),
    ("ws://exa mple.com", "contains white space or control characters"),
    ("ws://h:99999", "has an invalid port"),
]


@pytest.mark.parametrize(("url", "expected"), BAD_URLS)
def test_malformed_ws_url_is_one_line_exit_2(
    tmp_path: Path, capsys: Any, ip: Any, url: str, expected: str
) -> None:
    data = str(tmp_path / "data")
    code, out, err = cli(capsys, "collect", "--symbols", "BTCUSDT", "--data", data, "--ws-url", url)
    assert code == 2 and out == ""
    assert err.startswith(f"tradelab: error: WebSocket URL {url!r} ") and expected in err
    assert err.count("\n") == 1
    with pytest.raises(ConfigurationError, match="expected ws or wss://host"):
        tradelab.start("BTCUSDT", data=data, ws_url=url)
    with pytest.raises(UsageError, match="expected ws or wss://host") as info:
        ip.run_line_magic("tradelab", f"start BTCUSDT --data {data} --ws-url '{url}'")
    assert "\n" not in str(info.value)
    assert tradelab.jupyter.session.current() is None


# --- symbols ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "char"),
    [("ethuſdt", "'ſ' (U+017F)"), ("btcußdt", "'ß' (U+00DF)"), ("ＢＴＣUSDT", "U+FF22")],
)
def test_non_ascii_symbols_are_refused_before_case_mapping(
    recent_store: Any, capsys: Any, symbol: str, char: str
) -> None:
    # 'ſ'.upper() == 'S' and 'ß'.upper() == 'SS': upper-casing first made these ETHUSDT/BTCUSSDT
    msg = api_message(validate_symbol, symbol)
    assert msg.startswith(f"invalid symbol {symbol!r}: only ASCII letters A-Z and digits")
    assert char in msg
    store = open_store(recent_store.path)
    before = store.symbols()
    frame = synthetic_trades("ETHUSDT", int(time.time() * 1000) - 60_000, 10, price=3000.0)
    with pytest.raises(InvalidSymbolError):
        store.append(symbol, frame)
    assert store.symbols() == before
    assert api_message(tradelab.get_volume_profile, symbol, data=recent_store.data) == msg
    code, _, err = cli(capsys, "profile", symbol, "--data", recent_store.data)
    assert (code, err) == (2, f"tradelab: error: {msg}\n")


# --- booleans -----------------------------------------------------------------------------------


def test_flags_must_be_booleans(recent_store: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from tradelab.plotting import plot_profile
    from tradelab.plotting_sessions import plot_sessions

    vp = tradelab.volume_profile(recent_store.frames["BTCUSDT"], tick_size=0.01)
    sp = tradelab.session_profiles("BTCUSDT", days=2, data=recent_store.data)
    cases = [
        (lambda: vp.to_dict(rows="no"), "rows must be True or False, got str 'no'"),
        (lambda: sp.to_dict(naked=0), "naked must be True or False, got int 0"),
        (lambda: sp.to_text(naked=None), "naked must be True or False, got NoneType None"),
        (lambda: plot_profile(vp, legend="yes"), "legend must be True or False"),
        (lambda: plot_sessions(sp, naked="no"), "naked must be True or False"),
        (lambda: plot_sessions(sp, legend=1), "legend must be True or False"),
        (lambda: tradelab.start("BTCUSDT", background="no"), "background must be True or False"),
    ]
    for call, expected in cases:
        with pytest.raises(InvalidParameterError) as exc:
            call()
        assert str(exc.value).startswith(expected), str(exc.value)
    assert "rows" not in vp.to_dict(rows=False) and "rows" in vp.to_dict(rows=True)
    assert "naked_pocs" not in sp.to_dict(naked=False)
    assert tradelab.jupyter.session.current() is None


# --- a reader that closes the pipe early --------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELAB_")}
    env["MPLBACKEND"] = "Agg"
    return env


def quiet(stderr: str) -> bool:
    """No traceback, no error line, nothing said about the pipe."""
    lines = stderr.splitlines()
    return not any(
        w in line
        for line in lines
        for w in ("Traceback", "Broken pipe", "BrokenPipe", "Exception ignored", "error")
    )


def test_output_into_a_pipe_closed_early_ends_quietly(recent_store: Any) -> None:
    """``tradelab profile ... --json | head -c 100``: 2 MB of JSON into a pipe whose reader
    leaves after 100 bytes, so the writer surely meets EPIPE; and ``tradelab vacuums ...``
    into a pipe whose reader has already gone. Exit 141 (128 + SIGPIPE), nothing about the
    pipe on stderr (a reader's INFO log line about another process's scratch may be there)."""
    data = recent_store.data
    tradelab_cmd = [sys.executable, "-m", "tradelab"]
    big = [*tradelab_cmd, "profile", "BTCUSDT", "--data", data, "--json", "--row-size", "0.01"]
    writer = subprocess.Popen(big, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    assert writer.stdout is not None
    reader = subprocess.run(["head", "-c", "100"], stdin=writer.stdout, capture_output=True)
    writer.stdout.close()  # the reader's end is now the only one: it has gone
    _, err = writer.communicate(timeout=60)
    assert reader.stdout.startswith(b'{"symbol": "BTCUSDT"') and len(reader.stdout) == 100
    assert quiet(err.decode())
    assert writer.returncode == 141

    read_end, write_end = os.pipe()
    os.close(read_end)  # a reader that closed before anything was written
    try:
        gone = subprocess.run(
            [*tradelab_cmd, "vacuums", "BTCUSDT", "--data", data],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=_env(),
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert gone.returncode == 141 and quiet(gone.stderr.decode())
