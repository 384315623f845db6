"""The shared Delta table: open or create it, write an hour's data files, commit them as one
transaction carrying the symbol's application id, and trim it (``vacuum_older_than``).

A commit happens in two steps, as in every Delta writer: the hour's Parquet file (zstd) is
written under ``symbol=…/date=…/`` first, then one commit adds it to the log together with
``Transaction(app_id, hour_number)`` and the hour's metadata. A process killed between the two
leaves an orphan file no reader sees (readers follow the log); the re-run writes the hour again
and commits it, and ``vacuum_older_than`` deletes the orphan. Several writers commit
optimistically: delta-rs retries a commit that lost the race to another symbol's commit by
itself; a commit that lost to the *same* symbol's commit fails with a conflict (the winning
commit carries the same app id), and :meth:`DeltaTarget.commit_hour` then re-reads the
watermark — the hour is in the table already — and deletes its own orphan file.
"""

from __future__ import annotations

import io
import random
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import polars as pl

from tradelab.exceptions import ConfigurationError, InvalidParameterError, NoDataError
from tradelab.logs import get_logger
from tradelab.scale.extra import (
    TableError,
    check_storage_options,
    env_pause,
    normalize_uri,
    one_line,
    require,
)
from tradelab.scale.hours import (
    HOUR_MS,
    PARTITION_COLUMNS,
    app_id,
    commit_metadata,
    date_of,
    file_stats,
    hour_number,
    hour_text,
    table_frame,
)

__all__ = ["COMMIT_ATTEMPTS", "DeltaTarget", "VacuumReport", "open_table", "vacuum_older_than"]

log = get_logger("tradelab.scale")

COMMIT_ATTEMPTS = 12
"""Commits of one hour tried before giving up (each after a re-read of the table and a
jittered wait); delta-rs itself retries every commit up to 15 times against other symbols'."""
ZSTD_LEVEL = 3
DAY_MS = 24 * HOUR_MS

_DELTA_TYPES = {
    "agg_id": "long",
    "price": "double",
    "qty": "double",
    "first_id": "long",
    "last_id": "long",
    "time": "timestamp",
    "buyer_is_maker": "boolean",
    "symbol": "string",
    "date": "date",
}
_commits_started = 0  # this process's commits, for the crash-test pause (extra.env_pause)


def _delta_schema(deltalake: Any) -> Any:
    return deltalake.Schema(
        [deltalake.Field(name, kind, nullable=True) for name, kind in _DELTA_TYPES.items()]
    )


def open_table(
    uri: str, storage_options: dict[str, str] | None = None, *, create: bool = False
) -> Any:
    """The ``deltalake.DeltaTable`` at ``uri`` (created, partitioned by symbol and date, when
    ``create`` and absent). Raises :class:`NoDataError` when there is none to read,
    :class:`ConfigurationError` when it is not a tradelab trade table, :class:`TableError` when
    storage fails."""
    deltalake = require("deltalake")
    options = check_storage_options(storage_options)
    try:
        if deltalake.DeltaTable.is_deltatable(uri, storage_options=options):
            table = deltalake.DeltaTable(uri, storage_options=options)
        elif not create:
            raise NoDataError(
                f"no Delta table at {uri}: export to it first "
                f"(tradelab export --data DIR --to {uri})"
            )
        else:
            table = _create(deltalake, uri, options)
    except (NoDataError, ConfigurationError):
        raise
    except Exception as exc:
        raise TableError(f"cannot open the Delta table at {uri}: {one_line(exc)}") from None
    _check_layout(table, uri)
    return table


def _create(deltalake: Any, uri: str, options: dict[str, str] | None) -> Any:
    try:
        return deltalake.DeltaTable.create(
            uri,
            schema=_delta_schema(deltalake),
            mode="ignore",
            partition_by=list(PARTITION_COLUMNS),
            name="tradelab_trades",
            description="Binance aggregate trades exported by tradelab, one commit per hour",
            storage_options=options,
        )
    except Exception:
        # Two exporters creating the table at once: one wins version 0, the other reads it.
        if deltalake.DeltaTable.is_deltatable(uri, storage_options=options):
            return deltalake.DeltaTable(uri, storage_options=options)
        raise


def _check_layout(table: Any, uri: str) -> None:
    names = [f.name for f in table.schema().fields]
    parts = list(table.metadata().partition_columns)
    if names != list(_DELTA_TYPES) or parts != list(PARTITION_COLUMNS):
        raise ConfigurationError(
            f"{uri} holds a Delta table that is not a tradelab trade table (columns "
            f"{', '.join(names)}; partitioned by {', '.join(parts) or 'nothing'}); expected "
            f"columns {', '.join(_DELTA_TYPES)} partitioned by symbol, date"
        )


@dataclass
class HourWrite:
    """What committing one hour did: ``committed`` False when another exporter had already
    committed the hour; ``bytes`` of the data file written; the table ``version`` after."""

    committed: bool
    bytes: int
    version: int
    retries: int = 0


class DeltaTarget:
    """One exporter's handle on the table: the ``DeltaTable`` (re-read after every commit),
    its storage handler for data files, the symbols' watermarks."""

    def __init__(self, uri: str, storage_options: dict[str, str] | None, exporter: str) -> None:
        self.uri = uri
        self.options = check_storage_options(storage_options)
        self.exporter = exporter
        self._deltalake = require("deltalake")
        self.table = open_table(uri, self.options, create=True)
        internal = require("deltalake._internal")
        # delta-rs's own object store: the data files go where, and with the credentials
        # that, its commits go.
        self._files = internal.DeltaFileSystemHandler(self.table.table_uri, self.options)

    @property
    def version(self) -> int:
        """The table version this handle has read."""
        return int(self.table.version())

    def refresh(self) -> None:
        """Read the commits other writers made since (incrementally)."""
        try:
            self.table.update_incremental()
        except Exception as exc:
            raise TableError(f"cannot read the Delta log of {self.uri}: {one_line(exc)}") from None

    def watermark(self, symbol: str) -> int | None:
        """The number of the last hour of ``symbol`` in the table (its app id's version)."""
        version = self.table.transaction_version(app_id(symbol))
        return None if version is None else int(version)

    def _write_file(self, symbol: str, hour_ms: int, frame: pl.DataFrame) -> tuple[Any, str, int]:
        buf = io.BytesIO()
        frame.write_parquet(buf, compression="zstd", compression_level=ZSTD_LEVEL, statistics=True)
        data = buf.getvalue()
        date = date_of(hour_ms).isoformat()
        name = f"part-{hour_number(hour_ms)}-{uuid.uuid4().hex}.zstd.parquet"
        rel = f"symbol={symbol}/date={date}/{name}"
        try:
            stream = self._files.open_output_stream(rel, None)
            stream.write(data)
            stream.close()
        except Exception as exc:
            raise TableError(
                f"cannot write {symbol} {hour_text(hour_ms)} to {self.uri}: {one_line(exc)}"
            ) from None
        add = self._deltalake.transaction.AddAction(
            rel,
            len(data),
            {"symbol": symbol, "date": date},
            int(time.time() * 1000),
            True,
            file_stats(frame),
        )
        return add, rel, len(data)

    def _discard(self, rel: str) -> None:
        try:
            self._files.delete_file(rel)
        except Exception:  # vacuum removes it later
            log.debug("could not delete the uncommitted file %s", rel)

    def commit_hour(self, symbol: str, state: Any, trades: pl.DataFrame) -> HourWrite:
        """Write the hour's data file, then commit it with ``Transaction(app_id(symbol),
        hour_number)`` and :func:`~tradelab.scale.hours.commit_metadata`; retried on
        concurrent-commit conflicts. ``committed`` is False when the hour turned out to be in
        the table already (another exporter won the race)."""
        global _commits_started
        deltalake = self._deltalake
        hour_ms = state.hour_ms
        version = hour_number(hour_ms)
        done = self.watermark(symbol)
        if done is not None and done >= version:  # another exporter got here first
            return HourWrite(False, 0, self.version)
        frame = table_frame(trades)
        add, rel, size = self._write_file(symbol, hour_ms, frame)
        _commits_started += 1
        pause = env_pause()
        if pause is not None and pause[0] == _commits_started:
            print(
                f"tradelab export: data file of {symbol} {hour_text(hour_ms)} written ({rel}); "
                f"pausing {pause[1]:g} s before the commit",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(pause[1])
        metadata = commit_metadata(symbol, state, trades, self.exporter)
        failure = ""
        for attempt in range(COMMIT_ATTEMPTS):
            props = deltalake.CommitProperties(
                # readVersion: the table version this commit was prepared on (Delta's own key);
                # a commit landing later than readVersion + 1 was rebased over other writers'.
                custom_metadata={**metadata, "readVersion": self.version},
                app_transactions=[deltalake.Transaction(app_id(symbol), version)],
            )
            try:
                self.table.create_write_transaction(
                    [add],
                    "append",
                    _delta_schema(deltalake),
                    partition_by=list(PARTITION_COLUMNS),
                    commit_properties=props,
                )
            except deltalake.exceptions.CommitFailedError as exc:
                failure = one_line(exc)
                self.refresh()
                done = self.watermark(symbol)
                if done is not None and done >= version:
                    self._discard(rel)
                    log.info(
                        "%s %s was committed by another exporter meanwhile; dropped this copy",
                        symbol,
                        hour_text(hour_ms),
                    )
                    return HourWrite(False, 0, self.version, attempt)
                time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
                continue
            except Exception as exc:
                raise TableError(
                    f"cannot commit {symbol} {hour_text(hour_ms)} to {self.uri}: {one_line(exc)}"
                ) from None
            self.refresh()
            return HourWrite(True, size, self.version, attempt)
        raise TableError(
            f"cannot commit {symbol} {hour_text(hour_ms)} to {self.uri} after "
            f"{COMMIT_ATTEMPTS} attempts against concurrent writers: {failure}"
        )


# --- retention of the table ----------------------------------------------------------------------


@dataclass(frozen=True)
class VacuumReport:
    """What :func:`vacuum_older_than` did: the first day kept, trades and data files removed
    from the table, files physically deleted (older removed files and orphans of crashed
    exports), and the table version after."""

    uri: str
    kept_from: str
    trades_removed: int
    files_removed: int
    files_deleted: int
    version: int

    def __str__(self) -> str:
        return (
            f"{self.uri}: removed {self.trades_removed:,} trades in {self.files_removed:,} files "
            f"dated before {self.kept_from}; deleted {self.files_deleted:,} unreferenced files; "
            f"table version {self.version}"
        )


def vacuum_older_than(
    uri: object,
    days: float,
    *,
    now_ms: int | None = None,
    file_retention_hours: float = 168,
    storage_options: dict[str, str] | None = None,
) -> VacuumReport:
    """Keep the last ``days`` days in the table: remove every day partition that ended more than
    ``days`` days ago (whole UTC days, one metadata-only commit), then delete data files that
    have been unreferenced for ``file_retention_hours`` (default 168, Delta's own safety window
    for readers of older versions; orphans of crashed exports are among them).

    The local store's retention stays what it is (7 days by default); this is the team's table.
    """
    target = normalize_uri(uri)
    if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days < 1e6:
        raise InvalidParameterError(
            f"days must be a number > 0 (the days of trades to keep), got {days!r}"
        )
    if (
        isinstance(file_retention_hours, bool)
        or not isinstance(file_retention_hours, int | float)
        or not 0 <= file_retention_hours < 1e7
    ):
        raise InvalidParameterError(
            f"file_retention_hours must be a number >= 0, got {file_retention_hours!r}"
        )
    now = int(time.time() * 1000) if now_ms is None else int(now_ms)
    keep_from = date_of(now - int(days * DAY_MS)).isoformat()
    table = open_table(target, storage_options)
    try:
        adds = pl.DataFrame(table.get_add_actions(flatten=True))
        cutoff = pl.lit(keep_from).str.to_date()
        old = adds.filter(pl.col("partition.date") < cutoff) if adds.height else adds
        if old.height:
            table.delete(f"date < '{keep_from}'")
        deleted = table.vacuum(
            retention_hours=int(file_retention_hours),
            dry_run=False,
            enforce_retention_duration=False,
            full=True,  # also files no commit ever referenced (orphans of crashed exports)
        )
        version = int(table.version())
    except Exception as exc:
        raise TableError(f"cannot vacuum the Delta table at {target}: {one_line(exc)}") from None
    return VacuumReport(
        target,
        keep_from,
        int(old["num_records"].sum()) if old.height else 0,
        old.height,
        len(deleted),
        version,
    )
