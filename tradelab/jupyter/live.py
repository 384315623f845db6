"""A live view in the notebook: the profile plot and key figures, redrawn in place.

::

    h = tradelab.jupyter.watch("BTCUSDT", hours=1, every=5)   # or %tradelab watch BTCUSDT
    ...                                                        # keep working; it redraws
    h.stop()                                                   # or %tradelab watch --stop

:func:`watch` draws once (one output, created with ``display(..., display_id=True)``) and then,
every ``every`` seconds, reads the window again and replaces that output in place
(``DisplayHandle.update``). The loop is a task on the asyncio loop running in the calling
thread — in Jupyter the kernel's own loop, so cells keep running while it waits — and the
reading and drawing happen in a worker thread (``asyncio.to_thread``), so a redraw never holds
the kernel for the time a plot takes. Without a running loop (a script, a terminal IPython) the
view gets a loop of its own on a daemon thread.

Several views can run at once (:func:`watching` lists them); :meth:`Watch.stop` stops one,
:func:`stop_watching` all (or a symbol's). A view stops by itself when its process exits (an
:mod:`atexit` hook — a closed notebook's kernel shutting down). While the window holds too few
trades, the view shows the reason (how many, how long to wait) and keeps trying.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import html
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tradelab.analytics import get_volume_profile
from tradelab.config import validate_hours, validate_symbol
from tradelab.exceptions import InvalidParameterError, TradelabError
from tradelab.jupyter.figures import KeyFigures
from tradelab.store import open_store
from tradelab.timerange import parse_duration

__all__ = ["MAX_EVERY_S", "MIN_EVERY_S", "Watch", "stop_watching", "watch", "watching"]

MIN_EVERY_S = 1.0
MAX_EVERY_S = 3600.0

_lock = threading.Lock()
_running: list[Watch] = []


@dataclass(eq=False)
class Watch:
    """A running live view; :meth:`stop` ends it.

    ``redraws`` counts the times the output was replaced with a fresh plot, ``updates`` every
    replacement (a "too few trades" message included); ``last_error`` is the last message shown
    instead of a plot, ``None`` once a plot is shown.
    """

    symbol: str
    hours: float
    every: float
    data: Any = None
    redraws: int = 0
    updates: int = 0
    last_error: str | None = None
    started_at: float = field(default_factory=time.time)
    _handle: Any = field(default=None, repr=False)
    _task: Any = field(default=None, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _thread_loop: bool = field(default=False, repr=False)
    _stopped: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def running(self) -> bool:
        """True until :meth:`stop` (or the end of the process)."""
        return not self._stopped.is_set()

    def stop(self) -> None:
        """Stop redrawing (the last picture stays); safe to call twice, from any thread."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        with _lock:
            if self in _running:
                _running.remove(self)
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing runs
                loop.call_soon_threadsafe(task.cancel)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"Live view of {self.symbol}, last {self.hours:g} h, redrawn every {self.every:g} s "
            f"({state}; {self.redraws} redraw{'' if self.redraws == 1 else 's'}) — stop it with "
            "%tradelab watch --stop or .stop()"
        )

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    # -- drawing ----------------------------------------------------------------------------

    def render(self) -> tuple[dict[str, Any], bool]:
        """``(mime bundle, is_plot)``: the plot and key figures of the window now, or the
        reason there is none (too few trades, no store yet)."""
        try:
            vp = get_volume_profile(self.symbol, self.hours, data=self.data)
            trades = None
            if vp.start is not None and vp.end is not None:
                trades = open_store(self.data).trades(self.symbol, vp.start, vp.end)
            from tradelab.plotting import figure_png  # matplotlib only when drawing

            png = figure_png(vp.plot(trades=trades if trades is not None else None), dpi=90)
        except TradelabError as exc:
            return _message_bundle(self, str(exc)), False
        figures = KeyFigures.of_profile(vp, self.hours)
        stamp = f"updated {time.strftime('%H:%M:%S', time.gmtime())} UTC, every {self.every:g} s"
        b64 = base64.b64encode(png).decode("ascii")
        bundle = {
            "image/png": b64,
            "text/plain": f"{figures.to_text()}\n  ({stamp})",
            "text/html": (
                f"<div><img src='data:image/png;base64,{b64}' style='max-width:100%'/>"
                f"{figures._repr_html_()}<p style='color:#666'>{html.escape(stamp)}</p></div>"
            ),
        }
        return bundle, True

    def _publish(self, bundle: dict[str, Any], is_plot: bool) -> None:
        if self._handle is None:
            from IPython.display import display

            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)
            self.updates += 1
            self.redraws += int(is_plot)
        self.last_error = None if is_plot else bundle["text/plain"]

    async def _run(self) -> None:
        while not self._stopped.is_set():
            await asyncio.sleep(self.every)
            if self._stopped.is_set():
                break
            bundle, is_plot = await asyncio.to_thread(self.render)
            if self._stopped.is_set():
                break
            self._publish(bundle, is_plot)


def _message_bundle(view: Watch, message: str) -> dict[str, Any]:
    head = f"Live view of {view.symbol}, last {view.hours:g} h — waiting: {message}"
    return {
        "text/plain": head,
        "text/html": f"<p><b>Live view of {html.escape(view.symbol)}</b> — waiting: "
        f"{html.escape(message)}</p>",
    }


def _every(value: object) -> float:
    seconds = parse_duration(value, "every") / 1000
    if not MIN_EVERY_S <= seconds <= MAX_EVERY_S:
        raise InvalidParameterError(
            f"every={value!r} is not allowed: redraw every {MIN_EVERY_S:g} to {MAX_EVERY_S:g} "
            "seconds (a number of seconds or '5s', '1m')"
        )
    return seconds


def watch(
    symbol: str,
    hours: float = 1,
    every: float | str = 5,
    *,
    data: Any = None,
) -> Watch:
    """Show ``symbol``'s profile of the last ``hours`` (1–168) with its key figures, and redraw
    it in place every ``every`` seconds (1–3600, or ``"10s"``, ``"1m"``) until stopped.

    Returns the :class:`Watch` handle at once (after the first drawing); its ``stop()`` ends
    the view. ``data`` is the store directory (default: the configured one, the store a
    collector in this kernel writes).
    """
    sym = validate_symbol(symbol)
    h = float(validate_hours(hours))
    seconds = _every(every)
    view = Watch(sym, h, seconds, data)
    view._publish(*view.render())
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = asyncio.new_event_loop()
        view._thread_loop = True
    view._loop = loop
    with _lock:
        _running.append(view)
    if view._thread_loop:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            view._task = loop.create_task(view._run())
            ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(view._task)
            loop.close()

        threading.Thread(target=run, name=f"tradelab-watch-{sym}", daemon=True).start()
        ready.wait(5)
    else:
        view._task = loop.create_task(view._run())
    return view


def watching() -> list[Watch]:
    """The live views running in this process, oldest first."""
    with _lock:
        return list(_running)


def stop_watching(symbol: str | None = None) -> list[Watch]:
    """Stop every live view (or those of ``symbol``); returns the views stopped."""
    sym = None if symbol is None else validate_symbol(symbol)
    stopped = [v for v in watching() if sym is None or v.symbol == sym]
    for v in stopped:
        v.stop()
    return stopped


atexit.register(stop_watching)
