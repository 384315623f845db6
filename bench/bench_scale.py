"""Scale benchmark: export to a Delta table, reads from it vs the store, and the volume profile
and the session profiles (one per UTC day) on a Dask LocalCluster of 1 and 2 workers vs one
process — all on the same 15 M trades, in one run, with the cluster's per-task overhead.

Run: ``python bench/bench_scale.py`` (or ``python -m bench scale``). ``BENCH_SCALE_TRADES``
(default 15,000,000 ≈ a week of BTCUSDT at 24.3 trades/s) scales the data. Figures are medians
of warm runs; the machine is shared, so each figure prints the load average beside it.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tradelab import volume_profile
from tradelab.analytics import session_profiles_from_trades
from tradelab.recordings import synthetic_trades
from tradelab.scale import (
    distributed_session_profiles,
    distributed_volume_profile,
    export,
    local_client,
    scan_trades,
    volume_profile_from,
)
from tradelab.store import TradeStore

N = int(os.environ.get("BENCH_SCALE_TRADES", "15000000"))
RATE = 24.3  # trades/s: ~2.1 M a day
START = 1_767_225_600_000  # 2026-01-01 00:00 UTC
HOUR = 3_600_000
SYM = "BTCUSDT"


def load() -> str:
    a, b, c = os.getloadavg()
    return f"load {a:.1f}/{b:.1f}/{c:.1f}"


def med(fn, runs: int = 3) -> tuple[float, object]:
    out, times = None, []
    for _ in range(runs):
        out = None
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def noop(x: int) -> int:
    return x


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        print(f"{N:,} synthetic {SYM} trades at {RATE} trades/s; {os.cpu_count()} CPUs; {load()}")
        frame = synthetic_trades(SYM, START, N, rate_per_s=RATE, seed=1)
        last = int(frame["time"].dt.epoch("ms").max())
        with TradeStore(tmp / "data") as store:
            t = time.perf_counter()
            for _, chunk in frame.group_by(pl.col("time").dt.truncate("1d"), maintain_order=True):
                store.append(SYM, chunk)
            store.wait_idle(300)
            print(f"store filled        {time.perf_counter() - t:7.1f} s")
            del frame

            uri = tmp / "table"
            t = time.perf_counter()
            report = export(store, uri, now_ms=last + 30 * 24 * HOUR)
            s = time.perf_counter() - t
            files = list(uri.rglob("part-*.parquet"))  # data files, not log checkpoints
            size = sum(f.stat().st_size for f in files)
            print(
                f"export              {report.trades:>11,} trades, {report.hours} hour commits "
                f"in {s:6.1f} s = {report.trades / s:>9,.0f} trades/s; "
                f"{size / report.trades:.2f} B/trade on disk ({size / 1e6:,.1f} MB, "
                f"{len(files)} files); {load()}"
            )
            exported_end = report.symbols[0].through_ms + HOUR

            print("reads (median of 3, warm)           store.trades   scan_trades   ratio")
            for hours in (24, 168):
                hi = exported_end
                lo = hi - hours * HOUR
                s_store, a = med(lambda lo=lo, hi=hi: store.trades(SYM, lo, hi))
                s_delta, b = med(lambda lo=lo, hi=hi: scan_trades(uri, SYM, lo, hi))
                assert a.equals(b), "the table and the store disagree"  # type: ignore[attr-defined]
                print(
                    f"  {hours:>3} h  {a.height:>11,} trades   {s_store * 1e3:9.1f} ms  "  # type: ignore[attr-defined]
                    f"{s_delta * 1e3:9.1f} ms   {s_delta / s_store:5.2f}x   {load()}"
                )

            hi, lo = exported_end, exported_end - 168 * HOUR
            trades = store.trades(SYM, lo, hi)
            n = trades.height
            s_compute, local = med(
                lambda: volume_profile(trades, symbol=SYM, start=lo, end=hi), runs=3
            )
            s_read_compute, _ = med(
                lambda: volume_profile(store.trades(SYM, lo, hi), symbol=SYM, start=lo, end=hi),
                runs=3,
            )
            s_table, _ = med(lambda: volume_profile_from(uri, SYM, lo, hi), runs=3)
            print(f"profile of {n:,} trades ({len(files)} hour files, 168 h)")
            print(f"  one process: compute only            {s_compute:7.2f} s   {load()}")
            print(f"  one process: store read + compute    {s_read_compute:7.2f} s   {load()}")
            print(f"  one process: table read + compute    {s_table:7.2f} s   {load()}")

            def sessions_of(frame: pl.DataFrame) -> object:
                return session_profiles_from_trades(frame, start=lo, end=hi, symbol=SYM)

            s_sess_compute, local_sessions = med(lambda: sessions_of(trades), runs=3)
            s_sess_store, _ = med(lambda: sessions_of(store.trades(SYM, lo, hi)), runs=3)
            s_sess_table, _ = med(lambda: sessions_of(scan_trades(uri, SYM, lo, hi)), runs=3)
            days = len(local_sessions)  # type: ignore[arg-type]
            print(f"session profiles (utc-day: {days} sessions) of the same trades")
            print(f"  one process: compute only            {s_sess_compute:7.2f} s   {load()}")
            print(f"  one process: store read + compute    {s_sess_store:7.2f} s   {load()}")
            print(f"  one process: table read + compute    {s_sess_table:7.2f} s   {load()}")
            for workers in (1, 2):
                t = time.perf_counter()
                client = local_client(workers)
                startup = time.perf_counter() - t
                try:
                    client.gather(client.map(noop, range(50), pure=False))  # warm the workers
                    t = time.perf_counter()
                    client.gather(client.map(noop, range(1000), pure=False))
                    per_task = (time.perf_counter() - t) / 1000
                    s_dist, got = med(
                        lambda c=client: distributed_volume_profile(uri, SYM, lo, hi, client=c),
                        runs=3,
                    )
                    s_dsess, got_sessions = med(
                        lambda c=client: distributed_session_profiles(uri, SYM, lo, hi, client=c),
                        runs=3,
                    )
                finally:
                    cluster = client.cluster
                    client.close()
                    cluster.close()
                same = got.rows.equals(local.rows) and (got.poc, got.vah, got.val) == (  # type: ignore[attr-defined]
                    local.poc,  # type: ignore[attr-defined]
                    local.vah,  # type: ignore[attr-defined]
                    local.val,  # type: ignore[attr-defined]
                )
                same_sessions = got_sessions.summary.equals(  # type: ignore[attr-defined]
                    local_sessions.summary  # type: ignore[attr-defined]
                ) and all(
                    a.rows.equals(b.rows)
                    for a, b in zip(got_sessions, local_sessions, strict=True)  # type: ignore[call-overload]
                )
                print(
                    f"  LocalCluster({workers}): per-task overhead {per_task * 1e3:.2f} ms "
                    f"(1,000 no-op tasks); cluster start {startup:.1f} s, not included below"
                )
                print(
                    f"  LocalCluster({workers}): table -> profile   {s_dist:7.2f} s   "
                    f"(~{len(files) + len(files) // 3 + 2} tasks; "
                    f"equal to one process: {same})   {load()}"
                )
                print(
                    f"  LocalCluster({workers}): table -> sessions  {s_dsess:7.2f} s   "
                    f"(~{len(files) + len(files) // 3 + 2} tasks; "
                    f"equal to one process: {same_sessions})   {load()}"
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
