"""The process-wide collection session: ``tradelab.start()``, ``stop()``, ``status()``.

This is the Python API an analyst calls directly and that ``%tradelab`` dispatches to. One
process runs at most one collector; this module owns it.

Where the collector lives
-------------------------
``start()`` returns at once. The collector becomes a task on the asyncio loop that is running
in the calling thread — in Jupyter that is the kernel's own loop, so trades arrive while the
kernel is idle, between cells, with no extra thread. In a plain ``asyncio`` program it is that
program's loop. When no loop is running (a script, a terminal IPython, the magic tests), or
when asked with ``background=True``, the collector gets its own loop on a daemon thread.

A cell that blocks the kernel's loop (``time.sleep``, a long computation) stops the collector
from reading; the collector notices the missed pongs / dropped connection when the loop comes
back, reconnects and backfills the gap through REST, so nothing is lost. ``background=True``
avoids the pause altogether: the thread keeps reading while a cell blocks.

Stopping
--------
``stop()`` flushes every received trade to the store and stops. It blocks until that is done
whenever it can: when the collector lives on its own thread, or on a loop that is not running.
It cannot block on the loop it is running on (a plain notebook cell runs *inside* the kernel's
loop): there it schedules the stop and returns a :class:`Stopping` handle — ``await`` it, or
use ``await tradelab.jupyter.session.astop()``; the ``%tradelab stop`` magic does that for you.

Shutdown
--------
An :mod:`atexit` hook flushes every in-flight trade when the process exits — a kernel shutdown
or restart stops the kernel's loop and then runs the hooks; the hook drives the (stopped, not
closed) loop until the collector has flushed. No reliance on garbage collection.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import threading
import time
from collections.abc import Awaitable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradelab.collection import Status, where_collection_runs
from tradelab.collector import Collector
from tradelab.config import Settings, resolve_data_dir, validate_bool, validate_symbol
from tradelab.exceptions import CollectorStateError, InvalidParameterError
from tradelab.logs import get_logger
from tradelab.store import open_store

__all__ = [
    "SessionInfo",
    "Stopping",
    "astop",
    "current",
    "live_status",
    "start",
    "status",
    "stop",
    "wait_for_trades",
]

log = get_logger("tradelab.session")

#: How long stop() / the exit hook wait for the collector to flush before giving up (seconds).
STOP_TIMEOUT_S = 30.0


class _LoopThread:
    """An asyncio loop running forever on a daemon thread (the collector's own home)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="tradelab-collector", daemon=True)
        self.thread.start()
        ready.wait(10)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


@dataclass
class SessionInfo:
    """What ``start()`` started: returned at once, before the first trade arrives."""

    symbols: tuple[str, ...]
    data_dir: Path
    ws_url: str
    rest_url: str
    background: bool
    started_at: float = field(default_factory=time.time)

    def __repr__(self) -> str:
        where = "a background thread" if self.background else "this event loop"
        return (
            f"Collecting {', '.join(self.symbols)} from {self.ws_url} into {self.data_dir} "
            f"(on {where}); stop with tradelab.stop() or %tradelab stop"
        )


@dataclass
class _Active:
    info: SessionInfo
    collector: Any
    store: Any
    loop: asyncio.AbstractEventLoop
    runner: _LoopThread | None
    supervisor: Any = None  # asyncio.Task (same loop) or concurrent.futures.Future (thread)
    supervisor_task: asyncio.Task[None] | None = None  # the supervisor, on self.loop
    started: bool = False  # collector.start() returned
    start_done: asyncio.Future[None] | None = None  # on self.loop, set when start() ends
    start_error: BaseException | None = None
    stop_future: asyncio.Future[Any] | None = None  # on self.loop
    stopped: bool = False
    supervisor_flushing: bool = False
    summary: dict[str, Any] | None = None


_lock = threading.RLock()
_active: _Active | None = None
_exit_hook_installed = False


# --------------------------------------------------------------------------- start


def start(
    symbols: str | Iterable[str] | None = None,
    *,
    data: str | os.PathLike[str] | None = None,
    ws_url: str | None = None,
    rest_url: str | None = None,
    background: bool = False,
    history: float | None = None,
    archive_url: str | None = None,
    export_to: str | os.PathLike[str] | None = None,
    **collector_kwargs: Any,
) -> SessionInfo:
    """Start collecting ``symbols`` into the store at ``data``; returns at once.

    Arguments fall back to the environment (``TRADELAB_SYMBOLS``, ``TRADELAB_DATA``,
    ``TRADELAB_WS_URL``, ``TRADELAB_REST_URL``), then to the defaults (BTCUSDT and ETHUSDT,
    ``~/.tradelab/data``, Binance). ``history=H`` also fills the last H hours (1 to the
    retention) from Binance's daily archives (``archive_url``, default
    ``$TRADELAB_ARCHIVE_URL`` or data.binance.vision) and REST while collection goes live, so a
    24-hour profile works within minutes; ``status()`` shows its progress.
    ``export_to`` (a directory or an ``s3://``, ``gs://``, ``az://`` URL; default
    ``$TRADELAB_EXPORT_TO``, else none) exports each closed hour into that Delta table as it
    closes, as ``tradelab collect --export-to`` does (needs the ``scale`` extra).
    ``collector_kwargs`` go to :class:`tradelab.Collector`.
    An explicit ``data`` becomes this process's default store (``TRADELAB_DATA``), so
    ``tradelab.trades()`` and ``tradelab.get_volume_profile()`` read what is being collected.

    The collector runs as a task on the asyncio loop running in this thread (the Jupyter
    kernel's), or on its own daemon thread when no loop is running or ``background=True``.
    Raises :class:`CollectorStateError` if this process already collects, and the usual
    input errors for a bad symbol, URL or directory, before anything starts.
    """
    global _active
    with _lock:
        if _active is not None and not _active.stopped and _active.start_error is None:
            info = _active.info
            raise CollectorStateError(
                f"collection is already running ({', '.join(info.symbols)} into "
                f"{info.data_dir}); stop it first with tradelab.stop() or %tradelab stop"
            )
        validate_bool(background, "background")
        settings = Settings.resolve(
            data_dir=data, symbols=symbols, ws_url=ws_url, rest_url=rest_url
        )

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(settings.data_dir, write=True)
        if history is not None:
            collector_kwargs["history_hours"] = history
        if archive_url is not None:
            collector_kwargs["archive_url"] = archive_url
        if export_to is not None:
            collector_kwargs["export_to"] = export_to
        try:
            collector = Collector(
                settings.symbols,
                store=store,
                ws_url=settings.ws_url,
                rest_url=settings.rest_url,
                **collector_kwargs,
            )
        except TypeError as exc:
            store.close()
            raise InvalidParameterError(
                f"unknown collector option in {sorted(collector_kwargs)}: {exc}"
            ) from None
        except BaseException:
            store.close()  # a refused setting: release the writer lock, as stop() would
            raise
        if data is not None:
            # The collected store becomes this process's default, so tradelab.trades(),
            # get_volume_profile() etc. (and subprocesses such as `!tradelab status`) read it.
            os.environ["TRADELAB_DATA"] = str(settings.data_dir)
        if _active is not None and _active.runner is not None:
            _active.runner.close()  # the thread of a session that failed to start

        running = _running_loop()
        runner: _LoopThread | None = None
        if background or running is None:
            runner = _LoopThread()
            loop = runner.loop
        else:
            loop = running
        info = SessionInfo(
            symbols=settings.symbols,
            data_dir=settings.data_dir,
            ws_url=settings.ws_url,
            rest_url=settings.rest_url,
            background=runner is not None,
        )
        active = _Active(info=info, collector=collector, store=store, loop=loop, runner=runner)
        if runner is None:
            active.supervisor = loop.create_task(_supervise(active), name="tradelab-session")
        else:
            active.supervisor = asyncio.run_coroutine_threadsafe(_supervise(active), loop)
        _active = active
        _install_exit_hook()
        log.debug(
            "Started collecting %s into %s",
            ", ".join(info.symbols),
            info.data_dir,
            extra={
                "symbols": list(info.symbols),
                "store_path": str(info.data_dir),
                "ws_url": info.ws_url,
                "background": info.background,
            },
        )
        return info


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _supervise(active: _Active) -> None:
    """Start the collector, then keep it until stopped; if this task is cancelled (e.g.
    ``asyncio.run`` ending without ``astop()``), flush before letting go."""
    active.start_done = asyncio.get_running_loop().create_future()
    active.supervisor_task = asyncio.current_task()
    try:
        await active.collector.start()
    except asyncio.CancelledError:
        active.start_done.set_result(None)
        active.supervisor_flushing = True
        await _stop_collector(active)
        raise
    except Exception as exc:  # the collector could not start: keep the reason for status()
        active.start_error = exc
        active.start_done.set_result(None)
        log.error(
            "Collection could not start: %s",
            exc,
            extra={"symbols": list(active.info.symbols), "error": str(exc)},
        )
        return
    active.started = True
    active.start_done.set_result(None)
    try:
        await asyncio.get_running_loop().create_future()  # until cancelled by the stop path
    except asyncio.CancelledError:
        if active.stop_future is None:  # cancelled from outside: flush anyway
            active.supervisor_flushing = True
            await _stop_collector(active)
        raise


async def _stop_collector(active: _Active) -> dict[str, Any]:
    """Runs on the collector's loop: flush and stop once, however many callers ask."""
    if active.stop_future is None:
        active.stop_future = asyncio.ensure_future(_do_stop(active))
    return await asyncio.shield(active.stop_future)


async def _do_stop(active: _Active) -> dict[str, Any]:
    sup = active.supervisor_task
    try:
        if active.start_done is None:  # the supervisor has not run yet: let it begin
            await asyncio.sleep(0)
        if active.start_done is not None and not active.start_done.done():
            await active.start_done  # stopping while starting: let start() finish first
        if sup is not None and not sup.done() and not active.supervisor_flushing:
            sup.cancel()  # it only waits; a supervisor that flushes itself must not be cut short
        if active.start_error is None and getattr(active.collector, "running", True):
            await active.collector.stop()
    finally:
        active.stopped = True
        # Release the writer lock: another notebook or `tradelab collect` may now write here;
        # this process reads on through tradelab.open_store() / tradelab.trades().
        try:
            await asyncio.to_thread(active.store.close)
        except Exception as exc:
            log.warning("Could not close the store: %s", exc, extra={"error": str(exc)})
    summary = _collector_status(active.collector)
    active.summary = summary
    total = sum(int(s.get("trades_stored") or 0) for s in summary.get("symbols", {}).values())
    log.debug(
        "Stopped collecting %s: %d trades stored in this session",
        ", ".join(active.info.symbols),
        total,
        extra={"symbols": list(active.info.symbols), "trades": total},
    )
    return summary


# --------------------------------------------------------------------------- stop


class Stopping:
    """A stop in progress on the loop this code runs on; ``await`` it to wait for the flush.

    Returned by :func:`stop` when it is called from inside the collector's own running loop
    (a plain notebook cell): blocking there would block the very loop that must flush.
    """

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self._future = future

    def done(self) -> bool:
        """True once every received trade is in the store and the collector has stopped."""
        return self._future.done()

    def __await__(self) -> Generator[Any, None, dict[str, Any]]:
        return self._future.__await__()

    def __repr__(self) -> str:
        if self._future.done():
            return "Collection stopped; every received trade is stored."
        return (
            "Stopping collection: the flush finishes when this cell returns to the event loop "
            "(await this object, or use `await tradelab.jupyter.session.astop()`, to wait for it)."
        )


def stop(timeout: float = STOP_TIMEOUT_S) -> dict[str, Any] | Stopping:
    """Flush every received trade to the store, stop collecting and release the store's writer
    lock (so another process may collect into it; reading goes on through ``open_store``).

    Blocks until done and returns the final status, except when called from inside the
    collector's own running loop (a plain Jupyter cell): then it schedules the stop and returns
    a :class:`Stopping` handle to ``await`` (see the module docstring). Raises
    :class:`CollectorStateError` when nothing is collecting in this process.
    """
    active = _require_active()
    loop = active.loop
    if loop.is_closed():
        _finish(active)
        raise CollectorStateError("the collector's event loop is closed; nothing left to flush")
    if _running_loop() is loop:
        fut = loop.create_task(_stop_and_finish(active))
        return Stopping(fut)
    if active.runner is not None or loop.is_running():
        cf = asyncio.run_coroutine_threadsafe(_stop_and_finish(active), loop)
        try:
            return cf.result(timeout)
        except concurrent.futures.TimeoutError:
            raise CollectorStateError(
                f"the collector did not finish flushing within {timeout:g} s "
                "(is its event loop blocked?)"
            ) from None
    # The loop exists but nothing runs it (e.g. a kernel that is shutting down): drive it.
    return _drive(loop, _stop_and_finish(active), timeout)


async def astop() -> dict[str, Any]:
    """Awaitable ``stop()``: flush every received trade, stop, return the final status.

    Works from any loop: the collector's own (``await tradelab.jupyter.astop()`` in a notebook
    cell or an asyncio program) or another one while the collector runs on its thread.
    """
    active = _require_active()
    if _running_loop() is active.loop:
        return await _stop_and_finish(active)
    cf = asyncio.run_coroutine_threadsafe(_stop_and_finish(active), active.loop)
    return await asyncio.wrap_future(cf)


async def _stop_and_finish(active: _Active) -> dict[str, Any]:
    try:
        return await _stop_collector(active)
    finally:
        if active.runner is not None:
            # Let this coroutine return before the thread's loop is stopped and closed.
            threading.Thread(target=active.runner.close, daemon=True).start()


def _finish(active: _Active) -> None:
    active.stopped = True


def _require_active() -> _Active:
    with _lock:
        active = _active
    if active is None or active.stopped:
        raise CollectorStateError(
            "collection is not running in this process; start it with tradelab.start() "
            "or %tradelab start"
        )
    return active


def _drive(loop: asyncio.AbstractEventLoop, coro: Awaitable[Any], timeout: float) -> Any:
    """Run ``coro`` to completion on a loop that is not running, tolerating pending
    ``loop.stop()`` callbacks (a shutting-down kernel leaves some behind)."""
    fut = asyncio.ensure_future(asyncio.wait_for(coro, timeout), loop=loop)
    for _ in range(20):
        try:
            return loop.run_until_complete(fut)
        except RuntimeError as exc:
            if fut.done() or "stopped before Future completed" not in str(exc):
                raise
    raise CollectorStateError("could not drive the collector's event loop to flush")


# --------------------------------------------------------------------------- exit hook


def _install_exit_hook() -> None:
    """Flush at interpreter exit. The primary hook runs in ``threading``'s exit phase, before
    ``concurrent.futures`` refuses new work (the collector writes through ``asyncio.to_thread``;
    a plain :mod:`atexit` hook runs too late for that); :mod:`atexit` is the fallback."""
    global _exit_hook_installed
    if not _exit_hook_installed:
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            with contextlib.suppress(RuntimeError):
                register(_flush_at_exit)
        atexit.register(_flush_at_exit)
        _exit_hook_installed = True


def _flush_at_exit() -> None:
    """Process exit (kernel shutdown/restart included): flush what the collector holds."""
    with _lock:
        active = _active
    if active is None or active.stopped or active.loop.is_closed():
        return
    try:
        if active.loop.is_running():  # its own thread, or another thread's loop
            cf = asyncio.run_coroutine_threadsafe(_stop_collector(active), active.loop)
            cf.result(STOP_TIMEOUT_S)
        else:  # the kernel's loop, stopped by the shutdown request but not closed
            _drive(active.loop, _stop_collector(active), STOP_TIMEOUT_S)
        log.info("Flushed the collector at exit", extra={"symbols": list(active.info.symbols)})
    except BaseException as exc:  # never let an exit hook raise
        log.error("Could not flush the collector at exit: %s", exc, extra={"error": str(exc)})


# --------------------------------------------------------------------------- status


def current() -> SessionInfo | None:
    """The session collecting in this process, or ``None``."""
    with _lock:
        active = _active
    if active is None or active.stopped:
        return None
    return active.info


def _collector_status(collector: Any) -> dict[str, Any]:
    doc = collector.status()
    if isinstance(doc, dict) and "symbols" in doc and isinstance(doc["symbols"], dict):
        return dict(doc)
    return {"symbols": dict(doc or {})}


def live_status(data: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The live status of the collector this process's session runs, if it collects into the
    store at ``data`` (``None``: into any store); else ``None``.

    :func:`tradelab.collection.where_collection_runs` asks this first, so that this process's
    own collector is reported live rather than through the document it publishes.
    """
    with _lock:
        active = _active
    if (
        active is None
        or active.stopped
        or (data is not None and resolve_data_dir(data).resolve() != active.info.data_dir.resolve())
    ):
        return None
    live = _collector_status(active.collector)
    live.setdefault("running", active.start_error is None)
    live.setdefault("pid", os.getpid())
    live.setdefault("store_path", str(active.info.data_dir))
    live.setdefault("ws_url", active.info.ws_url)
    live.setdefault("rest_url", active.info.rest_url)
    live.setdefault("started_at", int(active.info.started_at * 1000))
    live["source"] = "this process"
    live["stale"] = False
    if active.start_error is not None:
        live["running"] = False
        live["start_error"] = str(active.start_error)
    return live


def status(data: str | os.PathLike[str] | None = None) -> Status:
    """The collector's status: this process's collector if it runs one, else the status the
    collector of another process (another notebook, ``tradelab collect``) publishes in the
    store at ``data`` (default: ``$TRADELAB_DATA`` or ``~/.tradelab/data``).

    Returns a :class:`~tradelab.collection.Status` (a dict) with ``source`` saying which; never
    raises because nothing runs — ``running`` is then False. This is
    :func:`tradelab.collection.where_collection_runs` for a store directory.
    """
    return where_collection_runs(data)


# --------------------------------------------------------------------------- waiting


async def wait_for_trades(
    symbol: str,
    count: int = 1000,
    *,
    timeout: float = 60.0,
    data: str | os.PathLike[str] | None = None,
    poll: float = 0.25,
) -> int:
    """Wait, without blocking the event loop, until the store holds ``count`` trades of
    ``symbol``; returns the count. ``await`` it in a notebook cell — ``time.sleep`` would stop
    the collector from reading. Raises :class:`CollectorStateError` after ``timeout`` seconds.
    """
    sym = validate_symbol(symbol)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidParameterError(f"count must be a positive whole number, got {count!r}")
    info = current()
    path = info.data_dir if info is not None and data is None else resolve_data_dir(data)
    deadline = time.monotonic() + timeout
    have = 0
    while True:
        if path.is_dir():
            store = open_store(path)
            with contextlib.suppress(AttributeError):
                store.refresh()
            have = store.stats(sym).trade_count if sym in store.symbols() else 0
            if have >= count:
                return have
        if time.monotonic() >= deadline:
            raise CollectorStateError(
                f"{sym}: only {have} of {count} trades stored after {timeout:g} s; "
                "is collection running? (%tradelab status)"
            )
        await asyncio.sleep(poll)
