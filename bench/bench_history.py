"""History benchmark: archive import end to end, and REST backfill at the default weight share.

Run: ``python bench/bench_history.py`` (or ``python -m bench history``). Both go through the
simulator on 127.0.0.1 (real HTTP, real zips with checksums, the real store in a temp dir):

- archive import: one whole day of BTCUSDT-like trades (``BENCH_HISTORY_RATE`` trades/s,
  default 20: ~1.7 M trades) fetched with ``fill_window`` — download + SHA-256 + unzip + CSV
  parse + store — then the same split into its stages. Target: >= 1 M trades/s end to end.
- REST backfill: ``BENCH_HISTORY_REST_HOURS`` (default 4) hours through REST pages only, at
  the default weight share (0.5 of 6,000/min). Below ~750 calls a minute the figure is the
  raw page rate; a longer fill is bounded by the budget at 0.5 x 6000 / 4 x 1000 / 60 =
  12,500 trades/s, printed beside it.

The machine's load average is printed: the machine is shared, expect drift between runs.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tradelab.binance import AGG_TRADES_WEIGHT, DEFAULT_WEIGHT_LIMIT, MAX_REST_LIMIT
from tradelab.history import DAY_MS, ArchiveClient, fill_window
from tradelab.simulator import Simulator
from tradelab.store import TradeStore

RATE = float(os.environ.get("BENCH_HISTORY_RATE", "20"))
REST_HOURS = float(os.environ.get("BENCH_HISTORY_REST_HOURS", "4"))
SYM = "BTCUSDT"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} cores"


def main() -> int:
    print(f"history benchmark, {load()}")
    with Simulator((SYM,), history_hours=48, rate_per_s=RATE, speed=1, seed=11) as sim:
        day = int(time.time() * 1000) // DAY_MS * DAY_MS - DAY_MS  # yesterday: whole
        client = ArchiveClient(sim.archive_url)
        client.fetch_day(SYM, day)  # the simulator builds its zip once; not timed
        t0 = time.perf_counter()
        frame = client.fetch_day(SYM, day)
        t_fetch = time.perf_counter() - t0
        assert frame is not None
        with tempfile.TemporaryDirectory() as d, TradeStore(d) as store:
            t0 = time.perf_counter()
            store.append(SYM, frame)
            t_store = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as d, TradeStore(d) as store:
            t0 = time.perf_counter()
            report = fill_window(
                store, SYM, day, day + DAY_MS, rest_url=sim.rest_url, archive_url=sim.archive_url
            )
            t_all = time.perf_counter() - t0
            assert report.archive_days and report.trades == frame.height, report
        n = frame.height
        mb = client.bytes / 2 / 1e6
        print(
            f"archive import, one day ({n:,} trades, zip {mb:.1f} MB): end to end "
            f"{t_all:.2f} s = {n / t_all / 1e6:.2f} M trades/s (target >= 1 M/s); "
            f"download+verify+unzip+parse {t_fetch:.2f} s ({n / t_fetch / 1e6:.2f} M/s), "
            f"store {t_store:.2f} s ({n / t_store / 1e6:.2f} M/s); "
            f"{report.rest_calls} REST calls"
        )
        end = int(time.time() * 1000) - 60_000
        start = end - int(REST_HOURS * 3_600_000)
        with tempfile.TemporaryDirectory() as d, TradeStore(d) as store:
            t0 = time.perf_counter()
            report = fill_window(store, SYM, start, end, rest_url=sim.rest_url, use_archives=False)
            t_rest = time.perf_counter() - t0
        cap = 0.5 * DEFAULT_WEIGHT_LIMIT / AGG_TRADES_WEIGHT * MAX_REST_LIMIT / 60
        print(
            f"REST backfill, {REST_HOURS:g} h ({report.trades:,} trades, {report.rest_calls} "
            f"calls, weight {report.weight_used:,}): {t_rest:.2f} s = "
            f"{report.trades / t_rest:,.0f} trades/s, {report.rest_calls / t_rest:.0f} calls/s; "
            f"sustained at the default share (0.5 of {DEFAULT_WEIGHT_LIMIT:,}/min) at most "
            f"{cap:,.0f} trades/s"
        )
    print(f"after: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
