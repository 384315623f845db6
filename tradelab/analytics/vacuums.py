"""Liquidity vacuums (low-volume nodes): the rule, on a profile's rows; pure, no I/O.

A vacuum is a maximal run of at least ``min_rows`` consecutive profile rows whose volume is
below ``threshold × median row volume`` (``docs/analytics.md``). :func:`vacuums_in_rows` applies
the rule to a profile's ``rows`` frame; :func:`tradelab.analytics.liquidity_vacuums` is the
public entry point on a :class:`~tradelab.analytics.VolumeProfile`. :class:`Vacuum` is one zone
and :func:`vacuums_frame` lays a list of them out as a Polars frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from tradelab.analytics.rows import QTY_PRECISION, check_positive_number
from tradelab.exceptions import InvalidParameterError

__all__ = ["Vacuum", "check_vacuum_args", "vacuums_frame", "vacuums_in_rows"]

_QTY_SCALE = 10.0**QTY_PRECISION


@dataclass(frozen=True)
class Vacuum:
    """A liquidity vacuum: consecutive rows that traded far less than the median row.

    ``price_low``/``price_high`` bound the zone ``[low, high)``; ``rows`` is its number of rows,
    ``volume`` the volume traded inside it, ``median_row_volume`` the reference median,
    ``deficit_pct = (1 - volume / rows / median_row_volume) * 100`` and ``impact`` "fast"
    (deficit > 80%), "moderate" (> 50%) or "negligible".
    """

    price_low: float
    price_high: float
    rows: int
    volume: float
    median_row_volume: float
    deficit_pct: float
    impact: Literal["fast", "moderate", "negligible"]

    def to_dict(self) -> dict[str, Any]:
        """The vacuum as plain JSON-ready values."""
        return {
            "price_low": self.price_low,
            "price_high": self.price_high,
            "rows": self.rows,
            "volume": self.volume,
            "median_row_volume": self.median_row_volume,
            "deficit_pct": self.deficit_pct,
            "impact": self.impact,
        }


def check_vacuum_args(threshold: float = 0.20, min_rows: int = 1) -> tuple[float, int]:
    """Validate :func:`~tradelab.analytics.liquidity_vacuums`'s parameters; returns
    ``(threshold, min_rows)``."""
    threshold = check_positive_number(threshold, "threshold", "a share of the median, 0 < x <= 1")
    if threshold > 1:
        raise InvalidParameterError(
            f"threshold={threshold!r} is not allowed: a share of the median row volume, "
            "0 < threshold <= 1 (0.20 = below 20% of the median)"
        )
    if isinstance(min_rows, bool) or not isinstance(min_rows, int | np.integer) or min_rows < 1:
        raise InvalidParameterError(f"min_rows={min_rows!r} is not allowed: a whole number >= 1")
    return threshold, int(min_rows)


def _impact(deficit_pct: float) -> Literal["fast", "moderate", "negligible"]:
    if deficit_pct > 80.0:
        return "fast"
    if deficit_pct > 50.0:
        return "moderate"
    return "negligible"


def vacuums_in_rows(
    rows: pl.DataFrame, *, threshold: float = 0.20, min_rows: int = 1
) -> list[Vacuum]:
    """The vacuums of a profile's ``rows`` frame (``price_low``, ``price_high``, ``volume``),
    sorted by price; the rule is :func:`tradelab.analytics.liquidity_vacuums`'s."""
    threshold, min_rows = check_vacuum_args(threshold, min_rows)
    vol = rows["volume"].to_numpy()
    units = np.rint(vol * _QTY_SCALE)
    traded = units[units > 0]
    if traded.size == 0:  # pragma: no cover - a profile always has volume
        return []
    median_units = float(np.median(traded))
    median = median_units / _QTY_SCALE
    low = units < threshold * median_units
    lows = rows["price_low"].to_numpy()
    highs = rows["price_high"].to_numpy()
    out: list[Vacuum] = []
    # Runs of True in `low`, found with numpy edges (fast even for a million rows).
    padded = np.concatenate(([False], low, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    for a, b in zip(edges[0::2], edges[1::2], strict=True):
        length = int(b - a)
        if length < min_rows:
            continue
        zone_units = float(units[a:b].sum())
        deficit = (1.0 - zone_units / length / median_units) * 100.0
        out.append(
            Vacuum(
                price_low=float(lows[a]),
                price_high=float(highs[b - 1]),
                rows=length,
                volume=zone_units / _QTY_SCALE,
                median_row_volume=median,
                deficit_pct=round(deficit, 6),
                impact=_impact(deficit),
            )
        )
    return out


def vacuums_frame(vacuums: Sequence[Vacuum]) -> pl.DataFrame:
    """The vacuums as a Polars frame (one row each, the :class:`Vacuum` fields as columns)."""
    schema = {
        "price_low": pl.Float64,
        "price_high": pl.Float64,
        "rows": pl.Int64,
        "volume": pl.Float64,
        "median_row_volume": pl.Float64,
        "deficit_pct": pl.Float64,
        "impact": pl.Utf8,
    }
    return (
        pl.DataFrame([v.to_dict() for v in vacuums], schema=schema, orient="row")
        if vacuums
        else pl.DataFrame(schema=schema)
    )
