"""Volume profiles computed on a Dask distributed cluster, equal to the single-machine profile.

::

    from tradelab.scale import distributed
    vp = distributed.volume_profile("s3://team/trades", "BTCUSDT", "2026-11-01", "2026-12-01")
    vp = distributed.volume_profile(uri, "BTCUSDT", start, end, client=Client("tcp://sched:8786"))
    sp = distributed.session_profiles(uri, "BTCUSDT", "2026-11-01", "2026-12-01", session="london")

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

:func:`session_profiles` does the same per session (one profile per UTC day, London session,
…): each task splits its file's trades by session into partial histograms
(:mod:`tradelab.scale.sessions`), and the merged partials become exactly what
:func:`tradelab.analytics.session_profiles_from_trades` makes of the window's trades.

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
from tradelab.analytics.sessions import SessionProfiles, SessionSpec, parse_session, session_windows
from tradelab.exceptions import InsufficientTradesError, InvalidParameterError
from tradelab.scale.extra import TableError, one_line, require
from tradelab.scale.histogram import (
    Partial,
    empty_partial,
    merge_partials,
    profile_from_histogram,
)
from tradelab.scale.reading import Window, resolve, where_in_table, window_files
from tradelab.scale.sessions import (
    SessionPartials,
    empty_session_partials,
    merge_session_partials,
    session_profiles_from_partials,
)
from tradelab.scale.tasks import count_in_window, partial_of_file, session_partials_of_files

__all__ = ["local_client", "session_profiles", "time_groups", "tree_reduce", "volume_profile"]

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
    _check_cluster_args(client, fan_in)
    files = window_files(win)
    part: Partial = _on_cluster(
        client,
        n_workers,
        win,
        lambda c: _partials(c, files, win, fan_in) if files.height else empty_partial(),
    )
    if part.trades == 0:
        raise _no_trades(win)
    return profile_from_histogram(
        part, symbol=win.symbol, start=win.start_ms, end=win.end_ms, **profile_kwargs
    )


def session_profiles(
    uri: object,
    symbol: str,
    start: object,
    end: object,
    client: Any = None,
    *,
    session: str | SessionSpec = "utc-day",
    row_size: float | None = None,
    tick_size: float | None = None,
    value_area: float = 0.70,
    method: str = "cbot",
    n_workers: int = 2,
    fan_in: int = 4,
    storage_options: dict[str, str] | None = None,
) -> SessionProfiles:
    """One volume profile per session of ``symbol`` over ``[start, end)`` from the Delta table
    at ``uri``, and their summary, computed on a Dask cluster: equal to
    ``tradelab.analytics.session_profiles_from_trades(scan_trades(uri, symbol, start, end),
    session=session, start=start, end=end, symbol=symbol, ...)`` — every session's profile and
    the summary (open/high/low/close, POC, VAH, VAL, volumes, value-area migration).

    ``session``: ``"utc-day"``, a preset (``"asia"``, ``"london"``, ``"new-york"``) or UTC
    hours ``"HH:MM-HH:MM"`` (:func:`tradelab.analytics.parse_session`). ``row_size``,
    ``tick_size`` (default: inferred from the prices, as ``session_profiles_from_trades``
    does — :func:`tradelab.session_profiles` defaults to the exchange's tick instead: pass
    ``tick_size`` for the same answer), ``value_area``, ``method`` as in
    :func:`tradelab.volume_profile`, shared by every session. ``client``, ``n_workers``,
    ``fan_in``, ``storage_options`` as in :func:`volume_profile`.

    One task per Parquet file of the window (files whose times overlap go in one task) splits
    its trades by session into partial histograms; with a ``tick_size``, files outside every
    session are not read at all. Raises
    :class:`~tradelab.exceptions.InsufficientTradesError` when the window holds no trades,
    :class:`~tradelab.exceptions.InvalidTradesError` when no session in it does.
    """
    win = resolve(uri, symbol, start, end, storage_options)
    spec = parse_session(session)
    check_profile_args(row_size=row_size, tick_size=tick_size, value_area=value_area, method=method)
    _check_cluster_args(client, fan_in)
    windows = session_windows(spec, win.start_ms, win.end_ms)
    files = window_files(win)
    merged: SessionPartials = _on_cluster(
        client,
        n_workers,
        win,
        lambda c: (
            _session_partials(c, files, win, windows, fan_in, tick_size is None)
            if files.height
            else empty_session_partials()
        ),
    )
    if merged.trades == 0:
        raise _no_trades(win)
    return session_profiles_from_partials(
        merged,
        windows,
        session=spec,
        start_ms=win.start_ms,
        end_ms=win.end_ms,
        symbol=win.symbol,
        row_size=row_size,
        tick_size=tick_size,
        value_area=value_area,
        method=method,
    )


def _check_cluster_args(client: Any, fan_in: object) -> None:
    if isinstance(fan_in, bool) or not isinstance(fan_in, int) or fan_in < 2:
        raise InvalidParameterError(f"fan_in must be a whole number >= 2, got {fan_in!r}")
    dd = require("distributed")
    if client is not None and not isinstance(client, dd.Client):
        raise InvalidParameterError(
            f"client must be a distributed.Client (or None for a LocalCluster), got "
            f"{type(client).__name__}"
        )


def _on_cluster(client: Any, n_workers: int, win: Window, compute: Callable[[Any], Any]) -> Any:
    """``compute(client)`` on the given client, or on a ``LocalCluster`` started and closed
    for it; what the cluster fails to read becomes a one-line :class:`TableError`."""
    own = client is None
    if own:
        client = local_client(n_workers)
    try:
        return compute(client)
    except (InsufficientTradesError, InvalidParameterError):
        raise
    except Exception as exc:
        if isinstance(exc, TableError) or type(exc).__module__.startswith("tradelab"):
            raise
        raise TableError(f"the cluster could not read {win.uri}: {one_line(exc)}") from None
    finally:
        if own:
            cluster = client.cluster
            client.close()
            cluster.close()


def _no_trades(win: Window) -> InsufficientTradesError:
    return InsufficientTradesError(
        f"{win.symbol}: no trades in the table from {win.text().replace(' → ', ' to ')}; "
        f"{where_in_table(win.uri, win.symbol, storage_options=win.options)}",
        found=0,
        needed=1,
    )


def _window_counts(client: Any, files: Any, win: Window) -> list[int]:
    """How many of the window's trades each file holds: from the log for files inside the
    window, counted on the cluster (one small task each) for the files its edges cut."""
    paths = files["path"].to_list()
    inside = ((files["min_ms"] >= win.start_ms) & (files["max_ms"] < win.end_ms)).to_list()
    rows = files["rows"].to_list()
    cut = {
        i: client.submit(count_in_window, p, win.start_ms, win.end_ms, win.options)
        for i, (p, whole) in enumerate(zip(paths, inside, strict=True))
        if not whole
    }
    counted = dict(zip(cut, client.gather(list(cut.values())), strict=True))
    return [counted.get(i, rows[i]) for i in range(len(paths))]


def _partials(client: Any, files: Any, win: Window, fan_in: int) -> Partial:
    paths = files["path"].to_list()
    counts = _window_counts(client, files, win)
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


def time_groups(files: Any) -> list[list[int]]:
    """Indices of ``files`` (a :func:`~tradelab.scale.reading.window_files` frame) grouped so
    that the groups follow each other in time: files whose ``[min_ms, max_ms]`` overlap (or
    touch) share a group, read by one task (one group per hour file in a table tradelab
    wrote); groups in time order."""
    order = sorted(
        range(files.height),
        key=lambda i: (files["min_ms"][i], files["min_agg_id"][i]),
    )
    groups: list[list[int]] = []
    reach = None
    for i in order:
        lo, hi = int(files["min_ms"][i]), int(files["max_ms"][i])
        if groups and reach is not None and lo <= reach:
            groups[-1].append(i)
            reach = max(reach, hi)
        else:
            groups.append([i])
            reach = hi
    return groups


def _session_partials(
    client: Any,
    files: Any,
    win: Window,
    windows: list[tuple[Any, int, int]],
    fan_in: int,
    need_sample: bool,
) -> SessionPartials:
    paths = files["path"].to_list()
    lows, highs = files["min_ms"].to_list(), files["max_ms"].to_list()
    counts = _window_counts(client, files, win)
    total = sum(counts)
    if total == 0:
        return empty_session_partials()
    step = tick_sample_step(total)
    futures = []
    offset = 0
    for group in time_groups(files):
        n = sum(counts[i] for i in group)
        lo, hi = min(lows[i] for i in group), max(highs[i] for i in group)
        touched = [(s, e) for _, s, e in windows if s <= hi and e > lo]
        if n and (touched or need_sample):
            futures.append(
                client.submit(
                    session_partials_of_files,
                    [paths[i] for i in group],
                    win.start_ms,
                    win.end_ms,
                    [s for s, _ in touched],
                    [e for _, e in touched],
                    offset,
                    step,
                    win.options,
                )
            )
        offset += n
    if not futures:
        return SessionPartials((), total, ())
    result: SessionPartials = tree_reduce(client, futures, merge_session_partials, fan_in)
    return result
