"""The collector's status as other processes see it, and its presentation as a table.

A running :class:`~tradelab.collector.Collector` writes its status document to the store every
few seconds (``store.put_meta("collector_status", ...)``, shape in the brief and in
:meth:`~tradelab.collector.Collector.status`). Any process that opens the store — ``tradelab
status``, the MCP server, another notebook — reads it with :func:`read_collector_status`, which
applies the freshness rule: the collector counts as running only if the document says so *and*
was updated less than :data:`STALE_AFTER_MS` (30 s) ago; otherwise ``stale`` is true (a
collector that was killed cannot say so itself). A stale document is not proof of death: a
collector that cannot write its store (a full disk) cannot publish either. So for a stale
document the store's owner file is consulted (:func:`tradelab.store.opening.writer_alive`: same
host, the pid alive and holding RocksDB's lock): ``writer_alive`` tells "alive but silent — the
store may be unwritable" from "died".
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tradelab.formatting import utc_text
from tradelab.store.opening import writer_alive

__all__ = [
    "STALE_AFTER_MS",
    "STATUS_META",
    "export_line",
    "format_status",
    "read_collector_status",
    "silent_text",
]

STATUS_META = "collector_status"
STALE_AFTER_MS = 30_000


def read_collector_status(store: Any, *, now_ms: int | None = None) -> dict[str, Any] | None:
    """The last collector status written to ``store``, or None if no collector ever ran there.

    Adds ``"stale": bool`` (True unless ``running`` and ``updated_at`` is < 30 s old) and
    ``"age_s"`` (seconds since the last update), and sets ``running`` to False when stale. A
    stale document that said "running" also gets ``"writer_alive"``: True if the process
    writing the store (its owner file) is the document's and still alive on this host, False
    if it is gone, None if that cannot be told (another host, no owner file); and
    ``"silent"``, that in words (:func:`silent_text`).
    """
    doc = store.get_meta(STATUS_META)
    if doc is None:
        return None
    now = int(time.time() * 1000) if now_ms is None else int(now_ms)
    updated = doc.get("updated_at")
    age = (now - updated) / 1000.0 if isinstance(updated, int | float) else None
    fresh = age is not None and age < STALE_AFTER_MS / 1000.0
    out = dict(doc)
    out["stale"] = not (bool(doc.get("running")) and fresh)
    out["reported_running"] = bool(doc.get("running"))
    out["running"] = bool(doc.get("running")) and fresh
    out["age_s"] = None if age is None else round(age, 1)
    if out["stale"] and out["reported_running"] and getattr(store, "path", None) is not None:
        owner, alive = writer_alive(Path(store.path))
        if isinstance(doc.get("pid"), int) and (owner or {}).get("pid") != doc["pid"]:
            alive = False  # the store is written by another process (or none): not this one
        out["writer_alive"] = alive
        out["writer_pid"] = (owner or {}).get("pid")
        out["silent"] = silent_text(out)
    return out


def silent_text(doc: dict[str, Any]) -> str | None:
    """For a stale document whose collector said "running": the truth in words — alive but
    silent (the store may be unwritable), or died. None when the document is not such."""
    if not (doc.get("stale") and doc.get("reported_running")):
        return None
    if doc.get("writer_alive"):
        return (
            f"collector pid {doc.get('writer_pid') or doc.get('pid')} is alive but has not "
            f"published its status for {doc.get('age_s')} s — the store may be unwritable "
            "(disk full?)"
        )
    return f"no update for {doc.get('age_s')} s: the collector died?"


def _ms(ms: Any) -> str:
    return utc_text(ms) if isinstance(ms, int | float) else "-"


def _history(h: Any) -> str:
    """A history fill's progress as a short cell: "-" (none), "done 12,345", "40% eta 12 s"."""
    if not isinstance(h, dict):
        return "-"
    if h.get("error"):
        return "failed"
    if h.get("done"):
        return f"done {h.get('trades', 0):,}"
    total = h.get("days_total") or 0
    pct = f"{100 * h.get('days_done', 0) / total:.0f}%" if total else "0%"
    eta = h.get("eta_s")
    return f"{pct} {h.get('trades', 0):,}" + (f" eta {eta:.0f} s" if eta is not None else "")


def format_status(doc: dict[str, Any] | None) -> str:
    """A human-readable report: one header line, then a table with one row per symbol."""
    if doc is None:
        return "No collector has run on this store yet (start one with `tradelab collect`)."
    if doc.get("running"):
        state = "running"
    elif doc.get("stale") and doc.get("reported_running"):
        what = "NOT PUBLISHING" if doc.get("writer_alive") else "NOT RUNNING"
        state = f"{what} ({silent_text(doc)})"
    else:
        state = "stopped"
    lines = [
        f"Collector {state}: pid {doc.get('pid')} on {doc.get('host')}, started "
        f"{_ms(doc.get('started_at'))} UTC, updated {_ms(doc.get('updated_at'))} UTC",
        f"  stream {doc.get('ws_url')}  REST {doc.get('rest_url')}  store {doc.get('store_path')}",
    ]
    header = (
        "symbol",
        "conn",
        "stored",
        "per min",
        "last trade (UTC)",
        "last id",
        "gaps d/b/u",
        "missing",
        "history",
        "uptime",
        "buffered",
        "last error",
    )
    rows = [header]
    for sym, s in sorted((doc.get("symbols") or {}).items()):
        rows.append(
            (
                sym,
                "yes" if s.get("connected") and doc.get("running") else "no",
                str(s.get("trades_stored", 0)),
                f"{s.get('rate_per_min', 0.0):.0f}",
                _ms(s.get("last_trade_time")),
                str(s.get("last_agg_id") if s.get("last_agg_id") is not None else "-"),
                f"{s.get('gaps_detected', 0)}/{s.get('gaps_backfilled', 0)}/"
                f"{s.get('gaps_unrepairable', 0)}",
                str(s.get("missing", 0)),
                _history(s.get("history")),
                f"{100 * float(s.get('uptime_ratio', 0.0)):.1f}%",
                str(s.get("buffered", 0)),
                (s.get("last_error") or "-")[:60],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    export = export_line(doc)
    if export is not None:
        lines.append(f"  {export}")
    return "\n".join(lines)


def export_line(doc: Mapping[str, Any]) -> str | None:
    """One line on the collector's export to a shared table (``doc["export"]``), or ``None``
    when it exports nowhere: the table, each symbol's last exported hour, the last failure."""
    export = doc.get("export")
    if not isinstance(export, dict):
        return None
    through = ", ".join(
        f"{sym} through {hour or 'nothing yet'}"
        for sym, hour in sorted((export.get("through") or {}).items())
    )
    error = export.get("last_error")
    return f"export to {export.get('uri')}: {through or 'not run yet'}" + (
        f"; last attempt failed: {str(error)[:120]}" if error else ""
    )
