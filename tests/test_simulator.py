"""The simulator's pure parts: frame formats, paths, REST validation, sources, bookkeeping."""

from __future__ import annotations

import itertools
import json
import random
import re
from collections import Counter

import polars as pl
import pytest

from tradelab.exceptions import ConfigurationError, InvalidParameterError, InvalidSymbolError
from tradelab.simulator import Faults, RangeSet, ReplaySource, Simulator, SyntheticSource
from tradelab.simulator import protocol as proto
from tradelab.simulator.history import TradeHistory
from tradelab.simulator.restapi import RestApi
from tradelab.simulator.sources import (
    infer_tick,
    live_time,
    load_recordings,
    realistic_first_agg_id,
    tick_size,
)

TRADE = (3800397495, 61837.63, 0.02, 5723703861, 5723703863, 1767225600039, True)

# Binance's aggTrade payload, field for field, as documented and as recorded.
PAYLOAD_RE = re.compile(
    r'^\{"e":"aggTrade","E":\d+,"s":"[A-Z0-9]+","a":\d+,"p":"\d+\.\d{8}","q":"\d+\.\d{8}",'
    r'"f":\d+,"l":\d+,"T":\d+,"m":(true|false),"M":true\}$'
)


def is_valid_trade(d: object) -> bool:
    """A strict reading of an aggTrade payload, as a careful collector would do."""
    if not isinstance(d, dict) or d.get("e") != "aggTrade":
        return False
    try:
        return (
            all(isinstance(d[k], int) and not isinstance(d[k], bool) for k in "aflT")
            and all(isinstance(d[k], str) and float(d[k]) >= 0 for k in "pq")
            and isinstance(d["m"], bool)
        )
    except (KeyError, ValueError, TypeError):
        return False


def test_payload_is_binance_exact() -> None:
    text = proto.format_payload("BTCUSDT", TRADE, 1767225600040)
    assert text == (
        '{"e":"aggTrade","E":1767225600040,"s":"BTCUSDT","a":3800397495,'
        '"p":"61837.63000000","q":"0.02000000","f":5723703861,"l":5723703863,'
        '"T":1767225600039,"m":true,"M":true}'
    )
    assert PAYLOAD_RE.match(text)
    wrapped = json.loads(proto.wrap_combined(proto.stream_name("BTCUSDT"), text))
    assert wrapped["stream"] == "btcusdt@aggTrade" and wrapped["data"]["a"] == TRADE[0]
    micro = json.loads(proto.format_payload("BTCUSDT", TRADE, 1767225600040, micro=True))
    assert micro["T"] == 1767225600039000 and micro["E"] == 1767225600040000


def test_rest_items_have_the_stream_fields_minus_e_E_s() -> None:
    items = json.loads(proto.rest_items_json([TRADE]))
    assert items == [
        {
            "a": 3800397495,
            "p": "61837.63000000",
            "q": "0.02000000",
            "f": 5723703861,
            "l": 5723703863,
            "T": 1767225600039,
            "m": True,
            "M": True,
        }
    ]
    assert proto.rest_items_json([]) == "[]"


def test_shutdown_frames() -> None:
    assert json.loads(proto.shutdown_frame(5, style="event", combined=True)) == {
        "event": {"e": "serverShutdown", "E": 5}
    }
    assert json.loads(proto.shutdown_frame(5, style="stream", combined=True)) == {
        "stream": "serverShutdown",
        "data": {"e": "serverShutdown", "E": 5},
    }
    assert json.loads(proto.shutdown_frame(5, style="stream", combined=False)) == {
        "e": "serverShutdown",
        "E": 5,
    }


@pytest.mark.parametrize("kind", ["bad_json", "missing_field", "wrong_type", "unknown_event"])
def test_malformed_payloads_never_parse_as_a_trade(kind: str) -> None:
    rng = random.Random(1)
    for _ in range(50):
        payload, cut = proto.malformed_payload(kind, "BTCUSDT", TRADE, 1, rng)
        frame = proto.wrap_combined("btcusdt@aggTrade", payload)
        if cut:
            frame = frame[: len(frame) // 2]
            with pytest.raises(json.JSONDecodeError):
                json.loads(frame)
        else:
            assert not is_valid_trade(json.loads(frame)["data"])


def test_stream_paths() -> None:
    t = proto.parse_stream_path("/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade")
    assert t.streams == ("btcusdt@aggTrade", "ethusdt@aggTrade") and t.combined and not t.micro
    t = proto.parse_stream_path("/ws/btcusdt@aggTrade?timeUnit=MICROSECOND")
    assert t.streams == ("btcusdt@aggTrade",) and not t.combined and t.micro
    assert proto.parse_stream_path("/ws").streams == ()
    with pytest.raises(proto.ApiError) as err:
        proto.parse_stream_path("/ws/BTCUSDT@aggTrade")
    assert "invalid stream name" in err.value.msg
    with pytest.raises(proto.ApiError) as err:
        proto.parse_stream_path("/nope")
    assert err.value.status == 404
    many = "/".join(f"s{i:04d}usdt@aggTrade" for i in range(1025))
    with pytest.raises(proto.ApiError, match="Too many streams"):
        proto.parse_stream_path("/stream?streams=" + many)


def test_control_messages() -> None:
    req = proto.parse_control('{"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":7}')
    assert (req.method, req.params, req.id) == ("SUBSCRIBE", ("btcusdt@aggTrade",), 7)
    assert proto.parse_control('{"method":"LIST_SUBSCRIPTIONS","id":"x"}').id == "x"
    with pytest.raises(proto.ApiError) as err:
        proto.parse_control("{not json")
    assert err.value.code == 3
    with pytest.raises(proto.ApiError) as err:
        proto.parse_control('{"method":"FLY","id":4}')
    assert (err.value.code, err.value.req_id) == (2, 4)
    with pytest.raises(proto.ApiError) as err:
        proto.parse_control('{"method":"SUBSCRIBE","params":["BTC"],"id":5}')
    assert (err.value.code, err.value.req_id) == (2, 5)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", -1102),
        ("symbol=XRPUSDT", -1121),
        ("symbol=BTCUSDT&limit=1001", -1130),
        ("symbol=BTCUSDT&limit=0", -1130),
        ("symbol=BTCUSDT&fromId=abc", -1100),
        ("symbol=BTCUSDT&fromId=-3", -1100),
        ("symbol=BTCUSDT&fromId=1&startTime=5", -1128),
        ("symbol=BTCUSDT&startTime=10&endTime=5", -1128),
        ("symbol=BTCUSDT&startTime=0&endTime=3600001", -1127),
        ("symbol=BTCUSDT&colour=red", -1104),
    ],
)
def test_agg_trades_query_errors(query: str, code: int) -> None:
    with pytest.raises(proto.ApiError) as err:
        proto.parse_agg_trades_query(query, ("BTCUSDT", "ETHUSDT"))
    assert err.value.code == code and err.value.status == 400
    body = json.loads(err.value.body())
    assert body["code"] == code and body["msg"]


def test_agg_trades_query_defaults() -> None:
    q = proto.parse_agg_trades_query("symbol=BTCUSDT", ("BTCUSDT",))
    assert (q.from_id, q.start_time, q.end_time, q.limit) == (None, None, None, 500)
    q = proto.parse_agg_trades_query("symbol=BTCUSDT&fromId=12&limit=1000", ("BTCUSDT",))
    assert (q.from_id, q.limit) == (12, 1000)


def test_range_set() -> None:
    r = RangeSet()
    for i in [1, 2, 3, 7, 8, 10]:
        r.add(i)
    r.add_range(11, 20)
    assert r.ranges == [(1, 3), (7, 8), (10, 20)]
    assert len(r) == 16 and 8 in r and 9 not in r and 21 not in r
    assert r.gaps() == [(4, 6), (9, 9)]
    assert r.to_list()[:5] == [1, 2, 3, 7, 8]
    with pytest.raises(ValueError, match="must increase"):
        r.add(5)


def _trades(n: int, first: int = 100, t0: int = 1_000) -> list:
    return [(first + i, 100.0 + i, 1.0, 2 * i, 2 * i, t0 + i * 10, bool(i % 2)) for i in range(n)]


def test_history_queries_follow_binance_semantics() -> None:
    h = TradeHistory("BTCUSDT")
    h.append(_trades(50))
    assert [t[0] for t in h.query(from_id=110, limit=3)] == [110, 111, 112]
    assert [t[0] for t in h.query(from_id=10, limit=2)] == [100, 101]  # below the first id
    assert h.query(from_id=10_000) == []
    got = h.query(start_time=1_050, end_time=1_080, limit=500)
    assert [t[0] for t in got] == [105, 106, 107, 108]  # both bounds inclusive
    assert [t[0] for t in h.query(start_time=1_050, limit=2)] == [105, 106]
    assert [t[0] for t in h.query(end_time=1_050, limit=2)] == [104, 105]
    assert [t[0] for t in h.query(limit=3)] == [147, 148, 149]  # most recent
    frame = h.frame()
    assert frame.height == 50 and frame["agg_id"].to_list() == list(range(100, 150))
    assert frame["buyer_is_maker"].to_list()[:2] == [False, True]


def test_history_trimming_keeps_the_published_accounting() -> None:
    h = TradeHistory("BTCUSDT", limit=1000)
    for k in range(5):
        h.append(_trades(1000, first=k * 1000))
    assert len(h) < 5000 and h.trimmed > 0
    assert len(h.published) == 5000 and h.published.ranges == [(0, 4999)]
    assert h.query(from_id=0, limit=1)[0][0] == h.trimmed


def test_synthetic_source_is_contiguous_and_realistic() -> None:
    src = SyntheticSource("BTCUSDT", start_ms=1_795_000_000_000, seed=3, chunk=500)
    trades = [t for _, t in zip(range(1600), src, strict=False)]
    ids = [t[0] for t in trades]
    assert ids == list(range(ids[0], ids[0] + 1600))
    assert 3_000_000_000 < ids[0] < 10_000_000_000  # the magnitude of real BTCUSDT ids
    assert all(b[3] == a[4] + 1 for a, b in itertools.pairwise(trades))
    assert all(t[3] <= t[4] for t in trades)
    times = [t[5] for t in trades]
    assert times == sorted(times) and times[0] == 1_795_000_000_000
    assert all(abs(round(t[1] * 100) - t[1] * 100) < 1e-6 for t in trades)  # 0.01 ticks
    assert min(t[1] for t in trades) > 50_000 and max(t[1] for t in trades) < 150_000
    assert all(t[2] > 0 for t in trades)
    # A later start gives higher ids, so a restarted simulator does not reuse old ids.
    assert realistic_first_agg_id("BTCUSDT", 1_795_000_600_000) > ids[0]


def _frame(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "agg_id": list(range(500, 500 + n)),
            "price": [10.0 + i for i in range(n)],
            "qty": [1.5] * n,
            "first_id": [1000 + 2 * i for i in range(n)],
            "last_id": [1001 + 2 * i for i in range(n)],
            "time": [1_700_000_000_000 + 100 * i for i in range(n)],
            "buyer_is_maker": [i % 3 == 0 for i in range(n)],
        }
    )


def test_replay_source_loops_with_shifted_ids_and_times() -> None:
    src = ReplaySource("ZILUSDT", _frame(10))
    trades = [t for _, t in zip(range(25), src, strict=False)]
    assert [t[0] for t in trades] == list(range(500, 525))
    times = [t[5] for t in trades]
    assert all(b > a for a, b in itertools.pairwise(times))
    assert trades[10][1] == trades[0][1] and trades[10][3] == trades[9][4] + 1
    once = ReplaySource("ZILUSDT", _frame(10), loop=False)
    assert len(list(once)) == 10


def test_faults_validation() -> None:
    assert Faults().active == {}
    assert Faults(drop_every=3).active == {"drop_every": 3}
    for kwargs in (
        {"drop_every": 0},
        {"drop_every": -1},
        {"skip_rate": 1.5},
        {"malformed_rate": -0.1},
        {"rest_fail_status": 500},
        {"malformed_kinds": ("gibberish",)},
        {"skip_length": 0},
        {"stall_every": 1.0},
        {"shutdown_style": "loud"},
        {"retry_after": -1},
        {"ping_interval": float("inf")},
    ):
        with pytest.raises(InvalidParameterError):
            Faults(**kwargs)


def test_simulator_arguments_are_validated() -> None:
    with pytest.raises(InvalidParameterError, match="speed"):
        Simulator(speed=-1)
    with pytest.raises(InvalidParameterError, match="source"):
        Simulator(source="kraken")
    with pytest.raises(InvalidSymbolError):
        Simulator(symbols=("btc-usdt",))
    with pytest.raises(InvalidParameterError, match="port"):
        Simulator(port=70000)
    with pytest.raises(InvalidParameterError, match="faults"):
        Simulator(faults={"drop_every": 1})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="no recording holds"):
        load_recordings(("BTCUSDT",), {"ETHUSDT": _frame(3)})
    sim = Simulator(speed=0)
    assert sim.speed == float("inf")
    with pytest.raises(InvalidParameterError, match="not simulated"):
        sim.published("XRPUSDT")


def test_tick_sizes() -> None:
    assert infer_tick([61837.63, 61837.6, 61838.0]) == 0.01
    assert infer_tick([0.21448, 0.2145]) == 0.00001
    assert infer_tick([100.0, 101.0]) == 1.0
    assert tick_size("BTCUSDT") == 0.01 and tick_size("XRPUSDT") == 0.0001
    assert tick_size("X", 0.2) == 0.00001 and tick_size("X", 0.0001) == 0.00000001


def test_live_time_maps_source_time_onto_the_wall_clock() -> None:
    assert live_time(1_000, 1_000, 5_000, 1.0) == 5_000
    assert live_time(2_000, 1_000, 5_000, 10.0) == 5_100


def test_replay_can_start_at_a_chosen_id() -> None:
    src = ReplaySource("ZILUSDT", _frame(10), first_agg_id=9_000)
    assert [t[0] for _, t in zip(range(15), src, strict=False)] == list(range(9_000, 9_015))


def _api(**kwargs: object) -> tuple[RestApi, Counter[str], list[float]]:
    h = TradeHistory("BTCUSDT")
    h.append(_trades(20))
    counts: Counter[str] = Counter()
    now = [120.0]
    api = RestApi(
        {"BTCUSDT": h},
        faults=Faults(),
        counts=counts,
        rng=random.Random(0),
        clock=lambda: now[0],
        **kwargs,
    )  # type: ignore[arg-type]
    return api, counts, now


def test_rest_api_weights_reset_each_minute() -> None:
    api, counts, now = _api(weight_limit=10)
    answers = [
        api.handle("/api/v3/aggTrades", "symbol=BTCUSDT&fromId=105&limit=2") for _ in range(3)
    ]
    assert [a[0] for a in answers] == [200, 200, 429]
    assert [json.loads(answers[0][1])[i]["a"] for i in (0, 1)] == [105, 106]
    assert dict(answers[1][2])["X-MBX-USED-WEIGHT-1m"] == "8"
    assert dict(answers[2][2])["Retry-After"] == "60"  # until the next minute
    now[0] = 180.5  # a new minute
    status, _, headers = api.handle("/api/v3/ping", "")
    assert status == 200 and dict(headers)["X-MBX-USED-WEIGHT-1m"] == "1"
    assert counts["rest_429"] == 1 and counts["rest_requests"] == 4


def test_rest_api_injected_failures_and_errors() -> None:
    api, counts, _ = _api()
    api.set_faults(Faults(rest_fail_next=2, rest_fail_status=418, retry_after=9))
    statuses = [api.handle("/api/v3/ping", "")[0] for _ in range(3)]
    assert statuses == [418, 418, 200]
    api.set_faults(Faults(rest_fail_rate=1.0))
    status, body, headers = api.handle("/api/v3/aggTrades", "symbol=BTCUSDT")
    assert status == 429 and json.loads(body)["code"] == -1003 and ("Retry-After", "1") in headers
    api.set_faults(Faults())
    assert api.handle("/api/v3/aggTrades", "symbol=NOPE")[0] == 400
    assert api.handle("/api/v3/klines", "")[0] == 404
    assert counts["rest_errors_injected"] == 3 and counts["rest_400"] == 1


def test_rest_api_exchange_info() -> None:
    api, _, _ = _api(tick_sizes={"BTCUSDT": 0.01})
    info = json.loads(api.exchange_info('symbols=["BTCUSDT"]'))
    (sym,) = info["symbols"]
    assert (sym["symbol"], sym["baseAsset"], sym["quoteAsset"]) == ("BTCUSDT", "BTC", "USDT")
    price_filter = next(f for f in sym["filters"] if f["filterType"] == "PRICE_FILTER")
    assert price_filter["tickSize"] == "0.01000000"
    with pytest.raises(proto.ApiError):
        api.exchange_info("symbol=ETHUSDT")
