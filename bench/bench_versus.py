"""Side by side (issue 14): tradelab's store against what an analyst would pick instead.

``python -m bench versus`` (needs the ``bench`` extra: ``make bench``). ``BENCH_VERSUS_DAYS``
(default 7: ~14.7 M trades at ~24.3/s) and ``BENCH_VERSUS_RUNS`` (default 5 per median) scale it;
``BENCH_VERSUS_DAYS=1 BENCH_VERSUS_RUNS=3`` is a quick run.

The SAME synthetic BTCUSDT trades go into three contenders, measured in one process:
**tradelab**'s TradeStore laid out as a running collector leaves it (closed hours appended in
hourly chunks and rolled up to one block each; the last hour appended in 1-second batches while
the background roll-ups run; compacted); a **DuckDB** file table in time order (``time`` as
BIGINT epoch ms, cast to ``Datetime("ms", "UTC")`` in Polars: the fastest layout tried —
TIMESTAMPTZ costs ~1.8× on a 24 h read — so DuckDB is at its best), read with ``.pl()``;
**Parquet**, a zstd file per UTC day, read with ``pl.scan_parquet(files).filter(window)``.

Every contender returns the full 7-column frame in the trade schema: row counts are checked on
every run, whole frames once per window. Repetitions are interleaved (every contender once per
repetition, the first one rotating); figures are medians with the 1-minute load average after
each run beside them; ratios are tradelab / contender (below 1.0 tradelab is faster). "Cold"
only where the page cache can be dropped (root). Exit status: 0 whoever wins, 1 if an equality
check fails, 2 for a bad setting.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

try:
    import duckdb  # the bench extra (`make bench`), never a dependency of tradelab
except ImportError:
    sys.exit("bench_versus needs the bench extra (duckdb, pyarrow): run `make bench`")

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
PROFILE_WINDOWS, EDGE_PROFILE_WINDOWS = (24, 168), (36, 100)  # 36/100 h start inside a day
PROFILE_COLUMNS = ["price", "qty", "buyer_is_maker"]
DUCK_SCHEMA = (
    "agg_id BIGINT, price DOUBLE, qty DOUBLE, first_id BIGINT, last_id BIGINT, time BIGINT, "
    "buyer_is_maker BOOLEAN"
)


def setting(name: str, default: str, kind: type, lo: float, hi: float, what: str) -> Any:
    """An environment knob; a bad value exits 2 with one line saying what is allowed."""
    raw = os.environ.get(name, default)
    try:
        value = kind(raw)
        if lo <= value <= hi:
            return value
    except ValueError:
        pass
    print(f"{name}={raw!r} is not allowed: {what}, {lo:g} to {hi:g}", file=sys.stderr)
    sys.exit(2)


def timed(label: str, fn: Callable[[], Any]) -> None:
    t = time.perf_counter()
    fn()
    print(f"{label:<28} {time.perf_counter() - t:6.1f} s")


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
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def cached_mb() -> float:
    """The kernel's page cache in MB (``Cached`` in /proc/meminfo; 0 where unknown)."""
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        return next((int(x.split()[1]) / 1024 for x in f if x.startswith("Cached:")), 0.0)
    return 0.0


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

    def projected(self, lo: int, hi: int) -> pl.DataFrame:  # only called if it takes columns=
        return self.store.trades(SYM, lo, hi, columns=PROFILE_COLUMNS)  # type: ignore[call-arg]

    def profile(self, lo: int, hi: int, row: float) -> tuple[float, float]:  # row: its own
        vp = get_volume_profile(SYM, start=lo, end=hi, store=self.store)
        return vp.poc, float(vp.rows["volume"].sum())

    def append(self, batch: pl.DataFrame) -> None:
        self.store.append(SYM, batch)

    def size(self) -> int:
        return du(self.path)


class DuckDB:
    name = "DuckDB"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.con = duckdb.connect(str(path))
        self.con.execute(f"CREATE TABLE IF NOT EXISTS trades ({DUCK_SCHEMA})")

    def close(self) -> None:
        self.con.close()

    def open(self) -> None:
        self.con = duckdb.connect(str(self.path))

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

    def close(self) -> None:  # no state to drop: every scan reads the files' footers again
        pass

    open = close

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


Figures = dict[str, Figure]


class Bench:
    """One run: the data, the three contenders and the figures, phase by phase."""

    def __init__(self, root: Path, days: float, runs: int) -> None:
        self.runs = runs
        self.failed: list[str] = []
        t = time.perf_counter()
        n = int(days * 86_400 * RATE)
        self.df = synthetic_trades(SYM, START, n, rate_per_s=RATE)
        self.ms = self.df["time"].dt.epoch("ms").to_numpy()
        self.end = int(self.ms[-1]) + 1
        assert self.df.schema == pl.Schema(TRADE_SCHEMA)  # every contender must return this
        print(
            f"generated {n:,} trades over {days:g} days in {time.perf_counter() - t:.1f} s "
            f"({n / (self.end - START) * 1000:.1f} trades/s); {runs} runs per figure; "
            f"{os.cpu_count()} cores; load {load1():.2f}"
        )
        self.tl = Tradelab(root / "tradelab")
        self.duck = DuckDB(root / "trades.duckdb")
        self.pq = Parquet(root / "parquet")
        self.contenders: list[Contender] = [self.tl, self.duck, self.pq]
        self.names = [c.name for c in self.contenders]
        self.opens = {name: Figure() for name in self.names}
        self.rows: list[tuple[str, Figures]] = []  # the table, in the order measured

    def row(self, label: str, figs: Figures) -> Figures:
        """Record a row of the table and print it at once (progress)."""
        self.rows.append((label, figs))
        print(table_row(label, figs))
        return figs

    def interleaved(
        self,
        fn: Callable[[Contender], Any],
        check: Callable[[str, Any], None],
        before: Callable[[Contender], None] | None = None,
    ) -> Figures:
        """``runs`` repetitions, each running every contender once (the first one rotating);
        ``before`` is untimed; each result is checked, then freed before the next run."""
        cs = self.contenders
        figs = {c.name: Figure() for c in cs}
        for r in range(self.runs):
            for i in range(len(cs)):
                c = cs[(r + i) % len(cs)]
                if before is not None:
                    before(c)
                out = None
                t = time.perf_counter()
                out = fn(c)
                figs[c.name].add(time.perf_counter() - t)
                check(c.name, out)
                out = None
        return figs

    def expect(self, ok: bool, what: str) -> None:
        """An equality check: a failure is printed and makes the exit status 1."""
        if not ok:
            self.failed.append(what)
            print(f"EQUALITY CHECK FAILED: {what}")

    def expected(self, lo: int) -> pl.DataFrame:
        """The trades written with ``time >= lo`` (a zero-copy slice)."""
        a = int(np.searchsorted(self.ms, lo))
        return self.df.slice(a, len(self.ms) - a)

    def rows_check(self, lo: int, what: str) -> Callable[[str, Any], None]:
        want = len(self.ms) - int(np.searchsorted(self.ms, lo))

        def check(name: str, out: Any) -> None:
            self.expect(out.height == want, f"{what}: {name} {out.height:,} rows != {want:,}")

        return check

    def same_frames(self, lo: int, what: str, read: Callable[[Contender], pl.DataFrame]) -> None:
        """Every contender's whole frame equals the trades written (once per window)."""
        want = self.expected(lo).select(
            PROFILE_COLUMNS if "columns" in what else list(TRADE_SCHEMA)
        )
        for c in self.contenders:
            out = read(c)
            same = out.schema == want.schema and out.equals(want)
            self.expect(same, f"{what}: {c.name}'s frame differs from the trades written")
            out = None

    def load(self) -> None:
        """tradelab in hourly chunks then rolled up, DuckDB one insert, Parquet a file per day;
        all but the last hour (Parquet: all of it)."""
        df, ms, tl = self.df, self.ms, self.tl
        self.live_from = int(np.searchsorted(ms, self.end - HOUR))

        def tradelab() -> None:
            for h in range(START, self.end - HOUR, HOUR):
                a, b = np.searchsorted(ms[: self.live_from], [h, h + HOUR])
                if b > a:
                    tl.append(df.slice(int(a), int(b - a)))
            tl.store.roll_up()
            tl.store.wait_idle()

        timed("tradelab bulk load + roll-up", tradelab)
        timed("DuckDB bulk insert", lambda: self.duck.append(df.slice(0, self.live_from)))
        timed("Parquet day files", lambda: self.pq.write_days(df, ms))

    def live_hour(self) -> None:
        """5. The last hour second by second, each batch appended by every contender in turn
        (tradelab's roll-ups running behind); Parquet writes each as a small file."""
        ms, start = self.ms, self.live_from
        _, starts = np.unique(ms[start:] // 1000, return_index=True)
        bounds = [*(int(s) + start for s in starts), len(ms)]
        self.app = {name: Figure() for name in self.names}
        (self.pq.folder / "appends").mkdir()
        for i in range(len(bounds) - 1):
            batch = self.df.slice(bounds[i], bounds[i + 1] - bounds[i])
            for k in range(3):
                c = self.contenders[(i + k) % 3]
                t = time.perf_counter()
                c.append(batch)
                self.app[c.name].times.append(time.perf_counter() - t)
            if i % 200 == 0:
                for f in self.app.values():
                    f.loads.append(load1())
        self.tl.store.wait_idle()
        shutil.rmtree(self.pq.folder / "appends")
        self.appends = len(bounds) - 1
        self.per_batch = (len(ms) - start) / self.appends
        print(
            f"live hour: {self.appends:,} 1-second batches of ~{self.per_batch:.1f} trades, "
            "each appended by every contender in turn"
        )
        timed("tradelab compaction", self.tl.store.compact)
        self.sizes = {c.name: c.size() for c in self.contenders}

    def windows(self, label: str, before: Callable[[Contender], None] | None) -> dict[int, Figures]:
        """1./2. The 1, 24 and 168 h windows; warm ones first compare whole frames (the
        warm-up)."""
        out: dict[int, Figures] = {}
        for hours in WINDOWS:
            lo = self.end - hours * HOUR
            if before is None:
                self.same_frames(lo, f"{hours} h window", lambda c, lo=lo: c.window(lo, self.end))
            figs = self.interleaved(
                lambda c, lo=lo: c.window(lo, self.end),
                self.rows_check(lo, f"{hours} h {label}"),
                before,
            )
            blocks = self.tl.store.block_count(SYM, lo, self.end)
            out[hours] = self.row(f"{hours} h window → Polars, {label} ({blocks} blocks)", figs)
        return out

    def reopen(self, c: Contender, drop: bool = False) -> None:
        c.close()
        if drop:
            drop_page_cache()
        t = time.perf_counter()
        c.open()
        if c is not self.pq:  # nothing to open
            self.opens[c.name].add(time.perf_counter() - t)

    def floor(self) -> None:
        """6. Copying the 168 h frame's bytes into existing memory, into fresh memory back to
        back, and into fresh memory right after each contender's 168 h read — the state every
        interleaved read meets (on this VM fresh pages cost far more after a pause or after
        other frees than when just released)."""
        lo = self.end - 168 * HOUR
        self.nbytes = nbytes = self.expected(lo).estimated_size()
        src = np.ones(nbytes, dtype=np.uint8)
        dst = np.ones(nbytes, dtype=np.uint8)
        self.floors = [Figure(), Figure(), Figure()]  # existing, fresh, fresh after a read

        def fresh(into: Figure) -> None:
            t = time.perf_counter()
            np.copyto(np.empty(nbytes, dtype=np.uint8), src)
            into.add(time.perf_counter() - t)

        for r in range(self.runs):
            t = time.perf_counter()
            np.copyto(dst, src)
            self.floors[0].add(time.perf_counter() - t)
            fresh(self.floors[1])
            for i in range(3):
                self.contenders[(r + i) % 3].window(lo, self.end)  # freed at once
                fresh(self.floors[2])
        src = dst = None
        into = " / ".join(ms_text(f.median) for f in self.floors)
        print(f"floor: {nbytes / 1e6:,.0f} MB, existing / fresh / fresh-after-a-read: {into}")

    def alone(self) -> Figures:
        """The 168 h window, warm, each contender back to back (not interleaved)."""
        lo, figs = self.end - 168 * HOUR, {}
        check = self.rows_check(lo, "168 h alone")
        for c in self.contenders:
            figs[c.name] = f = Figure()
            for _ in range(self.runs + 1):  # the first one warms up
                out = None
                t = time.perf_counter()
                out = c.window(lo, self.end)
                f.add(time.perf_counter() - t)
                check(c.name, out)
            out = None
            del f.times[0], f.loads[0]
        return self.row("168 h window, warm, each contender alone (back to back)", figs)

    def profiles(self) -> None:
        """3. tradelab's get_volume_profile vs a GROUP BY on its row size, POC and volume
        checked on every run."""
        for hours in (*PROFILE_WINDOWS, *EDGE_PROFILE_WINDOWS):
            lo = self.end - hours * HOUR
            vp = get_volume_profile(SYM, start=lo, end=self.end, store=self.tl.store)
            row, poc, vol = vp.row_size, vp.poc, float(vp.rows["volume"].sum())

            def check(name: str, out: Any, hours: int = hours, poc: float = poc, vol: float = vol):
                self.expect(
                    abs(out[0] - poc) < 1e-6 and abs(out[1] - vol) <= 1e-9 * vol,
                    f"{hours} h profile: {name} POC {out[0]} / volume {out[1]:.8f}, tradelab "
                    f"{poc} / {vol:.8f}",
                )

            read = lambda c, lo=lo, row=row: c.profile(lo, self.end, row)  # noqa: E731
            label = f"{hours} h volume profile, end to end (row {row:g}, POC {poc:g})"
            self.row(label, self.interleaved(read, check))

    def projection(self) -> None:
        """The profile's 3 columns alone, if ``TradeStore.trades`` takes ``columns=``."""
        if not self.tl.columns:
            print("projection: TradeStore.trades has no columns= (skipped)")
            return
        for hours in PROFILE_WINDOWS:
            lo = self.end - hours * HOUR
            what = f"{hours} h, 3 columns"
            self.same_frames(lo, what, lambda c, lo=lo: c.projected(lo, self.end))
            read = lambda c, lo=lo: c.projected(lo, self.end)  # noqa: E731
            self.row(f"{what} (projection)", self.interleaved(read, self.rows_check(lo, what)))


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  (progress)
    days = setting("BENCH_VERSUS_DAYS", "7", float, 0.1, 31, "a number of days")
    runs = setting("BENCH_VERSUS_RUNS", "5", int, 1, 100, "a whole number of runs")
    cmd = f"BENCH_VERSUS_DAYS={days:g} BENCH_VERSUS_RUNS={runs} python -m bench versus"
    root = Path(tempfile.mkdtemp(prefix="bench-versus-"))
    t_all = time.perf_counter()
    b: Bench | None = None
    try:
        b = Bench(root, days, runs)
        b.load()
        b.live_hour()
        warm = b.windows("warm", None)
        b.floor()
        b.alone()
        b.windows("reopened (page cache warm)", b.reopen)
        if drop_page_cache():
            print(f"page cache dropped before every cold run (then {cached_mb():,.0f} MB)")
            b.windows("cold (page cache dropped)", lambda c: b.reopen(c, drop=True) if b else None)
        else:
            print("cold: skipped (the page cache cannot be dropped here)")
        b.row("open after close (store / connection)", b.opens)
        b.profiles()
        b.projection()
        print()
        print(
            "| median, same run | tradelab | DuckDB table (`.pl()`) | Parquet/day + "
            "`pl.scan_parquet` | tradelab / DuckDB | tradelab / Parquet | load (1 min) |"
        )
        print("|---|---|---|---|---|---|---|")
        print("\n".join(table_row(label, figs) for label, figs in b.rows))
        h, sz, app = len(b.ms), b.sizes, b.app
        print(
            f"| bytes per trade on disk | {sz['tradelab'] / h:.2f} | {sz['DuckDB'] / h:.2f} | "
            f"{sz['Parquet'] / h:.2f} | {sz['tradelab'] / sz['DuckDB']:.2f} | "
            f"{sz['tradelab'] / sz['Parquet']:.2f} | |"
        )
        label = f"1-second append (~{b.per_batch:.0f} trades, {b.appends:,} appends), median / p99"
        p99 = lambda f: f"{ms_text(f.median)} / {ms_text(np.percentile(f.times, 99))}"  # noqa: E731
        print(table_row(label, app, p99))
        fl, t168 = b.floors, warm[168]["tradelab"].median
        print(
            f"| floor: copy the 168 h frame ({b.nbytes / 1e6:,.0f} MB) into existing / fresh / "
            f"fresh-after-a-read memory | {' / '.join(ms_text(f.median) for f in fl)} | | | "
            f"168 h warm = {t168 / fl[1].median:.1f}× / {t168 / fl[2].median:.1f}× the fresh "
            f"floors | | {load_text(fl)} |"
        )
        print(
            f"\n{h:,} trades; ratios are tradelab / contender (< 1.0: tradelab faster); "
            f"{runs} interleaved runs per figure; command: `{cmd}`; "
            f"took {time.perf_counter() - t_all:.0f} s"
        )
        if b.failed:
            print(f"{len(b.failed)} equality check(s) FAILED")
            return 1
        print("all equality checks passed")
    finally:
        for c in b.contenders if b else ():
            with contextlib.suppress(Exception):
                c.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


def table_row(label: str, figs: Figures, cell: Callable[[Figure], str] | None = None) -> str:
    """A row of the markdown table; a contender without figures (nothing to open) shows –."""
    tl = figs["tradelab"].median
    names = ("tradelab", "DuckDB", "Parquet")
    cells = [
        (cell or (lambda f: ms_text(f.median)))(figs[n]) if figs[n].times else "–" for n in names
    ]
    ratios = [f"{tl / figs[n].median:.2f}" if figs[n].times else "" for n in names[1:]]
    return f"| {label} | " + " | ".join([*cells, *ratios, load_text(list(figs.values()))]) + " |"


if __name__ == "__main__":
    sys.exit(main())
