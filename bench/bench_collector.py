"""Collector benchmarks: sustained ingest at full speed, and the cost of a realistic feed.

Run: ``.venv/bin/python bench/bench_collector.py [--quick]`` (or ``make bench``).

The simulator runs in a child process (its own interpreter and core), the collector in this
one, so the figures are the collector's own. Three parts:

1. **Parsing baseline** — ``json.loads`` alone vs :func:`tradelab.binance.protocol.parse_frame`
   and the collector's fast path :func:`~tradelab.binance.protocol.match_trade` over the same
   frames, and :func:`~tradelab.binance.protocol.match_trade_bytes` over their bytes.
2. **Sustained ingest** — the simulator at full speed (``speed=0``: as fast as the client reads,
   one symbol, one connection); the collector parses, tracks gaps, batches every second and
   writes to a real RocksDB store. ``--runs`` (3) collector runs, each between two runs of a
   bare ``websockets`` client that only receives frames from the same simulator (``await
   ws.recv()`` in a loop), and compared with their mean; each reports its rate and its CPU
   per frame, the collector also zero loss (stored ids == published ids
   from its first to its last, each once); then the medians, and one run under cProfile (where
   the time goes, plus the wall time of the store writes in the worker thread).
3. **Realistic load** — 50 trades/s for each of two symbols for ``--seconds`` (default 70):
   CPU of this process over the window (all threads) as % of one core, and resident memory
   added by the collector (RSS after vs. before ``Collector.start``; modules imported before).
4. **Flood** — the simulator publishes ``--flood-rate`` trades/s (default 132,000, paced: it
   does not wait for the client, like the exchange) for ``--flood-seconds`` (default 20):
   the rate the collector sustains, how late it is when the flood ends and how long it takes
   to catch up (through REST for what the server dropped), the peak RSS growth, and loss
   (stored == published once settled).

Every part prints the machine's load average (``os.getloadavg()``) beside its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gzip
import json
import multiprocessing as mp
import os
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import websockets

from tradelab.binance.protocol import match_trade, match_trade_bytes, parse_frame
from tradelab.collector.collector import Collector
from tradelab.recordings import shared_data_dir
from tradelab.store.tradestore import TradeStore


def _sim_child(conn, kwargs) -> None:  # runs in the child process
    from tradelab.simulator import Simulator

    sim = Simulator(**kwargs).run_in_thread()
    conn.send((sim.ws_url, sim.rest_url))
    while True:
        msg = conn.recv()
        if msg == "ranges":
            conn.send({s: list(sim.published_ranges(s).ranges) for s in sim.symbols})
        elif msg == "stats":
            conn.send(sim.stats())
        elif msg == "stop":
            sim.stop_thread()
            conn.send("stopped")
            return


class SimProcess:
    def __init__(self, **kwargs) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_sim_child, args=(child, kwargs), daemon=True)
        self.proc.start()
        self.ws_url, self.rest_url = self.conn.recv()

    def ranges(self) -> dict[str, list[tuple[int, int]]]:
        self.conn.send("ranges")
        return self.conn.recv()

    def stats(self) -> dict:
        self.conn.send("stats")
        return self.conn.recv()

    def stop(self) -> None:
        self.conn.send("stop")
        self.conn.recv()
        self.proc.join(10)


def load() -> str:
    """The machine's load average (1, 5, 15 min) and core count, for beside a figure."""
    one, five, fifteen = os.getloadavg()
    return f"load avg {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} cores"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --- 1. parsing ------------------------------------------------------------------------------


def bench_parse() -> None:
    frames: list[str] = []
    base = shared_data_dir()
    if base is not None:
        with gzip.open(base / "spot_btcusdt_20240808-09.aggTrade.tsv.gz", "rt") as fh:
            frames = [line.split("\t", 1)[1].rstrip("\n") for line in fh]
    if not frames:
        frames = [
            json.dumps(
                {
                    "stream": "btcusdt@aggTrade",
                    "data": {
                        "e": "aggTrade",
                        "E": 1723161255343 + i,
                        "s": "BTCUSDT",
                        "a": 3105630001 + i,
                        "p": "61837.63000000",
                        "q": "0.02000000",
                        "f": 3735683259 + i,
                        "l": 3735683259 + i,
                        "T": 1723161255342 + i,
                        "m": True,
                        "M": True,
                    },
                }
            )
            for i in range(10_000)
        ]
    reps = max(1, 200_000 // len(frames))
    loads = json.loads
    t0 = time.perf_counter()
    for _ in range(reps):
        for f in frames:
            loads(f)
    t_json = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(reps):
        for f in frames:
            parse_frame(f)
    t_parse = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(reps):
        for f in frames:
            match_trade(f)
    t_fast = time.perf_counter() - t0
    encoded = [f.encode() for f in frames]
    t0 = time.perf_counter()
    for _ in range(reps):
        for b in encoded:
            match_trade_bytes(b)
    t_bytes = time.perf_counter() - t0
    n = reps * len(frames)
    print(
        f"[parse] {n:,} frames: json.loads {n / t_json:,.0f}/s ({1e6 * t_json / n:.2f} µs), "
        f"parse_frame {n / t_parse:,.0f}/s ({1e6 * t_parse / n:.2f} µs), match_trade (the "
        f"collector's fast path: values, no dict) {n / t_fast:,.0f}/s "
        f"({1e6 * t_fast / n:.2f} µs), match_trade_bytes (the same over the undecoded frame, as "
        f"the reader takes it) {n / t_bytes:,.0f}/s ({1e6 * t_bytes / n:.2f} µs); "
        f"match_trade/json.loads = {t_fast / t_json:.2f}x; {load()}"
    )


# --- 2. sustained ingest ---------------------------------------------------------------------


async def bare_receive(url: str, seconds: float) -> tuple[float, float]:
    """Baseline: frames/s a bare websockets client receives (no parsing, no storage), and the
    CPU it spends per frame (µs, this process)."""
    n = 0
    async with websockets.connect(
        url, compression=None, max_queue=1024, ping_interval=None, max_size=2**20
    ) as ws:
        await ws.recv()
        t0, c0 = time.perf_counter(), cpu_s()
        end = t0 + seconds
        while time.perf_counter() < end:
            await ws.recv()
            n += 1
        wall, cpu = time.perf_counter() - t0, cpu_s() - c0
        return n / wall, 1e6 * cpu / max(n, 1)


class TimedStore(TradeStore):
    """A real store that adds up the wall time its appends take (worker thread)."""

    write_s = 0.0
    writes = 0

    def append(self, symbol, trades, **kw):  # type: ignore[override]
        t0 = time.perf_counter()
        try:
            return super().append(symbol, trades, **kw)
        finally:
            self.write_s += time.perf_counter() - t0
            self.writes += 1


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


async def ingest_runs(sim: SimProcess, seconds: float, tmp: Path, runs: int) -> None:
    """``runs`` collector runs interleaved with bare ``websockets`` runs on the same simulator
    (bare, collector, bare, collector, ..., bare): each collector run is compared with the
    mean of the bare runs just before and just after it, so a load that changes during the
    pair (other processes on this shared machine) weighs on both sides; each figure with the
    load beside it, then the medians."""
    url = sim.ws_url + "/stream?streams=btcusdt@aggTrade"
    rows = []
    bare = [await bare_receive(url, min(seconds, 5.0))]
    for i in range(runs):
        rate, cpu_per, stored_ok = await ingest(sim, seconds, tmp / f"ingest-{i}", profile=False)
        bare.append(await bare_receive(url, min(seconds, 5.0)))
        (before, before_cpu), (after, after_cpu) = bare[-2], bare[-1]
        base, base_cpu = (before + after) / 2, (before_cpu + after_cpu) / 2
        rows.append((base, rate, rate / base, base_cpu / cpu_per))
        print(
            f"[ingest] run {i + 1}/{runs}: bare websockets {before:,.0f} / {after:,.0f} "
            f"frames/s before / after ({before_cpu:.2f} / {after_cpu:.2f} µs CPU/frame); "
            f"collector {rate:,.0f} trades/s sustained ({cpu_per:.2f} µs CPU/trade), "
            f"{stored_ok}; ratio {rate / base:.2f} (CPU per frame bare/collector "
            f"{base_cpu / cpu_per:.2f}); {load()}"
        )
    print(
        f"[ingest] medians of {runs}: bare {_median([r[0] for r in rows]):,.0f} frames/s, "
        f"collector {_median([r[1] for r in rows]):,.0f} trades/s; ratio "
        f"{_median([r[2] for r in rows]):.2f} (goal >= 0.6); CPU-per-frame ratio "
        f"{_median([r[3] for r in rows]):.2f}; {load()}"
    )


async def ingest(
    sim: SimProcess, seconds: float, path: Path, *, profile: bool
) -> tuple[float, float, str]:
    """The collector at full speed for ``seconds`` after a 1 s warm-up: trades/s received
    over the window, CPU µs per trade (this process, all threads: parse, batches, store),
    and the exactness check of what it stored (every id from its first to its last, once)."""
    store = TimedStore(path)
    c = Collector(
        ["BTCUSDT"],
        store=store,
        ws_url=sim.ws_url,
        rest_url=sim.rest_url,
        retention_interval=None,
        log_interval=3600,
    )
    write_s = [0.0]
    inner = c.writer.write_batches

    def timed_write(batches, *lost):  # the whole worker-thread side: frames + appends
        t0 = time.perf_counter()
        try:
            return inner(batches, *lost)
        finally:
            write_s[0] += time.perf_counter() - t0

    c.writer.write_batches = timed_write  # type: ignore[method-assign]
    prof = cProfile.Profile()
    await c.start()
    await asyncio.sleep(1.0)
    tracker = c._trackers["BTCUSDT"]
    high0, t0, cpu0 = tracker.high or 0, time.perf_counter(), cpu_s()
    if profile:
        prof.enable()
    await asyncio.sleep(seconds)
    prof.disable()
    received = (tracker.high or 0) - high0
    wall, cpu = time.perf_counter() - t0, cpu_s() - cpu0
    await c.stop()
    st = c.status()["symbols"]["BTCUSDT"]
    ids = store.trades("BTCUSDT", 0, 2**42)["agg_id"]
    ranges = sim.ranges()["BTCUSDT"]
    published = {a for lo, hi in ranges for a in range(lo, hi + 1)}
    first, last = ids[0], ids[-1]
    expected = {a for a in published if first <= a <= last}
    loss = len(expected - set(ids.to_list()))
    dup = len(ids) - ids.n_unique()
    rate = received / wall
    verdict = f"{len(ids):,} stored, lost {loss}, duplicates {dup}, gaps {st['gaps_detected']}"
    n = len(ids)
    if profile:
        label = "collector under cProfile"
        print(
            f"[ingest] {label}: {rate:,.0f} trades/s; {verdict}; process CPU "
            f"{100 * cpu / wall:.0f}% of one core"
        )
        print(
            f"[ingest] worker thread: {store.writes} batches, {write_s[0]:.2f} s in all "
            f"({1e6 * write_s[0] / max(n, 1):.2f} µs/trade), of which store.append "
            f"{store.write_s:.2f} s ({1e6 * store.write_s / max(n, 1):.2f} µs/trade) and "
            f"building the frame from the packed columns {write_s[0] - store.write_s:.2f} s"
        )
        _print_profile(prof)
    store.close()
    return rate, 1e6 * cpu / max(received, 1), verdict


def _print_profile(prof: cProfile.Profile) -> None:
    stats = pstats.Stats(prof)
    groups = {
        "websockets (frames, asyncio transport)": 0.0,
        "frame parsing (match_trade / parse_frame)": 0.0,
        "gap tracker": 0.0,
        "collector hot path (read loop, gate)": 0.0,
        "batch build (packed columns -> frame)": 0.0,
        "asyncio loop + other": 0.0,
    }
    total = 0.0
    for (file, _line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        total += tt
        if "websockets" in file:
            groups["websockets (frames, asyncio transport)"] += tt
        elif (
            ("protocol.py" in file and "tradelab" in file)
            or "json" in file
            or func in ("loads", "<method 'decode' of 'str' objects>")
            or "re.Pattern" in func
            or func.startswith("<method 'groups'")
        ):
            groups["frame parsing (match_trade / parse_frame)"] += tt
        elif "gaps.py" in file:
            groups["gap tracker"] += tt
        elif file.endswith(("collector/reader.py", "collector/gate.py")) or (
            file.endswith("collector/columns.py") and func == "append"
        ):
            groups["collector hot path (read loop, gate)"] += tt
        elif "polars" in file or file.endswith("collector/columns.py"):
            groups["batch build (packed columns -> frame)"] += tt
        else:
            groups["asyncio loop + other"] += tt
    print("[ingest] event-loop thread time by part (cProfile tottime, profiler overhead included):")
    for k, v in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"           {k:<44} {v:6.2f} s  {100 * v / max(total, 1e-9):5.1f}%")
    print("[ingest] top functions by own time:")
    stats.sort_stats("tottime").print_stats(12)


# --- 3. realistic load -----------------------------------------------------------------------


async def realistic(sim: SimProcess, seconds: float, tmp: Path) -> None:
    rss_before_store = rss_mb()
    store = TradeStore(tmp / "realistic")
    rss0 = rss_mb()
    c = Collector(["BTCUSDT", "ETHUSDT"], store=store, ws_url=sim.ws_url, rest_url=sim.rest_url)
    await c.start()
    await asyncio.sleep(5.0)  # warm-up: connection, first batches
    stored0 = sum(v["trades_stored"] for v in c.status()["symbols"].values())
    cpu0, t0 = cpu_s(), time.perf_counter()
    peak = rss_mb()
    end = t0 + seconds
    while time.perf_counter() < end:
        await asyncio.sleep(1.0)
        peak = max(peak, rss_mb())
    cpu, wall = cpu_s() - cpu0, time.perf_counter() - t0
    doc = c.status()["symbols"]
    await c.stop()
    n = sum(v["trades_stored"] for v in doc.values()) - stored0
    print(
        f"[realistic] 2 symbols at ~50 trades/s each: {n:,} trades stored in {wall:.0f} s "
        f"({n / wall:.0f}/s); CPU {100 * cpu / wall:.2f}% of one core (target < 1%); "
        f"RSS {rss0:.0f} MB before Collector.start (store open; {rss_before_store:.0f} MB "
        f"before the store), peak {peak:.0f} MB: added by the collector "
        f"{peak - rss0:.1f} MB, with the store {peak - rss_before_store:.1f} MB "
        f"(target < 50 MB)"
    )
    store.close()


# --- 4. flood ---------------------------------------------------------------------------------


async def flood(sim: SimProcess, trades: int, seconds: float, tmp: Path) -> None:
    """The simulator publishes ``trades`` in about ``seconds`` without waiting for us."""
    store = TradeStore(tmp / "flood")
    c = Collector(["BTCUSDT"], store=store, ws_url=sim.ws_url, rest_url=sim.rest_url)
    rss0 = rss_mb()
    await c.start()
    t0 = time.perf_counter()
    peak, late_at_end, caught_up, flood_end = rss0, None, None, None
    last_published = None
    stored_at_end = peak_buffered = 0
    while time.perf_counter() - t0 < seconds + 120:
        await asyncio.sleep(0.1)
        peak = max(peak, rss_mb())
        st = c.status()["symbols"]["BTCUSDT"]
        peak_buffered = max(peak_buffered, st["buffered"])
        published = sim.stats().get("published", {}).get("BTCUSDT", 0)
        if flood_end is None and published >= trades:
            flood_end = time.perf_counter()
            stored_at_end = st["trades_stored"]
            late_at_end = published - st["trades_stored"]
            last_published = sim.ranges()["BTCUSDT"][-1][1]  # the flood is over: final
        # caught up: the last published id is stored and nothing waits (not "stored >=
        # published": what was published before the collector's first trade is not its own)
        if flood_end is not None and st["last_agg_id"] == last_published and not st["buffered"]:
            caught_up = time.perf_counter()
            break
    await c.stop()
    end = caught_up or time.perf_counter()
    ids = store.trades("BTCUSDT", 0, 2**42)["agg_id"].to_list()
    published_ids = {a for lo, hi in sim.ranges()["BTCUSDT"] for a in range(lo, hi + 1)}
    # The flood starts before the collector connects: what was published before its first
    # trade is not its to collect (it starts "from now"), so it is not counted as lost.
    first = ids[0] if ids else None
    expected = {a for a in published_ids if first is not None and a >= first}
    before = len(published_ids) - len(expected)
    print(f"[flood] published before the collector's first trade: {before} (not counted)")
    lost, dup = len(expected - set(ids)), len(ids) - len(set(ids))
    if lost:
        from tradelab.collector.repair import id_ranges

        runs = id_ranges(expected - set(ids))
        print(f"[flood] NOT STORED: {lost} ids in {len(runs)} runs, first {runs[:5]}")
    stats = sim.stats()
    flood_s = (flood_end or end) - t0
    print(
        f"[flood] {trades:,} trades published in {flood_s:.1f} s ({trades / flood_s:,.0f}/s "
        f"offered; {load()}); stored by the end of the flood {stored_at_end:,} "
        f"({stored_at_end / flood_s:,.0f}/s sustained), {late_at_end or 0:,} behind; caught "
        f"up {end - (flood_end or end):.1f} s later ({len(ids) / (end - t0):,.0f}/s overall); "
        f"server dropped us {stats.get('closed_slow_consumer', 0)}x as too slow; lost {lost}, "
        f"duplicates {dup}; RSS {rss0:.0f} MB before start, peak {peak:.0f} MB: "
        f"+{peak - rss0:.0f} MB; at most {peak_buffered:,} trades buffered (max_buffered "
        f"{c.settings.max_buffered:,})"
    )
    store.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    ap.add_argument("--seconds", type=float, default=None, help="realistic-load duration")
    ap.add_argument("--ingest-seconds", type=float, default=None)
    ap.add_argument("--runs", type=int, default=3, help="ingest: interleaved runs (medians)")
    ap.add_argument("--flood-rate", type=float, default=132_000.0, help="trades/s offered")
    ap.add_argument("--flood-seconds", type=float, default=None)
    ap.add_argument("--only", choices=("realistic", "parse", "ingest", "flood"), default=None)
    args = ap.parse_args()
    flood_s = args.flood_seconds or (5.0 if args.quick else 20.0)
    ingest_s = args.ingest_seconds or (5.0 if args.quick else 10.0)
    real_s = args.seconds or (10.0 if args.quick else 70.0)
    print(f"Note: 2-core machine shared with other engineers; figures are noisy ({load()}).")
    run = lambda part: args.only in (None, part)  # noqa: E731
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        # the flood and the realistic part first, so their memory baselines are not
        # inflated by the others
        if run("flood"):
            trades = int(args.flood_rate * flood_s)
            sim = SimProcess(
                symbols=("BTCUSDT",),
                source="synthetic",
                speed=args.flood_rate / 50.0,
                rate_per_s=50.0,
                max_trades=trades,
                history_limit=trades + 1000,
                seed=4,
            )
            try:
                asyncio.run(flood(sim, trades, flood_s, tmp))
            finally:
                sim.stop()
        if run("realistic"):
            sim = SimProcess(
                symbols=("BTCUSDT", "ETHUSDT"),
                source="synthetic",
                speed=1,
                rate_per_s=50.0,
                seed=2,
            )
            try:
                asyncio.run(realistic(sim, real_s, tmp))
            finally:
                sim.stop()
            print(f"[realistic] {load()}")
        if run("parse"):
            bench_parse()
        if run("ingest"):
            sim = SimProcess(symbols=("BTCUSDT",), source="synthetic", speed=0, seed=1)
            try:
                asyncio.run(ingest_runs(sim, ingest_s, tmp, args.runs))
                asyncio.run(ingest(sim, min(ingest_s, 8.0), tmp / "ingest-prof", profile=True))
            finally:
                sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
