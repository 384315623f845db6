"""What a cluster worker runs: read one Parquet file of the table, keep the window, make its
partial histogram (:mod:`tradelab.scale.histogram`) — or, for session profiles, its partials
split by session (:mod:`tradelab.scale.sessions`). Plain functions of plain arguments, so Dask
ships them by reference and any worker with tradelab installed runs them."""

from __future__ import annotations

import polars as pl

from tradelab.scale.histogram import Partial, partial_histogram
from tradelab.scale.sessions import SessionPartials, session_partials

__all__ = ["count_in_window", "partial_of_file", "read_window_of_file", "session_partials_of_files"]

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


def session_partials_of_files(
    paths: list[str],
    start_ms: int,
    end_ms: int,
    starts: list[int],
    ends: list[int],
    offset: int,
    step: int,
    storage_options: dict[str, str] | None,
) -> SessionPartials:
    """The partials split by session of the window's trades in ``paths`` (files whose times
    may overlap, read together) in time order, equal times by ``agg_id`` — the order of the
    local session profiles; ``offset`` is the position of their first trade in that order,
    ``step`` the tick-sample stride, ``starts``/``ends`` the sessions they may touch."""
    frames = [read_window_of_file(p, start_ms, end_ms, storage_options) for p in paths]
    frame = frames[0] if len(frames) == 1 else pl.concat(frames).sort("agg_id")
    t = frame["time"].dt.epoch("ms")
    if not t.is_sorted():
        frame = frame.sort(["time", "agg_id"])
        t = frame["time"].dt.epoch("ms")
    return session_partials(
        frame["price"].to_numpy(),
        frame["qty"].to_numpy(),
        frame["buyer_is_maker"].to_numpy(),
        t.to_numpy(),
        starts,
        ends,
        offset=offset,
        step=step,
    )
