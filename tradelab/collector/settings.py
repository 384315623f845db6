"""The collector's settings: one frozen value object, validated once, with messages naming each.

:class:`~tradelab.collector.Collector` takes its settings as constructor keywords (the CLI, the
notebook session and the MCP server pass them through) and builds a :class:`CollectorSettings`
from them, so every check and every default lives here, in one place, and the collector's code
can rely on normalised values (seconds as ``float``, counts as ``int``). A bad value raises
:class:`~tradelab.exceptions.InvalidParameterError` (or, for symbols and URLs,
:class:`~tradelab.exceptions.InvalidSymbolError` / :class:`~tradelab.exceptions.ConfigurationError`)
naming the setting, before anything is opened.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tradelab.binance.protocol import MAX_REST_LIMIT, MAX_STREAMS_PER_CONNECTION
from tradelab.config import (
    DEFAULT_REST_URL,
    DEFAULT_WS_URL,
    environment_urls,
    export_uri_from_env,
    parse_symbols,
    retention_days_from_env,
    validate_url,
)
from tradelab.exceptions import InvalidParameterError

__all__ = ["CollectorSettings"]


def _positive(name: str, value: Any, *, allow_none: bool = False, integer: bool = False) -> Any:
    """Check that ``value`` is a number (or an int) > 0 (or None, if allowed); return it."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not value > 0 or value != value:
        kind = "an integer" if integer else "a number"
        extra = " or None" if allow_none else ""
        raise InvalidParameterError(f"{name} must be {kind} > 0{extra}, got {value!r}")
    return value


@dataclass(frozen=True)
class CollectorSettings:
    """Every setting of a collector, declared (with its default) and documented here only.

    :class:`~tradelab.collector.Collector` builds one from its keyword arguments and its parts
    read their settings from it and from nowhere else. Durations are seconds. Construction
    checks every value (in a fixed order, so the first bad setting is the one reported) and
    converts durations to ``float`` and counts to ``int``; ``retention_interval`` is kept as
    given (None switches retention off). :meth:`from_arguments` is what the collector calls:
    it also resolves the symbol list and the URL defaults from the environment.
    """

    symbols: tuple[str, ...]
    """The symbols to collect, upper case, each once (one aggTrade stream each)."""
    ws_url: str
    """WebSocket base URL (``ws``/``wss``); the combined-stream path is appended."""
    rest_url: str
    """REST base URL (``http``/``https``) for ``/api/v3/aggTrades`` backfills."""
    batch_interval: float = 1.0
    """One atomic ``store.append`` per symbol this often (the batch writer's cadence)."""
    max_buffered: int = 200_000
    """Bound of the in-memory buffer, in trades (received, not yet stored; 49 bytes each, packed
    by :mod:`tradelab.collector.columns`, so about 10 MB at the bound). At the bound the intake
    gate pauses intake: the streams close until the store has taken half of it back. The REST
    backfill fetches only while the buffer is below half of it. 200,000 is more than the
    collector receives between two writes at its top rate (~100–125 k trades/s on one core, a
    write each second), so a flood alone does
    not pause intake, and memory stays bounded whatever the input rate: what the collector
    cannot read stays in the socket (the server drops a client that lags too far, and that gap
    is repaired through REST)."""
    rotate_after: float = 23.5 * 3600
    """Open a replacement connection this long after a connection opened (Binance closes
    connections after 24 h); the old one closes once the new one delivers."""
    handover_timeout: float = 30.0
    """How long the old connection stays open waiting for the replacement's first frame."""
    reconnect_initial: float = 0.5
    """First reconnect delay (doubling, jittered, up to ``reconnect_max``)."""
    reconnect_max: float = 60.0
    """Longest reconnect delay; must be >= ``reconnect_initial``."""
    healthy_after: float = 60.0
    """Uptime after which a connection counts as healthy and the reconnect backoff resets
    (>= 0). A connection that delivered trades resets it at once, whatever its uptime, so a
    feed that drops every few seconds reconnects after ``reconnect_initial`` each time."""
    max_connect_attempts: int = 250
    """Connection attempts allowed in any ``connect_window`` (Binance: 300 per 5 minutes per
    IP; 250 leaves room for other clients on the same address). From half of it on,
    attempts are paced ``connect_window / max_connect_attempts`` apart; at the limit the next
    one waits for the oldest to leave the window."""
    connect_window: float = 300.0
    """The sliding window of ``max_connect_attempts`` (Binance's 5 minutes)."""
    max_id_jump: int = 10_000_000
    """A streamed trade whose agg id is more than this above the last id seen is implausible:
    skipped and verified against REST before anything is stored (kept only if REST has that
    trade with the same values). 10 million is over 5 days of BTCUSDT at its busiest (1.1–1.9
    million aggTrades a day), so a restart after a normal outage never needs a check, while a
    corrupt id (e.g. 2**62) can never become the resume point."""
    time_slack: float = 3600.0
    """A streamed trade time outside [now − retention − slack, now + slack] is implausible
    (verified against REST like an id jump): one hour tolerates a badly set clock, while a
    time in 1970 or a century ahead is caught."""
    rest_item_retries: int = 3
    """A REST page with an item the collector rejects keeps its valid items; the bad id is
    asked for again this many times, then recorded in the store as unrepairable (never
    retried again), so one bad item never blocks the repairs behind it."""
    ping_interval: float = 20.0
    """Send a keepalive ping when a connection has delivered nothing for this long."""
    ping_timeout: float = 20.0
    """A ping without a pong within this long means a dead connection: it is closed."""
    open_timeout: float = 10.0
    """Longest WebSocket handshake."""
    rest_timeout: float = 10.0
    """Longest single REST request."""
    rest_limit: int = MAX_REST_LIMIT
    """REST page size (``limit``), 1..1000."""
    write_retry_initial: float = 0.2
    """First delay before retrying a failed store write (doubling, up to
    ``write_retry_max``)."""
    write_retry_max: float = 10.0
    """Longest delay between retries of a failed store write."""
    status_interval: float = 5.0
    """Publish the status document (and the open gaps) to the store this often."""
    log_interval: float = 60.0
    """Log one "Stored N trades" line per symbol this often."""
    retention_interval: float | None = 3600.0
    """Run ``store.enforce_retention`` this often; None switches retention off."""
    stop_timeout: float = 15.0
    """How long ``stop()`` may spend retrying a failing store (what was received is kept in
    memory and written until then)."""
    stop_fetch_timeout: float = 10.0
    """How long ``stop()`` may spend fetching through REST what was published up to the stop
    instant but not received (open holes, and the tail after the last id received, e.g. while
    waiting to reconnect). What it cannot fetch in time is a hole the next start repairs."""
    history_hours: float | None = None
    """On start, fill the last this-many hours through the daily archives and REST while going
    live (:func:`tradelab.history.fill_window`), 1 ≤ hours ≤ the retention (``retention_days``
    × 24); None or 0: off (collection starts from now)."""
    archive_url: str | None = None
    """Base URL of Binance's daily archives for the history fill (None: ``$TRADELAB_ARCHIVE_URL``,
    then https://data.binance.vision)."""
    history_weight_share: float = 0.5
    """Share (0 < share ≤ 1) of the REST weight budget the history fill may use; the rest stays
    free for the live collector's repairs."""
    max_streams: int = MAX_STREAMS_PER_CONNECTION
    """Symbols per WebSocket connection (Binance allows 1024)."""
    read_coalesce: float | None = 0.25
    export_to: str | None = None
    """Delta table (a local directory or an ``s3://``, ``gs://``, ``az://`` URL) that each
    closed hour of the collected symbols is exported to as it closes
    (:class:`~tradelab.collector.exporting.HourlyExporter`, exactly once per symbol-hour);
    None: ``$TRADELAB_EXPORT_TO``, else no export. Needs the ``scale`` extra."""
    export_check_interval: float = 60.0
    """While an hour waits for a repair, or after a failed export, try again this often."""
    """On a quiet feed, read the socket in bursts this far apart to save CPU (<= 1 s; busy
    feeds are never paused); None reads every frame as it comes."""

    @classmethod
    def from_arguments(
        cls,
        symbols: str | Iterable[str] | None,
        *,
        ws_url: str | None = None,
        rest_url: str | None = None,
        **settings: Any,
    ) -> CollectorSettings:
        """Settings from the collector's constructor arguments.

        ``symbols`` is a comma/space-separated string, an iterable or None (``$TRADELAB_SYMBOLS``,
        then the default pair); ``ws_url``/``rest_url`` default to ``$TRADELAB_WS_URL`` /
        ``$TRADELAB_REST_URL``, then Binance. ``settings`` are the remaining keywords.
        """
        if settings.get("export_to") is None:
            settings["export_to"] = export_uri_from_env()
        return cls(
            parse_symbols(symbols),
            ws_url or environment_urls()[0] or DEFAULT_WS_URL,
            rest_url or environment_urls()[1] or DEFAULT_REST_URL,
            **settings,
        )

    def __post_init__(self) -> None:
        """Validate every setting (messages name it), then store the normalised values."""
        normalised: dict[str, Any] = {
            "symbols": parse_symbols(self.symbols),
            "ws_url": validate_url(self.ws_url, schemes=("ws", "wss"), name="WebSocket URL"),
            "rest_url": validate_url(self.rest_url, schemes=("http", "https"), name="REST URL"),
        }
        for name in (
            "batch_interval",
            "rotate_after",
            "handover_timeout",
            "reconnect_initial",
            "reconnect_max",
            "ping_interval",
            "ping_timeout",
            "open_timeout",
            "rest_timeout",
            "write_retry_initial",
            "write_retry_max",
            "status_interval",
            "log_interval",
            "stop_timeout",
            "stop_fetch_timeout",
            "export_check_interval",
        ):
            normalised[name] = float(_positive(name, getattr(self, name)))
        healthy_after = self.healthy_after
        if (
            isinstance(healthy_after, bool)
            or not isinstance(healthy_after, int | float)
            or healthy_after < 0
        ):
            raise InvalidParameterError(
                f"healthy_after must be >= 0 seconds, got {healthy_after!r}"
            )
        read_coalesce = self.read_coalesce
        _positive("retention_interval", self.retention_interval, allow_none=True)
        _positive("read_coalesce", read_coalesce, allow_none=True)
        if read_coalesce is not None and read_coalesce > 1.0:
            raise InvalidParameterError(
                f"read_coalesce must be <= 1 second (pongs wait for it), got {read_coalesce!r}"
            )
        _positive("max_buffered", self.max_buffered, integer=True)
        _positive("max_connect_attempts", self.max_connect_attempts, integer=True)
        _positive("max_id_jump", self.max_id_jump, integer=True)
        _positive("rest_item_retries", self.rest_item_retries, integer=True)
        for name in ("connect_window", "time_slack"):
            normalised[name] = float(_positive(name, getattr(self, name)))
        _positive("max_streams", self.max_streams, integer=True)
        rest_limit = self.rest_limit
        if not 1 <= rest_limit <= MAX_REST_LIMIT or isinstance(rest_limit, bool):
            raise InvalidParameterError(
                f"rest_limit must be 1..{MAX_REST_LIMIT}, got {rest_limit!r}"
            )
        if self.max_streams > MAX_STREAMS_PER_CONNECTION:
            raise InvalidParameterError(
                f"max_streams must be <= {MAX_STREAMS_PER_CONNECTION} (Binance's limit per "
                f"connection), got {self.max_streams}"
            )
        if self.reconnect_max < self.reconnect_initial:
            raise InvalidParameterError(
                f"reconnect_max ({self.reconnect_max}) must be >= reconnect_initial "
                f"({self.reconnect_initial})"
            )
        normalised["history_hours"] = self._history_hours()
        normalised["archive_url"] = (
            None
            if self.archive_url is None
            else validate_url(self.archive_url, schemes=("http", "https"), name="archive URL")
        )
        share = self.history_weight_share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise InvalidParameterError(
                f"history_weight_share must be a share of the REST weight budget, 0 < share "
                f"<= 1, got {share!r}"
            )
        normalised["history_weight_share"] = float(share)
        normalised["healthy_after"] = float(healthy_after)
        normalised["max_buffered"] = int(self.max_buffered)
        for name in ("max_connect_attempts", "max_id_jump", "rest_item_retries"):
            normalised[name] = int(getattr(self, name))
        normalised["max_streams"] = int(self.max_streams)
        normalised["rest_limit"] = int(rest_limit)
        normalised["read_coalesce"] = None if read_coalesce is None else float(read_coalesce)
        normalised["export_to"] = self._export_to()
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    def _export_to(self) -> str | None:
        """``export_to`` checked: a table URI (normalised), with the scale extra installed."""
        if self.export_to is None:
            return None
        from tradelab.scale.extra import normalize_uri, require

        try:
            uri = normalize_uri(self.export_to)
        except InvalidParameterError as exc:
            raise InvalidParameterError(f"export_to: {exc}") from None
        require("deltalake")  # one line naming the extra now, not a failure each hour
        return uri

    def _history_hours(self) -> float | None:
        """``history_hours`` checked: None/0 is off, else 1 ≤ hours ≤ the retention."""
        hours = self.history_hours
        if hours is None or (hours == 0 and not isinstance(hours, bool)):
            return None
        limit = retention_days_from_env() * 24
        if isinstance(hours, bool) or not isinstance(hours, int | float) or hours != hours:
            raise InvalidParameterError(
                f"history_hours must be a number of hours from 1 to {limit:g} (the retention), "
                f"or 0/None for no history; got {hours!r}"
            )
        if not 1 <= hours <= limit:
            raise InvalidParameterError(
                f"history_hours={hours!r} is outside 1 to {limit:g} hours: the store keeps "
                f"{limit / 24:g} days (TRADELAB_RETENTION_DAYS), so older history would be "
                "deleted again at once"
            )
        return float(hours)
