"""Volume-profile analytics: pure functions on trade frames, and their store-backed wrappers.

:mod:`.profile` computes a :class:`VolumeProfile` (POC, VAH, VAL, buy/sell split) and
:mod:`.rows` chooses its row size; :mod:`.display` renders a profile for notebooks (text, HTML,
SVG). :mod:`.api` reads a window from the store and answers the analyst's questions
(``get_volume_profile``, ``get_liquidity_vacuums``) with clear errors when data is short.
"""

from __future__ import annotations

from tradelab.analytics.api import get_liquidity_vacuums, get_volume_profile
from tradelab.analytics.profile import (
    METHODS,
    Vacuum,
    VolumeProfile,
    liquidity_vacuums,
    vacuums_frame,
    volume_profile,
)
from tradelab.analytics.rows import auto_row_size, infer_tick_size

__all__ = [
    "METHODS",
    "Vacuum",
    "VolumeProfile",
    "auto_row_size",
    "get_liquidity_vacuums",
    "get_volume_profile",
    "infer_tick_size",
    "liquidity_vacuums",
    "vacuums_frame",
    "volume_profile",
]
