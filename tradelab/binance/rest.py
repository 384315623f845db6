"""The REST backfill client: ``GET /api/v3/aggTrades?symbol=&fromId=&limit=1000``.

Why the standard library (``urllib.request`` run in :func:`asyncio.to_thread`) and not an async
HTTP client: backfill is rare and slow by design (Binance allows a few thousand weight per
minute and each page costs 4), so one worker thread per request costs nothing measurable, and
it adds no dependency — ``httpx2`` is only present as the MCP SDK's transitive dependency, with
a version we do not control. The event loop never blocks on the network; a request that hangs
is bounded by ``timeout``.

Rate limits (``docs/binance.md``): every answer's ``X-MBX-USED-WEIGHT-1m`` header feeds a
:class:`WeightBudget`, which makes the next request wait for the next minute when the budget
would be exceeded; HTTP 429/418 raise :class:`~tradelab.exceptions.RateLimitedError` carrying
``Retry-After`` (the caller waits that long — always).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from tradelab.binance.protocol import (
    MAX_REST_LIMIT,
    Trade,
    agg_trades_query,
    excerpt,
    parse_rest_items,
)
from tradelab.config import validate_url
from tradelab.exceptions import (
    EndpointUnreachableError,
    ExchangeError,
    InvalidParameterError,
    MalformedFrameError,
    RateLimitedError,
)

__all__ = [
    "AGG_TRADES_WEIGHT",
    "DEFAULT_WEIGHT_LIMIT",
    "RestClient",
    "WeightBudget",
    "parse_retry_after",
]

AGG_TRADES_WEIGHT = 4
DEFAULT_WEIGHT_LIMIT = 6000  # REQUEST_WEIGHT per minute on spot
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1m"


def parse_retry_after(value: str | None, default: float) -> float:
    """Seconds from a ``Retry-After`` header (seconds form); ``default`` if absent/invalid."""
    if value is None:
        return default
    try:
        seconds = float(value.strip())
    except ValueError:
        return default
    return seconds if math.isfinite(seconds) and seconds >= 0 else default


class WeightBudget:
    """Tracks the used request weight of the current minute, from the server's own header.

    Pure: times are passed in (unix seconds). Binance counts weight per calendar minute.
    ``headroom`` is the share of ``limit`` this client may fill (the server's counter covers
    every client of the IP: a backfill at 0.5 leaves half of the minute to the live collector).
    """

    def __init__(self, limit: int = DEFAULT_WEIGHT_LIMIT, *, headroom: float = 0.8) -> None:
        if not isinstance(limit, int) or limit <= 0:
            raise InvalidParameterError(f"weight limit must be a positive integer, got {limit!r}")
        if not 0 < headroom <= 1:
            raise InvalidParameterError(f"headroom must be in (0, 1], got {headroom!r}")
        self.limit = limit
        self.headroom = headroom
        self.used = 0
        self._minute = -1

    def update(self, used: int, now: float) -> None:
        """Record the ``X-MBX-USED-WEIGHT-1m`` value the server reported at ``now``."""
        self.used = used
        self._minute = int(now // 60)

    def delay(self, weight: int, now: float) -> float:
        """Seconds to wait before spending ``weight`` at ``now`` (0.0 = go ahead)."""
        if int(now // 60) != self._minute:
            return 0.0  # a new minute: the server's counter has reset
        if self.used + weight <= self.limit * self.headroom:
            return 0.0
        return (self._minute + 1) * 60 - now + 0.05


class RestClient:
    """Fetch aggTrades pages from ``rest_url`` (Binance or the simulator).

    ``agg_trades`` is a coroutine (the HTTP call runs in a worker thread); ``fetch_agg_trades``
    is the same thing, blocking. Errors: :class:`RateLimitedError` (429/418, with
    ``retry_after``), :class:`EndpointUnreachableError` (no answer), :class:`ExchangeError`
    (another HTTP error, body excerpt in the message), :class:`MalformedFrameError` (bad JSON;
    :class:`~tradelab.binance.protocol.MalformedPageError` when only some items are bad: it
    carries the valid ones).
    """

    def __init__(
        self,
        rest_url: str,
        *,
        timeout: float = 10.0,
        weight_limit: int = DEFAULT_WEIGHT_LIMIT,
        weight_share: float = 0.8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rest_url = validate_url(rest_url, schemes=("http", "https"), name="REST URL")
        if not (isinstance(timeout, int | float) and timeout > 0):
            raise InvalidParameterError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self.budget = WeightBudget(weight_limit, headroom=weight_share)
        self._clock = clock
        self.requests = 0
        self._opener = urllib.request.build_opener()
        self._opener.addheaders = [("User-Agent", "tradelab/0.1"), ("Accept", "application/json")]

    def weight_delay(self) -> float:
        """Seconds to wait before the next aggTrades request fits the weight budget."""
        return self.budget.delay(AGG_TRADES_WEIGHT, self._clock())

    def fetch_agg_trades(
        self,
        symbol: str,
        from_id: int | None = None,
        limit: int = MAX_REST_LIMIT,
        *,
        start_time: int | None = None,
        end_time: int | None = None,
    ) -> list[Trade]:
        """One page of aggTrades from ``from_id`` (inclusive), ascending; blocking.

        With ``start_time``/``end_time`` (unix ms, inclusive, at most one hour apart) instead
        of ``from_id``: the first ``limit`` trades of that time span.
        """
        url = agg_trades_query(
            self.rest_url,
            symbol,
            from_id=from_id,
            limit=limit,
            start_time=start_time,
            end_time=end_time,
        )
        self.requests += 1
        try:
            with self._opener.open(url, timeout=self.timeout) as resp:
                body = resp.read()
                self._note_weight(resp.headers.get(WEIGHT_HEADER))
        except urllib.error.HTTPError as exc:
            self._note_weight(exc.headers.get(WEIGHT_HEADER) if exc.headers else None)
            raise self._http_error(exc, symbol) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EndpointUnreachableError(
                f"REST endpoint {self.rest_url} unreachable ({reason}); check --rest-url"
            ) from None
        try:
            return parse_rest_items(body, symbol)
        except MalformedFrameError:
            raise
        except Exception as exc:  # pragma: no cover - defensive
            raise MalformedFrameError(f"aggTrades answer for {symbol}: {exc}") from None

    async def agg_trades(
        self,
        symbol: str,
        from_id: int | None = None,
        limit: int = MAX_REST_LIMIT,
        *,
        start_time: int | None = None,
        end_time: int | None = None,
    ) -> list[Trade]:
        """One page of aggTrades (see :meth:`fetch_agg_trades`), off the event loop."""
        return await asyncio.to_thread(
            lambda: self.fetch_agg_trades(
                symbol, from_id, limit, start_time=start_time, end_time=end_time
            )
        )

    def _note_weight(self, header: str | None) -> None:
        if header is None:
            return
        with contextlib.suppress(ValueError):
            self.budget.update(int(header), self._clock())

    def _http_error(self, exc: urllib.error.HTTPError, symbol: str) -> Exception:
        try:
            body = exc.read()
        except Exception:
            body = b""
        status = exc.code
        if status in (429, 418):
            retry = parse_retry_after(
                exc.headers.get("Retry-After") if exc.headers else None,
                default=60.0 if status == 418 else 5.0,
            )
            what = "banned (418)" if status == 418 else "rate-limited (429)"
            return RateLimitedError(
                f"REST {what} while backfilling {symbol}; Retry-After {retry:g} s",
                retry_after=retry,
                status=status,
            )
        detail = excerpt(body)
        try:
            doc = json.loads(body)
            if isinstance(doc, dict) and "msg" in doc:
                detail = f"{doc.get('code')}: {doc['msg']}"
        except ValueError:
            pass
        return ExchangeError(f"REST aggTrades for {symbol} answered HTTP {status}: {detail}")
