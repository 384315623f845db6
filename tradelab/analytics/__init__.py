"""Volume-profile analytics: pure functions on trade frames, and their store-backed wrappers.

:mod:`.profile` computes a :class:`VolumeProfile` (POC, VAH, VAL, buy/sell split) and
:mod:`.rows` chooses its row size; :mod:`.checks` validates trade frames and parameters;
:mod:`.vacuums` finds liquidity vacuums in a profile's rows; :mod:`.display` renders a profile
for notebooks (text, HTML, SVG). :mod:`.api` reads a window from the store and answers the
analyst's questions (``get_volume_profile``, ``get_liquidity_vacuums``, ``vacuum_report``) with
clear errors when data is short. Drawing is :mod:`tradelab.plotting`'s, which builds on these.
"""

from __future__ import annotations

from tradelab.analytics.api import (
    VacuumReport,
    get_liquidity_vacuums,
    get_volume_profile,
    vacuum_report,
)
from tradelab.analytics.checks import METHODS
from tradelab.analytics.profile import VolumeProfile, liquidity_vacuums, volume_profile
from tradelab.analytics.rows import auto_row_size, infer_tick_size
from tradelab.analytics.vacuums import Vacuum, vacuums_frame

__all__ = [
    "METHODS",
    "Vacuum",
    "VacuumReport",
    "VolumeProfile",
    "auto_row_size",
    "get_liquidity_vacuums",
    "get_volume_profile",
    "infer_tick_size",
    "liquidity_vacuums",
    "vacuum_report",
    "vacuums_frame",
    "volume_profile",
]
