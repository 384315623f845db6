"""Every error tradelab raises, under one root, split by *who* is at fault.

::

    TradelabError
    ├── InputError (also ValueError)        the caller asked for something not allowed
    │   ├── InvalidSymbolError               symbol not matching ^[A-Z0-9]{2,20}$
    │   ├── InvalidWindowError               inverted window, hours outside 1..168, naive datetime
    │   ├── InvalidTradesError               a frame/records with missing or mistyped columns
    │   ├── InvalidParameterError            any other out-of-range argument (row size, value area…)
    │   └── ConfigurationError               a bad setting (URL, data dir, environment variable)
    ├── InsufficientTradesError              the store holds too few trades for the analysis yet
    ├── CollectorStateError                  start while running, stop while stopped
    └── ExternalError                        the world misbehaved, not the caller
        ├── StorageError                     RocksDB refused or failed
        │   ├── NotADatabaseError            the path exists but is not a tradelab store
        │   ├── StoreLockedError             another process holds the writer lock
        │   ├── NoDataError                  no store exists at the path yet
        │   └── StorageWriteError            a write failed; nothing of the batch was stored
        ├── ExchangeError                    Binance (or the simulator) misbehaved
        │   ├── MalformedFrameError          a frame that is not a valid message
        │   └── RateLimitedError             HTTP 429/418 with Retry-After
        └── EndpointUnreachableError         cannot connect to the configured URL

Messages always say what was wrong and what is allowed; front-ends (CLI, magic, MCP) show
``str(error)`` as is, never a traceback.
"""

from __future__ import annotations

__all__ = [
    "CollectorStateError",
    "ConfigurationError",
    "EndpointUnreachableError",
    "ExchangeError",
    "ExternalError",
    "InputError",
    "InsufficientTradesError",
    "InvalidParameterError",
    "InvalidSymbolError",
    "InvalidTradesError",
    "InvalidWindowError",
    "MalformedFrameError",
    "NoDataError",
    "NotADatabaseError",
    "RateLimitedError",
    "StorageError",
    "StorageWriteError",
    "StoreLockedError",
    "TradelabError",
]


class TradelabError(Exception):
    """Root of every error raised by tradelab."""


# --- the caller's mistakes -------------------------------------------------------------------


class InputError(TradelabError, ValueError):
    """The caller asked for something that is not allowed; the message says what is."""


class InvalidSymbolError(InputError):
    """A symbol that does not match ``^[A-Z0-9]{2,20}$`` (after upper-casing)."""


class InvalidWindowError(InputError):
    """A time window that is inverted, out of range (1–168 h) or has a naive datetime."""


class InvalidTradesError(InputError):
    """Trades that do not fit the trade schema (missing or mistyped columns, bad values)."""


class InvalidParameterError(InputError):
    """Any other argument outside its allowed range."""


class ConfigurationError(InputError):
    """A setting (argument or environment variable) that cannot be used."""


# --- states that are nobody's fault ----------------------------------------------------------


class InsufficientTradesError(TradelabError):
    """Too few trades in the window for the analysis; says how many and how long to wait."""

    def __init__(self, message: str, *, found: int = 0, needed: int = 0) -> None:
        super().__init__(message)
        self.found = found
        self.needed = needed


class CollectorStateError(TradelabError):
    """The collector is not in a state that allows the request (e.g. started twice)."""


# --- the world's faults ----------------------------------------------------------------------


class ExternalError(TradelabError):
    """Something outside the caller's control failed (disk, exchange, network)."""


class StorageError(ExternalError):
    """The RocksDB store failed or refused an operation."""


class NotADatabaseError(StorageError):
    """The path exists but does not hold a tradelab store."""


class StoreLockedError(StorageError):
    """Another process holds the store's writer lock."""


class NoDataError(StorageError):
    """No store exists at the path yet (nothing has been collected there)."""


class StorageWriteError(StorageError):
    """A write failed; the store is exactly as it was before the call."""


class ExchangeError(ExternalError):
    """The exchange (or the simulator) sent something we cannot use."""


class MalformedFrameError(ExchangeError):
    """A stream frame or REST item that is not a valid message."""


class RateLimitedError(ExchangeError):
    """The REST API answered 429/418; ``retry_after`` says how long to wait (seconds)."""

    def __init__(self, message: str, *, retry_after: float, status: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class EndpointUnreachableError(ExternalError):
    """The configured WebSocket or REST endpoint cannot be reached."""
