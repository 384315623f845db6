"""The collector: Binance aggTrade streams into the store, every trade exactly once.

:class:`Collector` is the asyncio service; :class:`CollectorSettings` its frozen, validated
settings. The collector is assembled from parts that each own their state — the intake gate
(:mod:`.gate`), the stream supervisor (:mod:`.streams`), the backfiller (:mod:`.backfill`), the
batch writer (:mod:`.writer`) and the status publisher (:mod:`.publisher`) — and reach the store
and the REST API through the protocols of :mod:`.ports`. :mod:`.status_doc` reads and renders
the status document a running collector publishes to its store, which is how other processes
learn that (and how well) collection runs.
"""

from __future__ import annotations

from tradelab.collector.collector import Collector
from tradelab.collector.settings import CollectorSettings
from tradelab.collector.status_doc import (
    STALE_AFTER_MS,
    STATUS_META,
    export_line,
    format_status,
    read_collector_status,
)

__all__ = [
    "STALE_AFTER_MS",
    "STATUS_META",
    "Collector",
    "CollectorSettings",
    "export_line",
    "format_status",
    "read_collector_status",
]
