"""Store benchmark: a week of BTCUSDT-like trades, this store vs one MessagePack value per trade.

Run: ``python bench/bench_store.py`` (or ``make bench``; ``python -m bench store``).
``BENCH_STORE_DAYS`` (default 7) scales the data; ``BENCH_STORE_BASELINE_HOURS`` (default 24)
is how much of it the baseline (one key per trade, the literal layout) loads — loading all 7
days that way takes minutes, so windows longer than what it holds are extrapolated per trade
and marked as such.

Figures are medians of warm runs (the data was just read, the page cache is hot). The machine
is shared: expect tens of percent of drift between runs; the ratios are what hold.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import polars as pl
import rocksdict as rd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tradelab.recordings import synthetic_trades
from tradelab.schema import TRADE_SCHEMA
from tradelab.store import TradeStore
from tradelab.store.keys import HOUR_MS
from tradelab.store.opening import dir_size

DAYS = float(os.environ.get("BENCH_STORE_DAYS", "7"))
BASE_HOURS = int(os.environ.get("BENCH_STORE_BASELINE_HOURS", "24"))
RATE = 24.3  # trades/s: ~2.1M a day
START = 1_767_225_600_000  # 2026-01-01 00:00 UTC
SYM = "BTCUSDT"
HOLES = 40  # missing runs punched into the week (see main)


def med(fn, runs: int = 5) -> tuple[float, object]:
    out = None
    times = []
    for _ in range(runs):
        out = None  # free the previous result first: a week of trades is ~0.85 GB
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def fmt_ms(s: float) -> str:
    return f"{s * 1e3:9.2f} ms"


# --- the baseline: one key per trade, a MessagePack map per value ---------------------------------


class Baseline:
    """The literal layout: key ``trades:{SYMBOL}:{ms}:{agg_id}``, value = one trade's map."""

    def __init__(self, path: str) -> None:
        opts = rd.Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_compression_type(rd.DBCompressionType.zstd())
        self.db = rd.Rdict(path, opts)
        self.path = path

    def append(self, df: pl.DataFrame) -> None:
        batch = rd.WriteBatch(raw_mode=True)
        times = df["time"].dt.epoch("ms").to_list()
        for t, row in zip(times, df.iter_rows(), strict=True):
            a, p, q, f, last, _t, m = row
            batch.put(
                b"trades:BTCUSDT:%013d:%012d" % (t, a),
                msgpack.packb({"a": a, "p": p, "q": q, "f": f, "l": last, "T": t, "m": m}),
            )
        self.db.write(batch)

    def trades(self, lo: int, hi: int) -> pl.DataFrame:
        ro = rd.ReadOptions()
        ro.set_iterate_upper_bound(b"trades:BTCUSDT:%013d" % hi)
        cols: dict[str, list] = {k: [] for k in "apqflTm"}
        unpack = msgpack.unpackb
        for v in self.db.values(from_key=b"trades:BTCUSDT:%013d" % lo, read_opt=ro):
            d = unpack(v)
            for k in "apqflTm":
                cols[k].append(d[k])
        del ro
        df = pl.DataFrame(
            {
                "agg_id": cols["a"],
                "price": cols["p"],
                "qty": cols["q"],
                "first_id": cols["f"],
                "last_id": cols["l"],
                "time": cols["T"],
                "buyer_is_maker": cols["m"],
            }
        )
        df = df.with_columns(pl.col("time").cast(pl.Datetime("ms", "UTC")))
        return df.cast(TRADE_SCHEMA).sort("agg_id")


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="bench-store-"))
    results: dict[str, str] = {}
    try:
        n = int(DAYS * 86_400 * RATE)
        t = time.perf_counter()
        df = synthetic_trades(SYM, START, n, rate_per_s=RATE)
        # punch HOLES runs of 1-500 ids out of it (a crashed collector's holes): holes() then
        # has something to find, and every query below checks against the same frame
        rng = np.random.default_rng(1)
        cut = np.zeros(n, dtype=bool)
        for at in rng.integers(0, n - 1000, HOLES):
            cut[at : at + int(rng.integers(1, 500))] = True
        df = df.filter(~pl.Series(cut))
        end = int(df["time"].dt.epoch("ms").max()) + 1
        print(
            f"generated {n:,} trades over {DAYS:g} days in {time.perf_counter() - t:.1f} s; "
            f"{n / (end - START) * 1000:.1f} trades/s"
        )

        # bulk load all but the last hour, a day at a time; then stream the last hour second
        # by second as the collector does, so the open hour has its minute and 1-second blocks
        ms = df["time"].dt.epoch("ms")
        stream_from = end - HOUR_MS
        bulk = df.filter(ms < stream_from)
        live = df.filter(ms >= stream_from)
        store = TradeStore(root / "blocks", retention_days=3650)
        t = time.perf_counter()
        day = pl.col("time").dt.epoch("ms") // 86_400_000
        for _, chunk in bulk.group_by(day, maintain_order=True):
            store.append(SYM, chunk)
        bulk_s = time.perf_counter() - t
        print(
            f"bulk append        {bulk.height:>11,} trades in {bulk_s:6.2f} s = "
            f"{bulk.height / bulk_s / 1e6:.2f} M trades/s"
        )
        lat = []
        for _, batch in live.group_by(pl.col("time").dt.epoch("ms") // 1000, maintain_order=True):
            t = time.perf_counter()
            store.append(SYM, batch)
            lat.append(time.perf_counter() - t)
        lat_a = np.array(lat)
        store.wait_idle()
        print(
            f"live 1-s appends   {len(lat):>11,} batches of ~{live.height / len(lat):.0f} "
            "trades: "
            f"median {np.median(lat_a) * 1e3:.2f} ms, p99 {np.percentile(lat_a, 99) * 1e3:.2f} "
            f"ms, max {lat_a.max() * 1e3:.1f} ms (roll-ups run on the writer's worker thread)"
        )

        # 1,000-trade 1-second batches (a burst second) into a second symbol
        burst = synthetic_trades("ETHUSDT", START, 300_000, rate_per_s=1000)
        b_lat = []
        for i in range(0, burst.height, 1000):
            chunk = burst[i : i + 1000]
            t = time.perf_counter()
            store.append("ETHUSDT", chunk)
            b_lat.append(time.perf_counter() - t)
        b_arr = np.array(b_lat)
        store.wait_idle()
        # the same, each append alone (the roll-up worker idle): the append's own cost
        burst2 = synthetic_trades(
            "ETHUSDT", START + 400_000, 100_000, rate_per_s=1000, first_agg_id=300_001
        )
        i_lat = []
        for i in range(0, burst2.height, 1000):
            store.wait_idle()
            t = time.perf_counter()
            store.append("ETHUSDT", burst2[i : i + 1000])
            i_lat.append(time.perf_counter() - t)
        i_arr = np.array(i_lat)
        store.wait_idle()
        print(
            f"1,000-trade batch  back to back: median {np.median(b_arr) * 1e3:.2f} ms, "
            f"p99 {np.percentile(b_arr, 99) * 1e3:.2f} ms over {len(b_arr)} batches "
            f"(p99 = the roll-up worker holding the GIL); alone: median "
            f"{np.median(i_arr) * 1e3:.2f} ms, p99 {np.percentile(i_arr, 99) * 1e3:.2f} ms"
        )

        t = time.perf_counter()
        store.compact()
        comp_s = time.perf_counter() - t
        size = dir_size(store.path)
        total = df.height + burst.height + burst2.height
        print(
            f"after compaction   {size / 1e6:.1f} MB for {total:,} trades = "
            f"{size / total:.2f} bytes/trade (compaction {comp_s:.1f} s)"
        )

        windows = {"1 h": end - HOUR_MS, "24 h": end - 24 * HOUR_MS, "168 h": end - 168 * HOUR_MS}
        q: dict[str, tuple[float, int]] = {}
        for name, lo in windows.items():
            s, out = med(lambda lo=lo: store.trades(SYM, lo, end), runs=5)
            assert out.equals(df.filter(ms >= lo)), name
            q[name] = (s, out.height)
            del out
            blocks = store.block_count(SYM, lo, end)
            print(f"query {name:>6}       {fmt_ms(s)}  {q[name][1]:>11,} rows  {blocks:>4} blocks")
        s_h, holes = med(lambda: store.holes(SYM), runs=20)
        print(
            f"holes()            {fmt_ms(s_h)}  {holes.height} holes in {df.height:,} trades, "
            f"{store.block_count(SYM, 0, end)} blocks (writer: headers in memory)"
        )
        store.close()

        # a reader in "another process" (a secondary instance) pays a catch-up per query
        with TradeStore(root / "blocks", readonly=True) as reader:
            s_r, out = med(lambda: reader.trades(SYM, end - HOUR_MS, end))
            s_c, _ = med(reader.refresh)
            s_hr, holes_r = med(lambda: reader.holes(SYM), runs=20)
        assert holes_r.equals(holes)
        print(f"reader 1 h query   {fmt_ms(s_r)} (catch-up with the writer: {fmt_ms(s_c)})")
        print(f"reader holes()     {fmt_ms(s_hr)}  (index scan incl. catch-up)")

        # the baseline, same data (the last BASE_HOURS hours), same machine
        base = Baseline(str(root / "baseline"))
        sample = df.filter(ms >= end - BASE_HOURS * HOUR_MS)
        t = time.perf_counter()
        for i in range(0, sample.height, 200_000):
            base.append(sample[i : i + 200_000])
        base_append_s = time.perf_counter() - t
        base.db.compact_range(None, None)
        base.db.flush()
        base_size = dir_size(Path(base.path))
        print(
            f"baseline append    {sample.height:,} trades in {base_append_s:.1f} s = "
            f"{sample.height / base_append_s / 1e6:.2f} M trades/s; "
            f"{base_size / sample.height:.1f} bytes/trade after compaction"
        )
        bq: dict[str, float] = {}
        for name, lo in windows.items():
            hours = (end - lo) / HOUR_MS
            if hours <= BASE_HOURS:
                s, out = med(lambda lo=lo: base.trades(lo, end), runs=3)
                assert out.equals(df.filter(ms >= lo)), name
                bq[name] = s
                tag = "measured"
            elif name in q:
                s1, _ = med(lambda: base.trades(end - BASE_HOURS * HOUR_MS, end), runs=1)
                bq[name] = s1 / sample.height * q[name][1]
                tag = f"extrapolated from {BASE_HOURS} h per trade"
            else:
                continue
            print(f"baseline {name:>6}    {fmt_ms(bq[name])}  ({tag})")
        base.db.close()

        print("\n| figure | this store | baseline (1 key/trade) | ratio | target |")
        print("|---|---|---|---|---|")
        for name, target in (("1 h", "≤ 20 ms"), ("24 h", "≤ 100 ms, ≥ 10×"), ("168 h", "≤ 1 s")):
            if name in q and name in bq:
                print(
                    f"| {name} window → Polars (warm) | {q[name][0] * 1e3:.1f} ms | "
                    f"{bq[name] * 1e3:.0f} ms | {bq[name] / q[name][0]:.0f}× | {target} |"
                )
        print(
            f"| bytes/trade after compaction | {size / total:.2f} | "
            f"{base_size / sample.height:.1f} | {base_size / sample.height / (size / total):.1f}×"
            f" | ≤ 12 |"
        )
        print(
            f"| bulk append | {bulk.height / bulk_s / 1e6:.2f} M/s | "
            f"{sample.height / base_append_s / 1e6:.2f} M/s | "
            f"{(bulk.height / bulk_s) / (sample.height / base_append_s):.0f}× | ≥ 1 M/s |"
        )
        print(
            f"| 1,000-trade batch append, back to back | median {np.median(b_arr) * 1e3:.2f} ms,"
            f" p99 {np.percentile(b_arr, 99) * 1e3:.2f} ms | | | ≤ 2 ms |"
        )
        print(
            f"| 1,000-trade batch append, alone | median {np.median(i_arr) * 1e3:.2f} ms, "
            f"p99 {np.percentile(i_arr, 99) * 1e3:.2f} ms | | | ≤ 2 ms |"
        )
        print(
            f"| live ~24-trade 1-s append | median {np.median(lat_a) * 1e3:.2f} ms, "
            f"p99 {np.percentile(lat_a, 99) * 1e3:.2f} ms | | | |"
        )
        print(
            f"| `holes()`, a week ({df.height / 1e6:.1f} M trades, {holes.height} holes), "
            f"writer / reader | {s_h * 1e3:.2f} / {s_hr * 1e3:.2f} ms | | | ≤ 20 ms |"
        )
        print(f"load average while measuring: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        results["ok"] = "1"
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
