"""Timing policies, pure: reconnect backoff with jitter, and token buckets for rate limits.

No sleeping here: the asyncio shell asks "how long?" and sleeps itself, so tests drive these
with explicit clocks and seeded random generators.

* :func:`exponential_backoff` — the delays before successive reconnect attempts
  (``initial * factor**n`` capped at ``max_delay``, each shortened by up to ``jitter`` of
  itself so a fleet of clients does not reconnect in lock-step); an infinite generator.
* :class:`ReconnectPolicy` — wraps the generator and starts it again once a connection has
  stayed up for ``healthy_after`` seconds ("reset after a healthy period"). Binance allows 300
  connection attempts per 5 minutes per IP; the default cap of 60 s stays far below that.
* :class:`TokenBucket` — at most ``rate`` events per second with bursts up to ``capacity``:
  Binance disconnects clients sending more than 5 messages a second.
"""

from __future__ import annotations

import random
from collections.abc import Generator

from tradelab.exceptions import InvalidParameterError

__all__ = ["ReconnectPolicy", "TokenBucket", "exponential_backoff"]


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
    """Backoff that resets once a connection has been healthy for ``healthy_after`` seconds.

    Call :meth:`connected` when a connection opens and :meth:`next_delay` after each failure
    or disconnect; times are whatever monotonic clock the caller uses (seconds).
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

    def next_delay(self, now: float) -> float:
        """The delay before the next attempt, after a failure or disconnect at ``now``."""
        if self._connected_at is not None and now - self._connected_at >= self.healthy_after:
            self.reset()
        self._connected_at = None
        self.failures += 1
        return next(self._delays)


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
