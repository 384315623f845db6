"""Binance market-data messages, sans I/O: text in, trades (or a reason for rejection) out.

Nothing here touches a socket, a clock or a logger. The collector feeds every WebSocket frame
to :func:`parse_frame` and every REST answer to :func:`parse_rest_items`; tests do the same
with hand-made frames. The rules implemented are those of ``docs/binance.md``:

* combined-stream frames are ``{"stream": "btcusdt@aggTrade", "data": {...}}``; raw-stream
  frames are the payload itself (both are accepted);
* an ``aggTrade`` payload carries ``e, E, s, a, p, q, f, l, T, m, M``: ids and times are JSON
  integers, price and quantity decimal strings, ``m`` a boolean;
* ``serverShutdown`` means "reconnect now"; ``{"result": ..., "id": ...}`` answers a control
  message; anything else is rejected with a reason (unknown event type);
* at most 1024 streams per connection, stream names lower case.

A rejection is a value (:class:`Rejection`), not an exception: a malformed frame is an event
of the feed, logged and skipped by the caller, never a reason to drop the connection.

A well-formed trade can still be implausible — an agg id far beyond the last one seen, a
trade time decades away — and storing it would poison the store (its resume point, its time
index). :class:`Plausibility` holds those rules; the collector skips such a trade and stores
it only if REST confirms it. A REST page with bad items raises :class:`MalformedPageError`,
which carries the page's valid items and the ids it rejected, so one bad item never costs the
rest of the page.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import polars as pl

from tradelab.exceptions import InvalidParameterError, MalformedFrameError

__all__ = [
    "AGG_TRADES_PATH",
    "MAX_REST_LIMIT",
    "MAX_STREAMS_PER_CONNECTION",
    "MAX_TIME_SPAN_MS",
    "ControlResponse",
    "MalformedPageError",
    "Plausibility",
    "Rejection",
    "ServerShutdown",
    "Trade",
    "agg_trades_query",
    "build_stream_urls",
    "excerpt",
    "match_trade",
    "match_trade_bytes",
    "parse_frame",
    "parse_rest_items",
    "split_streams",
    "stream_name",
    "trades_to_frame",
]

MAX_STREAMS_PER_CONNECTION = 1024
MAX_REST_LIMIT = 1000
AGG_TRADES_PATH = "/api/v3/aggTrades"
EXCERPT_CHARS = 120
_INF = math.inf
_MAX_ID = 2**63 - 1  # ids are stored as Int64
_MAX_MS = 9_999_999_999_999  # trade time in ms (year 2286): 13 digits, as the store keys them


class Trade(NamedTuple):
    """One aggregate trade, as the stream or REST API delivered it (times in unix ms)."""

    symbol: str
    agg_id: int
    price: float
    qty: float
    first_id: int
    last_id: int
    time: int
    buyer_is_maker: bool


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    """The server announced a planned shutdown: reconnect now (open the new connection first)."""

    event_time: int | None = None


@dataclass(frozen=True, slots=True)
class ControlResponse:
    """The answer to a SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS control message."""

    id: Any
    result: Any = None
    error: Any = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A frame that is not a usable message: ``reason`` says why, ``excerpt`` shows its start."""

    reason: str
    excerpt: str


Event = Trade | ServerShutdown | ControlResponse | Rejection


def excerpt(raw: str | bytes | Any, limit: int = EXCERPT_CHARS) -> str:
    """The first ``limit`` characters of a frame, safe to put in a log line."""
    if isinstance(raw, bytes | bytearray | memoryview):
        text = bytes(raw[: limit * 4]).decode("utf-8", "replace")
    elif isinstance(raw, str):
        text = raw
    else:
        text = repr(raw)
    return text if len(text) <= limit else text[:limit] + "…"


def _reject(reason: str, raw: Any) -> Rejection:
    return Rejection(reason, excerpt(raw))


def _check_trade(data: dict[str, Any], stream: Any) -> Trade | str:
    """Validate one aggTrade payload (stream or REST item); a string is the rejection reason."""
    try:
        s = data["s"] if stream is not False else None
        a = data["a"]
        p = data["p"]
        q = data["q"]
        f = data["f"]
        last = data["l"]
        t = data["T"]
        m = data["m"]
    except KeyError as exc:
        return f"aggTrade lacks field {exc.args[0]!r}"
    if type(a) is not int or type(f) is not int or type(last) is not int or type(t) is not int:
        for name, value in (("a", a), ("f", f), ("l", last), ("T", t)):
            if type(value) is not int:
                return f"field {name!r} must be an integer, got {type(value).__name__} {value!r}"
    if a < 0 or f < 0 or last < f or t <= 0 or last > _MAX_ID or a > _MAX_ID or t > _MAX_MS:
        return f"ids/time out of range: a={a} f={f} l={last} T={t}"
    if type(m) is not bool:
        return f"field 'm' must be true or false, got {type(m).__name__} {m!r}"
    if type(p) is not str or type(q) is not str:
        name, value = ("p", p) if type(p) is not str else ("q", q)
        return f"field {name!r} must be a decimal string, got {type(value).__name__} {value!r}"
    try:
        price = float(p)
        qty = float(q)
    except ValueError:
        return f"price/quantity are not decimal numbers: p={p!r} q={q!r}"
    if not (0.0 < price < _INF) or not (0.0 <= qty < _INF):
        return f"price must be > 0 and quantity >= 0 (finite): p={p!r} q={q!r}"
    if s is None:
        return Trade("", a, price, qty, f, last, t, m)
    if type(s) is not str or not s:
        return f"field 's' must be a symbol string, got {s!r}"
    if stream is not None and (type(stream) is not str or stream.partition("@")[0] != s.lower()):
        return f"stream {stream!r} does not match symbol {s!r}"
    return Trade(s, a, price, qty, f, last, t, m)


# The canonical combined-stream aggTrade frame, exactly as Binance (and the simulator) write it:
# compact JSON, fields in Binance's order, ids/times as JSON integers (no leading zeros, so
# never a form json.loads would refuse), price and quantity as plain decimal strings. Anything
# else -- whitespace, another order, escapes, exponents, extra fields -- does not match and goes
# through json.loads and the full checks: the fast path only ever accepts a subset of what the
# full path accepts, with the same values (tests/test_ingest_fast.py checks both on the same
# frames, mutated). The pattern is pure ASCII, so the same pattern over the frame's UTF-8 bytes
# matches exactly the frames whose text it matches (and never bytes that are not UTF-8).
_INT = r"(0|[1-9][0-9]{0,18})"
_INT_ANY = r"(?:0|[1-9][0-9]{0,18})"  # the same, not captured (E, which no check reads)
_TIME = r"([1-9][0-9]{0,12})"  # 1.._MAX_MS exactly: the full path's time bounds, by the pattern
_DEC = r"((?:0|[1-9][0-9]{0,19})(?:\.[0-9]{1,20})?)"
_TRADE_PATTERN = (
    r'\{"stream":"([a-z0-9]{1,40})@aggTrade","data":\{"e":"aggTrade","E":' + _INT_ANY + r","
    r'"s":"([A-Z0-9]{1,40})","a":' + _INT + r',"p":"' + _DEC + r'","q":"' + _DEC + r'",'
    r'"f":' + _INT + r',"l":' + _INT + r',"T":' + _TIME + r',"m":(true|false),'
    r'"M":(?:true|false)\}\}'
)
_CANONICAL_TRADE = re.compile(_TRADE_PATTERN).fullmatch
_CANONICAL_TRADE_BYTES = re.compile(_TRADE_PATTERN.encode("ascii")).fullmatch

TradeValues = tuple[str, int, float, float, int, int, int, bool]
"""One trade as plain values: ``(symbol, agg_id, price, qty, first_id, last_id, time, maker)``."""


def match_trade(raw: str | bytes | bytearray) -> TradeValues | None:
    """The fast path of :func:`parse_frame` for the one frame a collector sees all day: a
    canonical combined-stream ``aggTrade`` frame (see ``_CANONICAL_TRADE``) that passes every
    check of the full path. Returns the trade's values without building a dict or a
    :class:`Trade` (a regular expression and seven conversions, ~2 µs instead of ~5 µs), or
    None: then :func:`parse_frame` decides (a trade in another layout, a rejection, a control
    message...). The frame may be text or its UTF-8 bytes (see :func:`match_trade_bytes`).
    Never raises."""
    if type(raw) is not str:
        return match_trade_bytes(raw) if isinstance(raw, bytes | bytearray) else None
    m = _CANONICAL_TRADE(raw)
    if m is None:
        return None
    stream, s, a, p, q, f, last, t, maker = m.groups()
    if stream != s.lower():
        return None
    agg, first, lst, price = int(a), int(f), int(last), float(p)
    if lst < first or lst > _MAX_ID or agg > _MAX_ID or not price > 0.0:
        return None  # the full path words the rejection
    return s, agg, price, float(q), first, lst, int(t), maker == "true"


def match_trade_bytes(raw: bytes | bytearray) -> TradeValues | None:
    """:func:`match_trade` over a frame's undecoded UTF-8 bytes, as the collector's reader takes
    them from the connection: the same values as ``match_trade(raw.decode())`` (None for bytes
    that are not UTF-8), without decoding the frame. The canonical frame is pure ASCII, so the
    pattern is the same; only the symbol is decoded. Never raises for bytes-like input."""
    m = _CANONICAL_TRADE_BYTES(raw)
    if m is None:
        return None
    stream, s, a, p, q, f, last, t, maker = m.groups()
    if stream != s.lower():
        return None
    agg, first, lst, price = int(a), int(f), int(last), float(p)
    if lst < first or lst > _MAX_ID or agg > _MAX_ID or not price > 0.0:
        return None  # the full path words the rejection
    return s.decode("ascii"), agg, price, float(q), first, lst, int(t), maker == b"true"


def parse_frame(raw: str | bytes) -> Event:
    """Parse one WebSocket text frame (combined or raw stream) into an event.

    Returns a :class:`Trade` for an ``aggTrade``, :class:`ServerShutdown`,
    :class:`ControlResponse`, or a :class:`Rejection` naming what is wrong (bad JSON, missing or
    mistyped field, symbol/stream mismatch, unknown event type). Never raises for bad input.
    """
    fast = match_trade(raw)  # type: ignore[arg-type]
    if fast is not None:
        return Trade(*fast)
    try:
        msg = json.loads(raw)
    except (ValueError, TypeError) as exc:
        return _reject(f"not valid JSON ({exc})", raw)
    if type(msg) is not dict:
        return _reject(f"expected a JSON object, got {type(msg).__name__}", raw)
    stream = None
    data = msg.get("data")
    if data is not None:
        stream = msg.get("stream")
        if type(data) is not dict:
            return _reject(f"'data' must be an object, got {type(data).__name__}", raw)
        if type(stream) is not str:
            return _reject("combined-stream frame without a 'stream' name", raw)
    elif type(msg.get("event")) is dict:
        data = msg["event"]  # WebSocket-API style connection event: {"event": {"e": ...}}
    else:
        data = msg
    event = data.get("e")
    if event == "aggTrade":
        out = _check_trade(data, stream)
        return out if type(out) is Trade else _reject(out, raw)  # type: ignore[arg-type]
    if event == "serverShutdown":
        when = data.get("E")
        return ServerShutdown(when if type(when) is int else None)
    if "id" in data and ("result" in data or "error" in data):
        return ControlResponse(data["id"], data.get("result"), data.get("error"))
    if event is None:
        return _reject("no event type ('e') in frame", raw)
    return _reject(f"unknown event type {event!r}", raw)


class MalformedPageError(MalformedFrameError):
    """A REST ``aggTrades`` page with items that are not valid trades.

    The message names the first bad item. ``trades`` holds the page's valid items (ascending,
    symbol set), ``rejected`` the bad ones as ``(agg id, reason)`` — the id read from the
    item when it is an integer, else inferred from its neighbours (ids are contiguous on a
    page) — and ``size`` the number of items the page had (to tell a full page from a short
    one). The caller decides what to keep: nothing is dropped silently.
    """

    def __init__(
        self, message: str, trades: list[Trade], rejected: list[tuple[int, str]], size: int
    ) -> None:
        super().__init__(message)
        self.trades = trades
        self.rejected = rejected
        self.size = size


@dataclass(frozen=True, slots=True)
class Plausibility:
    """When a well-formed trade is still implausible (pure; the collector applies it).

    * ``max_id_jump``: an agg id more than this above the last id seen (agg ids are contiguous
      per symbol, so a jump means trades missed — millions only after days away);
    * ``max_age_ms`` / ``max_ahead_ms``: a trade time more than this before / after now (the
      store's retention plus a slack, and the slack alone).

    :meth:`check` returns the reason, or None for a plausible trade.
    """

    max_id_jump: int = 10_000_000
    max_age_ms: int = 7 * 86_400_000 + 3_600_000
    max_ahead_ms: int = 3_600_000

    def check(self, agg_id: int, time_ms: int, last_id: int | None, now_ms: int) -> str | None:
        """Why trade ``agg_id`` at ``time_ms`` is implausible after ``last_id`` (the highest id
        seen, None if none) at ``now_ms``; None if it is plausible."""
        if last_id is not None and agg_id - last_id > self.max_id_jump:
            return (
                f"agg id {agg_id} is {agg_id - last_id:,} above the last id {last_id} "
                f"(more than max_id_jump {self.max_id_jump:,})"
            )
        if time_ms > now_ms + self.max_ahead_ms:
            return (
                f"trade time T={time_ms} is {(time_ms - now_ms) / 3_600_000:,.1f} h ahead of "
                f"this machine's clock (allowed: {self.max_ahead_ms / 3_600_000:g} h)"
            )
        if time_ms < now_ms - self.max_age_ms:
            return (
                f"trade time T={time_ms} is {(now_ms - time_ms) / 86_400_000:,.1f} days old "
                f"(allowed: the retention plus slack, {self.max_age_ms / 86_400_000:.2f} days)"
            )
        return None

    def bounds(self, now_ms: int) -> tuple[int, int]:
        """The plausible trade times at ``now_ms``: ``(oldest, newest)`` inclusive."""
        return now_ms - self.max_age_ms, now_ms + self.max_ahead_ms


def parse_rest_items(payload: str | bytes | list[Any], symbol: str) -> list[Trade]:
    """Parse a ``GET /api/v3/aggTrades`` answer (a JSON array of a/p/q/f/l/T/m items).

    Raises :class:`MalformedFrameError` for an answer that is not a JSON array, and
    :class:`MalformedPageError` (a subclass) naming the first bad item when some items are not
    valid trades; it carries the valid items and the rejected ids, so the caller can keep what
    is good (a backfill with a silently dropped item would look like a hole: never silent).
    """
    if isinstance(payload, str | bytes | bytearray):
        try:
            payload = json.loads(payload)
        except ValueError as exc:
            raise MalformedFrameError(
                f"aggTrades answer for {symbol} is not JSON ({exc}): {excerpt(payload)}"
            ) from None
    if not isinstance(payload, list):
        raise MalformedFrameError(
            f"aggTrades answer for {symbol} must be a JSON array, got {type(payload).__name__}: "
            f"{excerpt(json.dumps(payload, default=str))}"
        )
    out: list[Trade] = []
    rejected: list[tuple[int, str]] = []
    first_error = ""
    prev: int | None = None  # the id of the previous item (valid or not), to infer bad ids
    for i, item in enumerate(payload):
        if type(item) is not dict:
            reason = f"aggTrades item #{i} for {symbol} is not an object"
            trade: Trade | str = reason
        else:
            trade = _check_trade(item, False)
            reason = f"aggTrades item #{i} for {symbol}: {trade}"
        if type(trade) is Trade:
            prev = trade.agg_id
            out.append(trade._replace(symbol=symbol))
            continue
        a = item.get("a") if type(item) is dict else None
        if type(a) is not int or a < 0 or (prev is not None and a <= prev):
            a = None if prev is None else prev + 1
        if a is None:  # the first item, without a usable id: the next valid one tells
            nxt = next((x.get("a") for x in payload[i + 1 :] if type(x) is dict), None)
            a = nxt - 1 if type(nxt) is int and nxt > 0 else -1
        if a >= 0:
            prev = a
        rejected.append((a, reason))
        first_error = first_error or reason
    if rejected:
        raise MalformedPageError(first_error, out, rejected, len(payload))
    return out


def stream_name(symbol: str) -> str:
    """The aggTrade stream of ``symbol``: ``btcusdt@aggTrade`` (symbol part lower case)."""
    return f"{symbol.lower()}@aggTrade"


def split_streams(
    symbols: Sequence[str], max_streams: int = MAX_STREAMS_PER_CONNECTION
) -> list[tuple[str, ...]]:
    """Split ``symbols`` into groups of at most ``max_streams`` (one connection per group)."""
    if not 1 <= max_streams <= MAX_STREAMS_PER_CONNECTION:
        raise InvalidParameterError(
            f"max_streams must be 1..{MAX_STREAMS_PER_CONNECTION}, got {max_streams!r}"
        )
    syms = tuple(symbols)
    return [syms[i : i + max_streams] for i in range(0, len(syms), max_streams)]


def _base(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    for suffix in ("/stream", "/ws"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return parts.scheme, parts.netloc, path


def build_stream_urls(
    ws_base: str, symbols: Sequence[str], *, max_streams: int = MAX_STREAMS_PER_CONNECTION
) -> list[str]:
    """Combined-stream URLs for ``symbols``: ``{base}/stream?streams=a@aggTrade/b@aggTrade``.

    One URL per group of at most ``max_streams`` symbols (Binance allows 1024 per connection).
    A base that already ends in ``/ws`` or ``/stream`` is accepted and normalised.
    """
    if not symbols:
        raise InvalidParameterError("build_stream_urls needs at least one symbol")
    scheme, netloc, path = _base(ws_base)
    urls = []
    for group in split_streams(symbols, max_streams):
        query = "streams=" + "/".join(stream_name(s) for s in group)
        urls.append(urlunsplit((scheme, netloc, path + "/stream", query, "")))
    return urls


MAX_TIME_SPAN_MS = 3_600_000  # startTime..endTime at most one hour apart (else -1127)


def agg_trades_query(
    rest_base: str,
    symbol: str,
    *,
    from_id: int | None = None,
    limit: int = MAX_REST_LIMIT,
    start_time: int | None = None,
    end_time: int | None = None,
) -> str:
    """The REST URL ``{base}/api/v3/aggTrades?symbol=..&fromId=..&limit=..``.

    ``start_time``/``end_time`` (unix ms, inclusive) locate trades by time instead of by id;
    Binance refuses them combined with ``fromId`` (-1128) and more than one hour apart (-1127),
    so both are refused here before a request is spent.
    """
    if not 1 <= limit <= MAX_REST_LIMIT:
        raise InvalidParameterError(f"limit must be 1..{MAX_REST_LIMIT}, got {limit!r}")
    if from_id is not None and (type(from_id) is not int or from_id < 0):
        raise InvalidParameterError(f"from_id must be an integer >= 0, got {from_id!r}")
    for name, value in (("start_time", start_time), ("end_time", end_time)):
        if value is not None and (type(value) is not int or not 0 <= value <= _MAX_MS):
            raise InvalidParameterError(f"{name} must be unix ms >= 0, got {value!r}")
    if from_id is not None and (start_time is not None or end_time is not None):
        raise InvalidParameterError(
            "from_id cannot be combined with start_time/end_time (Binance answers -1128)"
        )
    if start_time is not None and end_time is not None:
        if end_time < start_time:
            raise InvalidParameterError(f"end_time {end_time} is before start_time {start_time}")
        if end_time - start_time > MAX_TIME_SPAN_MS:
            raise InvalidParameterError(
                f"start_time and end_time are {end_time - start_time} ms apart; Binance allows "
                f"at most {MAX_TIME_SPAN_MS} (one hour, else -1127)"
            )
    query = f"symbol={symbol}"
    if from_id is not None:
        query += f"&fromId={from_id}"
    if start_time is not None:
        query += f"&startTime={start_time}"
    if end_time is not None:
        query += f"&endTime={end_time}"
    return rest_base.rstrip("/") + AGG_TRADES_PATH + "?" + query + f"&limit={limit}"


_ROW_SCHEMA = {
    "symbol": pl.Utf8,
    "agg_id": pl.Int64,
    "price": pl.Float64,
    "qty": pl.Float64,
    "first_id": pl.Int64,
    "last_id": pl.Int64,
    "time": pl.Int64,
    "buyer_is_maker": pl.Boolean,
}


def trades_to_frame(trades: Iterable[Trade]) -> pl.DataFrame:
    """Trades as a frame in the trade schema (``time`` as UTC ms datetimes), in given order.

    Built row-wise by Polars itself (faster than transposing in Python: this runs once per
    symbol per second on the collector's worker thread, for up to ~100k trades at full speed).
    """
    from tradelab.schema import TRADE_SCHEMA, empty_trades

    rows = trades if isinstance(trades, list) else list(trades)
    if not rows:
        return empty_trades()
    frame = pl.DataFrame(rows, schema=_ROW_SCHEMA, orient="row")
    return frame.drop("symbol").with_columns(pl.col("time").cast(TRADE_SCHEMA["time"]))
