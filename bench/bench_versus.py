"""Side by side (issue 14): tradelab's store against what an analyst would pick instead.

Run: ``python bench/bench_versus.py`` (or ``python -m bench versus``; needs the ``bench`` extra,
``make bench`` installs it). ``BENCH_VERSUS_DAYS`` (default 7: ~14.7 M trades at ~24.3
trades/s) scales the data, ``BENCH_VERSUS_RUNS`` (default 5) the repetitions behind each median;
``BENCH_VERSUS_DAYS=1 BENCH_VERSUS_RUNS=3`` is a quick run.

The SAME synthetic BTCUSDT trades go into three contenders, measured in the same process:

- **tradelab**: a :class:`~tradelab.store.TradeStore`, laid out as a running collector leaves
  it — closed hours appended in hourly chunks and rolled up to one block each, the last hour
  appended in 1-second batches with the background roll-ups running (closed minutes one block,
  the open minute's 1-second blocks), then compacted.
- **DuckDB**: one table in a file database, in time order (bulk insert, then the same last hour
  inserted second by second), read with ``.pl()``. ``time`` is stored as BIGINT epoch ms and
  cast to ``Datetime("ms", "UTC")`` in Polars (metadata only): the fastest of the layouts tried
  (TIMESTAMPTZ costs ~1.8× on a 24 h read, TIMESTAMP_MS ~1.2×), so DuckDB is at its best.
- **Parquet**: one zstd file per UTC day, read with ``pl.scan_parquet(files).filter(window)
  .collect()`` (row-group statistics skip what is outside the window).

Every contender returns the full 7-column frame in the trade schema; row counts are checked on
every run and whole frames once per window. Repetitions are interleaved (each repetition runs
every contender once, the starting contender rotating), each figure is a median, and the
1-minute load average is recorded after every run and printed beside the figure. Ratios are
tradelab / contender: below 1.0 tradelab is faster. "Cold" is measured only where dropping the
page cache works (root: ``sync; echo 3 > /proc/sys/vm/drop_caches``); otherwise the reopened
figures say "page cache warm". The exit status is 0 whoever wins, 1 if any equality check fails,
2 for a bad setting.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tradelab import get_volume_profile
from tradelab.recordings import synthetic_trades
from tradelab.schema import TRADE_SCHEMA
from tradelab.store import TradeStore

RATE = 24.3  # trades/s: ~2.1 M a day, BTCUSDT-like
START = 1_767_225_600_000  # 2026-01-01 00:00 UTC
SYM = "BTCUSDT"
HOUR = 3_600_000
DAY = 86_400_000
TIME = pl.Datetime("ms", "UTC")
WINDOWS = (1, 24, 168)
PROFILE_WINDOWS = (24, 168)
PROFILE_COLUMNS = ["price", "qty", "buyer_is_maker"]
DUCK_SCHEMA = (
    "agg_id BIGINT, price DOUBLE, qty DOUBLE, first_id BIGINT, last_id BIGINT, time BIGINT, "
    "buyer_is_maker BOOLEAN"
)


def bad_setting(message: str) -> NoReturn:
    print(message, file=sys.stderr)
    sys.exit(2)


def settings() -> tuple[float, int]:
    """``(days, runs)`` from the environment; a bad value exits 2 with one line."""
    raw_days = os.environ.get("BENCH_VERSUS_DAYS", "7")
    raw_runs = os.environ.get("BENCH_VERSUS_RUNS", "5")
    try:
        days = float(raw_days)
        if not 0.1 <= days <= 31:
            raise ValueError
    except ValueError:
        bad_setting(f"BENCH_VERSUS_DAYS={raw_days!r} is not allowed: a number of days, 0.1 to 31")
    try:
        runs = int(raw_runs)
        if not 1 <= runs <= 100:
            raise ValueError
    except ValueError:
        bad_setting(f"BENCH_VERSUS_RUNS={raw_runs!r} is not allowed: a whole number, 1 to 100")
    return days, runs


def load1() -> float:
    return os.getloadavg()[0]


def du(path: Path) -> int:
    """Bytes of the files under ``path`` (or of the file ``path``)."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def drop_page_cache() -> bool:
    """Drop the kernel's page cache (clean pages); False where that is not allowed."""
    try:
        subprocess.run(["sync"], check=True, timeout=60)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except (OSError, subprocess.SubprocessError):
        return False


def cached_mb() -> float | None:
    """The kernel's page cache in MB (``Cached`` in /proc/meminfo), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("Cached:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@dataclass
class Figure:
    """Times (s) and the 1-minute load average after each run."""

    times: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.times.append(seconds)
        self.loads.append(load1())

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def p99(self) -> float:
        return float(np.percentile(np.array(self.times), 99))


def ms_text(s: float) -> str:
    v = s * 1e3
    return f"{v:,.0f} ms" if v >= 100 else f"{v:.1f} ms" if v >= 10 else f"{v:.2f} ms"


def load_text(figs: Sequence[Figure]) -> str:
    loads = [x for f in figs for x in f.loads]
    return f"{min(loads):.1f}–{max(loads):.1f}" if loads else "–"


# --- the contenders --------------------------------------------------------------------------


class Tradelab:
    name = "tradelab"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = TradeStore(path, retention_days=3650)
        self.columns = "columns" in inspect.signature(TradeStore.trades).parameters

    def close(self) -> None:
        self.store.close()

    def open(self) -> None:
        self.store = TradeStore(self.path, retention_days=3650)

    def window(self, lo: int, hi: int) -> pl.DataFrame:
        return self.store.trades(SYM, lo, hi)

    def projected(self, lo: int, hi: int) -> pl.DataFrame:
        trades: Any = self.store.trades
        return trades(SYM, lo, hi, columns=PROFILE_COLUMNS)

    def profile(self, lo: int, hi: int, row: float) -> tuple[float, float]:
        vp = get_volume_profile(SYM, start=lo, end=hi, store=self.store)
        return vp.poc, float(vp.rows["volume"].sum())

    def append(self, batch: pl.DataFrame) -> None:
        self.store.append(SYM, batch)

    def size(self) -> int:
        return du(self.path)


class DuckDB:
    name = "DuckDB"

    def __init__(self, path: Path) -> None:
        import duckdb

        self.duckdb = duckdb
        self.path = path
        self.con = duckdb.connect(str(path))
        self.con.execute(f"CREATE TABLE IF NOT EXISTS trades ({DUCK_SCHEMA})")

    def close(self) -> None:
        self.con.close()

    def open(self) -> None:
        self.con = self.duckdb.connect(str(self.path))

    def append(self, batch: pl.DataFrame) -> None:
        rows = batch.with_columns(pl.col("time").dt.epoch("ms"))  # noqa: F841 (scanned by name)
        self.con.execute("INSERT INTO trades SELECT * FROM rows")

    def window(self, lo: int, hi: int) -> pl.DataFrame:
        rel = self.con.sql("SELECT * FROM trades WHERE time >= $1 AND time < $2", params=[lo, hi])
        return rel.pl().with_columns(pl.col("time").cast(TIME))

    def projected(self, lo: int, hi: int) -> pl.DataFrame:
        cols = ", ".join(PROFILE_COLUMNS)
        q = f"SELECT {cols} FROM trades WHERE time >= $1 AND time < $2"
        return self.con.sql(q, params=[lo, hi]).pl()

    def profile(self, lo: int, hi: int, row: float) -> tuple[float, float]:
        q = (
            "SELECT floor(price / $3 + 1e-9) AS r, sum(qty) AS volume, "
            "sum(qty) FILTER (WHERE NOT buyer_is_maker) AS buy, "
            "sum(qty) FILTER (WHERE buyer_is_maker) AS sell, count(*) AS trades "
            "FROM trades WHERE time >= $1 AND time < $2 GROUP BY 1"
        )
        return poc_of(self.con.sql(q, params=[lo, hi, row]).pl(), row)

    def size(self) -> int:
        self.con.execute("CHECKPOINT")
        wal = self.path.with_name(self.path.name + ".wal")
        return du(self.path) + (du(wal) if wal.exists() else 0)


class Parquet:
    name = "Parquet"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: list[str] = []
        self.appended = 0

    def write_days(self, df: pl.DataFrame, ms: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        first = int(ms[0]) // DAY * DAY
        for day in range(first, int(ms[-1]) + 1, DAY):
            a, b = np.searchsorted(ms, [day, day + DAY])
            if b > a:
                out = self.folder / f"{utc(day):%Y-%m-%d}.parquet"
                df.slice(int(a), int(b - a)).write_parquet(out, compression="zstd")
                self.files.append(str(out))

    def close(self) -> None:
        pass

    def open(self) -> None:
        pass

    def _scan(self, lo: int, hi: int) -> pl.LazyFrame:
        t = pl.col("time")
        return pl.scan_parquet(self.files).filter((t >= utc(lo)) & (t < utc(hi)))

    def window(self, lo: int, hi: int) -> pl.DataFrame:
        return self._scan(lo, hi).collect()

    def projected(self, lo: int, hi: int) -> pl.DataFrame:
        return self._scan(lo, hi).select(PROFILE_COLUMNS).collect()

    def profile(self, lo: int, hi: int, row: float) -> tuple[float, float]:
        maker = pl.col("buyer_is_maker")
        hist = (
            self._scan(lo, hi)
            .group_by(r=(pl.col("price") / row + 1e-9).floor())
            .agg(
                volume=pl.col("qty").sum(),
                buy=pl.col("qty").filter(~maker).sum(),
                sell=pl.col("qty").filter(maker).sum(),
                trades=pl.len(),
            )
            .collect()
        )
        return poc_of(hist, row)

    def append(self, batch: pl.DataFrame) -> None:
        self.appended += 1
        out = self.folder / "appends" / f"{self.appended:06d}.parquet"
        batch.write_parquet(out, compression="zstd")

    def size(self) -> int:
        return sum(du(Path(f)) for f in self.files)


Contender = Tradelab | DuckDB | Parquet


def poc_of(hist: pl.DataFrame, row: float) -> tuple[float, float]:
    """The POC (middle price of the row with the largest volume) and the total volume."""
    top = hist.sort("volume", descending=True).row(0, named=True)
    return round((top["r"] + 0.5) * row, 8), float(hist["volume"].sum())


# --- measuring -------------------------------------------------------------------------------


def interleaved(
    contenders: Sequence[Contender],
    runs: int,
    fn: Callable[[Contender], Any],
    check: Callable[[str, Any], None],
    before: Callable[[Contender], None] | None = None,
) -> dict[str, Figure]:
    """``runs`` repetitions, each running every contender once (the first one rotating);
    ``before`` is untimed; each result is checked, then freed before the next run."""
    figs = {c.name: Figure() for c in contenders}
    for r in range(runs):
        for i in range(len(contenders)):
            c = contenders[(r + i) % len(contenders)]
            if before is not None:
                before(c)
            out = None
            t = time.perf_counter()
            out = fn(c)
            figs[c.name].add(time.perf_counter() - t)
            check(c.name, out)
            out = None
    return figs


class Checks:
    """Equality checks: each failure is printed and counted (the exit status)."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def expect(self, ok: bool, what: str) -> None:
        if not ok:
            self.failed.append(what)
            print(f"EQUALITY CHECK FAILED: {what}", flush=True)


def main() -> int:
    days, runs = settings()
    cmd = f"BENCH_VERSUS_DAYS={days:g} BENCH_VERSUS_RUNS={runs} python -m bench versus"
    root = Path(tempfile.mkdtemp(prefix="bench-versus-"))
    checks = Checks()
    contenders: list[Contender] = []
    t_all = time.perf_counter()
    try:
        t = time.perf_counter()
        n = int(days * 86_400 * RATE)
        df = synthetic_trades(SYM, START, n, rate_per_s=RATE)
        ms = df["time"].dt.epoch("ms").to_numpy()
        end = int(ms[-1]) + 1
        print(
            f"generated {n:,} trades over {days:g} days in {time.perf_counter() - t:.1f} s "
            f"({n / (end - START) * 1000:.1f} trades/s); {runs} runs per figure; "
            f"{os.cpu_count()} cores; load {load1():.2f}",
            flush=True,
        )
        live_from = int(np.searchsorted(ms, end - HOUR))

        # --- load: tradelab in hourly chunks, DuckDB in one insert, Parquet a file per day ----
        tl = Tradelab(root / "tradelab")
        duck = DuckDB(root / "trades.duckdb")
        pq = Parquet(root / "parquet")
        contenders += [tl, duck, pq]
        t = time.perf_counter()
        for h in range(START, end - HOUR, HOUR):
            a, b = np.searchsorted(ms[:live_from], [h, h + HOUR])
            if b > a:
                tl.append(df.slice(int(a), int(b - a)))
        tl.store.roll_up()
        tl.store.wait_idle()
        print(f"tradelab bulk load + roll-up {time.perf_counter() - t:6.1f} s", flush=True)
        t = time.perf_counter()
        duck.append(df.slice(0, live_from))
        print(f"DuckDB bulk insert           {time.perf_counter() - t:6.1f} s", flush=True)
        t = time.perf_counter()
        pq.write_days(df, ms)
        (pq.folder / "appends").mkdir()
        print(f"Parquet day files            {time.perf_counter() - t:6.1f} s", flush=True)

        # --- 5. the last hour, second by second: every contender appends each batch -------------
        live_ms = ms[live_from:]
        _, starts = np.unique(live_ms // 1000, return_index=True)
        bounds = [*(int(s) + live_from for s in starts), len(ms)]
        app = {c.name: Figure() for c in (tl, duck, pq)}
        order: list[Contender] = [tl, duck, pq]
        for i in range(len(bounds) - 1):
            batch = df.slice(bounds[i], bounds[i + 1] - bounds[i])
            for k in range(3):
                c = order[(i + k) % 3]
                t = time.perf_counter()
                c.append(batch)
                app[c.name].times.append(time.perf_counter() - t)
            if i % 200 == 0:
                for f in app.values():
                    f.loads.append(load1())
        tl.store.wait_idle()
        per_batch = (len(ms) - live_from) / (len(bounds) - 1)
        shutil.rmtree(pq.folder / "appends")
        print(
            f"live hour: {len(bounds) - 1:,} 1-second batches of ~{per_batch:.1f} trades, "
            "each appended by every contender in turn",
            flush=True,
        )
        t = time.perf_counter()
        tl.store.compact()
        sizes = {c.name: c.size() for c in (tl, duck, pq)}
        print(f"compaction / checkpoint      {time.perf_counter() - t:6.1f} s", flush=True)
        names = [c.name for c in contenders]

        def expected(lo: int) -> pl.DataFrame:
            a = int(np.searchsorted(ms, lo))
            return df.slice(a, len(ms) - a)

        def rows_check(lo: int, what: str) -> Callable[[str, Any], None]:
            want = len(ms) - int(np.searchsorted(ms, lo))

            def check(name: str, out: Any) -> None:
                checks.expect(out.height == want, f"{what}: {name} {out.height:,} rows != {want:,}")

            return check

        # --- 1. windows, warm: whole frames compared once (also the warm-up), then timed --------
        warm: dict[int, dict[str, Figure]] = {}
        for hours in WINDOWS:
            lo = end - hours * HOUR
            want = expected(lo)
            for c in contenders:
                out = c.window(lo, end)
                checks.expect(
                    out.schema == pl.Schema(TRADE_SCHEMA) and out.equals(want),
                    f"{hours} h window: {c.name}'s frame differs from the trades written",
                )
                out = None
            want = None
            warm[hours] = interleaved(
                contenders,
                runs,
                lambda c, lo=lo: c.window(lo, end),
                rows_check(lo, f"{hours} h warm"),
            )
            blocks = tl.store.block_count(SYM, lo, end)
            line = row_line(f"{hours} h window, warm", warm[hours], names)
            print(f"{line} [tradelab: {blocks} blocks]", flush=True)

        # --- 6. the machine's floor for the 168 h frame ------------------------------------------
        nbytes = expected(end - 168 * HOUR).estimated_size()
        src = np.ones(nbytes, dtype=np.uint8)
        dst = np.ones(nbytes, dtype=np.uint8)
        floor_existing, floor_fresh = Figure(), Figure()
        for _ in range(runs):
            t = time.perf_counter()
            np.copyto(dst, src)
            floor_existing.add(time.perf_counter() - t)
            t = time.perf_counter()
            fresh = np.empty(nbytes, dtype=np.uint8)
            np.copyto(fresh, src)
            floor_fresh.add(time.perf_counter() - t)
            fresh = None
        src = dst = None
        print(
            f"floor: {nbytes / 1e6:,.0f} MB into existing memory {ms_text(floor_existing.median)},"
            f" into fresh memory {ms_text(floor_fresh.median)} (load "
            f"{load_text([floor_existing, floor_fresh])})",
            flush=True,
        )

        # --- 2. windows after reopening (page cache warm), then cold if the cache can be dropped
        opens = {name: Figure() for name in names}

        def reopen(c: Contender, drop: bool = False) -> None:
            c.close()
            if drop:
                drop_page_cache()
            t = time.perf_counter()
            c.open()
            opens[c.name].add(time.perf_counter() - t)

        reopened: dict[int, dict[str, Figure]] = {}
        cold: dict[int, dict[str, Figure]] = {}
        before_mb = cached_mb()
        can_drop = drop_page_cache()
        if can_drop:
            print(
                f"page cache: {before_mb or 0:,.0f} MB before a drop, {cached_mb() or 0:,.0f} MB "
                "after (dropped before every cold run)",
                flush=True,
            )
        for label, into, drop in (("reopened", reopened, False), ("cold", cold, True)):
            if drop and not can_drop:
                print("cold: skipped (the page cache cannot be dropped here)", flush=True)
                continue
            for hours in WINDOWS:
                lo = end - hours * HOUR
                into[hours] = interleaved(
                    contenders,
                    runs,
                    lambda c, lo=lo: c.window(lo, end),
                    rows_check(lo, f"{hours} h {label}"),
                    before=lambda c, drop=drop: reopen(c, drop),
                )
                print(row_line(f"{hours} h window, {label}", into[hours], names), flush=True)

        # --- 3. volume profile end to end (tradelab's own function; the others a GROUP BY) -------
        prof: dict[int, dict[str, Figure]] = {}
        for hours in PROFILE_WINDOWS:
            lo = end - hours * HOUR
            vp = get_volume_profile(SYM, start=lo, end=end, store=tl.store)
            row = vp.row_size
            want_vol = float(vp.rows["volume"].sum())

            def prof_check(
                name: str, out: Any, hours: int = hours, vp: Any = vp, want_vol: float = want_vol
            ) -> None:
                poc, vol = out
                checks.expect(
                    abs(poc - vp.poc) < 1e-6 and abs(vol - want_vol) <= 1e-9 * want_vol,
                    f"{hours} h profile: {name} POC {poc} / volume {vol:.8f}, tradelab "
                    f"{vp.poc} / {want_vol:.8f}",
                )

            prof[hours] = interleaved(
                contenders, runs, lambda c, lo=lo, row=row: c.profile(lo, end, row), prof_check
            )
            print(
                row_line(
                    f"{hours} h volume profile (row {row:g}, POC {vp.poc:g})", prof[hours], names
                ),
                flush=True,
            )

        # --- projection, if the store can read only some columns -------------------------------
        proj: dict[int, dict[str, Figure]] = {}
        if tl.columns:
            for hours in PROFILE_WINDOWS:
                lo = end - hours * HOUR
                want = expected(lo).select(PROFILE_COLUMNS)
                for c in contenders:
                    out = c.projected(lo, end)
                    checks.expect(
                        out.equals(want), f"{hours} h, 3 columns: {c.name}'s frame differs"
                    )
                    out = None
                want = None
                proj[hours] = interleaved(
                    contenders,
                    runs,
                    lambda c, lo=lo: c.projected(lo, end),
                    rows_check(lo, f"{hours} h 3 columns"),
                )
                print(row_line(f"{hours} h, 3 columns", proj[hours], names), flush=True)

        # --- the table -----------------------------------------------------------------------
        total = time.perf_counter() - t_all
        print()
        print(
            "| median, same run | tradelab | DuckDB table (`.pl()`) | Parquet/day + "
            "`pl.scan_parquet` | tradelab / DuckDB | tradelab / Parquet | load (1 min) |"
        )
        print("|---|---|---|---|---|---|---|")
        for hours in WINDOWS:
            print(table_row(f"{hours} h window → Polars, warm", warm[hours]))
        for hours in WINDOWS:
            print(table_row(f"{hours} h window, reopened (page cache warm)", reopened[hours]))
        for hours in cold:
            print(table_row(f"{hours} h window, cold (page cache dropped)", cold[hours]))
        print(
            f"| open after close (store / connection) | {ms_text(opens['tradelab'].median)} | "
            f"{ms_text(opens['DuckDB'].median)} | (no state) | "
            f"{opens['tradelab'].median / opens['DuckDB'].median:.2f} | | "
            f"{load_text(list(opens.values()))} |"
        )
        for hours in PROFILE_WINDOWS:
            print(table_row(f"{hours} h volume profile, end to end", prof[hours]))
        for hours in proj:
            print(table_row(f"{hours} h, 3 columns (projection)", proj[hours]))
        h = len(ms)
        print(
            f"| bytes per trade on disk | {sizes['tradelab'] / h:.2f} | {sizes['DuckDB'] / h:.2f}"
            f" | {sizes['Parquet'] / h:.2f} | {sizes['tradelab'] / sizes['DuckDB']:.2f} | "
            f"{sizes['tradelab'] / sizes['Parquet']:.2f} | |"
        )
        print(
            "| 1-second append (~"
            f"{per_batch:.0f} trades, {len(bounds) - 1:,} appends), median / p99 | "
            + " | ".join(f"{ms_text(app[n].median)} / {ms_text(app[n].p99())}" for n in names)
            + f" | {app['tradelab'].median / app['DuckDB'].median:.2f} | "
            f"{app['tradelab'].median / app['Parquet'].median:.2f} | "
            f"{load_text(list(app.values()))} |"
        )
        t168 = warm[168]["tradelab"].median
        print(
            f"| floor: copy the 168 h frame ({nbytes / 1e6:,.0f} MB) into existing / fresh "
            f"memory | {ms_text(floor_existing.median)} / {ms_text(floor_fresh.median)} | | | "
            f"168 h warm = {t168 / floor_fresh.median:.1f}× the fresh floor | | "
            f"{load_text([floor_existing, floor_fresh])} |"
        )
        print(
            f"\n{h:,} trades; ratios are tradelab / contender (< 1.0: tradelab faster); "
            f"{runs} interleaved runs per figure; command: `{cmd}`; took {total:.0f} s"
        )
        if checks.failed:
            print(f"{len(checks.failed)} equality check(s) FAILED", flush=True)
            return 1
        print("all equality checks passed")
    finally:
        for c in contenders:
            with contextlib.suppress(Exception):
                c.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


def row_line(label: str, figs: dict[str, Figure], names: Sequence[str]) -> str:
    ref = figs["tradelab"].median
    parts = [f"{n} {ms_text(figs[n].median)}" for n in names]
    ratios = [f"{ref / figs[n].median:.2f}× {n}" for n in names if n != "tradelab"]
    return (
        f"{label:<44} "
        + ", ".join(parts)
        + f"  (ratio {', '.join(ratios)}; load "
        + (f"{load_text(list(figs.values()))})")
    )


def table_row(label: str, figs: dict[str, Figure]) -> str:
    tl = figs["tradelab"].median
    cells = [ms_text(figs[n].median) for n in ("tradelab", "DuckDB", "Parquet")]
    ratios = [f"{tl / figs[n].median:.2f}" for n in ("DuckDB", "Parquet")]
    return f"| {label} | " + " | ".join([*cells, *ratios, load_text(list(figs.values()))]) + " |"


if __name__ == "__main__":
    sys.exit(main())
