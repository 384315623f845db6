"""``tradelab profile`` and ``tradelab vacuums`` on a real store in tmp_path."""

from __future__ import annotations

import json
import time

import pytest

from tradelab.cli import main
from tradelab.recordings import synthetic_trades
from tradelab.store import TradeStore, close_stores


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "data"
    now = int(time.time() * 1000)
    with TradeStore(path) as s:
        s.append("BTCUSDT", synthetic_trades("BTCUSDT", now - 3_000_000, 20_000, rate_per_s=8))
        s.append(
            "ETHUSDT", synthetic_trades("ETHUSDT", now - 600_000, 212, rate_per_s=1, price=2500.0)
        )
    yield str(path)
    close_stores()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_profile_prints_the_key_figures(data, capsys) -> None:
    code, out, _ = run(capsys, "profile", "BTCUSDT", "--hours", "1", "--data", data)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("BTCUSDT volume profile, last 1 h (")
    assert lines[0].endswith(": 20,000 trades")
    assert lines[1].lstrip().startswith("POC ") and " USDT " in lines[1]
    assert "Value area" in lines[2] and "target 70%, cbot" in lines[2]
    assert "BTC" in lines[3] and "buy" in lines[3] and "delta" in lines[3]


def test_profile_json_and_png(data, capsys, tmp_path) -> None:
    png = tmp_path / "out.png"
    code, out, err = run(
        capsys,
        "profile",
        "btcusdt",
        "--hours",
        "2",
        "--data",
        data,
        "--row-size",
        "5",
        "--method",
        "single",
        "--value-area",
        "0.8",
        "--json",
        "--png",
        str(png),
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["symbol"] == "BTCUSDT" and doc["trade_count"] == 20_000
    assert doc["row_size"] == 5.0 and doc["value_area_method"] == "single"
    assert doc["value_area"] == 0.8 and doc["value_area_volume_pct"] >= 80.0
    assert len(doc["rows"]) == doc["row_count"]
    assert all(r["price_low"] % 5 == 0 for r in doc["rows"])
    assert f"Saved the chart to {png}" in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_vacuums_table_and_json(data, capsys) -> None:
    code, out, _ = run(capsys, "vacuums", "BTCUSDT", "--hours", "1", "--data", data)
    assert code == 0
    head, columns, *rows = out.splitlines()
    assert head.startswith("BTCUSDT liquidity vacuums, last 1 h (") and "zone" in head
    assert columns.split() == [
        "price",
        "low",
        "price",
        "high",
        "rows",
        "volume",
        "(BTC)",
        "deficit",
        "impact",
    ]
    assert rows and all(r.split()[-1] in ("fast", "moderate", "negligible") for r in rows)
    code, out, _ = run(
        capsys,
        "vacuums",
        "BTCUSDT",
        "--hours",
        "1",
        "--data",
        data,
        "--json",
        "--threshold",
        "0.5",
        "--min-rows",
        "2",
    )
    doc = json.loads(out)
    assert code == 0 and doc["symbol"] == "BTCUSDT"
    assert all(v["rows"] >= 2 for v in doc["vacuums"])


def test_too_few_trades_is_one_line_exit_2(data, capsys) -> None:
    code, out, err = run(capsys, "profile", "ETHUSDT", "--hours", "1", "--data", data)
    assert code == 2 and out == ""
    assert err.startswith(
        "tradelab: error: ETHUSDT: 212 of the 1,000 trades needed in the "
        "last 1 h; no collector is running"
    )
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["profile", "BTCUSDT", "--hours", "0"], "duration_hours=0 is outside"),
        (["profile", "BTCUSDT", "--row-size", "0.015"], "not a whole number of ticks"),
        (["profile", "BTCUSDT", "--value-area", "1.5"], "0 < value_area <= 1"),
        (["profile", "BTC/USDT"], "BTC/USDT"),
        (["vacuums", "BTCUSDT", "--threshold", "2"], "threshold=2.0 is not allowed"),
        (["vacuums", "BTCUSDT", "--min-rows", "0"], "min_rows=0 is not allowed"),
        (["profile", "BTCUSDT", "--png", "/no/such/dir/x.png"], "does not exist"),
    ],
)
def test_bad_arguments(data, capsys, argv, message) -> None:
    code, _, err = run(capsys, *argv, "--data", data)
    assert code == 2 and message in err


@pytest.mark.parametrize(
    "argv",
    [
        ["profile", "BTCUSDT", "--hours", "x"],
        ["profile", "BTCUSDT", "--row-size", "-1"],
        ["profile", "BTCUSDT", "--method", "tpo"],
    ],
)
def test_argparse_rejects(capsys, argv) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_no_store_says_how_to_start(tmp_path, capsys) -> None:
    code, _, err = run(capsys, "profile", "BTCUSDT", "--data", str(tmp_path / "none"))
    assert code == 2 and "tradelab: error:" in err
