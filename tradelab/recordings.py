"""Loaders for the real Binance recordings in ``../shared/data/binance`` and a synthetic
generator, both returning frames in the trade schema (:data:`tradelab.schema.TRADE_SCHEMA`).

The recordings are never copied into the repository; :func:`shared_data_dir` finds them
(``$TRADELAB_SHARED_DATA``, else ``<project>/../shared/data/binance``, else
``./../shared/data/binance``) and returns ``None`` when they are absent, so tests can skip.

Formats handled:
- ``*.aggTrade.tsv.gz``: ``<recv_ns>\\t<combined-stream aggTrade frame JSON>`` per line.
- ``*.trades.txt.gz``: ``<recv_ns|recv_us> <combined-stream @trade frame JSON>`` — raw trades;
  each becomes one row with ``agg_id = first_id = last_id = t``.
- ``*-aggTrades-*.csv``: Binance's public export, no header, timestamps in µs (since 2025) or ms;
  converted to ms.

:func:`recording_format` tells these apart by file name, and :func:`load_file` loads any of them
(``tradelab import`` and :func:`load` both go through it).
"""

from __future__ import annotations

import gzip
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from tradelab.config import validate_symbol
from tradelab.exceptions import InvalidParameterError, InvalidTradesError
from tradelab.schema import TRADE_SCHEMA, to_trade_frame

__all__ = [
    "RECORDINGS",
    "FileKind",
    "identify_file",
    "load",
    "load_aggtrade_tsv",
    "load_file",
    "load_raw_trades",
    "load_vision_csv",
    "recording_format",
    "shared_data_dir",
    "synthetic_trades",
]

RECORDINGS: tuple[str, ...] = (
    "spot_btcusdt_20240808-09.aggTrade.tsv.gz",
    "spot_ethusdt_20240808-09.aggTrade.tsv.gz",
    "multi_symbol_20210405.native_aggTrade.tsv.gz",
    "spot_btcusdt_20240808.trades.txt.gz",
    "spot_btcusdt_20240809.trades.txt.gz",
    "spot_ethusdt_20240808.trades.txt.gz",
    "spot_ethusdt_20240809.trades.txt.gz",
    "usdm_btcusdt_20230404-05.trades.txt.gz",
    "BTCUSDT-aggTrades-2026-01-01.first5000.csv",
)


def shared_data_dir() -> Path | None:
    """The folder holding the shared Binance recordings, or ``None`` if it is absent."""
    candidates = []
    env = os.environ.get("TRADELAB_SHARED_DATA")
    if env:
        candidates.append(Path(env))
    project = Path(__file__).resolve().parents[1]
    candidates.append(project.parent / "shared" / "data" / "binance")
    candidates.append(Path.cwd().parent / "shared" / "data" / "binance")
    for c in candidates:
        if c.is_dir() and any(c.iterdir()):
            return c
    return None


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def _payload(line: str) -> dict | None:
    """The JSON object on a recording line, whatever the receive-time prefix looks like
    (``<ns>\t``, ``<us> `` or ``<seconds.frac>: `` all occur)."""
    brace = line.find("{")
    return json.loads(line[brace:]) if brace >= 0 else None


def _frame(rows: dict[str, list]) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "agg_id": pl.Series(rows["agg_id"], dtype=pl.Int64),
            "price": pl.Series(rows["price"], dtype=pl.Utf8).cast(pl.Float64),
            "qty": pl.Series(rows["qty"], dtype=pl.Utf8).cast(pl.Float64),
            "first_id": pl.Series(rows["first_id"], dtype=pl.Int64),
            "last_id": pl.Series(rows["last_id"], dtype=pl.Int64),
            "time": pl.Series(rows["time"], dtype=pl.Int64),
            "buyer_is_maker": pl.Series(rows["buyer_is_maker"], dtype=pl.Boolean),
        }
    )
    return to_trade_frame(frame).sort("agg_id")


def _empty_rows() -> dict[str, list]:
    return {c: [] for c in TRADE_SCHEMA}


# Which frame field fills each trade column: aggTrade frames carry their own ids; a raw @trade
# is its own aggregate (agg_id = first_id = last_id = t).
_AGGTRADE_FIELDS = {
    "agg_id": "a",
    "price": "p",
    "qty": "q",
    "first_id": "f",
    "last_id": "l",
    "time": "T",
    "buyer_is_maker": "m",
}
_RAW_TRADE_FIELDS = {**_AGGTRADE_FIELDS, "agg_id": "t", "first_id": "t", "last_id": "t"}


def _load_frames(path: str | os.PathLike[str], fields: dict[str, str]) -> dict[str, pl.DataFrame]:
    per: dict[str, dict[str, list]] = {}
    with _open_text(Path(path)) as fh:
        for line in fh:
            msg = _payload(line)
            if msg is None:
                continue
            d = msg.get("data", msg)
            rows = per.setdefault(d["s"], _empty_rows())
            for column, key in fields.items():
                rows[column].append(d[key])
    return {sym: _frame(rows) for sym, rows in per.items()}


def load_aggtrade_tsv(path: str | os.PathLike[str]) -> dict[str, pl.DataFrame]:
    """Combined-stream aggTrade frames (``<recv_ns>\t<json>``) -> one frame per symbol."""
    return _load_frames(path, _AGGTRADE_FIELDS)


def load_raw_trades(path: str | os.PathLike[str]) -> dict[str, pl.DataFrame]:
    """Raw ``@trade`` frames (``<recv> <json>``) -> one row per trade, ``agg_id = t``."""
    return _load_frames(path, _RAW_TRADE_FIELDS)


def load_vision_csv(
    path: str | os.PathLike[str], symbol: str = "BTCUSDT"
) -> dict[str, pl.DataFrame]:
    """Binance's public aggTrades export (no header); µs timestamps (post-2025) become ms."""
    raw = pl.read_csv(
        Path(path),
        has_header=False,
        new_columns=["agg_id", "price", "qty", "first_id", "last_id", "ts", "m", "best"],
        schema_overrides={"price": pl.Utf8, "qty": pl.Utf8, "ts": pl.Int64},
    )
    ts = raw["ts"]
    ts_max = ts.max()
    if not isinstance(ts_max, int):  # None: every timestamp is empty
        raise InvalidTradesError(f"{path}: the timestamp column has no values")
    # ms timestamps are ~1.7e12 today; µs ~1.7e15. Anything above 1e14 is µs.
    time_ms = (ts // 1000) if ts_max > 10**14 else ts
    frame = pl.DataFrame(
        {
            "agg_id": raw["agg_id"].cast(pl.Int64),
            "price": raw["price"].cast(pl.Float64),
            "qty": raw["qty"].cast(pl.Float64),
            "first_id": raw["first_id"].cast(pl.Int64),
            "last_id": raw["last_id"].cast(pl.Int64),
            "time": time_ms,
            "buyer_is_maker": raw["m"].cast(pl.Utf8).str.to_lowercase() == "true",
        }
    )
    return {symbol: to_trade_frame(frame).sort("agg_id")}


def recording_format(name: str) -> Literal["aggtrade", "trades", "csv"] | None:
    """The format of a recording, from its file name: ``"aggtrade"`` (``*aggTrade.tsv[.gz]``),
    ``"trades"`` (``*.trades.txt[.gz]``), ``"csv"`` (a Binance export ``*.csv``), else None."""
    if name.endswith(("aggTrade.tsv.gz", "aggTrade.tsv")):
        return "aggtrade"
    if name.endswith((".trades.txt.gz", ".trades.txt")):
        return "trades"
    if name.endswith(".csv"):
        return "csv"
    return None


@dataclass(frozen=True)
class FileKind:
    """What a trade file is, read from its content: ``kind`` is ``"aggtrade"`` (spot aggTrade
    stream recording), ``"csv"`` (Binance Vision spot aggTrades export), ``"trades"`` (raw
    ``@trade`` recording: trade ids, not aggregate ids), ``"futures"`` (USD-M/COIN-M futures
    data: other ids) or ``"unknown"``; ``what`` says it in words; ``symbols`` as far as the
    first lines tell."""

    kind: Literal["aggtrade", "csv", "trades", "futures", "unknown"]
    what: str
    symbols: tuple[str, ...] = ()

    @property
    def spot_aggregate(self) -> bool:
        """Whether the file holds spot aggregate trades (the only thing the store takes)."""
        return self.kind in ("aggtrade", "csv")


_FUTURES_NAMES = ("usdm", "um_", "coinm", "cm_", "futures")


def _first_lines(path: Path, n: int = 5) -> list[str]:
    raw = path.open("rb")
    try:
        head = raw.read(2)
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if head == b"\x1f\x8b" else raw
        text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace")
        return [line.strip() for _, line in zip(range(n), text, strict=False) if line.strip()]
    except (OSError, EOFError):
        return []
    finally:
        raw.close()


def identify_file(path: str | os.PathLike[str]) -> FileKind:
    """Tell a trade file's kind from its first lines (and, for futures, its name or folder):
    the one place that recognises files, for ``tradelab import`` and the loaders."""
    p = Path(path)
    lines = _first_lines(p)
    futures_name = any(part.lower().startswith(_FUTURES_NAMES) for part in p.parts[-3:])
    if not lines:
        return FileKind("unknown", "an empty or unreadable file")
    first = lines[0]
    if "{" in first:
        try:
            msg = _payload(first) or {}
        except ValueError:
            return FileKind("unknown", "a file of lines that are not JSON frames")
        d = msg.get("data", msg) if isinstance(msg, dict) else {}
        event = d.get("e") if isinstance(d, dict) else None
        sym = (str(d.get("s")),) if isinstance(d, dict) and d.get("s") else ()
        futures = futures_name or "X" in d or "M" not in d
        if event == "aggTrade":
            if futures:
                return FileKind("futures", "a futures aggTrade recording (not spot)", sym)
            return FileKind("aggtrade", "a spot aggTrade stream recording", sym)
        if event == "trade":
            if futures:
                return FileKind("futures", "a futures @trade recording (not spot)", sym)
            return FileKind(
                "trades", "a raw @trade recording (trade ids, not aggregate trade ids)", sym
            )
        return FileKind("unknown", f"a recording of {event!r} events, not aggregate trades")
    fields = first.split(",")
    if not fields[0].strip().isdigit():  # a header line: Vision futures files have one
        header = first.lower()
        if "agg_trade_id" in header or "transact_time" in header:
            return FileKind("futures", "a futures aggTrades CSV export (not spot)")
        return FileKind("unknown", f"a CSV file with header {excerpt_line(first)!r}")
    if futures_name:
        return FileKind("futures", "a futures CSV export (not spot)")
    if len(fields) == 8 and fields[6] in ("True", "False", "true", "false"):
        return FileKind("csv", "a Binance Vision spot aggTrades CSV export")
    if len(fields) == 7:
        return FileKind(
            "trades", "a Binance trades CSV export (trade ids, not aggregate trade ids)"
        )
    return FileKind("unknown", f"a CSV file of {len(fields)} columns, not Binance aggTrades")


def excerpt_line(line: str, limit: int = 60) -> str:
    """The start of a line, for error messages."""
    return line if len(line) <= limit else line[:limit] + "…"


def load_file(
    path: str | os.PathLike[str], *, symbol: str | None = None
) -> dict[str, pl.DataFrame]:
    """Load a recording or a Binance aggTrades export, its format told by its name
    (:func:`recording_format`), into one frame per symbol.

    ``symbol``: for a CSV export, its symbol (default: the file name up to the first ``-``,
    e.g. ``BTCUSDT-aggTrades-2026-01-01.csv``); for a recording, keep only that symbol.
    Raises :class:`~tradelab.exceptions.InvalidParameterError` for a name of no known format.
    """
    p = Path(path)
    kind = recording_format(p.name)
    if kind is None:
        raise InvalidParameterError(
            f"cannot tell the format of {p.name!r}: expected *.aggTrade.tsv[.gz], "
            "*.trades.txt[.gz] or a Binance aggTrades export *.csv"
        )
    if kind == "csv":
        return load_vision_csv(p, symbol=validate_symbol(symbol or p.name.split("-", 1)[0]))
    frames = load_aggtrade_tsv(p) if kind == "aggtrade" else load_raw_trades(p)
    if symbol:
        want = validate_symbol(symbol)
        frames = {s: f for s, f in frames.items() if s == want}
    return frames


def load(name: str) -> dict[str, pl.DataFrame]:
    """Load a shared recording by file name (see :data:`RECORDINGS`) into per-symbol frames."""
    base = shared_data_dir()
    if base is None:
        raise FileNotFoundError(
            "the shared recordings (../shared/data/binance) are not present on this machine"
        )
    if recording_format(name) is None:
        raise ValueError(f"unknown recording {name!r}; known: {', '.join(RECORDINGS)}")
    return load_file(base / name)


def synthetic_trades(
    symbol: str,
    start_ms: int,
    n: int,
    *,
    rate_per_s: float = 24.0,
    seed: int = 0,
    first_agg_id: int = 1,
    price: float = 60000.0,
    tick: float = 0.01,
) -> pl.DataFrame:
    """``n`` BTCUSDT-like aggTrades from ``start_ms``: a random walk on the tick grid, lognormal
    sizes, buy/sell aggressors correlated with the price move, and bursts (about 5% of the time
    at 20× the base rate), with contiguous agg ids from ``first_agg_id``.

    ``symbol`` only seeds the generator differently per symbol, so BTC and ETH differ.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng([seed, sum(map(ord, symbol))])
    # Inter-arrival gaps in ms: exponential, with burst regimes at 20x the rate.
    burst = rng.random(max(n // 200, 1)) < 0.05
    regime = np.repeat(burst, 200)[:n] if n else np.zeros(0, bool)
    if regime.size < n:
        regime = np.concatenate([regime, np.zeros(n - regime.size, bool)])
    mean_gap = 1000.0 / rate_per_s
    # Divide by the bursts' share so the average rate stays ``rate_per_s``.
    gaps = rng.exponential(mean_gap, n) / np.where(regime, 20.0, 1.0) / (1.0 - 0.05 * 19 / 20)
    times = start_ms + np.floor(np.cumsum(gaps)).astype(np.int64)
    if n:
        times -= times[0] - start_ms
    # Price: random walk in ticks; 65% of trades print at the previous price, and the step size
    # is scaled so a day's range is ~1.5% of the price, as for BTCUSDT.
    sigma_ticks = max(price * 0.015 / np.sqrt(86_400 * rate_per_s) / np.sqrt(0.35) / tick, 0.6)
    moves = np.rint(rng.normal(0.0, sigma_ticks, n)).astype(np.int64) * (rng.random(n) < 0.35)
    ticks = np.int64(round(price / tick)) + np.cumsum(moves)
    ticks = np.maximum(ticks, 1)
    prices = np.round(ticks * tick, 8)
    qty = np.round(np.maximum(rng.lognormal(-5.0, 1.6, n), 1e-5), 5)
    sell_bias = np.where(moves < 0, 0.75, np.where(moves > 0, 0.25, 0.5))
    maker = rng.random(n) < sell_bias
    fills = 1 + rng.geometric(0.6, n) - 1
    last_ids = first_agg_id * 2 + np.cumsum(fills)
    first_ids = last_ids - fills + 1
    return pl.DataFrame(
        {
            "agg_id": np.arange(first_agg_id, first_agg_id + n, dtype=np.int64),
            "price": prices,
            "qty": qty,
            "first_id": first_ids.astype(np.int64),
            "last_id": last_ids.astype(np.int64),
            "time": pl.Series(times, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC")),
            "buyer_is_maker": maker,
        },
        schema=TRADE_SCHEMA,
    )
