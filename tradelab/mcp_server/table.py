"""``get_collection_status`` of a reader-only server over a team's shared Delta table.

``tradelab mcp --source URI`` serves the analytics of a table that collectors elsewhere fill
(``tradelab export``, or the collector's ``export_to``): there is no collector here to report
on, so the status says what the table holds per symbol — read from its log, no data file is
opened (:func:`tradelab.scale.table_contents`) — and that each hour arrives once it has closed.
"""

from __future__ import annotations

import time

from tradelab.exceptions import NoDataError
from tradelab.formatting import ago_text, iso_utc, span_text
from tradelab.mcp_server.presentation import CollectionStatus, SymbolStatus

__all__ = ["table_status"]


def table_status(uri: str, *, now: float | None = None) -> CollectionStatus:
    """The collection status of the Delta table at ``uri``: one :class:`SymbolStatus` per
    symbol in it (trades, first and last trade, bytes), ``source="delta-table"``."""
    from tradelab.scale import table_contents  # the table's reader only when asked

    now = time.time() if now is None else now
    checked_at = iso_utc(now * 1000) or ""
    try:
        contents = table_contents(uri)
    except NoDataError as exc:
        return CollectionStatus(
            source="delta-table",
            store_path=uri,
            store_exists=False,
            checked_at=checked_at,
            bytes_on_disk=None,
            collector=None,
            symbols=[],
            summary=f"This server reads a shared Delta table, and there is none yet: {exc}.",
        )
    symbols: list[SymbolStatus] = []
    lines: list[str] = []
    for row in contents.iter_rows(named=True):
        first_s, last_s = row["first_ms"] / 1000, row["last_ms"] / 1000
        since_last = round(max(0.0, now - last_s), 1)
        entry = SymbolStatus(
            symbol=row["symbol"],
            trades_stored=int(row["trades"]),
            first_trade_time=iso_utc(row["first_ms"]),
            last_trade_time=iso_utc(row["last_ms"]),
            seconds_since_last_trade=since_last,
            history_hours=round((last_s - first_s) / 3600, 3),
            collecting=False,
            rate_per_min=None,
        )
        symbols.append(entry)
        lines.append(
            f"{entry.symbol}: {entry.trades_stored:,} trades covering "
            f"{span_text((entry.history_hours or 0.0) * 3600)}, last trade "
            f"{ago_text(since_last)}."
        )
    head = (
        f"This server reads the shared Delta table at {uri} (read-only): collectors elsewhere "
        "export each closed hour into it, so the last hour is never there yet and nothing is "
        "collected here."
    )
    if not symbols:
        head += " The table holds no trades yet."
    return CollectionStatus(
        source="delta-table",
        store_path=uri,
        store_exists=True,
        checked_at=checked_at,
        bytes_on_disk=int(contents["bytes"].sum()) if contents.height else 0,
        collector=None,
        symbols=symbols,
        summary=" ".join([head, *lines]),
    )
