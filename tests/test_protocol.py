"""Pure Binance message parsing: feed frames, get trades or a reason for rejection."""

from __future__ import annotations

import json

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelab.binance.protocol import (
    ControlResponse,
    Rejection,
    ServerShutdown,
    Trade,
    agg_trades_query,
    build_stream_urls,
    parse_frame,
    parse_rest_items,
    split_streams,
    trades_to_frame,
)
from tradelab.exceptions import InvalidParameterError, MalformedFrameError
from tradelab.recordings import shared_data_dir

PAYLOAD = {
    "e": "aggTrade",
    "E": 1723161255343,
    "s": "BTCUSDT",
    "a": 3105630001,
    "p": "61837.63000000",
    "q": "0.02000000",
    "f": 3735683259,
    "l": 3735683260,
    "T": 1723161255342,
    "m": True,
    "M": True,
}


def combined(payload: dict, stream: str = "btcusdt@aggTrade") -> str:
    return json.dumps({"stream": stream, "data": payload})


def test_combined_frame_parses_to_trade() -> None:
    ev = parse_frame(combined(PAYLOAD))
    assert ev == Trade(
        "BTCUSDT", 3105630001, 61837.63, 0.02, 3735683259, 3735683260, 1723161255342, True
    )


def test_raw_frame_and_bytes_parse_too() -> None:
    assert parse_frame(json.dumps(PAYLOAD).encode()).agg_id == 3105630001


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.pop("a"), "lacks field 'a'"),
        (lambda d: d.pop("m"), "lacks field 'm'"),
        (lambda d: d.update(a="id-1"), "'a' must be an integer"),
        (lambda d: d.update(T="soon"), "'T' must be an integer"),
        (lambda d: d.update(a=True), "'a' must be an integer"),
        (lambda d: d.update(m="maybe"), "'m' must be true or false"),
        (lambda d: d.update(p=None), "'p' must be a decimal string"),
        (lambda d: d.update(q=[1.0]), "'q' must be a decimal string"),
        (lambda d: d.update(p="abc"), "not decimal numbers"),
        (lambda d: d.update(p="-1"), "price must be > 0"),
        (lambda d: d.update(p="nan"), "price must be > 0"),
        (lambda d: d.update(q="inf"), "price must be > 0"),
        (lambda d: d.update(l=1), "out of range"),
        (lambda d: d.update(e="mysteryEvent"), "unknown event type 'mysteryEvent'"),
        (lambda d: d.pop("e"), "no event type"),
    ],
)
def test_malformed_payloads_are_rejected_with_reason(mutate, reason) -> None:
    d = dict(PAYLOAD)
    mutate(d)
    ev = parse_frame(combined(d))
    assert isinstance(ev, Rejection)
    assert reason in ev.reason
    assert ev.excerpt.startswith('{"stream"')


def test_bad_json_and_non_objects_are_rejected() -> None:
    frame = combined(PAYLOAD)[:50]
    ev = parse_frame(frame)
    assert isinstance(ev, Rejection) and "not valid JSON" in ev.reason
    assert ev.excerpt == frame
    assert "expected a JSON object" in parse_frame("[1,2]").reason
    assert "'data' must be an object" in parse_frame('{"stream":"x","data":3}').reason
    long = parse_frame("x" * 1000)
    assert len(long.excerpt) <= 121


def test_stream_symbol_mismatch_is_rejected() -> None:
    ev = parse_frame(combined(PAYLOAD, stream="ethusdt@aggTrade"))
    assert isinstance(ev, Rejection) and "does not match" in ev.reason


@pytest.mark.parametrize(
    "frame",
    [
        '{"event":{"e":"serverShutdown","E":1700000000000}}',
        '{"stream":"serverShutdown","data":{"e":"serverShutdown","E":1700000000000}}',
        '{"e":"serverShutdown","E":1700000000000}',
    ],
)
def test_server_shutdown_in_every_shape(frame: str) -> None:
    assert parse_frame(frame) == ServerShutdown(1700000000000)


def test_control_response() -> None:
    assert parse_frame('{"result":null,"id":7}') == ControlResponse(7, None, None)


def test_rest_items_parse_and_reject_whole_page() -> None:
    body = json.dumps([{k: v for k, v in PAYLOAD.items() if k not in "eEs"}])
    [t] = parse_rest_items(body, "BTCUSDT")
    assert t.symbol == "BTCUSDT" and t.agg_id == 3105630001 and t.price == 61837.63
    bad = json.dumps([{k: v for k, v in PAYLOAD.items() if k not in "eEsq"}])
    with pytest.raises(MalformedFrameError, match="item #0 for BTCUSDT: aggTrade lacks field 'q'"):
        parse_rest_items(bad, "BTCUSDT")
    with pytest.raises(MalformedFrameError, match="not JSON"):
        parse_rest_items(b"<html>", "BTCUSDT")
    with pytest.raises(MalformedFrameError, match="must be a JSON array"):
        parse_rest_items('{"code":-1121}', "BTCUSDT")


def test_stream_urls_and_split_at_1024() -> None:
    assert build_stream_urls("wss://stream.binance.com:9443", ["BTCUSDT", "ETHUSDT"]) == [
        "wss://stream.binance.com:9443/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"
    ]
    assert build_stream_urls("ws://127.0.0.1:1/ws/", ["BTCUSDT"]) == [
        "ws://127.0.0.1:1/stream?streams=btcusdt@aggTrade"
    ]
    syms = [f"S{i:04d}" for i in range(2500)]
    groups = split_streams(syms)
    assert [len(g) for g in groups] == [1024, 1024, 452]
    assert sum(groups, ()) == tuple(syms)
    urls = build_stream_urls("ws://h:1", syms)
    assert len(urls) == 3 and urls[0].count("@aggTrade") == 1024
    with pytest.raises(InvalidParameterError):
        split_streams(syms, 1025)
    with pytest.raises(InvalidParameterError):
        build_stream_urls("ws://h:1", [])


def test_agg_trades_query() -> None:
    assert agg_trades_query("http://h:1/", "BTCUSDT", from_id=5) == (
        "http://h:1/api/v3/aggTrades?symbol=BTCUSDT&fromId=5&limit=1000"
    )
    with pytest.raises(InvalidParameterError, match=r"limit must be 1\.\.1000"):
        agg_trades_query("http://h:1", "BTCUSDT", limit=1001)


def test_trades_to_frame_matches_schema() -> None:
    ev = parse_frame(combined(PAYLOAD))
    df = trades_to_frame([ev])
    assert df.schema["time"] == pl.Datetime("ms", "UTC")
    assert df.row(0)[0] == 3105630001 and df["price"][0] == 61837.63
    assert trades_to_frame([]).height == 0


def test_every_recorded_frame_parses() -> None:
    base = shared_data_dir()
    if base is None:
        pytest.skip("shared recordings not available")
    import gzip

    for name in (
        "spot_btcusdt_20240808-09.aggTrade.tsv.gz",
        "multi_symbol_20210405.native_aggTrade.tsv.gz",
    ):
        with gzip.open(base / name, "rt") as fh:
            n = 0
            for line in fh:
                frame = line.split("\t", 1)[1] if "\t" in line else line.split(": ", 1)[1]
                ev = parse_frame(frame)
                assert isinstance(ev, Trade), (ev, frame)
                n += 1
        assert n > 1000


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from([*list("eEsapqflTmM"), "stream", "data", "id"]), children, max_size=8
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_json.map(json.dumps), st.text(max_size=200), st.binary(max_size=200)))
def test_parse_frame_never_raises(raw) -> None:
    ev = parse_frame(raw)
    assert isinstance(ev, Trade | Rejection | ServerShutdown | ControlResponse)
    if isinstance(ev, Trade):  # anything accepted is a usable trade
        assert ev.price > 0 and ev.qty >= 0 and ev.last_id >= ev.first_id >= 0


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(list("apqflTmM")), _json, max_size=8))
def test_mutated_payloads_are_trades_only_when_valid(mutation) -> None:
    d = {**PAYLOAD, **mutation}
    ev = parse_frame(combined(d))
    valid = (
        all(type(d[k]) is int for k in "aflT")
        and type(d["m"]) is bool
        and all(type(d[k]) is str for k in "pq")
    )
    if not valid:
        assert isinstance(ev, Rejection)


def test_ids_and_times_beyond_storable_ranges_are_rejected() -> None:
    for field, value in (("a", 2**63), ("l", 2**64), ("T", 10**13)):
        ev = parse_frame(combined({**PAYLOAD, field: value}))
        assert isinstance(ev, Rejection) and "out of range" in ev.reason


def test_a_rest_page_with_bad_items_keeps_the_valid_ones_and_names_the_bad_ids() -> None:
    """Issue 12, item 3: one bad item must not cost the rest of the page."""
    from tradelab.binance.protocol import MalformedPageError

    item = {k: v for k, v in PAYLOAD.items() if k not in "eEs"}
    items = [dict(item, a=100 + i, f=200 + i, l=200 + i) for i in range(5)]
    items[2]["p"] = None  # id 102: a price that is not a decimal string
    del items[3]["a"]  # id 103 unreadable: inferred from its neighbours
    with pytest.raises(MalformedPageError, match=r"item #2 for BTCUSDT: field 'p'") as info:
        parse_rest_items(json.dumps(items), "BTCUSDT")
    err = info.value
    assert isinstance(err, MalformedFrameError)  # callers that want all or nothing still can
    assert [t.agg_id for t in err.trades] == [100, 101, 104]
    assert all(t.symbol == "BTCUSDT" for t in err.trades)
    assert [a for a, _ in err.rejected] == [102, 103] and err.size == 5


def test_plausibility_rules() -> None:
    """Issue 12, item 2: an id far beyond the last one, or a time outside [now - retention -
    slack, now + slack], is implausible; the reason says which and by how much."""
    from tradelab.binance.protocol import Plausibility

    now = 1_800_000_000_000
    rules = Plausibility(max_id_jump=10_000_000, max_age_ms=7 * 86_400_000, max_ahead_ms=3_600_000)
    assert rules.check(5_000_000_000, now, 4_999_000_000, now) is None  # 1 M ids later: fine
    assert rules.check(1, now, None, now) is None  # nothing seen yet: ids cannot be judged
    why = rules.check(4611686018427387904, now, 3_000_000_000, now)
    assert why is not None and "max_id_jump 10,000,000" in why
    assert "ahead" in (rules.check(10, now + 100 * 365 * 86_400_000, 9, now) or "")
    assert "days old" in (rules.check(10, 86_400_000, 9, now) or "")
    assert rules.check(10, now + 3_599_000, 9, now) is None
    assert rules.check(10, now - 7 * 86_400_000 + 1000, 9, now) is None
    assert rules.bounds(now) == (now - 7 * 86_400_000, now + 3_600_000)
