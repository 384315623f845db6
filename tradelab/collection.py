"""Where collection into a store runs — this process, another process, or nowhere — and how
that reads.

Every front-end asks the same question before it explains missing data: *is a collector filling
this store, and where?* :func:`where_collection_runs` is the one answer. It looks, in order, at

1. a collector the caller runs itself (the MCP server's ``--collect``): its live status;
2. the notebook session of this process (:mod:`tradelab.jupyter.session`, looked up in
   ``sys.modules`` so that nothing here imports it): its live status when it collects into the
   store asked about;
3. the status document every collector publishes in its store
   (:func:`tradelab.collector.read_collector_status`, with its 30 s freshness rule): this
   process's or another's, by process id.

The answer is a :class:`Status`, a plain ``dict`` (JSON-ready) whose ``source`` says which:
``"this process"``, ``"another process"`` or ``"none"``. Its rendering — :meth:`Status.headline`
("Collector running in pid 4242, up 5 min 3 s, store ..."), :meth:`Status.to_text` and the
notebook's HTML table — is the one way tradelab shows it; ``tradelab.status()`` and
``%tradelab status`` return and display it.
"""

from __future__ import annotations

import html
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tradelab.collector import export_line, read_collector_status
from tradelab.config import resolve_data_dir
from tradelab.exceptions import TradelabError
from tradelab.formatting import uptime_text, utc_text
from tradelab.logs import get_logger
from tradelab.store import open_store

__all__ = ["SESSION_MODULE", "SOURCES", "Status", "where_collection_runs"]

log = get_logger("tradelab.collection")

SOURCES: tuple[str, ...] = ("this process", "another process", "none")
"""The values of :attr:`Status.source`."""

SESSION_MODULE = "tradelab.jupyter.session"
"""The module whose ``live_status(path)`` reports this process's notebook session, if loaded."""


class Status(dict):  # type: ignore[type-arg]  # a plain JSON-ready dict, keys documented below
    """The collector status document (a plain ``dict``, JSON-ready) that also displays well:
    an HTML table in notebooks, a text table elsewhere.

    Keys: ``running``, ``source`` ("this process", "another process", or "none"), ``stale``,
    ``store_path``, ``ws_url``, ``pid``, ``started_at``, ``updated_at`` (unix ms) and
    ``symbols`` — per symbol: ``connected``, ``trades_stored``, ``rate_per_min``,
    ``last_trade_time``, ``last_agg_id``, ``gaps_detected``, ``gaps_backfilled``,
    ``gaps_unrepairable``, ``uptime_ratio``, ``buffered``, ``last_error``; with an export
    target, ``export`` (``uri``, ``exports``, ``through`` per symbol, ``last_error``).
    """

    COLUMNS: tuple[tuple[str, str], ...] = (
        ("symbol", "symbol"),
        ("connected", "connected"),
        ("trades_stored", "stored"),
        ("rate_per_min", "trades/min"),
        ("last_trade_time", "last trade (UTC)"),
        ("last_agg_id", "last id"),
        ("gaps_detected", "gaps"),
        ("gaps_backfilled", "backfilled"),
        ("gaps_unrepairable", "unrepairable"),
        ("uptime_ratio", "uptime"),
        ("buffered", "buffered"),
        ("last_error", "last error"),
    )

    @property
    def source(self) -> str:
        """Where collection runs: "this process", "another process" or "none"."""
        return str(self.get("source", "none"))

    @property
    def document(self) -> dict[str, Any] | None:
        """The collector's status document, or ``None`` when no collector ever reported."""
        return None if self.source == "none" else dict(self)

    def headline(self) -> str:
        """One line: who collects, where, and for how long."""
        if self.get("source") == "none":
            return (
                f"No collector is running for {self.get('store_path')}. "
                "Start one with %tradelab start or tradelab.start()."
            )
        if self.get("source") == "this process":
            who = "this kernel" if _in_kernel() else f"this process (pid {os.getpid()})"
        else:
            who = f"pid {self.get('pid')}"
        state = "running" if self.get("running") else "stopped"
        if self.get("stale") and self.get("reported_running"):
            state = (
                f"alive but silent ({self.get('silent')})"
                if self.get("writer_alive")
                else "not updating (its last status is over 30 s old: it may have died)"
            )
        since = ""
        if self.get("started_at"):
            since = f", up {uptime_text((time.time() * 1000 - self['started_at']) / 1000)}"
        error = f" — could not start: {self['start_error']}" if self.get("start_error") else ""
        return f"Collector {state} in {who}{since}, store {self.get('store_path')}{error}"

    def rows(self) -> list[list[str]]:
        """Display rows: one per symbol, formatted."""
        out = []
        for sym, s in sorted((self.get("symbols") or {}).items()):
            row = []
            for key, _ in self.COLUMNS:
                value = sym if key == "symbol" else s.get(key)
                row.append(_cell(key, value))
            out.append(row)
        return out

    def to_text(self) -> str:
        """A fixed-width text table (the magic's output outside notebooks)."""
        lines = [self.headline()]
        rows = self.rows()
        if rows:
            head = [title for _, title in self.COLUMNS]
            widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
            lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
            for r in rows:
                lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        export = export_line(self)
        if export is not None:
            lines.append(export)
        return "\n".join(line.rstrip() for line in lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(t)}</th>" for _, t in self.COLUMNS)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in self.rows()
        )
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        export = export_line(self)
        tail = f"<p>{html.escape(export)}</p>" if export is not None else ""
        return f"<p>{html.escape(self.headline())}</p>" + (table if body else "") + tail

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.to_text())

    def __str__(self) -> str:
        return self.to_text()


def where_collection_runs(
    data: str | os.PathLike[str] | None = None,
    *,
    store: Any = None,
    collector: Any = None,
    now_ms: int | None = None,
) -> Status:
    """Where collection into a store runs, with the collector's status: a :class:`Status`.

    The store is ``store`` (an open :class:`~tradelab.store.TradeStore`) or the one at ``data``
    (default: ``$TRADELAB_DATA`` or ``~/.tradelab/data``; without either, this process's
    session counts whatever store it fills). ``collector``: a collector the caller runs itself
    (its live status wins). ``now_ms`` fixes "now" for the 30 s freshness rule (tests).

    ``source`` is "this process" (the caller's collector, this process's notebook session, or a
    status document with this process's id), "another process", or "none" (no collector ever
    reported; ``running`` is then False). A collector whose document is stale (it stopped
    writing it for 30 s) has ``running`` False and ``stale`` True; never raises because nothing
    runs or the store cannot be read.
    """
    path = Path(store.path) if store is not None else resolve_data_dir(data)
    doc: dict[str, Any] | None = None
    if collector is not None:
        # The caller's own collector: its live status, fresher than the document it publishes.
        doc = dict(collector.status())
        doc["stale"] = not doc.get("running")
        doc["reported_running"] = bool(doc.get("running"))
        doc["source"] = "this process"
    else:
        session = sys.modules.get(SESSION_MODULE)  # loaded only if someone started a session
        if session is not None:
            asked = None if store is None and data is None else path
            doc = session.live_status(asked)
    if doc is None:
        published = _published_status(store, path, now_ms)
        if not published:
            return Status(
                {"running": False, "source": "none", "store_path": str(path), "symbols": {}}
            )
        doc = dict(published)
        doc["source"] = "this process" if doc.get("pid") == os.getpid() else "another process"
        if doc.get("stale"):
            doc["running"] = False
    return Status(doc)


def _published_status(store: Any, path: Path, now_ms: int | None) -> Mapping[str, Any] | None:
    """The status document in ``store`` (else in the store at ``path``, if there is one)."""
    try:
        if store is None:
            if not (path.is_dir() and any(path.iterdir())):
                return None
            store = open_store(path)
            store.refresh()
        return read_collector_status(store, now_ms=now_ms)
    except TradelabError as exc:
        log.debug("No readable collector status in %s: %s", path, exc)
        return None


# --- presentation helpers --------------------------------------------------------------------


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (an IPython shell with a kernel attached)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


_COUNTS = ("trades_stored", "gaps_detected", "gaps_backfilled", "gaps_unrepairable", "buffered")


def _cell(key: str, value: Any) -> str:
    """One cell of the status table."""
    if value is None:
        return "—"
    if key == "connected":
        return "yes" if value else "no"
    if key == "rate_per_min":
        return f"{float(value):,.1f}"
    if key == "uptime_ratio":
        return f"{float(value):.1%}"
    if key == "last_trade_time":
        return utc_text(value, millis=True)
    if key in _COUNTS:
        return f"{int(value):,}"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
