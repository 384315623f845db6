"""Pure timing policies: backoff with jitter and reset, token bucket."""

from __future__ import annotations

import itertools
import random

import pytest

from tradelab.binance.backoff import ReconnectPolicy, TokenBucket, exponential_backoff
from tradelab.exceptions import InvalidParameterError


def test_backoff_grows_caps_and_jitters() -> None:
    delays = list(itertools.islice(exponential_backoff(1, 2, 30, 0.5, random.Random(3)), 12))
    caps = [1, 2, 4, 8, 16, 30, 30, 30, 30, 30, 30, 30]
    for d, cap in zip(delays, caps, strict=True):
        assert cap * 0.5 <= d <= cap
    assert len(set(delays)) == len(delays)  # jittered, not lock-step
    no_jitter = list(itertools.islice(exponential_backoff(0.5, 3, 10, 0.0), 4))
    assert no_jitter == [0.5, 1.5, 4.5, 10]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0},
        {"factor": 0.5},
        {"max_delay": -1},
        {"jitter": 2},
        {"initial": "1"},
        {"jitter": float("nan")},
    ],
)
def test_backoff_validates(kwargs) -> None:
    with pytest.raises(InvalidParameterError):
        next(exponential_backoff(**kwargs))


def test_policy_resets_after_healthy_period_only() -> None:
    p = ReconnectPolicy(initial=1, factor=2, max_delay=100, jitter=0, healthy_after=60)
    assert [p.next_delay(t) for t in (0, 1, 2)] == [1, 2, 4]
    p.connected(10)
    assert p.next_delay(20) == 8  # up 10 s only: keeps growing
    p.connected(30)
    assert p.next_delay(95) == 1  # up 65 s: healthy, start again
    assert p.failures == 1


def test_token_bucket_limits_rate_to_five_per_second() -> None:
    # rate r with burst c allows at most c + r*w events in any window w: 1 + 4 = 5 per second
    b = TokenBucket(4, 1)
    sent = []
    t = 0.0
    while t < 10:  # a client that tries to send 100 messages/s
        if b.try_acquire(t):
            sent.append(t)
        t += 0.01
    for start in [x / 10 for x in range(0, 90)]:
        window = [s for s in sent if start <= s < start + 1]
        assert len(window) <= 5  # never more than 5 in any 1 s window
    assert len(sent) >= 35  # ~4 per second after the first
    b2 = TokenBucket(5)
    for _ in range(5):
        assert b2.acquire_delay(0.0) == 0.0
    assert b2.acquire_delay(0.0) == pytest.approx(0.2)
    with pytest.raises(InvalidParameterError):
        TokenBucket(0)
