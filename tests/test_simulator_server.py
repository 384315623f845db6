"""The simulator over real sockets: a websockets client and urllib against 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import polars as pl
import pytest
import websockets
from test_simulator import PAYLOAD_RE, is_valid_trade
from websockets.exceptions import ConnectionClosed

from tradelab.exceptions import ConfigurationError
from tradelab.simulator import Faults, Simulator
from tradelab.simulator.sources import load_recordings

BOTH = "/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"


def run(coro_fn: Callable[[], Awaitable[Any]], timeout: float = 30) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(main())


def connect(url: str, **kwargs: Any) -> Any:
    """A websockets client; a short close timeout because a client whose receive buffer is
    full (a fast stream it stopped reading) cannot read the server's close frame."""
    kwargs.setdefault("close_timeout", 0.2)
    return websockets.connect(url, **kwargs)


def http_get(url: str) -> tuple[int, dict[str, str], Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


async def aget(url: str) -> tuple[int, dict[str, str], Any]:
    return await asyncio.to_thread(http_get, url)


async def collect(ws: Any, n: int) -> list[str]:
    return [await ws.recv() for _ in range(n)]


async def collect_until_each(ws: Any, symbols: Sequence[str], n: int) -> list[str]:
    """Frames of a combined stream until each of ``symbols`` sent ``n`` (at most 100,000)."""
    frames: list[str] = []
    counts = dict.fromkeys(symbols, 0)
    while min(counts.values()) < n and len(frames) < 100_000:
        frames.append(await asyncio.wait_for(ws.recv(), 30))
        counts[json.loads(frames[-1])["data"]["s"]] += 1
    return frames


async def rest_all(sim: Simulator, symbol: str, from_id: int, limit: int = 1000) -> list[dict]:
    out: list[dict] = []
    while True:
        status, _, items = await aget(
            f"{sim.rest_url}/api/v3/aggTrades?symbol={symbol}&fromId={from_id}&limit={limit}"
        )
        assert status == 200
        out.extend(items)
        if len(items) < limit:
            return out
        from_id = items[-1]["a"] + 1


def test_combined_stream_frames_ids_and_rest_pagination() -> None:
    async def main() -> None:
        async with Simulator(speed=50, seed=1) as sim:
            async with connect(sim.ws_url + BOTH) as ws:
                # each symbol's feed starts on its own (a recording loads per symbol): read
                # until both have sent enough, not a fixed count one symbol may fill alone
                frames = await collect_until_each(ws, sim.symbols, 300)
            per: dict[str, list[dict]] = {"BTCUSDT": [], "ETHUSDT": []}
            for text in frames:
                msg = json.loads(text)
                assert set(msg) == {"stream", "data"}
                data = msg["data"]
                assert msg["stream"] == data["s"].lower() + "@aggTrade"
                # Exact Binance field order and 8-decimal strings, on the wire.
                assert PAYLOAD_RE.match(text[text.index('"data":') + 7 : -1]), text
                assert data["E"] >= data["T"] and abs(data["T"] - time.time() * 1000) < 60_000
                per[data["s"]].append(data)
            for sym, items in per.items():
                ids = [d["a"] for d in items]
                assert len(ids) > 100 and ids == list(range(ids[0], ids[0] + len(ids))), sym
                # REST pages by fromId/limit return exactly what the stream sent.
                rest = await rest_all(sim, sym, ids[0], limit=97)
                by_id = {r["a"]: r for r in rest}
                for d in items:
                    r = by_id[d["a"]]
                    assert (r["p"], r["q"], r["f"], r["l"], r["T"], r["m"]) == (
                        d["p"],
                        d["q"],
                        d["f"],
                        d["l"],
                        d["T"],
                        d["m"],
                    )
                assert [r["a"] for r in rest] == sorted(by_id)
                # startTime/endTime: inclusive bounds on T.
                t0, t1 = items[10]["T"], items[60]["T"]
                status, _, window = await aget(
                    f"{sim.rest_url}/api/v3/aggTrades?symbol={sym}&startTime={t0}&endTime={t1}"
                    "&limit=1000"
                )
                assert status == 200
                expect = [r["a"] for r in rest if t0 <= r["T"] <= t1]
                assert [w["a"] for w in window] == expect
            # Everything published so far is in REST and in published()/published_frame().
            for sym in sim.symbols:
                published = sim.published(sym)
                everything = await rest_all(sim, sym, published[0])
                assert [r["a"] for r in everything][: len(published)] == published
                frame = sim.published_frame(sym)
                assert frame["agg_id"].to_list()[: len(published)] == published
                assert frame.schema["time"] == pl.Datetime("ms", "UTC")

    run(main)


def test_rest_endpoints_errors_and_weight_header() -> None:
    async def main() -> None:
        async with Simulator(("BTCUSDT",), speed=20, weight_limit=22) as sim:
            await asyncio.sleep(0.2)
            s1, h1, items = await aget(f"{sim.rest_url}/api/v3/aggTrades?symbol=BTCUSDT&limit=3")
            s2, h2, _ = await aget(f"{sim.rest_url}/api/v3/aggTrades?symbol=BTCUSDT")
            assert (s1, s2) == (200, 200) and len(items) == 3
            assert int(h2["X-MBX-USED-WEIGHT-1m"]) - int(h1["X-MBX-USED-WEIGHT-1m"]) == 4
            assert h1["Content-Type"].startswith("application/json")
            status, _, body = await aget(
                f"{sim.rest_url}/api/v3/aggTrades?symbol=BTCUSDT&limit=5000"
            )
            assert status == 400 and body["code"] == -1130
            status, _, body = await aget(f"{sim.rest_url}/api/v3/aggTrades?symbol=DOGEUSDT")
            assert status == 400 and body == {"code": -1121, "msg": "Invalid symbol."}
            status, _, body = await aget(f"{sim.rest_url}/api/v3/aggTrades?symbol=BTCUSDT&fromId=x")
            assert status == 400 and body["code"] == -1100 and "fromId" in body["msg"]
            # Weight: five requests of 4 (400s count too) = 20; the next would pass 22: 429.
            status, headers, body = await aget(f"{sim.rest_url}/api/v3/aggTrades?symbol=BTCUSDT")
            assert status == 429 and body["code"] == -1003 and int(headers["Retry-After"]) >= 1
            status, _, body = await aget(f"{sim.rest_url}/api/v3/nothing")
            assert status == 404
        async with Simulator(("BTCUSDT", "ZILUSDT"), speed=5) as sim:
            assert (await aget(f"{sim.rest_url}/api/v3/ping"))[2] == {}
            assert "serverTime" in (await aget(f"{sim.rest_url}/api/v3/time"))[2]
            _, _, info = await aget(f"{sim.rest_url}/api/v3/exchangeInfo")
            ticks = {
                s["symbol"]: next(
                    f["tickSize"] for f in s["filters"] if f["filterType"] == "PRICE_FILTER"
                )
                for s in info["symbols"]
            }
            assert ticks == {"BTCUSDT": "0.01000000", "ZILUSDT": "0.01000000"}
            _, _, one = await aget(f"{sim.rest_url}/api/v3/exchangeInfo?symbol=BTCUSDT")
            assert [s["symbol"] for s in one["symbols"]] == ["BTCUSDT"]
            status, _, _ = await aget(f"{sim.rest_url}/api/v3/exchangeInfo?symbol=XRPUSDT")
            assert status == 400

    run(main)


def test_raw_stream_and_live_control_messages() -> None:
    async def main() -> None:
        async with Simulator(speed=50, max_incoming_per_second=None) as sim:
            async with connect(sim.ws_url + "/ws/btcusdt@aggTrade") as ws:
                first = json.loads(await ws.recv())
                assert first["e"] == "aggTrade" and first["s"] == "BTCUSDT"  # no wrapper
                await ws.send(
                    json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@aggTrade"], "id": 1})
                )
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
                replies: dict[int, Any] = {}
                symbols = set()
                while len(replies) < 2 or "ETHUSDT" not in symbols:
                    msg = json.loads(await ws.recv())
                    if "id" in msg:
                        replies[msg["id"]] = msg
                    else:
                        symbols.add(msg["s"])
                assert replies[1] == {"result": None, "id": 1}
                assert replies[2] == {"result": ["btcusdt@aggTrade", "ethusdt@aggTrade"], "id": 2}
                await ws.send(
                    json.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 3})
                )
                await ws.send("{nope")
                got_error = False
                while True:
                    msg = json.loads(await ws.recv())
                    if msg.get("id") == 3:
                        assert msg == {"result": None, "id": 3}
                        break
                while not got_error:
                    msg = json.loads(await ws.recv())
                    got_error = "error" in msg and msg["error"]["code"] == 3
                later = [json.loads(m) for m in await collect(ws, 50)]
                assert {m["s"] for m in later} == {"ETHUSDT"}
            # Bad stream names are refused at the handshake.
            with pytest.raises(websockets.InvalidStatus) as err:
                async with connect(sim.ws_url + "/ws/BTCUSDT@trade"):
                    pass
            assert err.value.response.status_code == 400

    run(main)


def test_more_than_five_incoming_messages_per_second_closes_the_connection() -> None:
    async def main() -> None:
        async with Simulator(speed=5) as sim:
            async with connect(sim.ws_url + BOTH) as ws:
                for i in range(7):
                    await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
                with pytest.raises(ConnectionClosed):
                    while True:
                        await ws.recv()
                assert ws.close_code == 1008
            assert sim.stats()["closed_rate_limit"] == 1

    run(main)


def test_drop_every_aborts_connections_and_stream_resumes_after_reconnect() -> None:
    async def main() -> None:
        async with Simulator(speed=50, faults=Faults(drop_every=0.3)) as sim:
            ids: list[int] = []
            for _ in range(2):
                t0 = time.monotonic()
                async with connect(sim.ws_url + "/ws/btcusdt@aggTrade") as ws:
                    with pytest.raises(ConnectionClosed):
                        while True:
                            ids.append(json.loads(await ws.recv())["a"])
                    assert ws.close_code is None or ws.close_code == 1006  # no close frame
                    assert 0.25 < time.monotonic() - t0 < 2.0
            assert sim.stats()["drops"] == 2 and sim.stats()["closed_drop"] == 2
            # The trades published while disconnected are a gap on the stream, not in REST.
            gaps = [(a, b) for a, b in itertools.pairwise(ids) if b != a + 1]
            published = set(sim.published("BTCUSDT"))
            for a, b in gaps:
                assert set(range(a + 1, b)) <= published

    run(main)


def _stream_ids(frames: list[str]) -> list[int]:
    out = []
    for f in frames:
        try:
            d = json.loads(f)["data"]
        except (ValueError, KeyError):
            continue
        if is_valid_trade(d) and d["s"] == "BTCUSDT":
            out.append(d["a"])
    return out


@pytest.mark.parametrize("unrepairable", [0.0, 1.0])
def test_skipped_ids_are_gaps_repairable_through_rest_or_not(unrepairable: float) -> None:
    faults = Faults(skip_rate=0.02, skip_length=2, skip_unrepairable=unrepairable)

    async def main() -> None:
        async with Simulator(("BTCUSDT",), speed=0, faults=faults, seed=5) as sim:
            async with connect(sim.ws_url + "/stream?streams=btcusdt@aggTrade") as ws:
                ids = _stream_ids(await collect(ws, 3000))
            gaps = [(a + 1, b - 1) for a, b in itertools.pairwise(ids) if b != a + 1]
            assert gaps, "skip_rate=0.02 over 3000 trades must leave gaps"
            published = sim.published_ranges("BTCUSDT")
            rest_ids = {r["a"] for r in await rest_all(sim, "BTCUSDT", ids[0])}
            missing = [i for lo, hi in gaps for i in range(lo, hi + 1)]
            if unrepairable:
                assert not any(i in rest_ids or i in published for i in missing)
                holes = sim.unrepairable("BTCUSDT")
                assert all(any(lo <= i <= hi for lo, hi in holes) for i in missing)
                assert sim.stats()["skipped_ids_unrepairable"] >= len(missing)
            else:
                assert all(i in rest_ids and i in published for i in missing)
                assert sim.unrepairable("BTCUSDT") == []
                assert sim.stats()["skipped_ids_repairable"] >= len(missing)

    run(main)


def test_malformed_frames_are_sent_and_counted_without_losing_trades() -> None:
    async def main() -> None:
        faults = Faults(malformed_rate=0.05)
        async with Simulator(("BTCUSDT",), speed=0, faults=faults, seed=2) as sim:
            async with connect(sim.ws_url + "/stream?streams=btcusdt@aggTrade") as ws:
                frames = await collect(ws, 2000)
            bad = 0
            for f in frames:
                try:
                    ok = is_valid_trade(json.loads(f)["data"])
                except ValueError:
                    ok = False
                bad += not ok
            ids = _stream_ids(frames)
            assert 40 <= bad <= 170  # ~5% of 2000 frames
            assert ids == list(range(ids[0], ids[0] + len(ids)))  # extra frames, no gap
            stats = sim.stats()
            assert stats["malformed_frames"] >= bad
            kinds = [
                k
                for k in ("bad_json", "missing_field", "wrong_type", "unknown_event")
                if stats.get(f"malformed_{k}")
            ]
            assert len(kinds) == 4

    run(main)


@pytest.mark.slow
def test_stall_goes_silent_without_pongs_then_resumes_with_a_gap() -> None:
    async def main() -> None:
        # Short server pings: a stalled server must not ping (nor time out) either.
        faults = Faults(stall_every=0.3, stall_seconds=0.8, ping_interval=0.3, ping_timeout=0.3)
        async with Simulator(("BTCUSDT",), speed=100, faults=faults) as sim:
            async with connect(sim.ws_url + "/ws/btcusdt@aggTrade", ping_interval=None) as ws:

                async def ping_during_stall() -> bool:
                    await asyncio.sleep(0.5)  # the stall runs from 0.3 s to 1.1 s
                    try:
                        await asyncio.wait_for(await ws.ping(), 0.3)
                    except TimeoutError:
                        return True
                    return False

                pinger = asyncio.create_task(ping_during_stall())
                arrivals: list[tuple[float, int]] = []
                t0 = time.monotonic()
                while time.monotonic() - t0 < 1.6:
                    msg = json.loads(await ws.recv())
                    arrivals.append((time.monotonic(), msg["a"]))
                pong_missed = await pinger
                assert ws.close_code is None  # the stall did not end the connection
            silences = [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(arrivals)]
            longest, id_jump = max(silences)
            assert longest > 0.6 and id_jump > 1  # silent, then a gap (trades went on)
            assert pong_missed
            assert sim.stats()["stalls"] >= 1 and sim.stats()["frames_dropped_stalled"] > 0
            assert "closed_ping_timeout" not in sim.stats()

    run(main)


@pytest.mark.slow
def test_ping_without_pong_closes_and_answering_clients_stay() -> None:
    async def main() -> None:
        faults = Faults(ping_interval=0.2, ping_timeout=0.3)
        async with Simulator(
            ("BTCUSDT",), speed=1, faults=faults, max_incoming_per_second=None
        ) as sim:
            async with connect(sim.ws_url + "/ws/btcusdt@aggTrade", ping_interval=None) as good:
                deaf = await connect(sim.ws_url + "/ws/ethusdt@aggTrade", ping_interval=None)
                deaf.transport.pause_reading()  # never sees the pings, never pongs
                await asyncio.sleep(1.0)
                deaf.transport.resume_reading()
                with pytest.raises(ConnectionClosed):
                    while True:
                        await deaf.recv()
                assert deaf.close_code == 1011
                await good.recv()  # the answering client is still served
                assert good.close_code is None
            assert sim.stats()["closed_ping_timeout"] == 1

    run(main)


@pytest.mark.slow
def test_lifetime_closes_cleanly_and_server_shutdown_is_announced() -> None:
    async def main() -> None:
        async with Simulator(("BTCUSDT",), speed=20, faults=Faults(lifetime=0.4)) as sim:
            t0 = time.monotonic()
            async with connect(sim.ws_url + "/ws/btcusdt@aggTrade") as ws:
                with pytest.raises(ConnectionClosed):
                    while True:
                        await ws.recv()
            assert ws.close_code == 1000 and 0.35 < time.monotonic() - t0 < 2
            assert sim.stats()["closed_lifetime"] == 1
            for style, expect in (
                ("event", {"event": {"e": "serverShutdown"}}),
                ("stream", {"stream": "serverShutdown", "data": {"e": "serverShutdown"}}),
            ):
                sim.set_faults(Faults(shutdown_after=0.2, shutdown_grace=0.3, shutdown_style=style))
                async with connect(sim.ws_url + "/stream?streams=btcusdt@aggTrade") as ws:
                    notice, after = None, 0
                    with pytest.raises(ConnectionClosed):
                        while True:
                            msg = json.loads(await ws.recv())
                            if "serverShutdown" in json.dumps(msg):
                                notice = msg
                            elif notice is not None:
                                after += 1  # trades keep flowing during the grace period
                    assert ws.close_code == 1001
                assert notice is not None
                inner = notice.get("event") or notice["data"]
                assert inner["e"] == "serverShutdown" and isinstance(inner["E"], int)
                assert set(notice) == set(expect) and after > 0
            assert sim.stats()["shutdown_events"] == 2

    run(main)


def test_rest_429_and_418_with_retry_after() -> None:
    async def main() -> None:
        faults = Faults(rest_fail_next=2, rest_fail_status=418, retry_after=3)
        async with Simulator(("BTCUSDT",), speed=10, faults=faults) as sim:
            url = f"{sim.rest_url}/api/v3/aggTrades?symbol=BTCUSDT&limit=1"
            answers = [await aget(url) for _ in range(3)]
            assert [a[0] for a in answers] == [418, 418, 200]
            assert answers[0][1]["Retry-After"] == "3" and answers[0][2]["code"] == -1003
            sim.set_faults(
                replace(
                    sim.faults,
                    rest_fail_next=0,
                    rest_fail_rate=1.0,
                    rest_fail_status=429,
                    retry_after=1,
                )
            )
            status, headers, _ = await aget(url)
            assert status == 429 and headers["Retry-After"] == "1"
            sim.set_faults(Faults())
            assert (await aget(url))[0] == 200
            stats = sim.stats()
            assert (stats["rest_418"], stats["rest_429"], stats["rest_errors_injected"]) == (
                2,
                1,
                3,
            )

    run(main)


def test_replay_of_a_mapping_loops_with_live_times() -> None:
    n = 40
    frame = pl.DataFrame(
        {
            "agg_id": list(range(1000, 1000 + n)),
            "price": [100.0 + i / 100 for i in range(n)],
            "qty": [0.5] * n,
            "first_id": list(range(5000, 5000 + n)),
            "last_id": list(range(5000, 5000 + n)),
            "time": [1_600_000_000_000 + 25 * i for i in range(n)],
            "buyer_is_maker": [i % 2 == 0 for i in range(n)],
        }
    )

    async def main() -> None:
        async with Simulator(
            ("ZILUSDT",), source={"ZILUSDT": frame}, speed=0, max_trades=100
        ) as sim:
            for _ in range(200):
                if len(sim.published("ZILUSDT")) == 100:
                    break
                await asyncio.sleep(0.01)
            assert sim.published("ZILUSDT") == list(range(1000, 1100))
            got = sim.published_frame("ZILUSDT")
            assert got["price"].to_list()[40:80] == frame["price"].to_list()
            now = time.time() * 1000
            times = got["time"].dt.epoch("ms").to_list()
            assert times == sorted(times) and abs(times[-1] - now) < 10_000

    run(main)


def test_replay_of_the_shared_recordings(shared_data: Any) -> None:
    recorded = load_recordings(("BTCUSDT", "ETHUSDT"), "recordings")

    async def main() -> None:
        async with Simulator(source="recordings", speed=0, max_trades=300) as sim:
            async with connect(sim.ws_url + BOTH):
                for _ in range(300):
                    if all(len(sim.published(s)) == 300 for s in sim.symbols):
                        break
                    await asyncio.sleep(0.01)
            for sym in sim.symbols:
                got = sim.published_frame(sym)
                want = recorded[sym].head(300)
                assert got["agg_id"].to_list() == want["agg_id"].to_list()
                assert got["price"].to_list() == want["price"].to_list()
                assert got["qty"].to_list() == want["qty"].to_list()
                assert abs(got["time"].dt.epoch("ms").max() - time.time() * 1000) < 10_000

    run(main)


def test_background_thread_mode_for_synchronous_code() -> None:
    with Simulator(("BTCUSDT",), speed=50) as sim:
        time.sleep(0.3)
        status, _, items = http_get(f"{sim.rest_url}/api/v3/aggTrades?symbol=BTCUSDT&limit=5")
        assert status == 200 and len(items) == 5
        sim.set_faults(Faults(rest_fail_next=1))
        assert http_get(f"{sim.rest_url}/api/v3/ping")[0] == 429
        assert sim.running
    assert not sim.running
    with pytest.raises(Exception, match=r"not started|refused|Connection"):
        urllib.request.urlopen(f"{sim.rest_url}/api/v3/ping", timeout=2)


@pytest.mark.slow
def test_cli_prints_urls_and_stops_on_sigterm() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tradelab",
            "simulate",
            "--port",
            "0",
            "--speed",
            "20",
            "--symbols",
            "BTCUSDT",
            "--malformed-rate",
            "0.01",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        rest = next(line.split()[1] for line in lines if "REST:" in line)
        assert "--ws-url ws://127.0.0.1:" in lines[3] and "--rest-url http://127.0.0.1:" in lines[3]
        status, _, _items = http_get(rest.replace("symbol=BTCUSDT", "symbol=BTCUSDT&limit=2"))
        assert status == 200
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "Published: BTCUSDT" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_random_drops_and_runtime_fault_changes() -> None:
    async def main() -> None:
        async with Simulator(("BTCUSDT",), speed=20) as sim:
            async with connect(sim.ws_url + "/ws/btcusdt@aggTrade") as ws:
                await ws.recv()
                sim.set_faults(Faults(drop_probability=1.0))  # certain within the next tick
                with pytest.raises(ConnectionClosed):
                    while True:
                        await ws.recv()
            assert sim.stats()["closed_drop"] == 1
            sim.set_faults(Faults())
            async with connect(sim.ws_url + "/ws/btcusdt@aggTrade") as ws:
                await collect(ws, 3)
                assert ws.close_code is None

    run(main)


def test_speed_scales_recorded_time_and_max_speed_waits_for_a_subscriber() -> None:
    n = 30
    frame = pl.DataFrame(
        {
            "agg_id": list(range(1, n + 1)),
            "price": [5.0] * n,
            "qty": [1.0] * n,
            "first_id": list(range(1, n + 1)),
            "last_id": list(range(1, n + 1)),
            "time": [1_600_000_000_000 + 200 * i for i in range(n)],
            "buyer_is_maker": [False] * n,
        }
    )

    async def main() -> None:
        async with Simulator(("ZILUSDT",), source={"ZILUSDT": frame}, speed=10, loop=False) as sim:
            async with connect(sim.ws_url + "/ws/zilusdt@aggTrade") as ws:
                times = [json.loads(m)["T"] for m in await collect(ws, 10)]
            steps = [b - a for a, b in itertools.pairwise(times)]
            assert all(19 <= s <= 21 for s in steps), steps  # 200 ms recorded / 10
        async with Simulator(("ZILUSDT",), source={"ZILUSDT": frame}, speed=0) as sim:
            await asyncio.sleep(0.2)
            assert sim.published("ZILUSDT") == []  # nobody listens: nothing is produced
            async with connect(sim.ws_url + "/ws/zilusdt@aggTrade") as ws:
                assert json.loads(await ws.recv())["a"] == 1

    run(main)


def test_a_client_that_stops_reading_is_disconnected() -> None:
    async def main() -> None:
        async with Simulator(("BTCUSDT",), speed=2000, send_queue_limit=2000, rate_per_s=50) as sim:
            ws = await connect(sim.ws_url + "/ws/btcusdt@aggTrade")
            ws.transport.pause_reading()
            for _ in range(300):
                if sim.stats().get("closed_slow_consumer"):
                    break
                await asyncio.sleep(0.02)
            assert sim.stats()["closed_slow_consumer"] == 1
            ws.transport.abort()

    run(main)


def test_a_busy_port_is_a_clear_configuration_error() -> None:
    with Simulator(("BTCUSDT",), speed=1) as first:
        second = Simulator(("BTCUSDT",), port=first.port or 0)
        with pytest.raises(ConfigurationError, match=r"cannot listen on 127\.0\.0\.1"):
            second.run_in_thread()
        assert not second.running


def test_cli_bad_settings_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    from tradelab.cli.main import main

    assert main(["simulate", "--port", "0", "--stall-every", "1"]) == 2
    assert "stall_seconds is 0" in capsys.readouterr().err
    assert main(["simulate", "--port", "0", "--symbols", "BTC-USD"]) == 2
    assert "invalid symbol" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate", "--skip-rate", "2"])
    assert "probability" in capsys.readouterr().err
