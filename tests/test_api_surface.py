"""The public surface, pinned: every package exports exactly the recorded names, each resolves
to something tradelab defines, and every CLI command has a help line, a handler and helped options.

A name added to or removed from an ``__all__`` fails here until this list is updated on purpose:
the public API changes only when someone means it to.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import subprocess
import sys

import pytest

import tradelab
from tradelab.cli import build_parser, main

PUBLIC_API: dict[str, list[str]] = {
    "tradelab": [
        "Collector",
        "CollectorStateError",
        "ConfigurationError",
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
        "SessionProfiles",
        "Settings",
        "StorageError",
        "StorageWriteError",
        "StoreLockedError",
        "TRADE_SCHEMA",
        "TradeStore",
        "TradelabError",
        "Vacuum",
        "VacuumReport",
        "VolumeProfile",
        "configure_logging",
        "developing_profile",
        "get_liquidity_vacuums",
        "get_volume_profile",
        "liquidity_vacuums",
        "load_ipython_extension",
        "naked_pocs",
        "open_store",
        "session_profiles",
        "start",
        "status",
        "stop",
        "trades",
        "unload_ipython_extension",
        "vacuum_report",
        "volume_profile",
        "watch",
        "where_collection_runs",
    ],
    "tradelab.binance": [
        "AGG_TRADES_PATH",
        "AGG_TRADES_WEIGHT",
        "AttemptWindow",
        "BackfillOutcome",
        "ControlResponse",
        "DEFAULT_WEIGHT_LIMIT",
        "Gap",
        "GapTracker",
        "MAX_REST_LIMIT",
        "MAX_STREAMS_PER_CONNECTION",
        "MAX_TIME_SPAN_MS",
        "ReconnectPolicy",
        "Rejection",
        "RestClient",
        "ServerShutdown",
        "TokenBucket",
        "Trade",
        "WeightBudget",
        "agg_trades_query",
        "build_stream_urls",
        "excerpt",
        "exponential_backoff",
        "parse_frame",
        "parse_rest_items",
        "parse_retry_after",
        "split_streams",
        "stream_name",
        "trades_to_frame",
    ],
    "tradelab.store": [
        "CorruptStoreError",
        "OWNER_FILE",
        "STORE_FORMAT",
        "StoreStats",
        "TradeStore",
        "close_stores",
        "open_store",
        "trades",
    ],
    "tradelab.collector": [
        "Collector",
        "CollectorSettings",
        "STALE_AFTER_MS",
        "STATUS_META",
        "export_line",
        "format_status",
        "read_collector_status",
    ],
    "tradelab.analytics": [
        "METHODS",
        "SESSION_PRESETS",
        "SessionProfiles",
        "SessionSpec",
        "Vacuum",
        "VacuumReport",
        "VolumeProfile",
        "auto_row_size",
        "developing_levels",
        "developing_profile",
        "get_liquidity_vacuums",
        "get_volume_profile",
        "infer_tick_size",
        "liquidity_vacuums",
        "naked_pocs",
        "parse_session",
        "session_profiles",
        "session_profiles_from_trades",
        "vacuum_report",
        "vacuums_frame",
        "volume_profile",
    ],
    "tradelab.jupyter": [
        "SessionInfo",
        "Status",
        "Stopping",
        "Watch",
        "astop",
        "current",
        "load_ipython_extension",
        "start",
        "status",
        "stop",
        "stop_watching",
        "unload_ipython_extension",
        "wait_for_trades",
        "watch",
        "watching",
    ],
    "tradelab.mcp_server": ["DEFAULT_HTTP_PATH", "create_server", "run_http", "run_stdio"],
    "tradelab.cli": ["build_parser", "main"],
    "tradelab.simulator": [
        "Faults",
        "MALFORMED_KINDS",
        "RangeSet",
        "ReplaySource",
        "RequestRecord",
        "Simulator",
        "SyntheticSource",
        "TradeHistory",
        "build_archive",
    ],
    "tradelab.history": [
        "ARCHIVE_URL_ENV",
        "ArchiveChecksumError",
        "ArchiveClient",
        "ArchiveDay",
        "DAY_MS",
        "DEFAULT_ARCHIVE_URL",
        "FillPlan",
        "FillReport",
        "HistoryProgress",
        "ImportConflictError",
        "ImportResult",
        "ProgressBar",
        "Run",
        "Span",
        "archive_path",
        "fill_window",
        "find_conflict",
        "import_file",
        "missing_spans",
        "parse_vision_csv",
        "plan_fill",
        "resolve_archive_url",
        "stored_runs",
    ],
    "tradelab.scale": [
        "ExportReport",
        "INSTALL_HINT",
        "Partial",
        "ScaleExtraMissingError",
        "SymbolExport",
        "TABLE_SCHEMA",
        "TableError",
        "TradeSource",
        "VacuumReport",
        "app_id",
        "distributed_session_profiles",
        "distributed_volume_profile",
        "export",
        "export_hour",
        "hour_number",
        "local_client",
        "merge_partials",
        "normalize_uri",
        "partial_histogram",
        "profile_from_histogram",
        "scan_trades",
        "table_contents",
        "vacuum_older_than",
        "volume_profile_from",
        "where_in_table",
    ],
}


@pytest.mark.parametrize("package", sorted(PUBLIC_API))
def test_exports_are_exactly_the_recorded_list(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == PUBLIC_API[package]
    assert len(set(module.__all__)) == len(module.__all__), "a name is exported twice"


@pytest.mark.parametrize("package", sorted(PUBLIC_API))
def test_every_export_is_defined_by_tradelab(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("tradelab"), f"{package}.{name}"
            assert inspect.getdoc(value), f"{package}.{name} has no docstring"


def test_top_level_names_are_the_subpackages_objects() -> None:
    # the lazy facade hands out the very objects the subpackages define, not copies
    from tradelab import analytics, collector, jupyter, store

    assert tradelab.TradeStore is store.TradeStore and tradelab.trades is store.trades
    assert tradelab.Collector is collector.Collector
    assert tradelab.get_volume_profile is analytics.get_volume_profile
    assert tradelab.start is jupyter.start and tradelab.status is jupyter.status
    assert "where_collection_runs" in dir(tradelab)


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = tradelab.nope  # type: ignore[attr-defined]


def _subcommands(
    parser: argparse.ArgumentParser,
) -> tuple[dict[str, str], dict[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return helps, dict(action.choices)
    return {}, {}


def test_every_cli_command_has_a_help_line_a_handler_and_helped_options() -> None:
    helps, commands = _subcommands(build_parser())
    assert set(commands) == set(helps) and len(commands) >= 10
    for name, sub in commands.items():
        assert len(helps[name]) > 10, f"`tradelab --help` has no line for {name}"
        assert callable(sub.get_default("func")), f"{name} has no handler"
        for action in sub._actions:
            if action.option_strings and "--help" not in action.option_strings:
                assert action.help, f"tradelab {name} {action.option_strings[0]} has no help"


def test_cli_help_runs_as_a_process() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tradelab", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: tradelab" in out.stdout
    assert "demo" in out.stdout and "collect" in out.stdout


def test_cli_error_is_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "invalid choice: 'no-such-command'" in err
