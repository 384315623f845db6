"""tradelab in a notebook: the collection session, the ``%tradelab`` magic, notebook helpers.

:mod:`.session` runs one :class:`~tradelab.collector.Collector` inside this process, on the
kernel's own event loop when there is one (``tradelab.start`` / ``stop`` / ``status``; the
:class:`Status` it returns is :mod:`tradelab.collection`'s).
:mod:`.magic` is the ``%tradelab`` line magic, a thin dispatcher over the public API.
:mod:`.live` is the live view (``watch``: the profile redrawn in place every few seconds).
:mod:`.notebook` has the helpers the documentation notebooks use (a simulator or the real
exchange, temporary stores).
"""

from __future__ import annotations

from typing import Any

from tradelab.collection import Status
from tradelab.jupyter.live import Watch, stop_watching, watch, watching
from tradelab.jupyter.session import (
    SessionInfo,
    Stopping,
    astop,
    current,
    start,
    status,
    stop,
    wait_for_trades,
)

__all__ = [
    "SessionInfo",
    "Status",
    "Stopping",
    "Watch",
    "astop",
    "current",
    "load_ipython_extension",
    "start",
    "status",
    "stop",
    "stop_watching",
    "unload_ipython_extension",
    "wait_for_trades",
    "watch",
    "watching",
]


def load_ipython_extension(ipython: Any) -> None:
    """Register the ``%tradelab`` magic (IPython is imported only here)."""
    from tradelab.jupyter.magic import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Stop collection cleanly and unregister the magic."""
    from tradelab.jupyter.magic import unload_ipython_extension as unload

    unload(ipython)
