"""tradelab: a complete history of Binance trades, and the volume-profile analytics built on it.

The public API is exactly what this module exports (``__all__``); names are imported lazily so
``import tradelab`` stays fast and a notebook pays only for what it uses.

In a notebook::

    %load_ext tradelab
    %tradelab start BTCUSDT ETHUSDT
    %tradelab profile BTCUSDT --hours 1

From Python::

    import tradelab
    df = tradelab.trades("BTCUSDT", hours=24)          # Polars frame, the TradeBuffer
    vp = tradelab.get_volume_profile("BTCUSDT", 24)    # POC / VAH / VAL
    report = tradelab.vacuum_report("BTCUSDT", 4)      # thin zones, with their profile
    vp = tradelab.get_volume_profile("BTCUSDT", start="2024-08-08", end="2024-08-09")
    sp = tradelab.session_profiles("BTCUSDT", days=7)  # one profile per UTC day
    tradelab.where_collection_runs()                   # this process, another, or none
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # store
    "TradeStore": "tradelab.store",
    "trades": "tradelab.store",
    "open_store": "tradelab.store",
    "TRADE_SCHEMA": "tradelab.schema",
    # collection
    "Collector": "tradelab.collector",
    "start": "tradelab.jupyter",
    "stop": "tradelab.jupyter",
    "status": "tradelab.jupyter",
    "where_collection_runs": "tradelab.collection",
    # analytics
    "VolumeProfile": "tradelab.analytics",
    "Vacuum": "tradelab.analytics",
    "volume_profile": "tradelab.analytics",
    "liquidity_vacuums": "tradelab.analytics",
    "get_volume_profile": "tradelab.analytics",
    "get_liquidity_vacuums": "tradelab.analytics",
    "VacuumReport": "tradelab.analytics",
    "vacuum_report": "tradelab.analytics",
    "SessionProfiles": "tradelab.analytics",
    "session_profiles": "tradelab.analytics",
    "developing_profile": "tradelab.analytics",
    "naked_pocs": "tradelab.analytics",
    "watch": "tradelab.jupyter",
    # configuration and logging
    "Settings": "tradelab.config",
    "configure_logging": "tradelab.logs",
    # errors
    "TradelabError": "tradelab.exceptions",
    "InputError": "tradelab.exceptions",
    "InvalidSymbolError": "tradelab.exceptions",
    "InvalidWindowError": "tradelab.exceptions",
    "InvalidTradesError": "tradelab.exceptions",
    "InvalidParameterError": "tradelab.exceptions",
    "ConfigurationError": "tradelab.exceptions",
    "InsufficientTradesError": "tradelab.exceptions",
    "CollectorStateError": "tradelab.exceptions",
    "ExternalError": "tradelab.exceptions",
    "StorageError": "tradelab.exceptions",
    "StorageWriteError": "tradelab.exceptions",
    "StoreLockedError": "tradelab.exceptions",
    "NotADatabaseError": "tradelab.exceptions",
    "NoDataError": "tradelab.exceptions",
    "ExchangeError": "tradelab.exceptions",
    "MalformedFrameError": "tradelab.exceptions",
}

__all__ = [*sorted(_EXPORTS), "load_ipython_extension", "unload_ipython_extension"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tradelab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext tradelab``: register the ``%tradelab`` magic (:mod:`tradelab.jupyter.magic`)."""
    from tradelab.jupyter import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext tradelab``: stop collection cleanly and unregister."""
    from tradelab.jupyter import unload_ipython_extension as _unload

    _unload(ipython)
