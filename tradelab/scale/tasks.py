"""What a cluster worker runs: read one Parquet file of the table, keep the window, make its
partial histogram (:mod:`tradelab.scale.histogram`). Plain functions of plain arguments, so
Dask ships them by reference and any worker with tradelab installed runs them."""

from __future__ import annotations

import polars as pl

from tradelab.scale.histogram import Partial, partial_histogram

__all__ = ["count_in_window", "partial_of_file", "read_window_of_file"]

_COLUMNS = ["agg_id", "price", "qty", "buyer_is_maker", "time"]


def read_window_of_file(
    path: str, start_ms: int, end_ms: int, storage_options: dict[str, str] | None
) -> pl.DataFrame:
    """The file's trades with ``start_ms <= time < end_ms``, in ``agg_id`` order."""
    frame = pl.read_parquet(path, columns=_COLUMNS, storage_options=storage_options)
    t = pl.col("time").dt.epoch("ms")
    frame = frame.filter((t >= start_ms) & (t < end_ms))
    if not frame["agg_id"].is_sorted():
        frame = frame.sort("agg_id")
    return frame


def count_in_window(
    path: str, start_ms: int, end_ms: int, storage_options: dict[str, str] | None
) -> int:
    """How many of the file's trades fall in the window (for files the window cuts)."""
    frame = pl.read_parquet(path, columns=["time"], storage_options=storage_options)
    t = pl.col("time").dt.epoch("ms")
    return frame.filter((t >= start_ms) & (t < end_ms)).height


def partial_of_file(
    path: str,
    start_ms: int,
    end_ms: int,
    offset: int,
    step: int,
    storage_options: dict[str, str] | None,
) -> Partial:
    """The partial histogram of the file's trades in the window; ``offset`` is the position of
    its first one in the window, ``step`` the tick-sample stride."""
    frame = read_window_of_file(path, start_ms, end_ms, storage_options)
    return partial_histogram(
        frame["price"].to_numpy(),
        frame["qty"].to_numpy(),
        frame["buyer_is_maker"].to_numpy(),
        offset=offset,
        step=step,
    )
