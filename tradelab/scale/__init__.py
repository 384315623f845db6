"""Beyond one machine: a shared Delta Lake table of the trades, and profiles on a Dask cluster.

One RocksDB store serves one analyst; a team shares history in an open table format every
engine reads (Spark, Trino, DuckDB, Polars), and runs heavy analytics on an existing
distributed engine. Needs the ``scale`` extra (``pip install 'tradelab[scale]'``:
``deltalake``, ``dask[distributed]``), imported only when a function here is called.

- :func:`export` / :func:`export_hour`: the store's closed hours into a Delta table, one
  transaction per symbol-hour carrying an application id, exactly once across retries, crashes
  and several exporters (:mod:`.exporter`, :mod:`.table`, the rules in :mod:`.hours`).
  :func:`vacuum_older_than` keeps the table's last N days.
- :func:`scan_trades` / :func:`volume_profile_from`: read a window back with the store's
  schema and answers (:mod:`.reading`, lazy ``pl.scan_delta`` with partition pruning);
  :func:`table_contents` what the table holds per symbol (from the log). ``source=`` of
  :func:`tradelab.trades`, :func:`tradelab.get_volume_profile` and the front-ends reads here.
- :func:`distributed_volume_profile` (:func:`tradelab.scale.distributed.volume_profile`): one
  Dask task per Parquet file, partial histograms merged as a tree, the same profile code
  (:mod:`.histogram`, pure; :mod:`.tasks`; :mod:`.distributed`).
  :func:`distributed_session_profiles` (:func:`tradelab.scale.distributed.session_profiles`):
  the same per session, equal to the one-process session profiles (:mod:`.sessions`, pure).

The how-to is ``docs/scale.md``.
"""

from __future__ import annotations

from tradelab.scale.distributed import local_client
from tradelab.scale.distributed import session_profiles as distributed_session_profiles
from tradelab.scale.distributed import volume_profile as distributed_volume_profile
from tradelab.scale.exporter import ExportReport, SymbolExport, TradeSource, export, export_hour
from tradelab.scale.extra import INSTALL_HINT, ScaleExtraMissingError, TableError, normalize_uri
from tradelab.scale.histogram import (
    Partial,
    merge_partials,
    partial_histogram,
    profile_from_histogram,
)
from tradelab.scale.hours import TABLE_SCHEMA, app_id, hour_number
from tradelab.scale.reading import (
    scan_trades,
    table_contents,
    volume_profile_from,
    where_in_table,
)
from tradelab.scale.table import VacuumReport, vacuum_older_than

__all__ = [
    "INSTALL_HINT",
    "TABLE_SCHEMA",
    "ExportReport",
    "Partial",
    "ScaleExtraMissingError",
    "SymbolExport",
    "TableError",
    "TradeSource",
    "VacuumReport",
    "app_id",
    "distributed_session_profiles",
    "distributed_volume_profile",
    "export",
    "export_hour",
    "hour_number",
    "local_client",
    "merge_partials",
    "normalize_uri",
    "partial_histogram",
    "profile_from_histogram",
    "scan_trades",
    "table_contents",
    "vacuum_older_than",
    "volume_profile_from",
    "where_in_table",
]
