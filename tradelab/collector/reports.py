"""The collector's log lines about the feed and its repair: connections failed, lost or paced,
frames malformed or implausible, gaps and holes found and closed, implausible trades settled,
bad REST items retried or given up — one function each, so the code reads as logic.

Every line carries an ``event`` field (the JSON log's key) and the figures a reader needs; the
levels follow the collector's rule: WARNING for what is being repaired, ERROR for what could
not be (data the exchange does not have, trades discarded).
"""

from __future__ import annotations

from collections.abc import Sequence

from tradelab.binance.backoff import AttemptWindow
from tradelab.binance.gaps import Gap
from tradelab.binance.protocol import Trade
from tradelab.collector.runtime import fmt_ms
from tradelab.collector.suspects import BadItems
from tradelab.exceptions import RateLimitedError
from tradelab.logs import get_logger

__all__ = [
    "attempts_paced",
    "connect_failed",
    "disconnected",
    "gap_closed",
    "gap_detected",
    "hole_found",
    "implausible_confirmed",
    "implausible_discarded",
    "implausible_trade",
    "item_given_up",
    "item_retry",
    "malformed_frame",
    "rest_rate_limited",
]

log = get_logger("tradelab.collector")


def hole_found(name: str, why: str, gap: Gap, after: int | None, before: int | None) -> None:
    """A hole of the store (``why``: left by an earlier run, found in the store) to repair."""
    log.warning(
        "Hole in %s %s: %d aggregate trades missing (ids %d–%d) between %s and %s; "
        "backfilling through REST",
        name,
        why,
        gap.size,
        gap.first_id,
        gap.last_id,
        fmt_ms(after),
        fmt_ms(before),
        extra={
            "event": "hole_found",
            "symbol": name,
            "missing": gap.size,
            "first_id": gap.first_id,
            "last_id": gap.last_id,
            "why": why,
        },
    )


def gap_detected(gap: Gap, source: str) -> None:
    """A new gap (from the stream, a REST page, or a verified trade) to backfill."""
    span = gap.span_ms
    log.warning(
        "Gap in %s: %d aggregate trades missing (ids %d–%d) between %s and %s%s; "
        "backfilling through REST",
        gap.symbol,
        gap.size,
        gap.first_id,
        gap.last_id,
        fmt_ms(gap.time_before),
        fmt_ms(gap.time_after),
        f" ({span / 1000:.3f} s)" if span is not None else "",
        extra={
            "event": "gap_detected",
            "symbol": gap.symbol,
            "missing": gap.size,
            "first_id": gap.first_id,
            "last_id": gap.last_id,
            "span_ms": span,
            "source": source,
        },
    )


def gap_closed(gap: Gap) -> None:
    """A closed gap: backfilled (WARNING), or with ids REST lacks (ERROR, once)."""
    span = gap.span_ms
    fields = {
        "symbol": gap.symbol,
        "first_id": gap.first_id,
        "last_id": gap.last_id,
        "span_ms": span,
        "recovered": gap.recovered,
        "lost": gap.lost,
    }
    if gap.lost:
        log.error(
            "Unrepairable gap in %s: %d of %d aggregate trades (ids %s) do not exist in the "
            "REST history; between %s and %s%s. Recorded in the store; not retried",
            gap.symbol,
            gap.lost,
            gap.size,
            ", ".join(f"{a}–{b}" if a != b else str(a) for a, b in gap.lost_ranges[:5]),
            fmt_ms(gap.time_before),
            fmt_ms(gap.time_after),
            f" ({span / 1000:.3f} s)" if span is not None else "",
            extra={"event": "gap_unrepairable", "lost_ranges": gap.lost_ranges[:100], **fields},
        )
    else:
        log.warning(
            "Gap in %s backfilled: %d aggregate trades (ids %d–%d) recovered",
            gap.symbol,
            gap.recovered,
            gap.first_id,
            gap.last_id,
            extra={"event": "gap_backfilled", **fields},
        )


def implausible_discarded(trade: Trade, reason: str, page: Sequence[Trade]) -> None:
    """REST did not confirm an implausible streamed trade: it is not stored."""
    name, a = trade.symbol, trade.agg_id
    what = (
        f"REST has it as {page[0].agg_id} at T={page[0].time}"
        if page and page[0].agg_id != a
        else "REST has that id with other values"
        if page
        else "REST does not have that id"
    )
    log.error(
        "Discarded an implausible %s trade (agg id %d, T=%d: %s): %s; not stored",
        name,
        a,
        trade.time,
        reason,
        what,
        extra={"event": "implausible_discarded", "symbol": name, "agg_id": a},
    )


def implausible_confirmed(trade: Trade, reason: str) -> None:
    """REST confirmed an implausible-looking streamed trade: it is stored."""
    name, a = trade.symbol, trade.agg_id
    log.warning(
        "REST confirms the implausible-looking %s trade %d (T=%d: %s): storing it",
        name,
        a,
        trade.time,
        reason,
        extra={"event": "implausible_confirmed", "symbol": name, "agg_id": a},
    )


def item_retry(name: str, first: int, reason: str, bad: BadItems, page: Sequence[Trade]) -> None:
    """REST served item ``first`` malformed: the valid items before it are kept, it is asked
    for again."""
    log.warning(
        "REST served a malformed %s item (agg id %d: %s); keeping the %d valid items "
        "before it and asking again (try %d of %d)",
        name,
        first,
        reason,
        sum(1 for t in page if t.agg_id < first),
        bad.tries(name, first),
        bad.retries,
        extra={"event": "rest_item_malformed", "symbol": name, "agg_id": first},
    )


def item_given_up(name: str, given_up: list[int], reason: str, bad: BadItems) -> None:
    """REST kept serving items ``given_up`` malformed: they are recorded as unrepairable."""
    log.error(
        "REST keeps serving %s item(s) %s malformed (%s) after %d tries: recording them as "
        "unrepairable and going on",
        name,
        ", ".join(map(str, given_up[:10])),
        reason,
        bad.retries + 1,
        extra={"event": "rest_item_unrepairable", "symbol": name, "agg_ids": given_up},
    )


def connect_failed(url: str, reason: str, delay: float, attempt: int) -> None:
    """A connection attempt failed; the next one in ``delay`` seconds."""
    log.error(
        "Connection to %s failed: %s; retrying in %.1f s",
        url,
        reason,
        delay,
        extra={
            "event": "connect_failed",
            "url": url,
            "error": reason,
            "retry_in": round(delay, 3),
            "attempt": attempt,
        },
    )


def disconnected(number: int, url: str, code: int | None, msg: str, delay: float) -> None:
    """Connection ``number`` was lost; the next attempt in ``delay`` seconds."""
    log.error(
        "Connection #%d to %s lost: %s; reconnecting in %.1f s",
        number,
        url,
        msg,
        delay,
        extra={
            "event": "disconnected",
            "url": url,
            "close_code": code,
            "retry_in": round(delay, 3),
        },
    )


def attempts_paced(attempts: int, window: AttemptWindow, wait: float) -> None:
    """Near the connection-attempt limit: the next attempt waits ``wait`` seconds."""
    log.warning(
        "%d connection attempts in the last %.0f s (limit %d): waiting %.1f s before "
        "the next one, to stay within Binance's connection-attempt limit",
        attempts,
        window.window,
        window.limit,
        wait,
        extra={
            "event": "connect_attempts_paced",
            "attempts": attempts,
            "limit": window.limit,
            "wait": round(wait, 3),
        },
    )


def implausible_trade(trade: Trade, why: str, connection: int) -> None:
    """A well-formed but implausible streamed trade, skipped until REST vouches for it."""
    log.error(
        "Skipped an implausible %s trade on connection #%d: %s; asking REST about it "
        "before anything is stored",
        trade.symbol,
        connection,
        why,
        extra={
            "event": "implausible_trade",
            "symbol": trade.symbol,
            "agg_id": trade.agg_id,
            "trade_time": trade.time,
            "reason": why,
            "connection": connection,
        },
    )


def malformed_frame(reason: str, excerpt: str, connection: int) -> None:
    """A frame that is not a valid message, skipped."""
    log.error(
        "Skipped a malformed frame on connection #%d: %s; frame starts %r",
        connection,
        reason,
        excerpt,
        extra={
            "event": "malformed_frame",
            "reason": reason,
            "excerpt": excerpt,
            "connection": connection,
        },
    )


def rest_rate_limited(name: str, exc: RateLimitedError, then: str) -> None:
    """REST answered 429/418 for ``name``: its Retry-After, and what waits for it (``then``)."""
    log.warning(
        "%s; %s",
        exc,
        then,
        extra={
            "event": "rest_rate_limited",
            "status": exc.status,
            "retry_after": exc.retry_after,
            "symbol": name,
        },
    )
