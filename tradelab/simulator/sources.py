"""Trade sources for the simulator: pure code, no sockets, no clocks.

A source yields chunks of trades in *source time* — the times of the recording, or of the
synthetic timeline — as tuples ``(agg_id, price, qty, first_id, last_id, time_ms, maker)``,
ascending in id and time, forever (or until a non-looping replay ends). The server maps
source time onto the wall clock (:func:`live_time`) so that a replay looks live: published
trade times are "now", at recorded pace, N× faster, or as fast as possible.

- :class:`SyntheticSource`: :func:`tradelab.recordings.synthetic_trades` chunk after chunk
  (random walk on the tick grid, lognormal sizes, bursts), ids contiguous from a realistic
  number, raw trade ids ``first_id..last_id`` contiguous across trades.
- :class:`ReplaySource`: a recorded frame, looped with ids and times shifted by the
  recording's span each round so that ids stay contiguous and times increasing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import polars as pl

from tradelab.exceptions import ConfigurationError, InvalidParameterError, InvalidTradesError
from tradelab.schema import TRADE_SCHEMA, to_trade_frame

__all__ = [
    "DEFAULT_PRICES",
    "DEFAULT_RATES",
    "DEFAULT_RECORDINGS",
    "ReplaySource",
    "SyntheticSource",
    "Trade",
    "TradeSource",
    "infer_tick",
    "live_time",
    "load_recordings",
    "realistic_first_agg_id",
    "tick_size",
]

#: ``(agg_id, price, qty, first_id, last_id, time_ms, buyer_is_maker)``
Trade = tuple[int, float, float, int, int, int, bool]

#: Starting prices of the synthetic generator (late-2026-like levels); other symbols use 100.
DEFAULT_PRICES: dict[str, float] = {
    "BTCUSDT": 87_000.0,
    "ETHUSDT": 2_950.0,
    "BNBUSDT": 850.0,
    "SOLUSDT": 130.0,
    "XRPUSDT": 2.0,
    "DOGEUSDT": 0.15,
}
#: Average trades per second of the synthetic generator at speed 1 (real BTCUSDT: 13–22/s).
DEFAULT_RATES: dict[str, float] = {"BTCUSDT": 24.0, "ETHUSDT": 18.0}
_DEFAULT_RATE = 6.0
#: Which shared recording replays which symbol when ``source="recordings"``.
DEFAULT_RECORDINGS: dict[str, str] = {
    "BTCUSDT": "spot_btcusdt_20240808-09.aggTrade.tsv.gz",
    "ETHUSDT": "spot_ethusdt_20240808-09.aggTrade.tsv.gz",
}
_MULTI = "multi_symbol_20210405.native_aggTrade.tsv.gz"

# Real aggregate ids on 2026-01-01 00:00 UTC (BTCUSDT from Binance's export); ids then grow
# with wall time so a simulator restarted later continues above an earlier run's ids.
_ID_EPOCH_MS = 1_767_225_600_000
_ID_BASE: dict[str, int] = {"BTCUSDT": 3_800_397_495, "ETHUSDT": 2_310_000_000}
_IDS_PER_MS = 0.05  # 50 ids per wall-clock second (real BTCUSDT: ~20)


def tick_size(symbol: str, price: float | None = None) -> float:
    """A plausible PRICE_FILTER tick size for a price level, following Binance's usual grid:
    0.01 from $10 up, 0.0001 from $1, 0.00001 from 1 cent, 0.00000001 below."""
    p = DEFAULT_PRICES.get(symbol, 100.0) if price is None else price
    if p >= 10:
        return 0.01
    if p >= 1:
        return 0.0001
    return 0.00001 if p >= 0.01 else 0.00000001


def infer_tick(prices: Sequence[float]) -> float:
    """The coarsest decimal tick (1, 0.1, … 1e-8) every price in ``prices`` lies on."""
    for decimals in range(9):
        scale = 10**decimals
        if all(abs(p * scale - round(p * scale)) < 1e-6 for p in prices):
            return 1.0 / scale
    return 1e-8


def realistic_first_agg_id(symbol: str, now_ms: int) -> int:
    """An aggregate id of the right magnitude for ``symbol`` at ``now_ms``, growing with time."""
    base = _ID_BASE.get(symbol)
    if base is None:
        base = 100_000_000 + (sum(ord(c) * 7919**i for i, c in enumerate(symbol)) % 10**9)
    return base + max(0, int((now_ms - _ID_EPOCH_MS) * _IDS_PER_MS))


def live_time(src_ms: float, src0_ms: float, wall0_ms: float, speed: float) -> float:
    """Wall-clock ms at which a trade of source time ``src_ms`` is due (finite ``speed``)."""
    return wall0_ms + (src_ms - src0_ms) / speed


class TradeSource:
    """Base class: ``next_chunk()`` returns the next trades in source time ([] = exhausted)."""

    symbol: str

    def next_chunk(self) -> list[Trade]:  # pragma: no cover - interface
        raise NotImplementedError

    def __iter__(self) -> Iterator[Trade]:
        while chunk := self.next_chunk():
            yield from chunk


class SyntheticSource(TradeSource):
    """Endless synthetic aggTrades for ``symbol`` starting at source time ``start_ms``."""

    def __init__(
        self,
        symbol: str,
        *,
        start_ms: int,
        first_agg_id: int | None = None,
        rate_per_s: float | None = None,
        price: float | None = None,
        seed: int = 0,
        chunk: int = 2_000,
    ) -> None:
        rate = DEFAULT_RATES.get(symbol, _DEFAULT_RATE) if rate_per_s is None else rate_per_s
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not rate > 0:
            raise InvalidParameterError(f"rate_per_s must be a number > 0, got {rate!r}")
        if not isinstance(chunk, int) or chunk < 1:
            raise InvalidParameterError(f"chunk must be an integer >= 1, got {chunk!r}")
        self.symbol = symbol
        self.rate_per_s = float(rate)
        self.price = float(DEFAULT_PRICES.get(symbol, 100.0) if price is None else price)
        self.tick = tick_size(symbol, self.price)
        self._next_id = (
            realistic_first_agg_id(symbol, start_ms) if first_agg_id is None else first_agg_id
        )
        self._next_trade_id = self._next_id * 2 + 1_000
        self._next_ms = int(start_ms)
        self._seed = seed
        self._round = 0
        self._chunk = chunk

    def next_chunk(self) -> list[Trade]:
        from tradelab.recordings import synthetic_trades

        frame = synthetic_trades(
            self.symbol,
            self._next_ms,
            self._chunk,
            rate_per_s=self.rate_per_s,
            seed=self._seed * 1_000_003 + self._round,
            first_agg_id=self._next_id,
            price=self.price,
            tick=self.tick,
        )
        self._round += 1
        ids = frame["agg_id"].to_list()
        prices = frame["price"].to_list()
        qtys = frame["qty"].to_list()
        fills = (frame["last_id"] - frame["first_id"] + 1).to_list()
        times = frame["time"].dt.epoch("ms").to_list()
        makers = frame["buyer_is_maker"].to_list()
        out: list[Trade] = []
        tid = self._next_trade_id
        for a, p, q, n, t, m in zip(ids, prices, qtys, fills, times, makers, strict=True):
            out.append((a, p, q, tid, tid + n - 1, t, m))
            tid += n
        self._next_trade_id = tid
        self._next_id = ids[-1] + 1
        self.price = prices[-1]
        # The next chunk starts one average gap after this one's last trade.
        self._next_ms = times[-1] + max(1, round(1000.0 / self.rate_per_s))
        return out

    def take_until(self, end_ms: int) -> pl.DataFrame:
        """Every trade from the source's current time up to ``end_ms`` (exclusive) as one frame
        in the trade schema, advancing the source as :meth:`next_chunk` would: vectorised, so
        hours of history are seeded in a fraction of a second (:class:`Simulator`'s
        ``history_hours``)."""
        from tradelab.recordings import synthetic_trades

        frames = []
        while self._next_ms < end_ms:
            n = int((end_ms - self._next_ms) / 1000 * self.rate_per_s * 1.1) + 100
            frame = synthetic_trades(
                self.symbol,
                self._next_ms,
                min(n, 2_000_000),
                rate_per_s=self.rate_per_s,
                seed=self._seed * 1_000_003 + self._round,
                first_agg_id=self._next_id,
                price=self.price,
                tick=self.tick,
            )
            self._round += 1
            frame = frame.filter(pl.col("time").dt.epoch("ms") < end_ms)
            fills = (frame["last_id"] - frame["first_id"] + 1).to_numpy()
            last_ids = self._next_trade_id + np.cumsum(fills) - 1
            frame = frame.with_columns(
                pl.Series("first_id", last_ids - fills + 1, dtype=pl.Int64),
                pl.Series("last_id", last_ids, dtype=pl.Int64),
            )
            self._next_trade_id = int(last_ids[-1]) + 1
            self._next_id = int(frame["agg_id"][-1]) + 1
            self.price = float(frame["price"][-1])
            last_ms = int(frame["time"].dt.epoch("ms")[-1])
            self._next_ms = last_ms + max(1, round(1000.0 / self.rate_per_s))
            frames.append(frame)
        return pl.concat(frames) if frames else pl.DataFrame(schema=TRADE_SCHEMA)


class ReplaySource(TradeSource):
    """A recorded frame (trade schema) replayed; with ``loop`` it repeats forever, each round
    shifting agg ids, raw trade ids and times by the recording's span. The first round keeps
    the recorded ids unless ``first_agg_id`` moves them (e.g. above a previous run's ids)."""

    def __init__(
        self,
        symbol: str,
        trades: pl.DataFrame,
        *,
        loop: bool = True,
        first_agg_id: int | None = None,
    ) -> None:
        frame = to_trade_frame(trades).unique("agg_id", keep="first").sort("agg_id")
        if frame.height == 0:
            raise InvalidTradesError(f"the recording for {symbol} holds no trades to replay")
        self.symbol = symbol
        self.loop = loop
        self._rows: list[Trade] = list(
            zip(
                frame["agg_id"].to_list(),
                frame["price"].to_list(),
                frame["qty"].to_list(),
                frame["first_id"].to_list(),
                frame["last_id"].to_list(),
                frame["time"].dt.epoch("ms").to_list(),
                frame["buyer_is_maker"].to_list(),
                strict=True,
            )
        )
        # Recorded times can step backwards by a ms between aggregates; keep them monotone.
        last_t = self._rows[0][5]
        for i, r in enumerate(self._rows):
            if r[5] < last_t:
                self._rows[i] = (*r[:5], last_t, r[6])
            last_t = self._rows[i][5]
        first, last = self._rows[0], self._rows[-1]
        n = len(self._rows)
        self.id_span = last[0] - first[0] + 1
        self.trade_id_span = max(last[4] - first[3] + 1, 1)
        duration = last[5] - first[5]
        self.time_span = duration + max(1, round(duration / max(n - 1, 1)))
        self.first_time = first[5]
        self.id_offset = 0 if first_agg_id is None else first_agg_id - first[0]
        self.rounds = 0

    def next_chunk(self) -> list[Trade]:
        if self.rounds and not self.loop:
            return []
        k = self.rounds
        self.rounds += 1
        if k == 0 and self.id_offset == 0:
            return list(self._rows)
        da = k * self.id_span + self.id_offset
        dt_, dtid = k * self.time_span, k * self.trade_id_span
        return [
            (a + da, p, q, f + dtid, la + dtid, t + dt_, m) for a, p, q, f, la, t, m in self._rows
        ]


def load_recordings(
    symbols: tuple[str, ...], source: str | Path | Mapping[str, pl.DataFrame]
) -> dict[str, pl.DataFrame]:
    """The recorded frames for ``symbols``: ``"recordings"`` picks each symbol's default
    shared file (BTCUSDT/ETHUSDT aggTrade recordings, else the multi-symbol file); a file
    name or path loads that file; a mapping is used as is. Raises ConfigurationError naming
    the symbols no recording covers."""
    from tradelab import recordings

    if isinstance(source, Mapping):
        frames = dict(source)
    else:
        name = str(source)
        if name == "recordings":
            frames = {}
            wanted: dict[str, list[str]] = {}
            for sym in symbols:
                wanted.setdefault(DEFAULT_RECORDINGS.get(sym, _MULTI), []).append(sym)
            for file, syms in wanted.items():
                loaded = _load_named(recordings, file)
                frames.update({s: loaded[s] for s in syms if s in loaded})
        else:
            frames = _load_named(recordings, name)
    missing = [s for s in symbols if s not in frames]
    if missing:
        have = ", ".join(sorted(frames)) or "none"
        raise ConfigurationError(
            f"no recording holds {', '.join(missing)} (source {_describe(source)}; it has: "
            f"{have}); use source='synthetic' for other symbols"
        )
    return {s: frames[s] for s in symbols}


def _describe(source: object) -> str:
    return "mapping" if isinstance(source, Mapping) else repr(str(source))


def _load_named(mod: ModuleType, name: str) -> dict[str, pl.DataFrame]:
    path = Path(name)
    if path.is_file():
        if name.endswith("aggTrade.tsv.gz") or name.endswith(".tsv"):
            return mod.load_aggtrade_tsv(path)
        if name.endswith((".trades.txt.gz", ".txt")):
            return mod.load_raw_trades(path)
        if name.endswith(".csv"):
            return mod.load_vision_csv(path, symbol=path.name.split("-", 1)[0])
        raise ConfigurationError(
            f"cannot tell the format of {name!r}: expected *.aggTrade.tsv.gz, *.trades.txt.gz "
            "or a Binance *-aggTrades-*.csv export"
        )
    if mod.shared_data_dir() is None:
        raise ConfigurationError(
            "the shared recordings (../shared/data/binance) are not on this machine; "
            "use source='synthetic'"
        )
    if name not in mod.RECORDINGS:
        raise ConfigurationError(
            f"unknown recording {name!r}; known: {', '.join(mod.RECORDINGS)}, "
            "or a path to such a file"
        )
    return mod.load(name)
