"""History: fill a time window of a symbol's aggregate trades from Binance's daily archives
and its REST API, exactly once, resumably, with visible progress.

:mod:`.plan` decides (pure) which whole UTC days come from the archives and which spans from
REST; :mod:`.archive` downloads, verifies and parses a daily archive; :mod:`.engine` runs a
plan against a :class:`~tradelab.store.TradeStore` (:func:`fill_window`); :mod:`.progress`
shows it as a tqdm bar (a terminal bar, or the notebook widget in Jupyter).
"""

from __future__ import annotations

from tradelab.history.archive import (
    ARCHIVE_URL_ENV,
    DEFAULT_ARCHIVE_URL,
    ArchiveChecksumError,
    ArchiveClient,
    parse_vision_csv,
    resolve_archive_url,
)
from tradelab.history.engine import FillReport, HistoryProgress, fill_window, stored_runs
from tradelab.history.imports import (
    ImportConflictError,
    ImportResult,
    find_conflict,
    import_file,
)
from tradelab.history.plan import (
    DAY_MS,
    ArchiveDay,
    FillPlan,
    Run,
    Span,
    archive_path,
    missing_spans,
    plan_fill,
)
from tradelab.history.progress import ProgressBar

__all__ = [
    "ARCHIVE_URL_ENV",
    "DAY_MS",
    "DEFAULT_ARCHIVE_URL",
    "ArchiveChecksumError",
    "ArchiveClient",
    "ArchiveDay",
    "FillPlan",
    "FillReport",
    "HistoryProgress",
    "ImportConflictError",
    "ImportResult",
    "ProgressBar",
    "Run",
    "Span",
    "archive_path",
    "fill_window",
    "find_conflict",
    "import_file",
    "missing_spans",
    "parse_vision_csv",
    "plan_fill",
    "resolve_archive_url",
    "stored_runs",
]
