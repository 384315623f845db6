"""``tradelab import`` keeps id spaces apart: files are recognised by content; raw trades,
futures, other symbols and conflicting ids are refused with one line, and the store's files
stay byte for byte as they were."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tradelab.cli import main
from tradelab.history import ImportConflictError, import_file
from tradelab.recordings import identify_file, synthetic_trades
from tradelab.store import TradeStore

T0 = 1_767_225_600_000


def _write_recording(
    path: Path,
    *,
    event: str = "aggTrade",
    futures: bool = False,
    symbol: str = "BTCUSDT",
    first_id: int = 1_000,
    n: int = 300,
    price_shift: float = 0.0,
) -> Path:
    frame = synthetic_trades(symbol, T0, 1_000, first_agg_id=first_id).head(n)
    lines = []
    for r in frame.iter_rows(named=True):
        t = int(r["time"].timestamp() * 1000)
        d: dict = {"e": event, "E": t + 1, "s": symbol}
        if event == "aggTrade":
            d |= {"a": r["agg_id"], "f": r["first_id"], "l": r["last_id"]}
        else:
            d |= {"t": r["agg_id"]}
        d |= {
            "p": f"{r['price'] + price_shift:.8f}",
            "q": f"{r['qty']:.8f}",
            "T": t,
            "m": r["buyer_is_maker"],
        }
        if futures:
            d["X"] = "MARKET"
        else:
            d["M"] = True
        stream = f"{symbol.lower()}@{event}"
        lines.append(f"{t * 1_000_000}\t" + json.dumps({"stream": stream, "data": d}))
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    data = tmp_path / "db"
    rec = _write_recording(tmp_path / "spot.aggTrade.tsv.gz")
    assert [r.new for r in import_file(rec, data)] == [300]
    return data


def test_files_are_recognised_by_content(tmp_path: Path) -> None:
    assert identify_file(_write_recording(tmp_path / "a.gz")).kind == "aggtrade"
    assert identify_file(_write_recording(tmp_path / "b.gz", event="trade")).kind == "trades"
    fut = _write_recording(tmp_path / "c.gz", event="trade", futures=True)
    assert identify_file(fut).kind == "futures"
    fut_agg = _write_recording(tmp_path / "d.gz", futures=True)
    assert identify_file(fut_agg).kind == "futures"
    (tmp_path / "e.csv").write_text("agg_trade_id,price,quantity,first_trade_id\n1,2,3,4\n")
    assert identify_file(tmp_path / "e.csv").kind == "futures"


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"event": "trade"}, "is a raw @trade recording (trade ids, not aggregate trade ids)"),
        ({"event": "trade", "futures": True}, "is a futures @trade recording (not spot)"),
        ({"futures": True}, "is a futures aggTrade recording (not spot)"),
    ],
)
def test_other_id_spaces_are_refused_and_the_store_is_untouched(
    filled: Path, tmp_path: Path, capsys, kwargs, says
) -> None:
    before = _snapshot(filled)
    bad = _write_recording(tmp_path / "other.gz", **kwargs)
    assert main(["import", str(bad), "--data", str(filled)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tradelab: error: other.gz " + says) and err.count("\n") == 1
    assert _snapshot(filled) == before


def test_conflicting_ids_refuse_the_whole_file(filled: Path, tmp_path: Path, capsys) -> None:
    before = _snapshot(filled)
    # ids 1,200-1,499: the first 100 are stored with other prices, the rest are new
    bad = _write_recording(tmp_path / "x.aggTrade.tsv.gz", first_id=1_200, price_shift=0.5)
    assert main(["import", str(bad), "--data", str(filled)]) == 2
    err = capsys.readouterr().err
    assert "conflicts with the store (BTCUSDT): aggregate id 1200 is stored with" in err
    assert "nothing was imported" in err
    assert _snapshot(filled) == before
    with pytest.raises(ImportConflictError):
        import_file(bad, filled)
    assert _snapshot(filled) == before


def test_another_symbol_is_refused(filled: Path, tmp_path: Path, capsys) -> None:
    before = _snapshot(filled)
    eth = _write_recording(tmp_path / "eth.aggTrade.tsv.gz", symbol="ETHUSDT")
    assert main(["import", str(eth), "--symbol", "BTCUSDT", "--data", str(filled)]) == 2
    assert "is a spot aggTrade stream recording of ETHUSDT, not BTCUSDT" in capsys.readouterr().err
    assert _snapshot(filled) == before


def test_equal_overlap_is_fine_and_new_ids_are_added(filled: Path, tmp_path: Path) -> None:
    more = _write_recording(tmp_path / "more.aggTrade.tsv.gz", n=500)  # ids 1,000-1,499
    (res,) = import_file(more, filled)
    assert (res.new, res.already) == (200, 300)
    with TradeStore(filled, readonly=True) as r:
        assert r.stats("BTCUSDT").trade_count == 500


def test_shared_raw_and_futures_recordings_are_refused(tmp_path, shared_data, capsys) -> None:
    data = tmp_path / "db"
    assert (
        main(
            [
                "import",
                str(shared_data / "spot_btcusdt_20240808-09.aggTrade.tsv.gz"),
                "--data",
                str(data),
            ]
        )
        == 0
    )
    before = _snapshot(data)
    for name, says in (
        ("spot_btcusdt_20240808.trades.txt.gz", "raw @trade recording"),
        ("usdm_btcusdt_20230404-05.trades.txt.gz", "futures @trade recording"),
    ):
        assert main(["import", str(shared_data / name), "--data", str(data)]) == 2
        assert says in capsys.readouterr().err
    assert _snapshot(data) == before


def test_a_csv_named_with_non_ascii_letters_is_refused(filled: Path, tmp_path: Path, capsys):
    # 'ſ'.upper() == 'S': upper-casing the name first would read it as ETHUSDT
    csv = tmp_path / "ethuſdt-aggTrades-2024-01-01.csv"
    csv.write_text(
        "1,2500.10,0.5,1,1,1704067200000,true,true\n2,2500.20,0.1,2,3,1704067200100,false,true\n"
    )
    before = _snapshot(filled)
    assert main(["import", str(csv), "--data", str(filled)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tradelab: error: ") and err.count("\n") == 1 and "ſ" in err
    assert _snapshot(filled) == before
