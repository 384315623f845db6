"""Importing a trade file into the store, keeping id spaces apart.

:func:`import_file` recognises the file by its content (:func:`tradelab.recordings.identify_file`)
and takes only spot aggregate trades — an aggTrade stream recording or a Binance Vision spot
aggTrades CSV — of the wanted symbol; a raw ``@trade`` recording (trade ids), futures data
(other ids) or another symbol is refused with one line saying what the file is. Before
anything is written it compares the file with the store: an aggregate id already stored with
*different* values is a conflict, and the whole file is refused, naming the first one. Every
check runs on a read-only view, so a refused file leaves the store's files byte for byte as
they were; only then is the store opened for writing and the file appended (exactly once).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from tradelab.config import resolve_data_dir, validate_symbol
from tradelab.exceptions import (
    ConfigurationError,
    InvalidSymbolError,
    InvalidTradesError,
    NoDataError,
)
from tradelab.history.plan import DAY_MS
from tradelab.recordings import identify_file, load_file
from tradelab.store import TradeStore

__all__ = ["ImportConflictError", "ImportResult", "find_conflict", "import_file"]

_CHUNK = 500_000  # trades per append (progress steps)


class ImportConflictError(InvalidTradesError):
    """A file holding an aggregate id the store already has with different values."""


@dataclass(frozen=True)
class ImportResult:
    """What an import stored for one symbol: ``new`` trades, ``already`` there (same values)."""

    symbol: str
    new: int
    already: int
    what: str

    def summary(self) -> str:
        return f"{self.symbol}: {self.new:,} new trades stored ({self.already:,} already there)"


def find_conflict(store: TradeStore, symbol: str, frame: pl.DataFrame) -> str | None:
    """The first id of ``frame`` stored in ``store`` with different values, described; None
    when every id it shares with the store has equal values. Reads the store one UTC day at a
    time (the file's days first), only over the stored ids the file overlaps."""
    st = store.stats(symbol)
    if not st.trade_count or frame.height == 0:
        return None
    assert st.first_agg_id is not None and st.last_agg_id is not None
    overlap = frame.filter(pl.col("agg_id").is_between(st.first_agg_id, st.last_agg_id))
    if overlap.height == 0:
        return None
    first_ms = int(st.first_time.timestamp() * 1000) if st.first_time else 0
    last_ms = int(st.last_time.timestamp() * 1000) + 1 if st.last_time else 0
    file_ms = overlap["time"].dt.epoch("ms")
    lo, hi = int(file_ms.min() or 0), int(file_ms.max() or 0) + 1  # type: ignore[arg-type]
    days = [d for d in range(first_ms - first_ms % DAY_MS, last_ms, DAY_MS)]
    days.sort(key=lambda d: (not (lo - DAY_MS < d < hi), d))  # the file's days first
    seen = 0
    for day in days:
        stored = store.trades(symbol, max(day, first_ms), min(day + DAY_MS, last_ms))
        if stored.height == 0:
            continue
        both = overlap.join(stored, on="agg_id", suffix="_stored")
        if both.height == 0:
            continue
        seen += both.height
        differ = both.filter(
            pl.any_horizontal(
                pl.col(c).ne_missing(pl.col(c + "_stored")) for c in overlap.columns[1:]
            )
        )
        if differ.height:
            row = differ.sort("agg_id").row(0, named=True)
            return (
                f"aggregate id {row['agg_id']} is stored with price {row['price_stored']}, qty "
                f"{row['qty_stored']}, time {row['time_stored']} but the file has price "
                f"{row['price']}, qty {row['qty']}, time {row['time']}"
            )
        if seen >= overlap.height:
            break
    return None


def import_file(
    path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    symbol: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[ImportResult]:
    """Load a spot aggTrades file into the store at ``data_dir``, all or nothing per file.

    ``symbol``: the symbol the file must hold (a CSV export is named by it, e.g.
    ``BTCUSDT-aggTrades-2026-01-01.csv``; a recording may hold several, then only this one is
    imported). ``progress(done, total)`` is called as trades are stored.
    Raises :class:`InvalidTradesError` (what the file is) or :class:`ImportConflictError`.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigurationError(f"no such file: {p}")
    want = validate_symbol(symbol) if symbol else None
    kind = identify_file(p)
    if kind.kind == "unknown":
        raise InvalidTradesError(
            f"cannot tell the format of {p.name}: it looks like {kind.what}; tradelab import "
            "takes spot aggregate trades (an aggTrade stream recording or a Binance Vision spot "
            "aggTrades CSV)"
        )
    if not kind.spot_aggregate:
        raise InvalidTradesError(
            f"{p.name} is {kind.what}; tradelab import takes only spot aggregate trades (an "
            "aggTrade stream recording or a Binance Vision spot aggTrades CSV)"
        )
    if kind.kind == "csv":
        prefix = p.name.split("-", 1)[0]
        # never case-map a non-ASCII name: 'ſ'.upper() == 'S' would turn 'ethuſdt' into ETHUSDT
        named = prefix.upper() if prefix.isascii() else prefix
        if not want:
            try:
                named = validate_symbol(prefix)
            except InvalidSymbolError as exc:
                raise InvalidSymbolError(
                    f"{p.name}: the file name does not start with a symbol ({exc}); "
                    "give it with --symbol SYMBOL"
                ) from None
        sym = want or named
        if want and named != want and validate_symbol_or_none(named):
            raise InvalidTradesError(
                f"{p.name} is {kind.what} of {named}, not {want}; import it without --symbol"
            )
        frames = load_file(p, symbol=sym)
    else:
        frames = load_file(p)
        if want:
            if want not in frames:
                raise InvalidTradesError(
                    f"{p.name} is {kind.what} of {', '.join(sorted(frames)) or 'no symbol'}, "
                    f"not {want}"
                )
            frames = {want: frames[want]}
    directory = resolve_data_dir(data_dir)
    try:
        reader = TradeStore(directory, readonly=True)
    except NoDataError:
        reader = None
    if reader is not None:
        try:
            for sym, frame in sorted(frames.items()):
                conflict = find_conflict(reader, sym, frame)
                if conflict is not None:
                    raise ImportConflictError(
                        f"{p.name} conflicts with the store ({sym}): {conflict}; nothing was "
                        "imported (a file of another id space or another symbol?)"
                    )
        finally:
            reader.close()
    total = sum(f.height for f in frames.values())
    done = 0
    out = []
    with TradeStore(directory) as store:
        for sym, frame in sorted(frames.items()):
            new = 0
            for i in range(0, frame.height, _CHUNK):
                part = frame.slice(i, _CHUNK)
                new += store.append(sym, part)
                done += part.height
                if progress is not None:
                    progress(done, total)
            out.append(ImportResult(sym, new, frame.height - new, kind.what))
    return out


def validate_symbol_or_none(text: str) -> str | None:
    """``text`` as a symbol, or None when it is not one."""
    try:
        return validate_symbol(text)
    except InvalidTradesError:
        return None
    except ValueError:
        return None
