"""``make demo`` / ``tradelab demo``: the main job end to end, offline.

1. Starts the Binance-compatible simulator on 127.0.0.1 (the shared recordings when present,
   synthetic trades otherwise), replaying faster than real time with a few faults switched on
   (a dropped connection, malformed frames, skipped ids) so the logs show recovery.
2. Runs the collector against it for ``--seconds`` (default 30) into a fresh store under
   ``demo-output/data``.
3. Stops the collector (flushing every trade in flight) and checks the store against what the
   simulator published: every agg id exactly once.
4. Prints each symbol's volume profile (POC, VAH, VAL, buy/sell) and liquidity vacuums, and
   saves the profile plot as a PNG whose path it prints.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
from pathlib import Path

from tradelab.analytics import VolumeProfile, vacuum_report
from tradelab.collector import Collector
from tradelab.exceptions import InsufficientTradesError, TradelabError
from tradelab.formatting import fixed_price
from tradelab.recordings import shared_data_dir
from tradelab.simulator import Faults, Simulator
from tradelab.store import TradeStore

__all__ = ["cmd_demo", "main", "register", "run_demo"]


def _print_profile(vp: VolumeProfile) -> None:
    d = vp.to_dict(rows=False)
    p = vp.price_decimals
    print(f"\n{vp.symbol}: volume profile of the last hour")
    print(f"  trades            {vp.trade_count:>14,}")
    print(f"  total volume      {vp.total_volume:>14,.5f}")
    buy = float(vp.rows["buy_volume"].sum())
    sell = float(vp.rows["sell_volume"].sum())
    print(f"  buy / sell        {buy:>14,.5f} / {sell:,.5f}  (delta {buy - sell:+,.5f})")
    print(f"  row size          {vp.row_size:>14,.{p}f}  ({vp.row_count} rows)")
    print(f"  POC               {vp.poc:>14,.{p}f}")
    print(f"  VAH               {vp.vah:>14,.{p}f}")
    print(f"  VAL               {vp.val:>14,.{p}f}")
    print(f"  value area covers {d['value_area_volume_pct']:>13.1f}% of the volume")


async def run_demo(
    seconds: float = 30.0, out_dir: Path = Path("demo-output"), speed: float = 20.0
) -> int:
    """Run the whole pipeline once; returns a process exit code (0 when the store is exact)."""
    data = out_dir / "data"
    if data.exists():
        shutil.rmtree(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = "recordings" if shared_data_dir() is not None else "synthetic"
    symbols = ("BTCUSDT", "ETHUSDT")
    faults = Faults(drop_every=max(seconds / 2.5, 5.0), malformed_rate=0.002, skip_rate=0.002)
    print(
        f"Simulator: {source} trades at {speed:g}x, faults: drops every "
        f"{faults.drop_every:g} s, malformed frames, skipped ids"
    )
    async with Simulator(symbols, source=source, speed=speed, faults=faults) as sim:
        with TradeStore(data) as store:
            collector = Collector(symbols, store=store, ws_url=sim.ws_url, rest_url=sim.rest_url)
            await collector.start()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + seconds
            while (left := deadline - loop.time()) > 0:
                await asyncio.sleep(min(5.0, left))
                st = collector.status()["symbols"]
                print(
                    "  collecting: "
                    + ", ".join(f"{s} {st[s]['trades_stored']:,} stored" for s in symbols),
                    flush=True,
                )
            await collector.stop()
            sim.set_faults(Faults())

            print("\nStored vs published (every agg id exactly once?)")
            exact = True
            for sym in symbols:
                published = set(sim.published(sym))
                stats = store.stats(sym)
                if stats.first_time is None or stats.last_time is None:
                    raise InsufficientTradesError(
                        f"{sym}: the collector stored no trades", found=0, needed=1
                    )
                end = stats.last_time + dt.timedelta(milliseconds=1)
                stored = store.trades(sym, stats.first_time, end)["agg_id"].to_list()
                ok = len(stored) == len(set(stored))
                first, last = stored[0], stored[-1]
                expected = {a for a in published if first <= a <= last}
                ok = ok and set(stored) == expected
                exact &= ok
                print(
                    f"  {sym}: {stats.trade_count:,} trades stored, ids {first}–{last}, "
                    f"{'exact' if ok else 'MISMATCH'}; gaps detected "
                    f"{collector.status()['symbols'][sym]['gaps_detected']}, backfilled "
                    f"{collector.status()['symbols'][sym]['gaps_backfilled']}"
                )

            for sym in symbols:
                report = vacuum_report(sym, 1, store=store)
                vp, vacuums = report.profile, report.vacuums
                _print_profile(vp)
                print(f"  liquidity vacuums: {len(vacuums)}")
                for v in vacuums[:5]:
                    p = vp.price_decimals
                    print(
                        f"    {fixed_price(v.price_low, p)}–{fixed_price(v.price_high, p)}: volume "
                        f"{v.deficit_pct:.0f}% under the median row -> {v.impact} moves"
                    )
                if vp.start is None or vp.end is None:  # get_volume_profile always sets both
                    raise TradelabError(f"the {sym} profile has no time window")
                trades = store.trades(sym, vp.start, vp.end)
                fig = vp.plot(trades=trades)
                png = (out_dir / f"profile-{sym}.png").resolve()
                fig.savefig(png, dpi=110, bbox_inches="tight")
                print(f"  plot saved: {png}")
    print(f"\nDone at {dt.datetime.now(dt.UTC):%H:%M:%S} UTC; store kept in {data.resolve()}")
    return 0 if exact else 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``tradelab demo [--seconds 30] [--speed 20] [--out demo-output]``."""
    parser = sub.add_parser(
        "demo",
        help="the main job end to end against the local simulator (what `make demo` runs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to collect")
    parser.add_argument("--speed", type=float, default=20.0, help="replay speed (x real time)")
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    parser.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo with the parsed arguments (logs at the level ``tradelab`` was given)."""
    return asyncio.run(run_demo(args.seconds, args.out, args.speed))


def main(argv: list[str] | None = None) -> int:
    """``tradelab demo`` as a function: ``main(["--seconds", "10"])``."""
    from tradelab.cli.main import main as cli_main

    return cli_main(["demo", *(argv or [])])
