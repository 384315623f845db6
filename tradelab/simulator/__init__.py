"""A local Binance-compatible server: aggTrade streams and REST history, with faults.

Binance cannot be reached from the project's machines, so tests, ``make demo`` and the
notebooks collect from this simulator instead::

    from tradelab.simulator import Faults, Simulator

    async with Simulator(("BTCUSDT", "ETHUSDT"), source="synthetic", speed=10,
                         faults=Faults(drop_every=30, skip_rate=0.001)) as sim:
        ...  # collect from sim.ws_url / sim.rest_url, then compare with sim.published(...)

    with Simulator(source="recordings") as sim:   # synchronous code: a background thread
        print(sim.ws_url, sim.rest_url)

Modules: :mod:`.sources` (synthetic generator, looping replay of the shared recordings),
:mod:`.faults` (the :class:`Faults` settings), :mod:`.protocol` (Binance frame and REST
formats, pure), :mod:`.history` (what was published, REST queries), :mod:`.restapi` (the REST
endpoints, weights and 429/418, pure), :mod:`.server` (the asyncio server, one port for
WebSocket and HTTP, assembled from the next two), :mod:`.feeds` (publishing each symbol's
trades: pacing, stream faults, frames to subscribers), :mod:`.connections` (the WebSocket side:
subscriptions, sending, connection faults), :mod:`.archives` (the daily aggTrades zips of
data.binance.vision, built from the history, with checksums).
"""

from __future__ import annotations

from tradelab.simulator.archives import build_archive
from tradelab.simulator.faults import MALFORMED_KINDS, Faults
from tradelab.simulator.history import RangeSet, TradeHistory
from tradelab.simulator.restapi import RequestRecord
from tradelab.simulator.server import Simulator
from tradelab.simulator.sources import ReplaySource, SyntheticSource

__all__ = [
    "MALFORMED_KINDS",
    "Faults",
    "RangeSet",
    "ReplaySource",
    "RequestRecord",
    "Simulator",
    "SyntheticSource",
    "TradeHistory",
    "build_archive",
]
