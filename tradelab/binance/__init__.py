"""Binance, as the collector sees it: pure protocol code plus one small REST client.

:mod:`.protocol` turns WebSocket frames and REST pages into :class:`Trade` events (sans-I/O),
:mod:`.gaps` tracks missing aggregate ids, :mod:`.backoff` holds the reconnect and rate-limit
timing, and :mod:`.rest` is the only module here that does I/O (``aggTrades`` over urllib).
A new exchange gets a sibling package with the same shape.
"""

from __future__ import annotations

from tradelab.binance.backoff import (
    AttemptWindow,
    ReconnectPolicy,
    TokenBucket,
    exponential_backoff,
)
from tradelab.binance.gaps import BackfillOutcome, Gap, GapTracker
from tradelab.binance.protocol import (
    AGG_TRADES_PATH,
    MAX_REST_LIMIT,
    MAX_STREAMS_PER_CONNECTION,
    MAX_TIME_SPAN_MS,
    ControlResponse,
    Rejection,
    ServerShutdown,
    Trade,
    agg_trades_query,
    build_stream_urls,
    excerpt,
    parse_frame,
    parse_rest_items,
    split_streams,
    stream_name,
    trades_to_frame,
)
from tradelab.binance.rest import (
    AGG_TRADES_WEIGHT,
    DEFAULT_WEIGHT_LIMIT,
    RestClient,
    WeightBudget,
    parse_retry_after,
)

__all__ = [
    "AGG_TRADES_PATH",
    "AGG_TRADES_WEIGHT",
    "DEFAULT_WEIGHT_LIMIT",
    "MAX_REST_LIMIT",
    "MAX_STREAMS_PER_CONNECTION",
    "MAX_TIME_SPAN_MS",
    "AttemptWindow",
    "BackfillOutcome",
    "ControlResponse",
    "Gap",
    "GapTracker",
    "ReconnectPolicy",
    "Rejection",
    "RestClient",
    "ServerShutdown",
    "TokenBucket",
    "Trade",
    "WeightBudget",
    "agg_trades_query",
    "build_stream_urls",
    "excerpt",
    "exponential_backoff",
    "parse_frame",
    "parse_rest_items",
    "parse_retry_after",
    "split_streams",
    "stream_name",
    "trades_to_frame",
]
