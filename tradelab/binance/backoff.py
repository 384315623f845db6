"""Timing policies, pure: reconnect backoff with jitter, and token buckets for rate limits.

No sleeping here: the asyncio shell asks "how long?" and sleeps itself, so tests drive these
with explicit clocks and seeded random generators.

* :func:`exponential_backoff` — the delays before successive reconnect attempts
  (``initial * factor**n`` capped at ``max_delay``, each shortened by up to ``jitter`` of
  itself so a fleet of clients does not reconnect in lock-step); an infinite generator.
* :class:`ReconnectPolicy` — wraps the generator and starts it again after a connection that
  *delivered trades* (or stayed up for ``healthy_after`` seconds, for a quiet feed): a feed
  that drops every few seconds but delivers in between reconnects after ``initial`` (jittered)
  each time instead of backing off to a minute — the backoff only grows while attempts fail
  or connections die before delivering anything.
* :class:`AttemptWindow` — the connection attempts of the last ``window`` seconds, counted
  (a sliding window): Binance allows 300 connection attempts per 5 minutes per IP. Once half
  the allowance is used it paces attempts to the sustainable rate (``window / limit`` apart),
  and at the allowance it waits for the oldest attempt to leave the window — never more than
  ``limit`` in any window, whatever the reconnect delays say.
* :class:`TokenBucket` — at most ``rate`` events per second with bursts up to ``capacity``:
  Binance disconnects clients sending more than 5 messages a second.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Generator

from tradelab.exceptions import InvalidParameterError

__all__ = ["AttemptWindow", "ReconnectPolicy", "TokenBucket", "exponential_backoff"]


def _check(
    name: str, value: float, *, low: float, inclusive: bool = False, high: float | None = None
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise InvalidParameterError(f"{name} must be a number, got {value!r}")
    if (value < low) if inclusive else (value <= low):
        raise InvalidParameterError(
            f"{name} must be {'>=' if inclusive else '>'} {low}, got {value!r}"
        )
    if high is not None and value > high:
        raise InvalidParameterError(f"{name} must be <= {high}, got {value!r}")
    return float(value)


def exponential_backoff(
    initial: float = 0.5,
    factor: float = 2.0,
    max_delay: float = 60.0,
    jitter: float = 0.5,
    rng: random.Random | None = None,
) -> Generator[float, None, None]:
    """Yield reconnect delays forever: ``min(max_delay, initial * factor**n) * (1 - jitter*u)``.

    ``u`` is uniform in [0, 1), so each delay lies in ``[(1-jitter)*d, d]``.
    """
    _check("initial", initial, low=0.0)
    _check("factor", factor, low=1.0, inclusive=True)
    _check("max_delay", max_delay, low=0.0)
    _check("jitter", jitter, low=0.0, inclusive=True, high=1.0)
    rand = (rng or random.Random()).random
    delay = min(initial, max_delay)
    while True:
        yield delay * (1.0 - jitter * rand())
        delay = min(max_delay, delay * factor)


class ReconnectPolicy:
    """Backoff that resets after a connection that delivered trades, or that was up for
    ``healthy_after`` seconds.

    Call :meth:`connected` when a connection opens and :meth:`next_delay` after each failure
    or disconnect (``delivered``: the connection that ended delivered at least one trade);
    times are whatever monotonic clock the caller uses (seconds). Why "delivered" and not only
    "up for a while": a connection that delivered proved the endpoint, the network and the
    subscription work, so its loss is an incident, not a failing endpoint; waiting longer
    would only lengthen the gap (which REST must then repair). Attempts that fail, and
    connections that die before delivering anything, still back off exponentially up to
    ``max_delay``; :class:`AttemptWindow` bounds the attempt rate either way.
    """

    def __init__(
        self,
        *,
        initial: float = 0.5,
        factor: float = 2.0,
        max_delay: float = 60.0,
        jitter: float = 0.5,
        healthy_after: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self._params = (initial, factor, max_delay, jitter)
        self._rng = rng or random.Random()
        self.healthy_after = _check("healthy_after", healthy_after, low=0.0, inclusive=True)
        self._delays = exponential_backoff(initial, factor, max_delay, jitter, self._rng)
        self._connected_at: float | None = None
        self.failures = 0

    def reset(self) -> None:
        """Start again from the initial delay."""
        self._delays = exponential_backoff(*self._params, self._rng)
        self.failures = 0

    def connected(self, now: float) -> None:
        """A connection opened at ``now``."""
        self._connected_at = now

    def next_delay(self, now: float, *, delivered: bool = False) -> float:
        """The delay before the next attempt, after a failure or disconnect at ``now``;
        ``delivered``: the connection that just ended delivered trades (resets the backoff)."""
        if self._connected_at is not None and (
            delivered or now - self._connected_at >= self.healthy_after
        ):
            self.reset()
        self._connected_at = None
        self.failures += 1
        return next(self._delays)


class AttemptWindow:
    """Connection attempts counted over a sliding ``window`` (seconds): at most ``limit``.

    Binance allows 300 connection attempts per 5 minutes per IP; the collector uses a limit
    below that (other clients on the same IP count too). :meth:`delay` says how long to wait
    before the next attempt, :meth:`record` counts one. Below half the limit attempts go at
    once (reconnecting fast after an incident costs nothing); from half on they are paced
    ``window / limit`` apart (the rate that can go on forever); at the limit the next attempt
    waits until the oldest one leaves the window. So no window ever holds more than ``limit``
    attempts, and a connection that keeps dropping settles at the sustainable pace instead of
    using the allowance up and then waiting minutes.
    """

    def __init__(self, limit: int = 250, window: float = 300.0) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidParameterError(f"limit must be an integer >= 1, got {limit!r}")
        self.limit = limit
        self.window = _check("window", window, low=0.0)
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        times = self._times
        while times and times[0] <= now - self.window:
            times.popleft()

    def count(self, now: float) -> int:
        """Attempts in the window ending at ``now``."""
        self._expire(now)
        return len(self._times)

    def delay(self, now: float) -> float:
        """Seconds to wait before the next attempt at ``now`` (0.0: go)."""
        self._expire(now)
        times = self._times
        if len(times) >= self.limit:
            return times[-self.limit] + self.window - now
        if len(times) * 2 >= self.limit:
            return max(0.0, times[-1] + self.window / self.limit - now)
        return 0.0

    def record(self, now: float) -> None:
        """One attempt at ``now``."""
        self._expire(now)
        self._times.append(now)


class TokenBucket:
    """At most ``rate`` events per second on average, bursts up to ``capacity``.

    In any window of ``w`` seconds at most ``capacity + rate * w`` tokens are taken, so
    ``TokenBucket(4, 1)`` never lets more than 5 messages through in any one second.
    ``acquire_delay(now)`` takes a token and returns 0.0, or returns how long to wait before a
    token is available (taking nothing); the caller sleeps and asks again.
    """

    def __init__(
        self, rate: float = 5.0, capacity: float | None = None, *, now: float = 0.0
    ) -> None:
        self.rate = _check("rate", rate, low=0.0)
        self.capacity = _check("capacity", capacity if capacity is not None else rate, low=0.0)
        if self.capacity < 1:
            raise InvalidParameterError(f"capacity must be >= 1, got {self.capacity!r}")
        self._tokens = self.capacity
        self._stamp = now

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    @property
    def tokens(self) -> float:
        """Tokens available at the last refill."""
        return self._tokens

    def try_acquire(self, now: float) -> bool:
        """Take one token if available at ``now``."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def acquire_delay(self, now: float) -> float:
        """0.0 if a token was taken, else seconds until one will be available."""
        if self.try_acquire(now):
            return 0.0
        return (1.0 - self._tokens) / self.rate
