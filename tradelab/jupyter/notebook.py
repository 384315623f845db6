"""Helpers that let the notebooks (and anyone working offline) run without Binance.

- :func:`exchange` — the endpoint to collect from: the real one when ``TRADELAB_WS_URL`` and
  ``TRADELAB_REST_URL`` are configured, otherwise a local :class:`~tradelab.simulator.Simulator`
  started on a background thread (its own event loop, so it keeps publishing while a notebook
  cell blocks the kernel — which is what makes the "blocking cell" demonstration honest).
- :func:`temp_data_dir` — a throw-away store directory, removed when the process exits.
- :func:`load_frames` — write trade frames (recordings or synthetic) into a store.
- :func:`agg_id_gaps` — the holes in a symbol's stored agg ids (empty = contiguous).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from tradelab.config import environment_urls

__all__ = ["Exchange", "agg_id_gaps", "exchange", "load_frames", "temp_data_dir"]


@dataclass
class Exchange:
    """Where to collect from; ``simulator`` is ``None`` for a real, configured endpoint."""

    ws_url: str
    rest_url: str
    simulator: Any = None

    @property
    def simulated(self) -> bool:
        """True when this is the local simulator (so published ids can be compared)."""
        return self.simulator is not None

    def published(self, symbol: str) -> list[int]:
        """The agg ids the simulator published for ``symbol`` (simulator only)."""
        if self.simulator is None:
            raise RuntimeError("a real exchange does not tell us what it published")
        return self.simulator.published(symbol)

    def close(self) -> None:
        """Stop the simulator (no-op for a real endpoint)."""
        if self.simulator is not None:
            self.simulator.stop_thread()

    def __repr__(self) -> str:
        what = "local simulator" if self.simulated else "configured exchange"
        return f"<{what}: stream {self.ws_url}, REST {self.rest_url}>"


def exchange(
    symbols: tuple[str, ...] | str = ("BTCUSDT", "ETHUSDT"), **simulator_kwargs: Any
) -> Exchange:
    """The configured endpoint, or a simulator for ``symbols`` running on its own thread.

    ``simulator_kwargs`` go to :class:`~tradelab.simulator.Simulator` (``speed``,
    ``rate_per_s``, ``faults``, ``source``, ...). The simulator stops when the process exits.
    """
    ws, rest = environment_urls()
    if ws and rest:
        return Exchange(ws, rest)
    from tradelab.simulator import Simulator

    sim = Simulator(symbols, **simulator_kwargs).run_in_thread()
    atexit.register(sim.stop_thread)
    return Exchange(sim.ws_url, sim.rest_url, sim)


def temp_data_dir(prefix: str = "tradelab-notebook-") -> Path:
    """A fresh, empty store directory, deleted when the process exits."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path


def load_frames(store: Any, frames: Mapping[str, pl.DataFrame]) -> dict[str, int]:
    """Append each symbol's trades to ``store`` (exactly once); returns trades stored per symbol."""
    return {symbol: store.append(symbol, frame) for symbol, frame in frames.items()}


def agg_id_gaps(store: Any, symbol: str) -> list[tuple[int, int]]:
    """The missing agg-id ranges (inclusive) between the first and last stored trade of
    ``symbol``; an empty list means the stored history is contiguous."""
    frame = store.trades(symbol, 0, 10**13)
    ids = frame["agg_id"]
    if ids.len() < 2:
        return []
    nxt = ids.shift(-1)
    holes = pl.DataFrame({"a": ids, "b": nxt}).filter(pl.col("b") - pl.col("a") > 1)
    return [(int(a) + 1, int(b) - 1) for a, b in holes.iter_rows()]
