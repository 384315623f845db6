"""The simulator's REST API as plain code: request in, ``(status, body, headers)`` out.

Serves ``GET /api/v3/aggTrades``, ``/exchangeInfo``, ``/ping`` and ``/time`` from the
published :class:`~tradelab.simulator.history.TradeHistory` of each symbol, with Binance's
request weights (``X-MBX-USED-WEIGHT-1m``; HTTP 429 + ``Retry-After`` past the per-minute
limit) and the injected 429/418 faults. The server only turns the answer into an HTTP response.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, MutableSequence, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs

from tradelab.simulator import protocol as proto
from tradelab.simulator.faults import Faults
from tradelab.simulator.history import TradeHistory
from tradelab.simulator.sources import Trade, tick_size

__all__ = ["REST_WEIGHTS", "RequestRecord", "RestAnswer", "RestApi"]

#: Request weight of each endpoint (Binance's values).
REST_WEIGHTS: dict[str, int] = {
    "/api/v3/aggTrades": 4,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
}

#: ``(HTTP status, JSON body, extra headers)``
RestAnswer = tuple[int, str, list[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One HTTP request the simulator answered (its request log, for tests): ``kind`` is
    ``"rest"`` or ``"archive"``; for ``aggTrades`` answers, how many trades and the agg ids
    and times (unix ms) of the first and last; ``at`` is when it was answered (the REST
    clock's unix seconds)."""

    kind: str
    path: str
    query: str
    status: int
    trades: int = 0
    first_id: int | None = None
    last_id: int | None = None
    first_time: int | None = None
    last_time: int | None = None
    at: float = 0.0


def _compact(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class RestApi:
    """Answers REST requests for ``histories``; counts into ``counts`` (shared stats)."""

    def __init__(
        self,
        histories: Mapping[str, TradeHistory],
        *,
        faults: Faults,
        counts: Counter[str],
        rng: random.Random,
        weight_limit: int = 6000,
        tick_sizes: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.time,
        requests: MutableSequence[RequestRecord] | None = None,
        ban_after: int = 2,
        ban_seconds: int = 120,
    ) -> None:
        self.histories = histories
        self.requests: MutableSequence[RequestRecord] = requests if requests is not None else []
        self.ban_after = ban_after
        self.ban_seconds = ban_seconds
        self.limited_until = 0.0
        self.banned_until = 0.0
        self.violations = 0
        self._answered: list[Trade] = []
        self.symbols: Sequence[str] = tuple(histories)
        self.counts = counts
        self.rng = rng
        self.weight_limit = weight_limit
        self.tick_sizes = dict(tick_sizes or {})
        self.clock = clock
        self.faults = faults
        self.fail_left = faults.rest_fail_next
        self.weight_window = 0
        self.weight_used = 0
        #: per symbol, the agg ids served malformed (``Faults.rest_malformed_every``)
        self.malformed_served: dict[str, set[int]] = {s: set() for s in histories}

    def set_faults(self, faults: Faults) -> None:
        """New faults; the "next K requests fail" countdown restarts."""
        self.faults = faults
        self.fail_left = faults.rest_fail_next

    def handle(self, path: str, query: str) -> RestAnswer:
        """Answer ``GET path?query`` like Binance would, and log the request."""
        self._answered = []
        answer = self._handle(path, query)
        rows = self._answered
        self.requests.append(
            RequestRecord(
                "rest",
                path,
                query,
                answer[0],
                len(rows),
                rows[0][0] if rows else None,
                rows[-1][0] if rows else None,
                rows[0][5] if rows else None,
                rows[-1][5] if rows else None,
                self.clock(),
            )
        )
        return answer

    def _handle(self, path: str, query: str) -> RestAnswer:
        self.counts["rest_requests"] += 1
        weight = REST_WEIGHTS.get(path)
        if weight is None:
            self.counts["rest_404"] += 1
            msg = f"Unknown endpoint {path}; this simulator serves " + ", ".join(REST_WEIGHTS)
            return 404, _compact({"code": -1000, "msg": msg}), []
        f = self.faults
        inject = False
        if self.fail_left > 0:  # the next K requests fail
            self.fail_left -= 1
            inject = True
        elif f.rest_fail_rate and self.rng.random() < f.rest_fail_rate:
            inject = True
        if inject:
            return self._rate_limited(f.rest_fail_status, f.retry_after, injected=True)
        now = self.clock()
        if now < self.banned_until:
            return self._rate_limited(418, math.ceil(self.banned_until - now), injected=False)
        minute = int(now // 60)
        if minute != self.weight_window:
            self.weight_window, self.weight_used = minute, 0
        if self.weight_used + weight > self.weight_limit:
            if now < self.limited_until:  # told to wait, came back early: a violation
                self.violations += 1
                if self.violations >= self.ban_after:
                    self.violations = 0
                    self.banned_until = now + self.ban_seconds
                    return self._rate_limited(418, self.ban_seconds, injected=False)
            retry = max(1, math.ceil(60 - now % 60))
            self.limited_until = now + retry
            return self._rate_limited(429, retry, injected=False)
        self.weight_used += weight
        headers = [("X-MBX-USED-WEIGHT-1m", str(self.weight_used))]
        try:
            if path == "/api/v3/aggTrades":
                q = proto.parse_agg_trades_query(query, self.symbols)
                rows = self.histories[q.symbol].query(
                    from_id=q.from_id,
                    start_time=q.start_time,
                    end_time=q.end_time,
                    limit=q.limit,
                    lag=f.rest_lag,
                )
                self.counts["rest_agg_trades"] += 1
                self._answered = rows
                every = f.rest_malformed_every
                if every is None:
                    return 200, proto.rest_items_json(rows), headers
                bad = self.malformed_served[q.symbol]
                items = []
                for t in rows:
                    broken = t[0] % every == 0
                    if broken:
                        bad.add(t[0])
                        self.counts["rest_items_malformed"] += 1
                    items.append(proto.rest_item_json(t, malformed=broken))
                return 200, "[" + ",".join(items) + "]", headers
            if path == "/api/v3/exchangeInfo":
                return 200, self.exchange_info(query), headers
            if path == "/api/v3/time":
                return 200, _compact({"serverTime": _now_ms()}), headers
            return 200, "{}", headers
        except proto.ApiError as err:
            self.counts["rest_400"] += 1
            return err.status, err.body(), headers

    def _rate_limited(self, status: int, retry_after: int, *, injected: bool) -> RestAnswer:
        self.counts[f"rest_{status}"] += 1
        if injected:
            self.counts["rest_errors_injected"] += 1
        if status == 418:
            until = _now_ms() + retry_after * 1000
            msg = (
                f"Way too much request weight used; IP banned until {until}. "
                "Please use WebSocket Streams for live updates to avoid bans."
            )
        else:
            msg = (
                f"Too much request weight used; current limit is {self.weight_limit} "
                "request weight per 1 MINUTE. Please use WebSocket Streams for live "
                "updates to avoid polling the API."
            )
        headers = [
            ("Retry-After", str(retry_after)),
            ("X-MBX-USED-WEIGHT-1m", str(self.weight_used)),
        ]
        return status, _compact({"code": -1003, "msg": msg}), headers

    def exchange_info(self, query: str) -> str:
        """``/api/v3/exchangeInfo`` (all symbols, ``symbol=X`` or ``symbols=["X","Y"]``)
        with each symbol's PRICE_FILTER tick size."""
        params = parse_qs(query)
        wanted = list(self.symbols)
        if "symbol" in params:
            wanted = [params["symbol"][-1]]
        elif "symbols" in params:
            try:
                wanted = json.loads(params["symbols"][-1])
            except ValueError:
                raise proto.ApiError(
                    -1100,
                    "Illegal characters found in parameter 'symbols'; "
                    'legal format is \'["BTCUSDT","ETHUSDT"]\'.',
                ) from None
        if not isinstance(wanted, list) or any(s not in self.symbols for s in wanted):
            raise proto.ApiError(-1121, "Invalid symbol.")
        return _compact(
            {
                "timezone": "UTC",
                "serverTime": _now_ms(),
                "rateLimits": [
                    {
                        "rateLimitType": "REQUEST_WEIGHT",
                        "interval": "MINUTE",
                        "intervalNum": 1,
                        "limit": self.weight_limit,
                    }
                ],
                "exchangeFilters": [],
                "symbols": [self._symbol_info(s) for s in wanted],
            }
        )

    def _symbol_info(self, symbol: str) -> dict[str, object]:
        tick = self.tick_sizes.get(symbol)
        if tick is None:
            last = self.histories[symbol].last()
            tick = tick_size(symbol, last[1] if last else None)
        quotes = ("USDT", "USDC", "FDUSD", "BTC", "ETH", "BNB", "BRL", "AUD", "EUR", "TRY")
        quote = next((q for q in quotes if symbol.endswith(q) and len(symbol) > len(q)), "USDT")
        return {
            "symbol": symbol,
            "status": "TRADING",
            "baseAsset": symbol[: len(symbol) - len(quote)] if symbol.endswith(quote) else symbol,
            "quoteAsset": quote,
            "baseAssetPrecision": 8,
            "quoteAssetPrecision": 8,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": f"{tick:.8f}",
                    "maxPrice": "1000000.00000000",
                    "tickSize": f"{tick:.8f}",
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": "0.00001000",
                    "maxQty": "9000.00000000",
                    "stepSize": "0.00001000",
                },
            ],
        }
