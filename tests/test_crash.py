"""Crash safety with real processes and signals: ``tradelab collect`` against the simulator.

* SIGKILL at chosen instants — right after a batch write, right after one that left a hole,
  right after the holes left by that kill were found at start, right after a gap was
  backfilled, right after connecting (the catch-up through REST just begun), and at random
  instants — restarted each time, at >= 500 trades/s per symbol with stream gaps (some
  of them absent from REST too) and a flaky REST API (so holes stay open long enough to be
  killed with). After a final, undisturbed run and a SIGTERM: the store holds every published
  id exactly once with the published values, records exactly the ids the exchange never had as
  unrepairable, and ``tradelab check`` exits 0.
* SIGTERM while the collector waits to reconnect: every trade published before the signal is
  stored (fetched through REST by the stop phase).

A kill "on a log line" is taken as soon as this process reads the line (the collector runs on
meanwhile for a millisecond or so), which hits those instants closely and repeatably.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tradelab.cli import main
from tradelab.simulator import Faults, Simulator
from tradelab.store import TradeStore

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SYMS = ("BTCUSDT", "ETHUSDT")
RATE = 600  # trades/s per symbol (synthetic, speed 1; bursts go higher)

Event = dict[str, Any]


class Collect:
    """A ``tradelab collect`` process whose JSON log lines are read on a thread."""

    def __init__(self, data: Path, sim: Simulator, *extra: str) -> None:
        cmd = [
            sys.executable, "-m", "tradelab", "--log-level", "DEBUG", "--log-format", "json",
            "collect", "--symbols", ",".join(SYMS), "--data", str(data),
            "--ws-url", sim.ws_url, "--rest-url", sim.rest_url, *extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
        self.events: list[Event] = []
        self._lines: queue.Queue[Event | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"msg": line.rstrip()}
            self._lines.put(ev if isinstance(ev, dict) else {"msg": str(ev)})
        self._lines.put(None)

    def wait_for(self, pred: Callable[[Event], bool], timeout: float) -> Event | None:
        """The first log line matching ``pred`` within ``timeout`` s (None if none came)."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                ev = self._lines.get(timeout=left)
            except queue.Empty:
                return None
            if ev is None:
                tail = "\n".join(str(e) for e in self.events[-15:])
                raise AssertionError(f"the collector exited ({self.proc.wait()}):\n{tail}")
            self.events.append(ev)
            if pred(ev):
                return ev
        return None

    def drain(self) -> None:
        while True:
            try:
                ev = self._lines.get(timeout=5.0)
            except queue.Empty:
                return
            if ev is None:
                return
            self.events.append(ev)

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no handler, no flush, no goodbye
        self.proc.wait(timeout=10)
        self.drain()

    def named(self, event: str) -> list[Event]:
        return [e for e in self.events if e.get("event") == event]


def event(name: str) -> Callable[[Event], bool]:
    return lambda e: e.get("event") == name


def batch_written(e: Event) -> bool:
    """The store's DEBUG line after an append committed ("Stored N trades for S")."""
    return e.get("logger") == "tradelab.store" and str(e.get("msg", "")).startswith("Stored ")


def repairable_holes(data: Path) -> dict[str, list[tuple[int, int]]]:
    """What the store (read by another process) is missing that the exchange still has."""
    with TradeStore(data, readonly=True) as r:
        out = {}
        for s in SYMS:
            h = r.holes(s).filter(~pl.col("unrepairable"))
            out[s] = list(zip(h["first_missing"], h["last_missing"], strict=True))
        return out


def last_ids(data: Path) -> dict[str, int | None]:
    with TradeStore(data, readonly=True) as r:
        return {s: r.last_agg_id(s) for s in SYMS}


def assert_store_equals_published(data: Path, sim: Simulator) -> dict[str, int]:
    """Every published id from the first stored to the last stored, exactly once, with equal
    values; the ids the exchange never had recorded as unrepairable, and nothing else."""
    counts = {}
    with TradeStore(data, readonly=True) as r:
        for s in SYMS:
            got = r.trades(s, 0, 2**42)
            ids = got["agg_id"].to_list()
            assert ids and len(ids) == len(set(ids)), f"{s}: an id stored twice"
            lo, hi = ids[0], ids[-1]
            pub = sim.published_frame(s).filter(pl.col("agg_id").is_between(lo, hi))
            missing = sorted(set(pub["agg_id"]) - set(ids))
            extra = sorted(set(ids) - set(pub["agg_id"]))
            assert not missing and not extra, (s, missing[:10], extra[:10])
            assert got.select(pub.columns).equals(pub), f"{s}: stored values differ"
            holes = r.holes(s)
            never = [(a, b) for a, b in sim.unrepairable(s) if lo <= a and b <= hi]
            assert holes["unrepairable"].all(), (s, holes.rows(), never)
            assert list(zip(holes["first_missing"], holes["last_missing"], strict=True)) == never
            counts[s] = len(ids)
    return counts


def test_sigkill_at_any_instant_loses_nothing_the_exchange_serves(tmp_path, capsys) -> None:
    data = tmp_path / "d"
    rnd = random.Random(11)
    flaky = Faults(
        skip_rate=0.002,  # stream gaps, ~1 per 500 trades
        skip_length=4,
        skip_unrepairable=0.25,  # a quarter of them are holes in REST too
        rest_fail_rate=0.3,  # and REST often says "later": holes stay open for a while
        retry_after=1,
    )

    def write_leaving_a_hole(e: Event) -> bool:
        """A batch write after which the store has a hole (live trades stored above a gap
        REST has not filled yet): checked by reading the store from this process."""
        return batch_written(e) and any(repairable_holes(data).values())

    plan: list[tuple[str, Callable[[Event], bool] | None]] = [
        ("a batch write", batch_written),
        ("a batch write leaving a hole", write_leaving_a_hole),
        ("holes found at start, before their repair", event("hole_found")),
        ("a gap backfilled", event("gap_backfilled")),
        ("connected, the catch-up through REST just begun", event("connected")),
        ("a random instant", None),
        ("a random instant", None),
    ]
    hit: list[str] = []
    found_at_start = 0
    t0 = time.monotonic()
    with Simulator(SYMS, source="synthetic", speed=1, rate_per_s=RATE, seed=4, faults=flaky) as sim:
        for what, pred in plan:
            run = Collect(data, sim)
            if pred is None:
                assert run.wait_for(event("collector_start"), 20), "the collector did not start"
                time.sleep(rnd.uniform(0.1, 1.5))
                hit.append(what)
            elif run.wait_for(pred, 15) is not None:  # holes are found before the start line
                hit.append(what)
            run.kill()
            found_at_start += len(run.named("hole_found"))
        # the final run, undisturbed: everything repaired, then a graceful stop
        sim.set_faults(Faults(skip_rate=0.002, skip_length=4, skip_unrepairable=0.25))
        final = Collect(data, sim)
        assert final.wait_for(event("collector_start"), 20)
        found_at_start += len(final.named("hole_found"))
        target = {s: sim.published(s)[-1] for s in SYMS}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            final.wait_for(lambda e: False, 0.3)  # keep reading its log
            ids = last_ids(data)
            if all((ids[s] or 0) >= target[s] for s in SYMS) and not any(
                repairable_holes(data).values()
            ):
                break
        else:
            raise AssertionError(f"not repaired in time: {repairable_holes(data)}")
        found_at_start += len(final.named("hole_found"))
        final.proc.send_signal(signal.SIGTERM)
        assert final.proc.wait(timeout=30) == 0
        final.drain()
        rate = {s: n / (time.monotonic() - t0) for s, n in sim.stats()["published"].items()}
        counts = assert_store_equals_published(data, sim)
    assert main(["check", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "complete: no repairable hole" in out and "0 repairable" in out
    # every instant was really hit, at the rate asked, and the restarts did repair holes
    assert hit == [what for what, _ in plan], hit
    assert found_at_start >= 1, "no kill left a hole: the test proved nothing about repair"
    assert all(r >= 500 for r in rate.values()), rate
    assert all(n > 2000 for n in counts.values()), counts  # seconds of trades, not a few
    stop = final.named("collector_stop")[0]
    assert stop["holes_left"] == 0 and stop["tails_unfetched"] == [], stop


class Gatekeeper:
    """A TCP proxy on 127.0.0.1 in front of the simulator's stream port: it forwards while
    ``open`` and, once closed, cuts every connection and refuses new ones at once (the
    handshake fails), like a network that went away."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.open = True
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.open = False
        for sock in self.conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def test_sigterm_while_waiting_to_reconnect_stores_everything_published_before(tmp_path) -> None:
    data = tmp_path / "d"
    # after a first healthy connection (trades received and stored) the network to the stream
    # goes away: every connection attempt fails, the reconnect delay doubles (0.5, 1, 2, ...
    # s) and soon the collector spends seconds waiting, receiving nothing (REST still works)
    with Simulator(SYMS, source="synthetic", speed=1, rate_per_s=RATE, seed=8) as sim:
        gate = Gatekeeper(sim.port or 0)
        run = Collect(data, sim, "--ws-url", f"ws://127.0.0.1:{gate.port}")
        assert run.wait_for(lambda e: e.get("event") == "connected", 30) is not None
        time.sleep(1.5)  # trades received and written
        gate.close()
        waiting = run.wait_for(
            lambda e: (
                e.get("event") in ("disconnected", "connect_failed") and e.get("retry_in", 0) >= 1.5
            ),
            30,
        )
        assert waiting is not None, "the collector never waited long to reconnect"
        time.sleep(0.6)  # in the wait: trades are published, nothing is received
        before = {s: sim.published(s)[-1] for s in SYMS}
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(timeout=30) == 0
        run.drain()
        stop = run.named("collector_stop")[0]
        with TradeStore(data, readonly=True) as r:
            for s in SYMS:
                ids = r.trades(s, 0, 2**42)["agg_id"].to_list()
                expected = [a for a in sim.published(s) if ids[0] <= a <= before[s]]
                assert ids[: len(expected)] == expected, s
                assert ids[-1] >= before[s]
                assert r.holes(s).filter(~pl.col("unrepairable")).height == 0
    assert stop["holes_left"] == 0 and stop["tails_unfetched"] == []
    assert run.named("tail_fetched"), "the stop phase fetched the tail through REST"
    assert os.path.isdir(data)
