"""``tradelab check`` and the holes column of ``tradelab stats``, through the real CLI entry."""

from __future__ import annotations

import numpy as np
import polars as pl

from tradelab.cli import main
from tradelab.schema import TRADE_SCHEMA
from tradelab.store import TradeStore

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC


def trades(ids) -> pl.DataFrame:
    a = np.asarray(list(ids), dtype=np.int64)
    return pl.DataFrame(
        {
            "agg_id": a,
            "price": 100.0 + (a % 3) * 0.5,
            "qty": np.full(len(a), 0.25),
            "first_id": a,
            "last_id": a,
            "time": T0 + a * 100,
            "buyer_is_maker": a % 2 == 1,
        }
    ).with_columns(pl.col("time").cast(TRADE_SCHEMA["time"]))


def test_check_reports_holes_and_exits_1_while_one_is_repairable(tmp_path, capsys) -> None:
    data = str(tmp_path / "db")
    with TradeStore(data) as w:
        w.append("BTCUSDT", trades(range(1, 101)))
        w.append("BTCUSDT", trades(range(111, 201)), unrepairable=[(101, 105)])
        w.append("ETHUSDT", trades(range(1, 51)))
    assert main(["check", "--data", data]) == 1
    out = capsys.readouterr().out
    assert "BTCUSDT: 190 trades, 2026-01-01 00:00:00.100 → 2026-01-01 00:00:20.000 UTC" in out
    assert "ids 1–200" in out
    assert "holes: 1 repairable (5 ids), 1 unrepairable (5 ids)" in out
    assert "ids 101–105 (5 ids) between 2026-01-01 00:00:10.000 and" in out
    assert "ids 106–110 (5 ids)" in out and ": repairable" in out
    assert "ETHUSDT: 50 trades" in out and "holes: 0 repairable (0 ids), 0 unrepairable" in out
    assert "1 repairable hole(s)" in out
    # one symbol at a time; a complete one exits 0
    assert main(["check", "--data", data, "--symbols", "ETHUSDT"]) == 0
    out = capsys.readouterr().out
    assert "BTCUSDT" not in out and "complete: no repairable hole" in out
    # stats shows the counts (repairable/unrepairable)
    assert main(["stats", "--data", data]) == 0
    out = capsys.readouterr().out
    assert "holes r/u" in out.splitlines()[0]
    btc = next(x for x in out.splitlines() if x.startswith("BTCUSDT"))
    assert " 1/1 " in btc
    eth = next(x for x in out.splitlines() if x.startswith("ETHUSDT"))
    assert " 0/0 " in eth
    # the operator gives up on the hole: check passes
    with TradeStore(data) as w:
        assert w.mark_unrepairable("BTCUSDT", [(106, 110)]) == 5
    assert main(["check", "--data", data]) == 0
    assert "holes: 0 repairable (0 ids), 1 unrepairable (10 ids)" in capsys.readouterr().out


def test_check_while_a_writer_holds_the_store_and_bad_input(tmp_path, capsys) -> None:
    data = str(tmp_path / "db")
    with TradeStore(data) as w:
        w.append("BTCUSDT", trades(range(1, 10)))
        w.append("BTCUSDT", trades(range(20, 30)))
        assert main(["check", "--data", data]) == 1  # this process's writer, read as is
        assert "ids 10–19 (10 ids)" in capsys.readouterr().out
    assert main(["check", "--data", data, "--symbols", "BTC/USDT"]) == 2
    assert "invalid symbol" in capsys.readouterr().err
    assert main(["check", "--data", str(tmp_path / "none")]) == 2
    assert "no trade store" in capsys.readouterr().err
    assert main(["check", "--data", data, "--symbols", "SOLUSDT"]) == 0
    assert "SOLUSDT: no trades stored" in capsys.readouterr().out
