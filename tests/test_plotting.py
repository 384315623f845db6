"""The plots: what was drawn (bars, lines, labels, title), not only that nothing raised."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from matplotlib.figure import Figure

from tradelab import plotting, recordings
from tradelab.analytics import liquidity_vacuums, volume_profile
from tradelab.exceptions import InvalidParameterError, InvalidTradesError

T0 = dt.datetime(2024, 8, 8, 23, 0, tzinfo=dt.UTC)


def trades_for(volumes, row_size=1.0, base=100.0, makers_share=0.25):
    """Per row i: one buy of 75% and one sell of 25% of volumes[i] at the row's low."""
    price, qty, maker, time = [], [], [], []
    for i, v in enumerate(volumes):
        if v:
            for q, m in ((v * (1 - makers_share), False), (v * makers_share, True)):
                price.append(base + i * row_size)
                qty.append(q)
                maker.append(m)
                time.append(T0 + dt.timedelta(seconds=len(time)))
    return pl.DataFrame(
        {
            "price": price,
            "qty": qty,
            "buyer_is_maker": maker,
            "time": pl.Series(time, dtype=pl.Datetime("ms", "UTC")),
        }
    )


VOLS = [4, 20, 0, 0, 12, 30, 16, 24, 8, 1]


@pytest.fixture
def profile():
    return volume_profile(
        trades_for(VOLS), row_size=1.0, symbol="BTCUSDT", start=T0, end=T0 + dt.timedelta(hours=1)
    )


def bars(ax, gid):
    (container,) = [c for c in ax.containers if c.patches and c.patches[0].get_gid() == gid]
    return container.patches


def by_gid(items, gid):
    return [a for a in items if a.get_gid() == gid]


def test_bars_are_the_rows_stacked_sell_then_buy(profile) -> None:
    fig = Figure()
    ax = fig.subplots()
    assert plotting.plot_profile(profile, ax=ax) is ax
    sells, buys = bars(ax, "sell"), bars(ax, "buy")
    assert len(sells) == len(buys) == len(VOLS) == profile.row_count
    for i, v in enumerate(VOLS):
        assert sells[i].get_y() == 100.0 + i
        assert sells[i].get_x() == 0
        assert sells[i].get_width() == pytest.approx(v * 0.25)
        assert buys[i].get_x() == pytest.approx(v * 0.25)  # stacked on the sell bar
        assert buys[i].get_width() == pytest.approx(v * 0.75)
        assert sells[i].get_height() == pytest.approx(0.92)
    # rows outside the value area are faded, inside in full colour
    inside = range(profile.va_low_index, profile.va_high_index + 1)
    for i, patch in enumerate(buys):
        assert patch.get_facecolor()[3] == (1.0 if i in inside else pytest.approx(0.35))


def test_poc_value_area_and_labels(profile) -> None:
    fig = Figure()
    ax = fig.subplots()
    profile.plot(ax=ax)  # VolumeProfile.plot delegates here
    (poc,) = by_gid(ax.lines, "POC")
    assert list(poc.get_ydata()) == [profile.poc, profile.poc] == [105.5, 105.5]
    (vah,) = by_gid(ax.lines, "VAH")
    (val,) = by_gid(ax.lines, "VAL")
    assert vah.get_ydata()[0] == profile.vah and val.get_ydata()[0] == profile.val
    (band,) = by_gid(ax.patches, "value_area")
    assert (band.get_bbox().y0, band.get_bbox().y1) == (profile.val, profile.vah) == (103, 108)
    texts = {t.get_gid(): t.get_text() for t in ax.texts if t.get_gid()}
    assert texts["label_POC"] == f"POC {profile.poc:,.1f}" == "POC 105.5"
    assert texts["label_VAH"] == f"VAH {profile.vah:,.0f}"
    assert texts["label_VAL"] == f"VAL {profile.val:,.0f}"
    title = ax.get_title(loc="left")
    assert title.startswith("BTCUSDT · ") and title.endswith(" · 16 trades")
    assert "2024-08-08 23:00 → 2024-08-09 00:00 UTC (1 h)" in title
    assert ax.get_xlabel() == "Volume (BTC) per 1 USDT row"
    assert ax.get_ylabel() == "Price (USDT)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:3] == ["taker buy", "taker sell", "POC"]
    assert any(t.startswith("value area (") for t in legend)


def test_vacuums_are_hatched(profile) -> None:
    vac = liquidity_vacuums(profile)
    assert [(v.price_low, v.price_high) for v in vac] == [(102.0, 104.0), (109.0, 110.0)]
    fig = Figure()
    ax = fig.subplots()
    plotting.plot_profile(profile, ax=ax)  # None: computed with the default rule
    zones = by_gid(ax.patches, "vacuum")
    assert len(zones) == 2 and all(z.get_hatch() == "///" for z in zones)
    spans = sorted((z.get_bbox().y0, z.get_bbox().y1) for z in zones)
    assert spans == [(102.0, 104.0), (109.0, 110.0)]
    ax2 = Figure().subplots()
    plotting.plot_profile(profile, ax=ax2, vacuums=False)
    assert by_gid(ax2.patches, "vacuum") == []
    ax3 = Figure().subplots()
    plotting.plot_profile(profile, ax=ax3, vacuums=vac[:1])
    assert len(by_gid(ax3.patches, "vacuum")) == 1


def test_new_figure_with_price_panel_shares_the_price_axis(profile) -> None:
    trades = trades_for(VOLS)
    fig = plotting.plot_profile(profile, trades=trades)
    assert isinstance(fig, Figure)
    price_ax, prof_ax = fig.axes
    assert price_ax.get_shared_y_axes().joined(price_ax, prof_ax)
    (line,) = by_gid(price_ax.lines, "price")
    assert set(np.asarray(line.get_ydata())) <= set(trades["price"].to_list())
    assert price_ax.get_xlabel() == "Time (UTC)" and price_ax.get_ylabel() == "Price (USDT)"
    assert by_gid(price_ax.lines, "POC")[0].get_ydata()[0] == profile.poc
    assert "BTCUSDT" in fig.get_suptitle() and "trades" in fig.get_suptitle()
    png = fig._repr_png_()  # shows itself in notebooks without pyplot
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_given_axes_with_trades_is_split(profile) -> None:
    fig = Figure()
    ax = fig.subplots()
    out = plotting.plot_profile(profile, ax=ax, trades=trades_for(VOLS))
    assert out is ax and len(fig.axes) == 2
    other = next(a for a in fig.axes if a is not ax)
    assert other.get_shared_y_axes().joined(other, ax)
    assert other.get_position().x1 <= ax.get_position().x0 + 1e-9


def test_plot_without_ax_returns_a_figure_and_price_plot_alone(profile) -> None:
    fig = profile.plot()
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    fig2 = plotting.plot_price(trades_for(VOLS), buckets=5)
    (line,) = by_gid(fig2.axes[0].lines, "price")
    assert len(line.get_ydata()) <= 5


def test_bucketing_keeps_lows_and_highs() -> None:
    n = 100_000
    rng = np.random.default_rng(1)
    prices = 100 + np.cumsum(rng.normal(0, 0.1, n))
    times = np.arange(n, dtype=np.int64) * 10
    t, lows, highs, last = plotting._bucketed(times, prices, 100)
    assert len(t) == 100
    assert lows.min() == prices.min() and highs.max() == prices.max()
    assert last[-1] == prices[-1]


def test_outlier_print_zooms_onto_the_body_and_says_so() -> None:
    df = trades_for([5] * 20 + [0] * 500 + [0.01], row_size=1.0)
    vp = volume_profile(df, row_size=1.0, symbol="BTCUSDT")
    ax = Figure().subplots()
    plotting.plot_profile(vp, ax=ax)
    lo, hi = ax.get_ylim()
    assert hi < 200 and lo < 100  # the body, not up to 620
    (note,) = [t for t in ax.texts if t.get_gid() == "outside_note"]
    assert note.get_text() == "outside the view: 2 trades up to 620"


def test_real_recording_plot() -> None:
    if recordings.shared_data_dir() is None:
        pytest.skip("the shared recordings are absent")
    df = recordings.load("spot_btcusdt_20240808-09.aggTrade.tsv.gz")["BTCUSDT"]
    vp = volume_profile(df, symbol="BTCUSDT", tick_size=0.01)
    fig = plotting.plot_profile(vp, trades=df)
    prof_ax = fig.axes[1]
    assert len(bars(prof_ax, "buy")) == vp.row_count
    widths = [
        p.get_width() + q.get_width()
        for p, q in zip(bars(prof_ax, "sell"), bars(prof_ax, "buy"), strict=True)
    ]
    assert widths == pytest.approx(vp.rows["volume"].to_list())
    assert "11,349 trades" in fig.get_suptitle()
    assert plotting.figure_png(fig)[:4] == b"\x89PNG"


def test_bad_input(profile) -> None:
    with pytest.raises(InvalidParameterError, match=r"must be a tradelab\.VolumeProfile"):
        plotting.plot_profile("BTCUSDT")
    with pytest.raises(InvalidParameterError, match=r"list of tradelab\.Vacuum"):
        plotting.plot_profile(profile, vacuums=[(1, 2)])
    with pytest.raises(InvalidTradesError, match="time and price"):
        plotting.plot_price(pl.DataFrame({"price": [1.0]}))
    with pytest.raises(InvalidTradesError, match="no trades"):
        plotting.plot_price(trades_for(VOLS).head(0))
    with pytest.raises(InvalidParameterError, match="buckets"):
        plotting.plot_price(trades_for(VOLS), buckets=0)


def test_matplotlib_is_not_imported_by_the_analytics() -> None:
    import subprocess
    import sys

    code = (
        "import sys, tradelab, tradelab.analytics.profile, tradelab.analytics.api; "
        "import tradelab.plotting; "
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_notebook_display_formats(profile) -> None:
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(profile.plot())
    assert data["image/png"][:4] == b"\x89PNG"
    data, _ = DisplayFormatter().format(profile)
    assert "<svg" in data["text/html"] and "POC" in data["text/html"]
    assert data["text/plain"].startswith("<VolumeProfile BTCUSDT")


def test_price_axis_labels_are_distinct_with_separators() -> None:
    narrow = volume_profile(trades_for([1.0]), row_size=1.0)  # one row: ticks 100.0, 100.2 ...
    wide = volume_profile(
        trades_for([1.0] * 3, row_size=2_500.0, base=60_000.0), row_size=2_500.0, symbol="BTCUSDT"
    )
    for vp in (narrow, wide):
        fig = vp.plot()
        plotting.figure_png(fig)  # draw, so the tick labels exist
        labels = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
        assert len(labels) >= 3 and len(set(labels)) == len(labels), labels
    assert any("," in lab for lab in labels) and not any("." in lab for lab in labels)
