"""Volume profiles computed on a Dask distributed cluster, equal to the single-machine profile.

::

    from tradelab.scale import distributed
    vp = distributed.volume_profile("s3://team/trades", "BTCUSDT", "2026-11-01", "2026-12-01")
    vp = distributed.volume_profile(uri, "BTCUSDT", start, end, client=Client("tcp://sched:8786"))

The log of the Delta table says which Parquet files hold the window (partition values and
``time`` statistics; no file is opened to plan). One task per file reads it on a worker, keeps
the window and builds a partial histogram at price resolution (:mod:`tradelab.scale.tasks`);
the partials are merged by a tree of tasks (``fan_in`` at a time), and the merged histogram
becomes rows, POC and value area through :func:`tradelab.volume_profile` itself
(:func:`tradelab.scale.histogram.profile_from_histogram`): the answer equals
``tradelab.volume_profile`` on the same trades exactly. Only the histogram (one row per
distinct price) travels back to the client, never the trades.

Files cut by the window's edges are counted first (one small task each) so every task knows
its position in the window — what makes the tick inference see the same prices as one machine.

``client=None`` starts a ``LocalCluster`` (``n_workers`` processes, one thread each) for the
call and closes it after; any ``distributed.Client`` — a Kubernetes, YARN or cloud cluster —
works unchanged, as long as its workers have tradelab installed and can read the table's URI
(same credentials in their environment).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from tradelab.analytics.checks import check_profile_args
from tradelab.analytics.profile import VolumeProfile
from tradelab.analytics.rows import tick_sample_step
from tradelab.exceptions import InsufficientTradesError, InvalidParameterError
from tradelab.scale.extra import TableError, require
from tradelab.scale.histogram import (
    Partial,
    empty_partial,
    merge_partials,
    profile_from_histogram,
)
from tradelab.scale.reading import resolve, where_in_table, window_files
from tradelab.scale.tasks import count_in_window, partial_of_file

__all__ = ["local_client", "tree_reduce", "volume_profile"]

_PROFILE_ARGS = ("row_size", "rows", "tick_size", "value_area", "method")


def local_client(n_workers: int = 2) -> Any:
    """A ``distributed.Client`` on a new ``LocalCluster`` of ``n_workers`` worker processes
    (one thread each, no dashboard); ``client.close(); client.cluster.close()`` ends both."""
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or not 1 <= n_workers <= 256:
        raise InvalidParameterError(f"n_workers must be a whole number 1..256, got {n_workers!r}")
    dd = require("distributed")
    cluster = dd.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # any free port: clusters side by side never collide
        silence_logs=logging.ERROR,
    )
    return dd.Client(cluster)


def tree_reduce(client: Any, futures: Sequence[Any], merge: Callable[..., Any], fan_in: int) -> Any:
    """Merge ``futures`` on the cluster, ``fan_in`` at a time, level by level, down to one
    result (gathered to the client)."""
    level = list(futures)
    while len(level) > 1:
        level = [
            client.submit(merge, *level[i : i + fan_in])
            if len(level[i : i + fan_in]) > 1
            else level[i]
            for i in range(0, len(level), fan_in)
        ]
    return level[0].result()


def volume_profile(
    uri: object,
    symbol: str,
    start: object,
    end: object,
    client: Any = None,
    *,
    n_workers: int = 2,
    fan_in: int = 4,
    storage_options: dict[str, str] | None = None,
    **profile_kwargs: Any,
) -> VolumeProfile:
    """The volume profile of ``symbol`` over ``[start, end)`` from the Delta table at ``uri``,
    computed on a Dask cluster: equal to ``tradelab.volume_profile(scan_trades(uri, symbol,
    start, end), ...)`` — rows, POC, VAH, VAL, totals. ``profile_kwargs``: ``row_size``,
    ``rows``, ``tick_size``, ``value_area``, ``method`` as there. ``client``: a
    ``distributed.Client``; None starts a ``LocalCluster`` of ``n_workers`` processes for this
    call. ``start``/``end``: datetimes, unix ms or ISO-8601 strings (no zone = UTC)."""
    win = resolve(uri, symbol, start, end, storage_options)
    unknown = sorted(set(profile_kwargs) - set(_PROFILE_ARGS))
    if unknown:
        raise InvalidParameterError(
            f"unknown profile argument(s) {', '.join(unknown)}; allowed: {', '.join(_PROFILE_ARGS)}"
        )
    check_profile_args(**profile_kwargs)
    if isinstance(fan_in, bool) or not isinstance(fan_in, int) or fan_in < 2:
        raise InvalidParameterError(f"fan_in must be a whole number >= 2, got {fan_in!r}")
    dd = require("distributed")
    if client is not None and not isinstance(client, dd.Client):
        raise InvalidParameterError(
            f"client must be a distributed.Client (or None for a LocalCluster), got "
            f"{type(client).__name__}"
        )
    files = window_files(win)
    own = client is None
    if own:
        client = local_client(n_workers)
    try:
        part = _partials(client, files, win, fan_in) if files.height else empty_partial()
    except (InsufficientTradesError, InvalidParameterError):
        raise
    except Exception as exc:
        if isinstance(exc, TableError) or type(exc).__module__.startswith("tradelab"):
            raise
        raise TableError(f"the cluster could not read {win.uri}: {exc}") from None
    finally:
        if own:
            cluster = client.cluster
            client.close()
            cluster.close()
    if part.trades == 0:
        raise InsufficientTradesError(
            f"{win.symbol}: no trades in the table from {win.text().replace(' → ', ' to ')}; "
            f"{where_in_table(win.uri, win.symbol, storage_options=win.options)}",
            found=0,
            needed=1,
        )
    return profile_from_histogram(
        part, symbol=win.symbol, start=win.start_ms, end=win.end_ms, **profile_kwargs
    )


def _partials(client: Any, files: Any, win: Any, fan_in: int) -> Partial:
    paths = files["path"].to_list()
    inside = ((files["min_ms"] >= win.start_ms) & (files["max_ms"] < win.end_ms)).to_list()
    rows = files["rows"].to_list()
    cut = {
        i: client.submit(count_in_window, p, win.start_ms, win.end_ms, win.options)
        for i, (p, whole) in enumerate(zip(paths, inside, strict=True))
        if not whole
    }
    counted = dict(zip(cut, client.gather(list(cut.values())), strict=True))
    counts = [counted.get(i, rows[i]) for i in range(len(paths))]
    total = sum(counts)
    if total == 0:
        return empty_partial()
    step = tick_sample_step(total)
    futures = []
    offset = 0
    for path, n in zip(paths, counts, strict=True):
        if n:
            futures.append(
                client.submit(
                    partial_of_file, path, win.start_ms, win.end_ms, offset, step, win.options
                )
            )
        offset += n
    result: Partial = tree_reduce(client, futures, merge_partials, fan_in)
    return result
