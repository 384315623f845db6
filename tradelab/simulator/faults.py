"""Fault settings for the simulator: one frozen dataclass, every fault off by default.

A :class:`Faults` value is immutable; change faults on a running simulator by handing it a new
value (``sim.set_faults(replace(sim.faults, malformed_rate=0.1))``). Every field is validated
when the value is built, with a message naming the field and its allowed range.

Rates are probabilities: ``skip_rate`` and ``malformed_rate`` per published trade,
``drop_probability`` per connection per second, ``rest_fail_rate`` per REST request.
Durations are seconds. ``None`` (or 0 for rates) switches a fault off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TypeGuard

from tradelab.exceptions import InvalidParameterError

__all__ = ["ABSURD_KINDS", "MALFORMED_KINDS", "SHUTDOWN_STYLES", "Faults"]

#: Kinds of malformed frames the simulator can send (see ``Faults.malformed_kinds``).
MALFORMED_KINDS: tuple[str, ...] = ("bad_json", "missing_field", "wrong_type", "unknown_event")
#: Kinds of well-formed but absurd trades the simulator can send (see ``Faults.absurd_kinds``):
#: an agg id of 2**62, a trade time a century ahead, a trade time in 1970.
ABSURD_KINDS: tuple[str, ...] = ("id_jump", "future", "past")
#: How ``serverShutdown`` is framed (see ``Faults.shutdown_style``).
SHUTDOWN_STYLES: tuple[str, ...] = ("event", "stream")


@dataclass(frozen=True)
class Faults:
    """Which faults the simulator injects. Every field defaults to "off" (or Binance's value).

    Connections
        drop_every: abort (no close frame, like a network failure) each connection this many
            seconds after it opened.
        drop_probability: probability per second that a connection is aborted.
        lifetime: close each connection cleanly (code 1000) after this many seconds — Binance's
            24 h limit, shortened for tests.
        shutdown_after: seconds after a connection opened to send it a ``serverShutdown``
            event; the connection is then closed (code 1001) ``shutdown_grace`` seconds later.
        shutdown_style: ``"event"`` sends ``{"event":{"e":"serverShutdown","E":ms}}`` (the shape
            Binance documents for its WebSocket API connection events); ``"stream"`` sends
            ``{"stream":"serverShutdown","data":{"e":"serverShutdown","E":ms}}`` on combined
            connections and the bare ``{"e":"serverShutdown","E":ms}`` on raw ones.
        stall_every / stall_seconds: every ``stall_every`` seconds of a connection's life, go
            silent for ``stall_seconds``: no frames (the trades published meanwhile are not
            sent on that connection — a gap, repairable through REST), no reading (the
            client's pings get no pong) and no server pings: a hung server, which only the
            client's own pong deadline or silence detection can notice.
        ping_interval / ping_timeout: server pings every ``ping_interval`` s and closes (1011)
            a connection whose pong does not arrive within ``ping_timeout`` s (Binance: 20 s /
            60 s). Applied to connections opened after the change.

    Stream content
        skip_rate: probability per trade that a gap of ``skip_length`` ids starts there: those
            trades are not sent on the stream.
        skip_unrepairable: fraction (0..1) of those gaps that are also absent from REST, like
            Binance's rare holes (the ids are consumed and never published).
        malformed_rate: probability per trade that a malformed frame is sent just before it
            (the trade itself is still sent); kinds drawn from ``malformed_kinds``.
        absurd_rate: probability per trade that a well-formed but absurd trade frame is sent
            just before it (the real trade itself is still sent): ``id_jump`` carries agg id
            2**62, ``future`` the real id with a time a century ahead, ``past`` the real id
            with a time in 1970; kinds drawn from ``absurd_kinds``. REST never has them.

    REST
        rest_fail_next: the next K REST requests answer ``rest_fail_status`` (429 or 418) with
            ``Retry-After: retry_after``; the countdown restarts whenever faults are set.
        rest_fail_rate: probability per REST request of the same answer.
        rest_malformed_every: REST serves every item whose agg id is a multiple of this
            malformed (its price is ``null``), on every request: one bad item the exchange
            keeps serving. None: off.
        rest_lag: REST serves a trade only this many seconds after it was published (Binance's
            REST history can trail its stream by a moment): a backfill asked at once gets a
            short page without the newest ids.

    Daily archives (data.binance.vision)
        archive_bad_checksum: every ``.CHECKSUM`` file holds a hash that does not match its zip
            (a corrupted download, as the client sees it: it must refuse the zip).
        archive_missing: every archive answers 404 (not published yet).
    """

    drop_every: float | None = None
    drop_probability: float = 0.0
    lifetime: float | None = 24 * 3600.0
    shutdown_after: float | None = None
    shutdown_grace: float = 1.0
    shutdown_style: str = "event"
    stall_every: float | None = None
    stall_seconds: float = 0.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 60.0
    skip_rate: float = 0.0
    skip_length: int = 3
    skip_unrepairable: float = 0.0
    malformed_rate: float = 0.0
    malformed_kinds: tuple[str, ...] = MALFORMED_KINDS
    absurd_rate: float = 0.0
    absurd_kinds: tuple[str, ...] = ABSURD_KINDS
    rest_fail_next: int = 0
    rest_fail_rate: float = 0.0
    rest_fail_status: int = 429
    retry_after: int = 1
    rest_malformed_every: int | None = None
    rest_lag: float = 0.0
    archive_bad_checksum: bool = False
    archive_missing: bool = False

    def __post_init__(self) -> None:
        for name in (
            "drop_every",
            "lifetime",
            "shutdown_after",
            "stall_every",
            "ping_interval",
            "ping_timeout",
        ):
            _positive_or_none(name, getattr(self, name))
        for name in ("shutdown_grace", "stall_seconds", "rest_lag"):
            _non_negative(name, getattr(self, name))
        for name in (
            "drop_probability",
            "skip_rate",
            "skip_unrepairable",
            "malformed_rate",
            "absurd_rate",
            "rest_fail_rate",
        ):
            _probability(name, getattr(self, name))
        for name in ("archive_bad_checksum", "archive_missing"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidParameterError(
                    f"{name} must be True or False, got {getattr(self, name)!r}"
                )
        _int_at_least("skip_length", self.skip_length, 1)
        _int_at_least("rest_fail_next", self.rest_fail_next, 0)
        _int_at_least("retry_after", self.retry_after, 0)
        if self.rest_malformed_every is not None:
            _int_at_least("rest_malformed_every", self.rest_malformed_every, 1)
        absurd = self.absurd_kinds
        if (
            isinstance(absurd, str)
            or not isinstance(absurd, tuple | list)
            or not absurd
            or any(k not in ABSURD_KINDS for k in absurd)
        ):
            raise InvalidParameterError(
                f"absurd_kinds must be a non-empty tuple drawn from {', '.join(ABSURD_KINDS)}, "
                f"got {absurd!r}"
            )
        object.__setattr__(self, "absurd_kinds", tuple(absurd))
        if self.rest_fail_status not in (429, 418):
            raise InvalidParameterError(
                f"rest_fail_status must be 429 (back off) or 418 (banned), "
                f"got {self.rest_fail_status!r}"
            )
        if self.shutdown_style not in SHUTDOWN_STYLES:
            raise InvalidParameterError(
                f"shutdown_style must be one of {', '.join(SHUTDOWN_STYLES)}, "
                f"got {self.shutdown_style!r}"
            )
        kinds = self.malformed_kinds
        if isinstance(kinds, str) or not isinstance(kinds, tuple | list) or not kinds:
            raise InvalidParameterError(
                f"malformed_kinds must be a non-empty tuple drawn from "
                f"{', '.join(MALFORMED_KINDS)}, got {kinds!r}"
            )
        bad = [k for k in kinds if k not in MALFORMED_KINDS]
        if bad:
            raise InvalidParameterError(
                f"unknown malformed kind(s) {', '.join(map(repr, bad))}; allowed: "
                f"{', '.join(MALFORMED_KINDS)}"
            )
        object.__setattr__(self, "malformed_kinds", tuple(kinds))
        if self.stall_every is not None and self.stall_seconds <= 0:
            raise InvalidParameterError(
                "stall_every is set but stall_seconds is 0: give the stall a length in seconds"
            )

    @property
    def active(self) -> dict[str, object]:
        """The fields that differ from the defaults (what is switched on), for logs."""
        default = Faults()
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive_or_none(name: str, value: object) -> None:
    if value is None:
        return
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise InvalidParameterError(
            f"{name} must be a number of seconds > 0, or None to switch it off; got {value!r}"
        )


def _non_negative(name: str, value: object) -> None:
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise InvalidParameterError(f"{name} must be a number of seconds >= 0, got {value!r}")


def _probability(name: str, value: object) -> None:
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise InvalidParameterError(f"{name} must be a probability from 0 to 1, got {value!r}")


def _int_at_least(name: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise InvalidParameterError(f"{name} must be an integer >= {low}, got {value!r}")
