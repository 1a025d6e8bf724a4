"""Benchmark of what a materialized day leaves in the Dagster instance (DAGSTER_HOME).

Prints tables; it is not a test. The example dataset at its own size (2,000 rows a day) gets a
long history in range runs (`--history`, default 358 days: a year with the measured days), a
model, then `--daily` days (default 7) each materialized in its own runs, as a daily schedule
or the file sensor would: the daily stage, then predictions, reports and the monitoring trend.
Measured per day, for the backfill (the range runs, per day of history) and per daily day: the
growth of DAGSTER_HOME (event log, run storage, compute logs), and for the daily days the event
log's bytes per event type and the time each day's runs took.

Usage: python bench/bench_event_log.py [--history 358] [--daily 7] [--rows-per-day 2000]
Results are also written to bench/results/event_log.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work" / "event_log"
RESULTS = ROOT / "bench" / "results"
START = date(2025, 1, 1)
KEY = "bench-key-0123456789abcdef"
DAILY_STAGES = [
    "group:ingest or group:clean or group:labels or group:features",
    "group:predict or group:monitor or group:annotation",
]


def folder_bytes(folder: Path) -> dict[str, int]:
    """Bytes under each top-level entry of `folder` (history/runs.db, storage/..., ...)."""
    sizes: dict[str, int] = {}
    for path in folder.rglob("*"):
        if path.is_file():
            top = path.relative_to(folder).parts
            part = "/".join(top[:2]) if top[0] == "history" else top[0]
            sizes[part] = sizes.get(part, 0) + path.stat().st_size
    return sizes


def event_bytes(home: Path) -> dict[str, int]:
    """Bytes of the serialized events per event type, in the per-run event logs and in the
    index the asset queries read (`index:` types), over the whole instance."""
    by_type: dict[str, int] = {}
    for db in sorted((home / "history" / "runs").glob("*.db")):
        prefix = "index: " if db.name == "index.db" else ""
        con = sqlite3.connect(db)
        try:
            rows = con.execute(
                "SELECT dagster_event_type, sum(length(event)) FROM event_logs GROUP BY 1"
            ).fetchall()
        except sqlite3.OperationalError:  # no event table in this file
            rows = []
        finally:
            con.close()
        for kind, size in rows:
            key = prefix + (kind or "log message")
            by_type[key] = by_type.get(key, 0) + size
    return by_type


def run(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{argv} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--history", type=int, default=358)
    parser.add_argument("--daily", type=int, default=7)
    parser.add_argument("--rows-per-day", type=int, default=2_000)
    parser.add_argument("--worker", nargs=2, metavar=("FIRST", "LAST"))
    parser.add_argument("--stages", default="all")
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker, args.stages)

    from ml_assets.example_data import generate, shrunk_example_spec

    days = args.history + args.daily
    folder = WORK / f"h{args.history}_d{args.daily}_r{args.rows_per_day}"
    shutil.rmtree(folder, ignore_errors=True)
    home = folder / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(ROOT / "data/dagster_home/dagster.yaml", home)
    spec = shrunk_example_spec(folder / "spec.yaml", START, days, maturity_days=7)
    t0 = time.perf_counter()
    generate(
        folder / "data" / "landing",
        start=START,
        days=days,
        rows_per_day=args.rows_per_day,
        maturity_days=7,
    )
    print(f"generated {days} days x {args.rows_per_day:,} rows in {time.perf_counter() - t0:.0f}s")
    env = {
        **os.environ,
        "ML_ASSETS_SPEC": str(spec),
        "ML_ASSETS_DATA_DIR": str(folder / "data"),
        "ML_ASSETS_PSEUDONYM_KEY": KEY,
        "DAGSTER_HOME": str(home),
    }
    me = [sys.executable, __file__, "--worker"]
    first = START.isoformat()
    last_history = (START + timedelta(days=args.history - 1)).isoformat()
    secs = run([*me, first, last_history], env)
    before = folder_bytes(home)
    backfill = sum(before.values()) / args.history
    print(
        f"history of {args.history} days and a model in {secs:.0f}s (range runs): "
        f"DAGSTER_HOME {sum(before.values()) / 2**20:.1f} MB, {backfill / 1024:.1f} KB per day"
    )

    types_before = event_bytes(home)
    per_day = []
    for i in range(args.daily):
        day = (START + timedelta(days=args.history + i)).isoformat()
        per_day.append(run([*me, day, day, "--stages", "daily"], env))
        print(f"  {day}: {per_day[-1]:.1f}s", flush=True)
    after = folder_bytes(home)
    types_after = event_bytes(home)

    growth = {k: (after.get(k, 0) - before.get(k, 0)) / args.daily for k in after}
    types = {
        k: (types_after.get(k, 0) - types_before.get(k, 0)) / args.daily
        for k in types_after
        if types_after.get(k, 0) != types_before.get(k, 0)
    }
    report = {
        "history_days": args.history,
        "daily_days": args.daily,
        "rows_per_day": args.rows_per_day,
        "backfill_bytes_per_day": backfill,
        "growth_bytes_per_day": growth,
        "event_bytes_per_day_by_type": types,
        "seconds_per_day": per_day,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "event_log.json").write_text(json.dumps(report, indent=2))
    total = sum(growth.values())
    print(
        f"\nBackfill: {backfill / 1024:.1f} KB of DAGSTER_HOME per day ({args.history} days in "
        "three range runs, the model's included)"
    )
    print(
        f"\nDAGSTER_HOME growth per daily day after {args.history} days of history "
        f"({args.rows_per_day:,} rows a day, mean of {args.daily} days): {total / 1024:.1f} KB"
    )
    print("| where | KB per day |\n|---|---|")
    for k, v in sorted(growth.items(), key=lambda kv: -kv[1]):
        if v:
            print(f"| {k} | {v / 1024:.1f} |")
    print("\nEvent log bytes per day by event type (the serialized events)")
    print("| event type | KB per day |\n|---|---|")
    for k, v in sorted(types.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {v / 1024:.1f} |")
    print(
        f"\nseconds per daily day (runs in one process): median {sorted(per_day)[len(per_day) // 2]:.1f}"
    )


def worker(first: str, last: str, stages: str) -> None:
    """The graph over first..last (history), or the daily stages of one day."""
    import warnings

    import dagster as dg
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from ml_assets.definitions import build_definitions
    from ml_assets.materialize import QUIET, run_graph

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        if stages == "all":
            results = run_graph(defs, instance, first, last, log=lambda *_: None)
        else:
            assets = [*defs.assets, *(defs.asset_checks or [])]
            results = [
                dg.materialize(
                    assets,
                    selection=dg.AssetSelection.from_string(selection),
                    instance=instance,
                    resources=defs.resources,
                    run_config=QUIET,
                    tags={
                        ASSET_PARTITION_RANGE_START_TAG: first,
                        ASSET_PARTITION_RANGE_END_TAG: last,
                    },
                )
                for selection in DAILY_STAGES
            ]
    if not all(r.success for r in results):
        raise SystemExit("a run failed")


if __name__ == "__main__":
    main()
