"""The collector's ``export_to``: each closed hour into a Delta table as it closes (issue 15).

A real collector against the simulator seeded with history fills the last 1.2 hours, so at
least one closed hour is in its store; with ``export_to`` that hour lands in a real Delta table
exactly as the store holds it, the status document says so, and a second collector on the same
table commits nothing twice. The scheduling rule and the setting's checks are tested apart.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers import fast

from tradelab.collector import Collector, format_status
from tradelab.collector.exporting import EXPORT_GRACE_S, next_export_in
from tradelab.collector.settings import CollectorSettings
from tradelab.exceptions import InvalidParameterError
from tradelab.scale import scan_trades, table_contents
from tradelab.simulator import Simulator
from tradelab.store import TradeStore

HOUR_MS = 3_600_000
SYM = "BTCUSDT"


def test_the_next_export_waits_for_the_hour_boundary_unless_behind_or_failed() -> None:
    now = 10 * HOUR_MS + 20 * 60_000  # 10:20
    up_to_date = [9 * HOUR_MS, 9 * HOUR_MS]  # 09:00-10:00 exported for both symbols
    assert next_export_in(up_to_date, now, check_interval=60, failed=False) == pytest.approx(
        40 * 60 + EXPORT_GRACE_S
    )
    behind = [9 * HOUR_MS, 8 * HOUR_MS]  # 09:00 closed but held (a hole)
    assert next_export_in(behind, now, check_interval=60, failed=False) == 60
    nothing_yet = [9 * HOUR_MS, None]  # a symbol with nothing in the table (history coming)
    assert next_export_in(nothing_yet, now, check_interval=60, failed=False) == 60
    assert next_export_in(up_to_date, now, check_interval=7, failed=True) == 7


def test_export_to_is_checked_and_read_from_the_environment(tmp_path, monkeypatch) -> None:
    urls = {"ws_url": "ws://127.0.0.1:9", "rest_url": "http://127.0.0.1:9"}
    with pytest.raises(InvalidParameterError, match=r"^export_to: .*scheme 'ftp'"):
        CollectorSettings.from_arguments(SYM, export_to="ftp://host/table", **urls)
    with pytest.raises(InvalidParameterError, match="export_check_interval"):
        CollectorSettings.from_arguments(SYM, export_to=str(tmp_path), export_check_interval=0)
    monkeypatch.setenv("TRADELAB_EXPORT_TO", str(tmp_path / "t"))
    assert CollectorSettings.from_arguments(SYM, **urls).export_to == str(tmp_path / "t")
    monkeypatch.delenv("TRADELAB_EXPORT_TO")
    assert CollectorSettings.from_arguments(SYM, **urls).export_to is None


@pytest.mark.slow
def test_a_collector_exports_its_closed_hours_exactly_once(tmp_path, logs) -> None:
    table = tmp_path / "table"

    async def collect(store: TradeStore, sim: Simulator, until: float) -> tuple[dict, bool]:
        c = Collector(
            [SYM],
            store=store,
            ws_url=sim.ws_url,
            rest_url=sim.rest_url,
            history_hours=1.2,
            archive_url=sim.archive_url,
            export_to=str(table),
            export_check_interval=0.3,
            **fast(),
        )
        await c.start()
        deadline = time.monotonic() + until
        reached = False
        while not reached and time.monotonic() < deadline:  # the last closed hour in the table
            await asyncio.sleep(0.3)
            if logs.events("export") and table.exists():
                last_closed = int(time.time() * 1000) // HOUR_MS * HOUR_MS - HOUR_MS
                have = table_contents(table)
                reached = have.height > 0 and have["last_ms"][0] >= last_closed
        await c.stop()
        meta = store.get_meta("collector_status")
        assert meta is not None
        return meta, reached

    with Simulator((SYM,), source="synthetic", speed=1, seed=6, history_hours=1.5) as sim:
        store = TradeStore(tmp_path / "d")
        meta, reached = asyncio.run(collect(store, sim, 90))
        assert reached, [r.getMessage() for r in logs.events("export")]
        exported = table_contents(table)
        assert exported["symbol"].to_list() == [SYM], exported
        first, last = exported.row(0, named=True)["first_ms"], exported["last_ms"][0]
        hours = range(first // HOUR_MS * HOUR_MS, last, HOUR_MS)
        last_closed = int(time.time() * 1000) // HOUR_MS * HOUR_MS - HOUR_MS
        assert len(hours) >= 1 and hours[-1] >= last_closed - HOUR_MS, exported
        for h in hours:  # every exported hour equals the store's, row for row
            want = store.trades(SYM, h, h + HOUR_MS)
            got = scan_trades(table, SYM, h, h + HOUR_MS)
            assert want.height > 1000 and got.equals(want), h
        assert exported["trades"][0] == sum(store.trades(SYM, h, h + HOUR_MS).height for h in hours)
        # the status document tells the operator where the export stands
        assert meta["export"]["uri"] == str(table) and meta["export"]["exports"] >= 1
        assert meta["export"]["through"][SYM] is not None
        assert meta["export"]["last_error"] is None
        text = format_status(meta)  # what `tradelab status` prints
        assert f"export to {table}: {SYM} through {meta['export']['through'][SYM]}" in text
        # a second run on the same table (a restart, or another collector) commits nothing
        # twice: each symbol-hour is one transaction with an application id
        logs.records.clear()
        asyncio.run(collect(store, sim, 2))
        again = table_contents(table)
        assert again["trades"][0] >= exported["trades"][0]
        for h in hours:
            got = scan_trades(table, SYM, h, h + HOUR_MS)
            assert got["agg_id"].is_unique().all()
            assert got.equals(store.trades(SYM, h, h + HOUR_MS))
        store.close()


def test_a_failing_table_is_logged_and_retried_without_stopping_collection(tmp_path, logs) -> None:
    """The table's storage is broken (here: a regular file where the table should be): each
    attempt is a WARNING with the reason, the status says so, collection goes on."""
    blocker = tmp_path / "table"
    blocker.write_text("not a directory")

    async def scenario() -> None:
        store = TradeStore(tmp_path / "d")
        store.append(SYM, [_trade(1, 0), _trade(2, HOUR_MS + 5)])  # a closed hour to export
        c = Collector(
            [SYM],
            store=store,
            ws_url="ws://127.0.0.1:9",
            rest_url="http://127.0.0.1:9",
            export_to=str(blocker),
            export_check_interval=0.1,
            **fast(),
        )
        await c.start()
        for _ in range(100):
            await asyncio.sleep(0.05)
            if len(logs.events("export_failed")) >= 2:
                break
        assert c.running
        await c.stop()
        meta = store.get_meta("collector_status")
        assert meta is not None and str(blocker) in meta["export"]["uri"]
        assert meta["export"]["last_error"] and meta["export"]["exports"] == 0
        assert "; last attempt failed: cannot open the Delta table" in format_status(meta)
        store.close()

    asyncio.run(scenario())
    failed = logs.events("export_failed")
    assert len(failed) >= 2, [r.getMessage() for r in logs.records][-5:]
    assert failed[0].levelname == "WARNING" and "retried in" in failed[0].getMessage()
    # delta-rs colours its cause chain; an operator's log gets plain text
    assert "\x1b[" not in failed[0].getMessage() and "cannot open the Delta table" in (
        failed[0].getMessage()
    )


def _trade(agg_id: int, time_ms: int) -> dict:
    return {
        "agg_id": agg_id,
        "price": 100.0,
        "qty": 1.0,
        "first_id": agg_id,
        "last_id": agg_id,
        "time": time_ms + 1_700_000_000_000 // HOUR_MS * HOUR_MS,
        "buyer_is_maker": False,
    }
