"""Binance wire formats for the simulator: pure functions, no sockets.

Stream frames (``aggTrade`` payloads, the combined-stream wrapper, ``serverShutdown``,
malformed variants), WebSocket paths and control messages, and the REST ``aggTrades`` query
with Binance's validation errors (``{"code": -1100, "msg": ...}``, HTTP 400).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from tradelab.simulator.sources import Trade

__all__ = [
    "ABSURD_ID",
    "MAX_LIMIT",
    "MAX_STREAMS",
    "AggTradesQuery",
    "ApiError",
    "ControlRequest",
    "StreamTarget",
    "absurd_payload",
    "format_payload",
    "malformed_payload",
    "parse_agg_trades_query",
    "parse_control",
    "parse_stream_path",
    "rest_item_json",
    "rest_items_json",
    "shutdown_frame",
    "stream_name",
    "wrap_combined",
]

MAX_LIMIT = 1000
DEFAULT_LIMIT = 500
MAX_STREAMS = 1024
MAX_TIME_RANGE_MS = 3_600_000  # startTime..endTime may span at most one hour
_STREAM_RE = re.compile(r"^([a-z0-9]{2,20})@aggTrade$")
_INT_RE = re.compile(r"^-?[0-9]{1,20}$")


class ApiError(Exception):
    """A Binance REST error: HTTP ``status`` with body ``{"code": code, "msg": msg}``."""

    def __init__(
        self, code: int, msg: str, status: int = 400, *, req_id: int | str | None = None
    ) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status
        self.req_id = req_id  # the control message's id, when the error answers one

    def body(self) -> str:
        return _compact({"code": self.code, "msg": self.msg})


def _compact(obj: object) -> str:
    """JSON without spaces, as Binance writes it."""
    return json.dumps(obj, separators=(",", ":"))


def stream_name(symbol: str) -> str:
    """``BTCUSDT`` -> ``btcusdt@aggTrade`` (Binance's stream names are lower case)."""
    return f"{symbol.lower()}@aggTrade"


def _dec(x: float) -> str:
    return f"{x:.8f}"


def format_payload(symbol: str, t: Trade, event_ms: int, *, micro: bool = False) -> str:
    """The raw ``aggTrade`` payload exactly as Binance sends it (compact JSON, field order
    ``e E s a p q f l T m M``, prices and quantities as decimal strings with 8 decimals)."""
    a, p, q, f, la, tm, m = t
    if micro:
        event_ms, tm = event_ms * 1000, tm * 1000
    return (
        f'{{"e":"aggTrade","E":{event_ms},"s":"{symbol}","a":{a},"p":"{p:.8f}","q":"{q:.8f}",'
        f'"f":{f},"l":{la},"T":{tm},"m":{"true" if m else "false"},"M":true}}'
    )


def wrap_combined(stream: str, payload: str) -> str:
    """The combined-stream wrapper ``{"stream": ..., "data": payload}``."""
    return f'{{"stream":"{stream}","data":{payload}}}'


def shutdown_frame(event_ms: int, *, style: str, combined: bool) -> str:
    """The ``serverShutdown`` notice (see :class:`~tradelab.simulator.faults.Faults`)."""
    payload = f'{{"e":"serverShutdown","E":{event_ms}}}'
    if style == "event":
        return f'{{"event":{payload}}}'
    return wrap_combined("serverShutdown", payload) if combined else payload


def malformed_payload(
    kind: str, symbol: str, t: Trade, event_ms: int, rng: random.Random
) -> tuple[str, bool]:
    """A malformed stand-in for trade ``t``: ``(payload, truncate_after_wrapping)``.

    ``bad_json`` is a valid payload to be cut short after wrapping; ``missing_field`` drops
    one required field; ``wrong_type`` gives a field a type no parser may accept;
    ``unknown_event`` is a well-formed event of a type Binance might add later.
    None of them carries a parseable trade that differs from the real ``t``.
    """
    if kind == "bad_json":
        return format_payload(symbol, t, event_ms), True
    if kind == "unknown_event":
        extra = rng.randint(1, 99)
        return f'{{"e":"mysteryEvent","E":{event_ms},"s":"{symbol}","x":{extra}}}', False
    d = json.loads(format_payload(symbol, t, event_ms))
    if kind == "missing_field":
        del d[rng.choice(["a", "p", "q", "T", "m"])]
    elif kind == "wrong_type":
        field, bad = rng.choice(
            [("a", "id-" + str(t[0])), ("p", None), ("q", [t[2]]), ("T", "soon"), ("m", "maybe")]
        )
        d[field] = bad
    else:
        raise ValueError(f"unknown malformed kind {kind!r}")
    return _compact(d), False


ABSURD_ID = 2**62  # the agg id of an "id_jump" absurd trade (4611686018427387904)
_CENTURY_MS = 100 * 365 * 86_400_000


def absurd_payload(kind: str, symbol: str, t: Trade, event_ms: int) -> str:
    """A well-formed ``aggTrade`` payload that no exchange would send for trade ``t``:
    ``id_jump`` (agg id :data:`ABSURD_ID`), ``future`` (``t``'s id, a time a century ahead),
    ``past`` (``t``'s id, a time in 1970)."""
    a, p, q, f, la, tm, m = t
    if kind == "id_jump":
        a = ABSURD_ID
    elif kind == "future":
        tm += _CENTURY_MS
    elif kind == "past":
        tm = 86_400_000 + tm % 86_400_000
    else:
        raise ValueError(f"unknown absurd kind {kind!r}")
    return format_payload(symbol, (a, p, q, f, la, tm, m), event_ms)


def rest_item_json(t: Trade, *, malformed: bool = False) -> str:
    """One ``aggTrades`` item; ``malformed``: its price is ``null`` (the id stays readable)."""
    a, p, q, f, la, tm, m = t
    price = "null" if malformed else f'"{p:.8f}"'
    return (
        f'{{"a":{a},"p":{price},"q":"{q:.8f}","f":{f},"l":{la},"T":{tm},'
        f'"m":{"true" if m else "false"},"M":true}}'
    )


def rest_items_json(trades: Sequence[Trade]) -> str:
    """The ``GET /api/v3/aggTrades`` response body for ``trades``."""
    return (
        "["
        + ",".join(
            f'{{"a":{a},"p":"{p:.8f}","q":"{q:.8f}","f":{f},"l":{la},"T":{tm},'
            f'"m":{"true" if m else "false"},"M":true}}'
            for a, p, q, f, la, tm, m in trades
        )
        + "]"
    )


# --- WebSocket paths and control messages ----------------------------------------------------


@dataclass(frozen=True)
class StreamTarget:
    """What a WebSocket request asked for: streams, combined wrapper or raw, time unit."""

    streams: tuple[str, ...]
    combined: bool
    micro: bool = False


def parse_stream_path(path: str) -> StreamTarget:
    """Parse ``/ws/<stream>``, ``/ws``, ``/stream?streams=a/b`` (``timeUnit`` allowed).

    Raises :class:`ApiError` (HTTP 400/404) for anything Binance would refuse.
    """
    parts = urlsplit(path)
    query = parse_qs(parts.query, keep_blank_values=True)
    unit = query.get("timeUnit", ["MILLISECOND"])[-1].upper()
    if unit not in ("MILLISECOND", "MICROSECOND"):
        raise ApiError(-1100, f"Invalid timeUnit {unit!r}: use MILLISECOND or MICROSECOND")
    micro = unit == "MICROSECOND"
    route = parts.path.rstrip("/") or "/"
    if route == "/stream":
        raw = query.get("streams", [""])[-1]
        names = tuple(s for s in raw.split("/") if s)
        combined = True
    elif route == "/ws":
        names, combined = (), False
    elif route.startswith("/ws/"):
        names = tuple(s for s in route[4:].split("/") if s)
        combined = False
    else:
        raise ApiError(
            -1000, f"Unknown path {parts.path!r}: use /ws/<stream> or /stream?streams=", 404
        )
    for n in names:
        check_stream_name(n)
    if len(names) > MAX_STREAMS:
        raise ApiError(-1000, f"Too many streams: {len(names)} > {MAX_STREAMS} per connection")
    return StreamTarget(tuple(dict.fromkeys(names)), combined, micro)


def check_stream_name(name: object) -> str:
    """Raise ApiError unless ``name`` is a lowercase ``<symbol>@aggTrade`` stream name."""
    if not isinstance(name, str) or not _STREAM_RE.match(name):
        raise ApiError(
            2,
            f"Invalid request: invalid stream name {name!r} "
            "(this simulator serves '<symbol>@aggTrade', symbol lower case)",
        )
    return name


@dataclass(frozen=True)
class ControlRequest:
    """A live control message: SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS."""

    method: str
    params: tuple[str, ...]
    id: int | str | None


def parse_control(text: str | bytes) -> ControlRequest:
    """Parse a control message; raises :class:`ApiError` with Binance's codes (2 invalid
    request, 3 invalid JSON) and the offending id when it could be read."""
    try:
        msg = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(3, f"Invalid JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ApiError(3, "Invalid JSON: expected an object")
    req_id = msg.get("id")
    if req_id is not None and (isinstance(req_id, bool) or not isinstance(req_id, int | str)):
        raise ApiError(2, "Invalid request: 'id' must be an integer, a string or null")
    method = msg.get("method")
    if method not in ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS"):
        raise ApiError(2, f"Invalid request: unknown method {method!r}", req_id=req_id)
    params = msg.get("params", [])
    if method == "LIST_SUBSCRIPTIONS":
        params = []
    if not isinstance(params, list):
        raise ApiError(2, "Invalid request: 'params' must be a list of stream names", req_id=req_id)
    try:
        names = tuple(check_stream_name(p) for p in params)
    except ApiError as err:
        err.req_id = req_id
        raise
    return ControlRequest(method, names, req_id)


# --- REST ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AggTradesQuery:
    """A validated ``GET /api/v3/aggTrades`` request."""

    symbol: str
    from_id: int | None
    start_time: int | None
    end_time: int | None
    limit: int


_AGG_PARAMS = ("symbol", "fromId", "startTime", "endTime", "limit")


def _int_param(query: Mapping[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    if not values:
        return None
    raw = values[-1]
    if not _INT_RE.match(raw):
        raise ApiError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    return int(raw)


def parse_agg_trades_query(query_string: str, symbols: Sequence[str]) -> AggTradesQuery:
    """Validate the query like Binance does; raises :class:`ApiError` (HTTP 400)."""
    query = parse_qs(query_string, keep_blank_values=True)
    unknown = [k for k in query if k not in _AGG_PARAMS]
    if unknown:
        raise ApiError(
            -1104,
            f"Not all sent parameters were read; read "
            f"'{len(query) - len(unknown)}' parameter(s) but was sent "
            f"'{len(query)}'.",
        )
    sym = query.get("symbol", [""])[-1]
    if not sym:
        raise ApiError(
            -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
        )
    if sym not in symbols:
        raise ApiError(-1121, "Invalid symbol.")
    from_id = _int_param(query, "fromId")
    start = _int_param(query, "startTime")
    end = _int_param(query, "endTime")
    limit = _int_param(query, "limit")
    if limit is None:
        limit = DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(
            -1130, f"Data sent for parameter 'limit' is not valid (allowed 1 to {MAX_LIMIT})."
        )
    for name, v in (("fromId", from_id), ("startTime", start), ("endTime", end)):
        if v is not None and v < 0:
            raise ApiError(
                -1100,
                f"Illegal characters found in parameter '{name}'; "
                "legal range is '^[0-9]{1,20}$'.",
            )
    if from_id is not None and (start is not None or end is not None):
        raise ApiError(-1128, "Combination of optional parameters invalid.")
    if start is not None and end is not None:
        if end < start:
            raise ApiError(-1128, "Combination of optional parameters invalid.")
        if end - start > MAX_TIME_RANGE_MS:
            raise ApiError(-1127, "More than 1 hours between startTime and endTime.")
    return AggTradesQuery(sym, from_id, start, end, limit)
