"""Settings: each has a default, an environment variable, and is overridable by argument.

Resolution order everywhere: explicit argument > environment variable > default. Every
setting is validated here, once, with a message that names the variable and what is allowed.

| setting            | environment variable      | default                              |
|--------------------|---------------------------|--------------------------------------|
| data directory     | ``TRADELAB_DATA``         | ``~/.tradelab/data``                 |
| symbols            | ``TRADELAB_SYMBOLS``      | ``BTCUSDT,ETHUSDT``                  |
| retention (days)   | ``TRADELAB_RETENTION_DAYS`` | ``7``                              |
| stream base URL    | ``TRADELAB_WS_URL``       | ``wss://stream.binance.com:9443``    |
| REST base URL      | ``TRADELAB_REST_URL``     | ``https://api.binance.com``          |
| daily archives URL | ``TRADELAB_ARCHIVE_URL``   | ``https://data.binance.vision``      |
| Delta table export | ``TRADELAB_EXPORT_TO``     | none (the collector exports nothing) |

(The archives URL is read by :func:`tradelab.history.archive.resolve_archive_url`.)
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from tradelab.exceptions import ConfigurationError, InvalidSymbolError

__all__ = [
    "DEFAULT_MAX_SESSIONS",
    "DEFAULT_REST_URL",
    "DEFAULT_SESSION_IDLE_TIMEOUT",
    "DEFAULT_SYMBOLS",
    "DEFAULT_WINDOW_HOURS",
    "DEFAULT_WS_URL",
    "MAX_WINDOW_HOURS",
    "MIN_WINDOW_HOURS",
    "SYMBOL_PATTERN",
    "Settings",
    "environment_urls",
    "export_uri_from_env",
    "parse_symbols",
    "resolve_data_dir",
    "validate_bool",
    "validate_hours",
    "validate_session_limits",
    "validate_symbol",
    "validate_url",
]

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{2,20}$")
DEFAULT_SYMBOLS: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
DEFAULT_WS_URL = "wss://stream.binance.com:9443"
DEFAULT_REST_URL = "https://api.binance.com"
DEFAULT_RETENTION_DAYS = 7.0
MIN_WINDOW_HOURS = 1
DEFAULT_WINDOW_HOURS = 24
"""The window of an analysis when neither hours nor a range is given — the same in the Python
API, the CLI, the magic and the MCP tools."""
MAX_WINDOW_HOURS = 168
DEFAULT_SESSION_IDLE_TIMEOUT = 1800.0
"""Seconds without a request after which an MCP HTTP session is closed and freed (30 min)."""
DEFAULT_MAX_SESSIONS = 1000
"""MCP HTTP sessions open at once at most (each takes ~15-35 kB: a flood of initialize stays
within ~35 MB; the SDK's own default is 10,000)."""
MIN_IDLE_TIMEOUT, MAX_IDLE_TIMEOUT = 1.0, 7 * 86_400.0
MAX_SESSIONS_LIMIT = 100_000


def validate_symbol(symbol: object) -> str:
    """Return ``symbol`` upper-cased if it is a valid Binance symbol, else raise.

    Only ``^[A-Z0-9]{2,20}$`` may ever reach a storage key; lower case is accepted and
    upper-cased because Binance's stream names are lower case and analysts type both.
    Anything but ASCII is refused *before* upper-casing: Unicode case rules would turn
    ``'ethuſdt'`` (long s) into ETHUSDT and ``'btcußdt'`` into BTCUSSDT, silently reading and
    writing another symbol than the one typed.
    """
    if not isinstance(symbol, str):
        raise InvalidSymbolError(
            f"symbol must be a string like 'BTCUSDT', got {type(symbol).__name__} {symbol!r}"
        )
    if not symbol.isascii():
        raise InvalidSymbolError(
            f"invalid symbol {symbol!r}: only ASCII letters A-Z and digits are allowed "
            "(2-20 of them, e.g. 'BTCUSDT'); it contains "
            + ", ".join(sorted({f"{c!r} (U+{ord(c):04X})" for c in symbol if not c.isascii()}))
        )
    normalized = symbol.strip().upper()
    if not SYMBOL_PATTERN.match(normalized):
        raise InvalidSymbolError(
            f"invalid symbol {symbol!r}: a symbol is 2–20 letters A–Z or digits, "
            "e.g. 'BTCUSDT' or 'ETHUSDT'"
        )
    return normalized


def parse_symbols(symbols: str | Iterable[str] | None) -> tuple[str, ...]:
    """Parse ``"BTCUSDT,ETHUSDT"`` or an iterable into validated, de-duplicated symbols."""
    if symbols is None:
        env = os.environ.get("TRADELAB_SYMBOLS")
        if not env:
            return DEFAULT_SYMBOLS
        symbols = env
    if isinstance(symbols, str):
        items = [s for s in re.split(r"[,\s]+", symbols) if s]
    else:
        items = list(symbols)
    if not items:
        raise InvalidSymbolError("no symbols given: name at least one, e.g. BTCUSDT")
    out: list[str] = []
    for item in items:
        sym = validate_symbol(item)
        if sym not in out:
            out.append(sym)
    return tuple(out)


def validate_hours(hours: object, *, name: str = "hours") -> int | float:
    """Check a window length in hours: a number with 1 <= hours <= 168."""
    from tradelab.exceptions import InvalidWindowError

    if isinstance(hours, bool) or not isinstance(hours, int | float):
        raise InvalidWindowError(
            f"{name} must be a number of hours from {MIN_WINDOW_HOURS} to {MAX_WINDOW_HOURS}, "
            f"got {hours!r}"
        )
    if not (MIN_WINDOW_HOURS <= hours <= MAX_WINDOW_HOURS):
        raise InvalidWindowError(
            f"{name}={hours!r} is outside the allowed window: {MIN_WINDOW_HOURS} to "
            f"{MAX_WINDOW_HOURS} hours (7 days, the retention period)"
        )
    return hours


def validate_bool(value: object, name: str) -> bool:
    """``value`` if it is ``True`` or ``False``, else an :class:`InvalidParameterError` naming
    ``name``: a flag given as ``'no'``, ``0`` or ``None`` is refused rather than read by its
    truth value (``'no'`` is true)."""
    if not isinstance(value, bool):
        from tradelab.exceptions import InvalidParameterError

        raise InvalidParameterError(
            f"{name} must be True or False, got {type(value).__name__} {value!r}"
        )
    return value


def validate_url(url: str, *, schemes: tuple[str, ...], name: str) -> str:
    """Check that ``url`` is an absolute URL with one of ``schemes`` and a host (a malformed
    one, such as an unclosed IPv6 bracket or white space, is a :class:`ConfigurationError`)."""
    expected = f"expected {' or '.join(schemes)}://host[:port]"
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"{name} must be a URL such as {schemes[0]}://host:port")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ConfigurationError(
            f"{name} {url!r} contains white space or control characters; {expected}"
        )
    try:
        parsed = urlparse(url)
    except ValueError as exc:  # e.g. "Invalid IPv6 URL" for ws://[::1
        raise ConfigurationError(f"{name} {url!r} is not a valid URL ({exc}); {expected}") from None
    if parsed.scheme not in schemes or not parsed.hostname:
        raise ConfigurationError(f"{name} {url!r} is not usable: {expected}")
    try:
        parsed.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigurationError(
            f"{name} {url!r} has an invalid port ({exc}); {expected}, port 0-65535"
        ) from None
    return url.rstrip("/")


def validate_session_limits(idle_timeout: object, max_sessions: object) -> tuple[float, int]:
    """``(idle_timeout, max_sessions)`` as numbers, or a :class:`ConfigurationError` saying
    what is allowed: 1 s to 7 days of idleness, 1 to 100,000 sessions (``tradelab mcp
    --session-idle-timeout`` / ``--max-sessions``, :func:`tradelab.mcp_server.run_http`)."""
    if (
        isinstance(idle_timeout, bool)
        or not isinstance(idle_timeout, int | float)
        or not (MIN_IDLE_TIMEOUT <= idle_timeout <= MAX_IDLE_TIMEOUT)
    ):
        raise ConfigurationError(
            f"session idle timeout must be a number of seconds from {MIN_IDLE_TIMEOUT:g} to "
            f"{MAX_IDLE_TIMEOUT:,.0f} (7 days), got {idle_timeout!r}"
        )
    if (
        isinstance(max_sessions, bool)
        or not isinstance(max_sessions, int)
        or not (1 <= max_sessions <= MAX_SESSIONS_LIMIT)
    ):
        raise ConfigurationError(
            f"max sessions must be a whole number from 1 to {MAX_SESSIONS_LIMIT:,}, "
            f"got {max_sessions!r}"
        )
    return float(idle_timeout), max_sessions


def resolve_data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The store's directory: ``path``, else ``$TRADELAB_DATA``, else ``~/.tradelab/data``."""
    if path is None or path == "":
        path = os.environ.get("TRADELAB_DATA") or Path.home() / ".tradelab" / "data"
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigurationError(f"data directory {str(p)!r} exists but is not a directory")
    return p


def environment_urls() -> tuple[str | None, str | None]:
    """The stream and REST base URLs the environment sets (``TRADELAB_WS_URL``,
    ``TRADELAB_REST_URL``), each ``None`` when unset or empty; not validated here
    (:meth:`Settings.resolve` does, after an explicit argument had its chance)."""
    return (
        os.environ.get("TRADELAB_WS_URL") or None,
        os.environ.get("TRADELAB_REST_URL") or None,
    )


def export_uri_from_env() -> str | None:
    """``TRADELAB_EXPORT_TO``: the Delta table a collector exports its closed hours to, or
    ``None`` when unset or empty (checked where it is used, by the collector's settings)."""
    return os.environ.get("TRADELAB_EXPORT_TO") or None


def retention_days_from_env() -> float:
    """``TRADELAB_RETENTION_DAYS`` as a number of days > 0, or the default (7) when unset; the
    one place the store and the settings read it."""
    return _env_float("TRADELAB_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigurationError(f"{name}={raw!r} must be greater than 0")
    return value


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one process (collector, CLI, MCP server or notebook)."""

    data_dir: Path = field(default_factory=resolve_data_dir)
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    retention_days: float = DEFAULT_RETENTION_DAYS
    ws_url: str = DEFAULT_WS_URL
    rest_url: str = DEFAULT_REST_URL

    @classmethod
    def resolve(
        cls,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        symbols: str | Iterable[str] | None = None,
        retention_days: float | None = None,
        ws_url: str | None = None,
        rest_url: str | None = None,
    ) -> Settings:
        """Build settings from arguments, falling back to environment variables, then defaults."""
        retention = retention_days if retention_days is not None else retention_days_from_env()
        if retention <= 0:
            raise ConfigurationError(f"retention_days must be > 0, got {retention!r}")
        env_ws, env_rest = environment_urls()
        return cls(
            data_dir=resolve_data_dir(data_dir),
            symbols=parse_symbols(symbols),
            retention_days=float(retention),
            ws_url=validate_url(
                ws_url or env_ws or DEFAULT_WS_URL,
                schemes=("ws", "wss"),
                name="WebSocket URL",
            ),
            rest_url=validate_url(
                rest_url or env_rest or DEFAULT_REST_URL,
                schemes=("http", "https"),
                name="REST URL",
            ),
        )
