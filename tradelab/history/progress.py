"""Progress people can see: a :class:`HistoryProgress` stream drawn as a tqdm bar.

``tqdm.auto`` picks the bar: the notebook widget inside a Jupyter kernel (when ipywidgets is
installed; without it, the text bar), a text bar on a terminal. The bar counts hours of
missing history and shows trades stored and the ETA the
filler estimates; it closes itself on the final report.
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import IO, Any

from tradelab.history.engine import HistoryProgress

__all__ = ["ProgressBar"]


def _tqdm_class() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "IProgress not found": the text bar is fine
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

    return tqdm


class ProgressBar:
    """A callable for ``fill_window(progress=...)`` drawing one bar per symbol.

    ``file`` defaults to stderr (stdout stays for results); ``disable=None`` hides the bar when
    ``file`` is not a terminal (logs and pipes stay clean), ``False`` always draws it; the
    bar is redrawn at most every ``min_interval`` seconds (and on the final report).
    """

    def __init__(
        self,
        *,
        file: IO[str] | None = None,
        disable: bool | None = None,
        min_interval: float = 0.2,
    ) -> None:
        self.file = file if file is not None else sys.stderr
        self.disable = disable
        self.min_interval = min_interval
        self._drawn: dict[str, float] = {}
        self._bars: dict[str, Any] = {}
        self.last: dict[str, HistoryProgress] = {}

    def __call__(self, p: HistoryProgress) -> None:
        self.last[p.symbol] = p
        bar = self._bars.get(p.symbol)
        if bar is None:
            bar = self._bars[p.symbol] = _tqdm_class()(
                total=round(p.days_total * 24, 2),
                desc=p.symbol,
                unit="h",
                file=self.file,
                disable=self.disable,
                leave=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} h of history "
                "[{elapsed}{postfix}]",
            )
        now = time.monotonic()
        if not p.done and now - self._drawn.get(p.symbol, 0.0) < self.min_interval:
            return
        self._drawn[p.symbol] = now
        bar.n = round(min(p.days_done, p.days_total) * 24, 2)
        eta = "" if p.eta_s is None else f", ETA {p.eta_s:,.0f} s"
        bar.set_postfix_str(f"{p.trades:,} trades{eta}", refresh=False)
        bar.refresh()
        if p.done:
            bar.close()
            del self._bars[p.symbol]
