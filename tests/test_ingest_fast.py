"""The collector's fast ingest path gives exactly what the full path gives.

* :func:`tradelab.binance.protocol.match_trade` (one regular expression over the canonical
  aggTrade frame) must accept only frames the full path (``json.loads`` and every check)
  accepts, with the same values; anything else is left to the full path. Checked on the real
  recordings and on frames mutated character by character (hypothesis).
* :func:`tradelab.binance.protocol.match_trade_bytes` (the same match over the undecoded
  bytes, what the collector's reader takes from the connection) must give exactly what
  ``match_trade`` gives for the decoded text, and nothing for bytes that are not UTF-8: on the
  recordings, every single-character edit and byte-level mutations.
* :class:`tradelab.collector.columns.TradeColumns` (the gate's packed buffer) must give back
  every trade bit for bit: as values, as ids, as numpy columns and as a frame in the trade
  schema that the store takes as it is.
"""

from __future__ import annotations

import gzip
import math

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelab.binance.protocol import (
    Rejection,
    Trade,
    match_trade,
    match_trade_bytes,
    parse_frame,
    trades_to_frame,
)
from tradelab.collector.columns import ROW_BYTES, TradeColumns
from tradelab.schema import TRADE_SCHEMA

FRAME = (
    '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1723161255343,"s":"BTCUSDT",'
    '"a":3105630001,"p":"61837.63000000","q":"0.02000000","f":3735683259,"l":3735683262,'
    '"T":1723161255342,"m":true,"M":true}}'
)


def _full_path(raw: str) -> object:
    """What the collector took before the fast path: json.loads and every check. (A space
    after the opening brace is the same JSON, but never the canonical layout.)"""
    return parse_frame("{ " + raw[1:] if raw.startswith("{") else raw)


def test_the_canonical_frame_takes_the_fast_path_with_the_full_paths_values() -> None:
    fast = match_trade(FRAME)
    assert fast is not None
    assert Trade(*fast) == _full_path(FRAME) == parse_frame(FRAME)
    assert fast == (
        "BTCUSDT",
        3105630001,
        61837.63,
        0.02,
        3735683259,
        3735683262,
        1723161255342,
        True,
    )


def test_every_recorded_frame_agrees(shared_data) -> None:
    path = shared_data / "spot_btcusdt_20240808-09.aggTrade.tsv.gz"
    n = fast_hits = 0
    with gzip.open(path, "rt") as fh:
        for line in fh:
            raw = line.split("\t", 1)[1].rstrip("\n")
            fast = match_trade(raw)
            full = _full_path(raw)
            if fast is not None:
                fast_hits += 1
                assert Trade(*fast) == full, raw
            n += 1
            if n >= 20_000:
                break
    assert fast_hits == n  # Binance's own frames are canonical: all of them take the fast path


@st.composite
def _mutations(draw: st.DrawFn) -> str:
    """The canonical frame with a few characters replaced, inserted or removed."""
    text = FRAME
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text) - 1))
        what = draw(st.sampled_from(["replace", "insert", "delete"]))
        ch = draw(st.sampled_from(_ALPHABET))
        if what == "replace":
            text = text[:i] + ch + text[i + 1 :]
        elif what == "insert":
            text = text[:i] + ch + text[i:]
        else:
            text = text[:i] + text[i + 1 :]
    return text


_ALPHABET = [*'0123456789.-+eE "truefalsnTM:,{}\\', "١", "\x00"]


def test_every_single_edit_of_the_frame_is_fast_only_where_the_full_path_agrees() -> None:
    """Exhaustive: each character replaced by, or preceded by, each of ``_ALPHABET``, or
    deleted (leading zeros, exponents, signs, a Unicode digit, broken keys, ...)."""
    edits = [FRAME[:i] + FRAME[i + 1 :] for i in range(len(FRAME))]
    for i in range(len(FRAME) + 1):
        for ch in _ALPHABET:
            edits.append(FRAME[:i] + ch + FRAME[i:])
            edits.append(FRAME[:i] + ch + FRAME[i + 1 :])
    fast_ones = 0
    for raw in edits:
        fast = match_trade(raw)
        if fast is not None:
            fast_ones += 1
            full = _full_path(raw)
            assert type(full) is Trade and Trade(*fast) == full, raw
    assert 0 < fast_ones < len(edits)  # digits changed in place stay canonical, the rest not


@settings(max_examples=600, deadline=None)
@given(_mutations())
def test_a_mutated_frame_is_fast_only_where_the_full_path_agrees(raw: str) -> None:
    fast = match_trade(raw)
    if fast is not None:
        full = _full_path(raw)
        assert type(full) is Trade and Trade(*fast) == full, raw
    assert type(parse_frame(raw)) in (Trade, Rejection)  # never raises either way


def _at_the_edges(test):
    """Hypothesis over values at the edges of every field, for the text and the bytes
    matchers alike."""
    return settings(max_examples=200, deadline=None)(
        given(
            a=st.integers(0, 2**63 + 5),
            f=st.integers(0, 2**63 + 5),
            span=st.integers(-2, 5),
            t=st.integers(0, 10**13 + 5),
            p=st.decimals(0, 10**12, places=8, allow_nan=False),
            q=st.decimals(0, 10**9, places=8, allow_nan=False),
            m=st.booleans(),
            sym=st.sampled_from(["BTCUSDT", "ETHUSDT", "1000PEPEUSDT"]),
            stream_sym=st.sampled_from(["btcusdt", "ethusdt", "1000pepeusdt"]),
        )(test)
    )


def _edge_frame(a, f, span, t, p, q, m, sym, stream_sym) -> str:
    return (
        f'{{"stream":"{stream_sym}@aggTrade","data":{{"e":"aggTrade","E":1,"s":"{sym}",'
        f'"a":{a},"p":"{p}","q":"{q}","f":{f},"l":{f + span},"T":{t},'
        f'"m":{"true" if m else "false"},"M":true}}}}'
    )


@_at_the_edges
def test_values_at_the_edges_agree(a, f, span, t, p, q, m, sym, stream_sym) -> None:
    raw = _edge_frame(a, f, span, t, p, q, m, sym, stream_sym)
    fast = match_trade(raw)
    full = _full_path(raw)
    if fast is None:
        assert type(full) is not Trade or not _canonical_decimals(p, q), raw
    else:
        assert Trade(*fast) == full, raw


def _canonical_decimals(p: object, q: object) -> bool:
    return all("E" not in str(x) and not str(x).startswith("-") for x in (p, q))


def _bytes_agree(raw: bytes) -> object:
    """The bytes match of ``raw`` equals the text match of its UTF-8 decoding (None if it is
    not UTF-8), and ``match_trade``/``parse_frame`` given the bytes agree with both."""
    fast = match_trade_bytes(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        assert fast is None, raw
        assert match_trade(raw) is None and type(parse_frame(raw)) is Rejection, raw
        return None
    assert fast == match_trade(text) == match_trade(raw) == match_trade(bytearray(raw)), raw
    if fast is not None:
        assert type(fast[0]) is str and type(fast[7]) is bool, raw
        assert parse_frame(raw) == parse_frame(text) == Trade(*fast), raw
    return fast


def test_the_bytes_match_is_the_text_match_on_the_recordings(shared_data) -> None:
    path = shared_data / "spot_btcusdt_20240808-09.aggTrade.tsv.gz"
    n = 0
    with gzip.open(path, "rt") as fh:
        for line in fh:
            raw = line.split("\t", 1)[1].rstrip("\n")
            assert _bytes_agree(raw.encode()) is not None, raw  # canonical: the fast path
            n += 1
            if n >= 20_000:
                break
    assert n > 0


_BYTES = [*(c.encode() for c in _ALPHABET), b"\xff", b"\x80", b"\xc3", b"\xe2\x82", b"\xc3\xa9"]


def test_every_single_edit_of_the_frame_bytes_matches_as_its_text_does() -> None:
    """Exhaustive: each byte replaced by, or preceded by, each of ``_BYTES`` (the alphabet of
    the text test in UTF-8, stray continuation bytes, truncated and whole multi-byte
    sequences), or deleted."""
    data = FRAME.encode()
    edits = [data[:i] + data[i + 1 :] for i in range(len(data))]
    for i in range(len(data) + 1):
        for b in _BYTES:
            edits.append(data[:i] + b + data[i:])
            edits.append(data[:i] + b + data[i + 1 :])
    fast_ones = not_utf8 = 0
    for raw in edits:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            not_utf8 += 1
        if _bytes_agree(raw) is not None:
            fast_ones += 1
    assert 0 < fast_ones < len(edits) and not_utf8 > 0


@settings(max_examples=400, deadline=None)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(0, len(FRAME) - 1),
            st.sampled_from(["replace", "insert", "delete"]),
            st.binary(min_size=1, max_size=3),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_a_mutated_frame_matches_as_bytes_exactly_as_text(edits) -> None:
    raw = FRAME.encode()
    for i, what, b in edits:
        i = min(i, len(raw) - 1)
        if what == "replace":
            raw = raw[:i] + b + raw[i + 1 :]
        elif what == "insert":
            raw = raw[:i] + b + raw[i:]
        else:
            raw = raw[:i] + raw[i + 1 :]
    _bytes_agree(raw)


@_at_the_edges
def test_values_at_the_edges_agree_as_bytes(a, f, span, t, p, q, m, sym, stream_sym) -> None:
    raw = _edge_frame(a, f, span, t, p, q, m, sym, stream_sym)
    fast = _bytes_agree(raw.encode())
    if fast is not None:
        assert Trade(*fast) == _full_path(raw), raw


# --- the packed buffer -------------------------------------------------------------------------


def _trades(n: int) -> list[Trade]:
    return [
        Trade(
            "BTCUSDT",
            10 + i,
            61837.63 + i * 0.01,
            0.00000001 * (i + 1),
            20 + i,
            21 + i,
            1_723_161_255_342 + i,
            bool(i % 3),
        )
        for i in range(n)
    ]


def test_packed_rows_give_every_trade_back_bit_for_bit() -> None:
    trades = [*_trades(5), Trade("BTCUSDT", 99, 1e-8, -0.0, 0, 2**63 - 1, 1, True)]
    cols = TradeColumns("BTCUSDT", trades[:2])
    for t in trades[2:4]:
        cols.append(*t[1:])
    cols.extend(trades[4:])
    assert len(cols) == 6 and cols.nbytes == 6 * ROW_BYTES == 6 * 49
    assert list(cols) == trades and cols == trades
    assert cols.ids() == [t.agg_id for t in trades]
    assert cols.last() == (99, 1)
    frame = cols.to_frame()
    assert dict(frame.schema) == TRADE_SCHEMA
    assert frame.equals(trades_to_frame(trades))
    assert math.copysign(1.0, frame["qty"][-1]) == -1.0  # -0.0 kept, bit for bit
    arrays = cols.columns()
    assert all(a.flags.c_contiguous for a in arrays.values())
    assert arrays["time"].dtype == np.int64 and arrays["buyer_is_maker"].dtype == np.bool_


def test_packed_rows_concatenate_in_order_and_stay_resizable() -> None:
    first, second = TradeColumns("BTCUSDT", _trades(3)), TradeColumns("BTCUSDT", _trades(5)[3:])
    frame = first.to_frame()  # no view of the buffer survives: it can still grow
    first.extend_columns(second)
    assert first.ids() == [10, 11, 12, 13, 14] and frame.height == 3
    single = TradeColumns("BTCUSDT", _trades(1))
    kept = single.columns()
    single.append(*_trades(2)[1][1:])  # a one-row column is a copy too
    assert kept["agg_id"].tolist() == [10] and single.ids() == [10, 11]
    empty = TradeColumns("ETHUSDT")
    assert not empty and empty.ids() == [] and empty.last() is None and empty == []
    assert empty.to_frame().height == 0 and dict(empty.to_frame().schema) == TRADE_SCHEMA


def test_the_store_takes_the_packed_batch_as_it_is(store) -> None:
    trades = _trades(1000)
    assert store.append("BTCUSDT", TradeColumns("BTCUSDT", trades).to_frame()) == 1000
    back = store.trades("BTCUSDT", 0, 2**42)
    assert back.equals(trades_to_frame(trades))
    assert isinstance(back, pl.DataFrame)
