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


def test_policy_resets_after_a_connection_that_delivered_trades() -> None:
    """Issue 12, item 4: a feed that drops every few seconds but delivers in between must not
    back off to a minute (it did: only 60 s of uptime counted as healthy)."""
    p = ReconnectPolicy(initial=0.5, factor=2, max_delay=60, jitter=0, healthy_after=60)
    delays = []
    t = 0.0
    for _ in range(20):  # connected for 6 s, delivered trades, dropped; again and again
        p.connected(t)
        t += 6.0
        d = p.next_delay(t, delivered=True)
        delays.append(d)
        t += d
    assert delays == [0.5] * 20
    # connections that die before delivering anything still back off (from where it was)
    p.connected(t)
    assert [p.next_delay(t + 1, delivered=False) for _ in range(4)] == [1, 2, 4, 8]


def test_attempt_window_never_exceeds_the_limit_and_paces_from_half() -> None:
    """Binance allows 300 connection attempts per 5 minutes per IP: a client that wants to
    reconnect every 0.1 s for 20 minutes gets at most ``limit`` attempts in any window, and
    from half the allowance on they are spread ``window / limit`` apart (no long starvation)."""
    from tradelab.binance.backoff import AttemptWindow

    w = AttemptWindow(limit=250, window=300.0)
    attempts: list[float] = []
    t = 0.0
    while t < 1200.0:
        wait = w.delay(t)
        if wait > 0:
            t += wait
            continue
        w.record(t)
        attempts.append(t)
        t += 0.1
    assert w.count(t) <= 250
    j = 0
    for i, start in enumerate(attempts):  # every window starting at an attempt
        while j < len(attempts) and attempts[j] < start + 300.0:
            j += 1
        assert j - i <= 250, f"{j - i} attempts in the 300 s from {start}"
    # the first half goes at once, then paced at the sustainable rate (1.2 s apart)
    assert attempts[124] < 13.0
    gaps = [b - a for a, b in itertools.pairwise(attempts[125:])]
    assert min(gaps) >= 300.0 / 250 - 1e-9
    # the sustainable rate is kept up: about limit per window over the long run
    assert len(attempts) >= 250 * 1200 / 300 * 0.9
    with pytest.raises(InvalidParameterError):
        AttemptWindow(limit=0)
    with pytest.raises(InvalidParameterError):
        AttemptWindow(window=-1)
