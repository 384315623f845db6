"""The simulator's data.binance.vision: daily aggTrades zips built from its history.

``GET /data/spot/daily/aggTrades/{SYMBOL}/{SYMBOL}-aggTrades-{YYYY-MM-DD}.zip`` answers a zip
holding ``{SYMBOL}-aggTrades-{YYYY-MM-DD}.csv`` in Binance's format (no header; agg id, price,
qty, first id, last id, timestamp — µs from 2025-01-01, ms before — ``True``/``False`` buyer is
maker, best match), and ``.zip.CHECKSUM`` beside it ``<sha256>  <zip name>``. A day is
published once it has ended (plus ``publish_delay_s``) and the history holds trades of it;
otherwise 404, as Binance answers for a day not yet exported. The faults
``archive_bad_checksum`` (a checksum file that does not match its zip) and ``archive_missing``
(every archive 404) test the client's refusals and fallbacks. Zips are built once per day and
kept (a past day's trades do not change).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
import threading
import time
import zipfile
from collections.abc import Callable, Mapping

import polars as pl

from tradelab.simulator.faults import Faults
from tradelab.simulator.history import TradeHistory

__all__ = ["ARCHIVE_PREFIX", "ArchiveServer", "build_archive"]

ARCHIVE_PREFIX = "/data/"
_DAY_MS = 86_400_000
_MICROS_FROM_MS = 1_735_689_600_000  # 2025-01-01: Binance's spot exports switched to µs
_PATH = re.compile(
    r"^/data/spot/daily/aggTrades/([A-Z0-9]{2,20})/([A-Z0-9]{2,20})-aggTrades-"
    r"(\d{4}-\d{2}-\d{2})\.zip(\.CHECKSUM)?$"
)

#: ``(HTTP status, body, content type)``
ArchiveAnswer = tuple[int, bytes, str]


def build_archive(symbol: str, day_ms: int, trades: pl.DataFrame) -> tuple[bytes, str]:
    """The zip of one day's ``trades`` and its checksum line, as Binance publishes them."""
    name = f"{symbol}-aggTrades-{dt.datetime.fromtimestamp(day_ms / 1000, dt.UTC):%Y-%m-%d}"
    scale = 1000 if day_ms >= _MICROS_FROM_MS else 1
    flag = pl.when(pl.col("buyer_is_maker")).then(pl.lit("True")).otherwise(pl.lit("False"))
    csv = trades.select(
        "agg_id",
        pl.col("price").map_batches(lambda s: s.round(8)),
        pl.col("qty"),
        "first_id",
        "last_id",
        (pl.col("time").dt.epoch("ms") * scale).alias("ts"),
        flag.alias("m"),
        pl.lit("True").alias("best"),
    ).write_csv(include_header=False, float_precision=8)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr(name + ".csv", csv)
    data = buf.getvalue()
    return data, f"{hashlib.sha256(data).hexdigest()}  {name}.zip\n"


class ArchiveServer:
    """Answers archive requests from ``histories`` (thread-safe; building runs off the loop)."""

    def __init__(
        self,
        histories: Mapping[str, TradeHistory],
        *,
        faults: Callable[[], Faults],
        publish_delay_s: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.histories = histories
        self.faults = faults
        self.publish_delay_s = publish_delay_s
        self.clock = clock
        self._built: dict[tuple[str, int], tuple[bytes, str] | None] = {}
        self._lock = threading.Lock()

    @staticmethod
    def handles(path: str) -> bool:
        """Whether ``path`` is an archive path (else the REST or stream side answers)."""
        return path.startswith(ARCHIVE_PREFIX)

    def handle(self, path: str) -> ArchiveAnswer:
        """Answer ``GET path`` (blocking: may build a zip of a day)."""
        m = _PATH.match(path)
        if m is None or m.group(1) != m.group(2):
            return 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml"
        symbol, date, checksum = m.group(1), m.group(3), m.group(4) is not None
        try:
            day = dt.datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=dt.UTC)
        except ValueError:
            return 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml"
        day_ms = int(day.timestamp() * 1000)
        faults = self.faults()
        published = (day_ms + _DAY_MS) / 1000 + self.publish_delay_s <= self.clock()
        if symbol not in self.histories or not published or faults.archive_missing:
            return 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml"
        built = self._build(symbol, day_ms)
        if built is None:
            return 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml"
        data, line = built
        if not checksum:
            return 200, data, "application/zip"
        if faults.archive_bad_checksum:
            line = hashlib.sha256(data + b"corrupt").hexdigest() + line[64:]
        return 200, line.encode(), "text/plain"

    def _build(self, symbol: str, day_ms: int) -> tuple[bytes, str] | None:
        key = (symbol, day_ms)
        with self._lock:
            if key not in self._built:
                trades = self.histories[symbol].between(day_ms, day_ms + _DAY_MS)
                self._built[key] = build_archive(symbol, day_ms, trades) if trades.height else None
            return self._built[key]
