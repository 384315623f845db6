"""The backfill's stop phase runs whatever happened between the stop request and its start.

``Collector.stop()`` requests the stop, then closes the streams and waits for the writer's
last tick (up to a second), and only then starts the stop phase (``Backfiller.begin_stop``):
fetch every open hole and each symbol's tail up to the stop instant. A backfill round that
ran and ended in between — woken by a gap in the last frames — used to end the backfill task
("stopping: return"), so the stop phase never ran: the tails were left unfetched and a gap
revealed by the last frames stayed open, a repairable hole in the store, or ids REST never had
left unrecorded as unrepairable (seen once in CI, ``test_crash.py``).

Real parts: the simulator's REST server on 127.0.0.1 and the collector's REST client.
"""

from __future__ import annotations

import asyncio
import time

from tradelab.binance import GapTracker, RestClient
from tradelab.collector.backfill import Backfiller
from tradelab.collector.gate import IntakeGate
from tradelab.collector.runtime import LastErrors, StopSignal
from tradelab.simulator import Simulator

SYM = "BTCUSDT"


def test_the_stop_phase_runs_after_a_round_that_ended_between_the_request_and_its_start() -> None:
    with Simulator((SYM,), source="synthetic", speed=50, max_trades=400, seed=5) as sim:
        for _ in range(200):
            if len(sim.published(SYM)) >= 400:
                break
            time.sleep(0.05)
        ids = sim.published(SYM)
        times = dict(zip(ids, sim.published_frame(SYM)["time"].dt.epoch("ms"), strict=True))
        streamed, revealed = ids[:100], ids[106]  # ids[100:106] missed by the stream

        async def scenario() -> tuple[GapTracker, IntakeGate, bool]:
            tracker = GapTracker(SYM)
            gate = IntakeGate([SYM], 10_000)
            gate.begin()
            stop = StopSignal()
            stop.begin()
            rest = RestClient(sim.rest_url)
            bf = Backfiller({SYM: tracker}, rest, gate, stop, LastErrors([SYM]), rest_limit=1000)
            bf.begin()
            for a in streamed:
                assert tracker.observe(a, times[a]) is True
            task = asyncio.ensure_future(bf.run())
            await asyncio.sleep(0.05)
            loop = asyncio.get_running_loop()
            stop.request(loop.time() + 10)  # Collector.stop(), step 0
            bf.wake()  # e.g. a frame read while the streams close: a round with nothing to do
            await asyncio.sleep(0.2)
            ended_early = task.done()
            gap = tracker.observe(revealed, times[revealed])  # the last frame: a gap below it
            assert gap is not True and gap is not False
            bf.gap_detected(gap)
            bf.begin_stop(int(time.time() * 1000) + 60_000)  # Collector.stop(), step 2
            await asyncio.wait_for(task, 10)
            return tracker, gate, ended_early

        tracker, gate, ended_early = asyncio.run(scenario())
    assert not ended_early, "the backfill task ended before the stop phase began"
    assert tracker.open_gaps == [], tracker.open_ranges()  # the gap revealed last: fetched
    got = sorted(gate.take(SYM).ids())
    assert got == [*ids[100:106], *ids[107:]]  # the hole, then the tail up to the last id
    assert tracker.high == ids[-1]
