"""Binance's public daily aggTrades archives (data.binance.vision): download, verify, parse.

``{archive_url}/data/spot/daily/aggTrades/{SYMBOL}/{SYMBOL}-aggTrades-{YYYY-MM-DD}.zip`` holds
one CSV without header — agg id, price, qty, first id, last id, timestamp (µs from 2025-01-01,
ms before), buyer is maker, best match — and ``.zip.CHECKSUM`` beside it holds
``<sha256>  <file name>``. :meth:`ArchiveClient.fetch_day` streams the zip to a temporary file
while hashing it (memory: one day of one symbol, the unzipped CSV), refuses a zip whose hash
differs from its checksum file (:class:`ArchiveChecksumError`), answers ``None`` for a day not
published yet (404), and parses the CSV with Polars' multi-threaded reader
(:func:`parse_vision_csv`): no Python loop per row.

The archive host is not the REST API: no request weight is spent here.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from typing import Any

import polars as pl

from tradelab.config import validate_url
from tradelab.exceptions import EndpointUnreachableError, ExchangeError, InvalidTradesError
from tradelab.history.plan import archive_path, day_text, parse_checksum
from tradelab.schema import TRADE_SCHEMA

__all__ = [
    "ARCHIVE_URL_ENV",
    "DEFAULT_ARCHIVE_URL",
    "ArchiveChecksumError",
    "ArchiveClient",
    "parse_vision_csv",
    "resolve_archive_url",
]

DEFAULT_ARCHIVE_URL = "https://data.binance.vision"
ARCHIVE_URL_ENV = "TRADELAB_ARCHIVE_URL"
_CHUNK = 1 << 20
_VISION_COLUMNS = {
    "agg_id": pl.Int64,
    "price": pl.Float64,
    "qty": pl.Float64,
    "first_id": pl.Int64,
    "last_id": pl.Int64,
    "ts": pl.Int64,
    "buyer_is_maker": pl.Utf8,
    "best_match": pl.Utf8,
}
_US_THRESHOLD = 10**14  # ms timestamps are ~1.7e12 today, µs ~1.7e15


class ArchiveChecksumError(ExchangeError):
    """A daily archive whose SHA-256 differs from its ``.CHECKSUM`` file (or an unreadable
    checksum file / zip): it is refused and that day is fetched through REST instead."""


def resolve_archive_url(url: str | None = None) -> str:
    """The archive base URL: ``url``, else ``$TRADELAB_ARCHIVE_URL``, else
    ``https://data.binance.vision`` — the one place the variable is read — validated."""
    chosen = url or os.environ.get(ARCHIVE_URL_ENV) or DEFAULT_ARCHIVE_URL
    return validate_url(chosen, schemes=("http", "https"), name="archive URL")


def parse_vision_csv(data: bytes) -> pl.DataFrame:
    """A Vision aggTrades CSV (bytes) as a frame in the trade schema, sorted by agg id.

    Timestamps are read as µs when they are (files from 2025-01-01), else as ms; a header
    line, if a file has one, is skipped. Raises InvalidTradesError for an unreadable file.
    """
    if not data.strip():
        return pl.DataFrame(schema=TRADE_SCHEMA)
    header = not data[:1].isdigit()
    try:
        raw = pl.read_csv(
            io.BytesIO(data),
            has_header=header,
            new_columns=list(_VISION_COLUMNS),
            schema_overrides=_VISION_COLUMNS,
        )
    except Exception as exc:
        raise InvalidTradesError(f"not a Binance aggTrades CSV: {exc}") from None
    if raw.width != len(_VISION_COLUMNS):
        raise InvalidTradesError(
            f"not a Binance aggTrades CSV: {raw.width} columns, expected {len(_VISION_COLUMNS)}"
        )
    ts_max = raw["ts"].max()
    if raw.height and not isinstance(ts_max, int):
        raise InvalidTradesError("not a Binance aggTrades CSV: the timestamp column is empty")
    micro = isinstance(ts_max, int) and ts_max > _US_THRESHOLD
    ts = pl.col("ts") // 1000 if micro else pl.col("ts")
    frame = raw.select(
        pl.col("agg_id"),
        pl.col("price"),
        pl.col("qty"),
        pl.col("first_id"),
        pl.col("last_id"),
        ts.cast(pl.Datetime("ms", "UTC")).alias("time"),
        (pl.col("buyer_is_maker").str.to_lowercase() == "true").alias("buyer_is_maker"),
    )
    if frame.null_count().sum_horizontal().item():
        raise InvalidTradesError("not a Binance aggTrades CSV: empty fields")
    return frame.sort("agg_id")


class ArchiveClient:
    """Downloads daily aggTrades archives from ``archive_url`` (Binance or the simulator)."""

    def __init__(self, archive_url: str | None = None, *, timeout: float = 60.0) -> None:
        self.archive_url = resolve_archive_url(archive_url)
        self.timeout = float(timeout)
        self.requests = 0
        self.bytes = 0
        self._opener = urllib.request.build_opener()
        self._opener.addheaders = [("User-Agent", "tradelab/0.1")]

    def url(self, symbol: str, day_ms: int) -> str:
        """The zip's URL for ``symbol`` on the UTC day starting at ``day_ms``."""
        return self.archive_url + archive_path(symbol, day_ms)

    def _open(self, url: str) -> Any:
        self.requests += 1
        try:
            return self._opener.open(url, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise ExchangeError(f"archive {url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EndpointUnreachableError(
                f"archive host {self.archive_url} unreachable ({reason}); check --archive-url"
            ) from None

    def fetch_day(self, symbol: str, day_ms: int) -> pl.DataFrame | None:
        """The day's trades (trade schema), or None when the archive is not published (404).

        Raises :class:`ArchiveChecksumError` when the zip does not match its checksum,
        :class:`ExchangeError` / :class:`EndpointUnreachableError` for other failures.
        """
        url = self.url(symbol, day_ms)
        resp = self._open(url + ".CHECKSUM")
        if resp is None:
            return None
        with resp:
            text = resp.read(4096).decode("utf-8", "replace")
        try:
            digest, name = parse_checksum(text)
        except ValueError as exc:
            raise ArchiveChecksumError(f"{symbol} {day_text(day_ms)}: {exc}") from None
        resp = self._open(url)
        if resp is None:
            return None
        sha = hashlib.sha256()
        with tempfile.TemporaryFile() as tmp, resp:
            while chunk := resp.read(_CHUNK):
                sha.update(chunk)
                tmp.write(chunk)
                self.bytes += len(chunk)
            if sha.hexdigest() != digest:
                raise ArchiveChecksumError(
                    f"{symbol} {day_text(day_ms)}: archive {name} has SHA-256 "
                    f"{sha.hexdigest()[:16]}…, its checksum file says {digest[:16]}…; refused"
                )
            tmp.seek(0)
            try:
                with zipfile.ZipFile(tmp) as zf:
                    members = [m for m in zf.namelist() if m.endswith(".csv")]
                    if len(members) != 1:
                        raise ArchiveChecksumError(
                            f"{symbol} {day_text(day_ms)}: archive holds {len(members)} CSV files"
                        )
                    data = zf.read(members[0])
            except zipfile.BadZipFile as exc:
                raise ArchiveChecksumError(f"{symbol} {day_text(day_ms)}: {exc}") from None
        return parse_vision_csv(data)
