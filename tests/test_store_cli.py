"""``tradelab stats | retention | import`` through the real CLI entry point."""

from __future__ import annotations

import pytest

from tradelab.cli import main
from tradelab.store import TradeStore

# Binance's public export: agg_id,price,qty,first_id,last_id,timestamp_us,buyer_is_maker,best
CSV = """\
3800397495,87648.00000000,0.00100000,5728001001,5728001001,1767225600039000,True,True
3800397496,87648.01000000,0.01500000,5728001002,5728001004,1767225600040000,False,True
3800397497,87648.01000000,0.00010000,5728001005,5728001005,1767225661000000,False,True
"""


@pytest.fixture
def csv_file(tmp_path):
    p = tmp_path / "BTCUSDT-aggTrades-2026-01-01.csv"
    p.write_text(CSV)
    return p


def test_import_then_stats(tmp_path, csv_file, capsys):
    data = str(tmp_path / "db")
    assert main(["import", str(csv_file), "--data", data]) == 0
    assert "BTCUSDT: 3 new trades stored (0 already there)" in capsys.readouterr().out
    assert main(["import", str(csv_file), "--data", data]) == 0
    assert "BTCUSDT: 0 new trades stored (3 already there)" in capsys.readouterr().out
    assert main(["stats", "--data", data]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("BTCUSDT"))
    assert "3800397495" in line and "3800397497" in line and " 3 " in line
    assert "2026-01-01 00:00:00.039" in line and "2026-01-01 00:01:01.000" in line
    with TradeStore(data, readonly=True) as r:
        df = r.trades("BTCUSDT", 0, 10**13)
    assert df["price"].to_list() == [87648.0, 87648.01, 87648.01]
    assert df["qty"].to_list() == [0.001, 0.015, 0.0001]


def test_import_with_an_explicit_symbol_and_a_shared_recording(tmp_path, shared_data, capsys):
    data = str(tmp_path / "db")
    rec = shared_data / "spot_ethusdt_20240808-09.aggTrade.tsv.gz"
    assert main(["import", str(rec), "--data", data]) == 0
    assert "ETHUSDT: 7,396 new trades stored" in capsys.readouterr().out
    assert main(["stats", "ETHUSDT", "--data", data]) == 0
    assert "7,396" in capsys.readouterr().out


def test_retention_removes_old_trades(tmp_path, csv_file, capsys):
    data = str(tmp_path / "db")
    main(["import", str(csv_file), "--data", data])
    capsys.readouterr()
    assert main(["retention", "--data", data, "--days", "100000"]) == 0
    assert "removed 0 trades" in capsys.readouterr().out
    assert main(["retention", "--data", data, "--days", "1"]) == 0
    assert "removed 3 trades older than 1 days" in capsys.readouterr().out
    assert main(["stats", "--data", data]) == 0
    assert "no trades stored yet" in capsys.readouterr().out


def test_errors_are_one_clear_line(tmp_path, csv_file, capsys):
    assert main(["stats", "--data", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tradelab: error: no trade store") and "tradelab collect" in err
    assert main(["import", str(tmp_path / "missing.csv"), "--data", str(tmp_path / "db")]) == 2
    assert "no such file" in capsys.readouterr().err
    odd = tmp_path / "trades.parquet"
    odd.write_text("x")
    assert main(["import", str(odd), "--data", str(tmp_path / "db")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
    assert main(["stats", "BTC/USDT", "--data", str(tmp_path / "db")]) == 2
    assert "invalid symbol" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["retention", "--days", "-3", "--data", str(tmp_path / "db")])
    assert "days must be a number > 0" in capsys.readouterr().err
    # a store another writer holds: retention says who, not a raw LOCK error
    with TradeStore(tmp_path / "held"):
        assert main(["retention", "--data", str(tmp_path / "held")]) == 2
        err = capsys.readouterr().err
        assert "being written by" in err and "LOCK" not in err
    # a path that is not a store
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    assert main(["stats", "--data", str(tmp_path / "junk")]) == 2
    assert "no tradelab store" in capsys.readouterr().err
