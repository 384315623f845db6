"""Volume-profile analytics: pure functions on trade frames, and their store-backed wrappers.

:mod:`.profile` computes a :class:`VolumeProfile` (POC, VAH, VAL, buy/sell split) and
:mod:`.rows` chooses its row size; :mod:`.checks` validates trade frames and parameters;
:mod:`.vacuums` finds liquidity vacuums in a profile's rows; :mod:`.display` renders a profile
for notebooks (text, HTML, SVG). :mod:`.api` reads a window from the store and answers the
analyst's questions (``get_volume_profile``, ``get_liquidity_vacuums``, ``vacuum_report``) with
clear errors when data is short — over the last hours or any range ``start``–``end``.
:mod:`.sessions` splits trades into sessions (one profile each, a summary with value-area
migration), :mod:`.developing` follows POC / VAH / VAL step by step, :mod:`.naked` finds the
POCs price has not revisited; :mod:`.api_sessions` reads their windows from the store. Drawing
is :mod:`tradelab.plotting`'s (and :mod:`tradelab.plotting_sessions`'), which build on these.
"""

from __future__ import annotations

from tradelab.analytics.api import (
    VacuumReport,
    get_liquidity_vacuums,
    get_volume_profile,
    vacuum_report,
)
from tradelab.analytics.api_sessions import developing_profile, session_profiles
from tradelab.analytics.checks import METHODS
from tradelab.analytics.developing import developing_levels
from tradelab.analytics.naked import naked_pocs
from tradelab.analytics.profile import VolumeProfile, liquidity_vacuums, volume_profile
from tradelab.analytics.rows import auto_row_size, infer_tick_size
from tradelab.analytics.sessions import (
    SESSION_PRESETS,
    SessionProfiles,
    SessionSpec,
    parse_session,
    session_profiles_from_trades,
)
from tradelab.analytics.vacuums import Vacuum, vacuums_frame

__all__ = [
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
]
