"""Benchmark: how long a dropped file takes to reach the drift report through the running daemon.

Prints a table; it is not a test. It seeds a history (every asset for the first days, as after
`make demo`), starts the real `dagster dev` (webserver + daemon) on a free port, then for each
sampled day drops that day's transactions and chargebacks files into the landing folders and
times the wait until the day's drift_report partition is materialized. Between samples it waits
for the daemon to go quiet, so each sample starts from rest.

What the figure includes: the file sensor's settle time and tick interval, run queueing and
launch (a run is a new process), ingestion, and the automation sensor's ticks for the
downstream hop (one run carries cleaned -> features -> predictions -> drift report).

Usage: python bench/bench_daemon.py [--rows 2000] [--samples 5] [--interval 2] [--settle 1]
Results are also written to bench/results/daemon_latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml_assets.devserver import DagsterDev  # noqa: E402
from ml_assets.example_data import shrunk_example_spec  # noqa: E402

START = date(2026, 9, 1)
SEED_DAYS = 14
KEY = "bench-key-0123456789abcdef"


def write_spec(folder: Path, days: int, settle: float) -> Path:
    path = shrunk_example_spec(
        folder / "spec.yaml",
        START,
        days,
        maturity_days=5,
        training={
            "train_days": 8,
            "gap_days": 1,
            "validation_days": 2,
            "test_days": 2,
            "seed": 7,
            "tuning_candidates": 2,
        },
        landing={"settle_seconds": settle},
        retraining={"cooldown_hours": 24},  # no retraining in the middle of a sample
        # two test days of 2,000 rows are too few for the fairness gate's intervals: the first
        # model was held back and predictions had no model (the bench measures latency)
        fairness={"max_demographic_parity_difference": 1.0, "max_equalized_odds_difference": 1.0},
    )
    raw = yaml.safe_load(path.read_text())
    raw["labels"]["landing"]["settle_seconds"] = settle
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000, help="rows per day (example default)")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--interval", type=int, default=2, help="sensor interval, seconds")
    parser.add_argument("--settle", type=float, default=1.0, help="landing settle_seconds")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_daemon_"))
    days = SEED_DAYS + args.samples
    spec = write_spec(work, days, args.settle)
    data, staging, home = work / "data", work / "staging", work / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "data/dagster_home/dagster.yaml", home)
    os.environ.update(
        {
            "ML_ASSETS_SPEC": str(spec),
            "ML_ASSETS_DATA_DIR": str(data),
            "ML_ASSETS_PSEUDONYM_KEY": KEY,
            "ML_ASSETS_SENSOR_INTERVAL_SECONDS": str(args.interval),
        }
    )
    import dagster as dg

    from ml_assets.definitions import build_definitions
    from ml_assets.demo import run_graph
    from ml_assets.example_data import generate

    generate(staging, start=START, days=days, rows_per_day=args.rows, maturity_days=5)
    seeded = [(START + timedelta(days=i)).isoformat() for i in range(SEED_DAYS)]
    for kind in ("transactions", "chargebacks"):
        (data / "landing" / kind).mkdir(parents=True)
        for day in seeded:
            shutil.copy(staging / kind / f"{kind}_{day}.csv", data / "landing" / kind)
    t0 = time.perf_counter()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run_graph(build_definitions(), instance, seeded[0], seeded[-1], log=lambda _: None)
    print(f"seeded {SEED_DAYS} days x {args.rows:,} rows in {time.perf_counter() - t0:.0f}s")

    rows = []
    with DagsterDev(home, {}, work / "dagster_dev.log") as dev:
        dev.wait_for(dev.quiet, 120, "the daemon to settle after start")
        time.sleep(2 * args.interval)
        for i in range(args.samples):
            day = (START + timedelta(days=SEED_DAYS + i)).isoformat()
            dropped = time.perf_counter()
            for kind in ("transactions", "chargebacks"):
                name = f"{kind}_{day}.csv"
                tmp = data / "landing" / kind / f".{name}.part"
                shutil.copy(staging / kind / name, tmp)
                tmp.rename(data / "landing" / kind / name)
            dev.wait_for(
                lambda day=day: day in dev.materialized_partitions("raw_transactions"),
                300,
                f"{day} in raw_transactions",
                every=0.2,
            )
            ingested = time.perf_counter() - dropped
            dev.wait_for(
                lambda day=day: day in dev.materialized_partitions("drift_report"),
                300,
                f"{day} in drift_report",
                every=0.2,
            )
            total = time.perf_counter() - dropped
            rows.append({"day": day, "to_raw_s": round(ingested, 1), "to_drift_s": round(total, 1)})
            print(
                f"  {day}: raw after {ingested:5.1f} s, drift report after {total:5.1f} s",
                flush=True,
            )
            dev.wait_for(dev.quiet, 300, "the daemon to go quiet")

    to_drift = [r["to_drift_s"] for r in rows]
    to_raw = [r["to_raw_s"] for r in rows]
    print()
    print(
        "| rows/day | sensor interval | settle | samples | drop->raw median | drop->drift median | min | max |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.rows:,} | {args.interval} s | {args.settle:g} s | {len(rows)} | {statistics.median(to_raw):.1f} s "
        f"| {statistics.median(to_drift):.1f} s | {min(to_drift):.1f} s | {max(to_drift):.1f} s |"
    )
    results = ROOT / "bench/results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "daemon_latest.json").write_text(
        json.dumps({"args": vars(args), "samples": rows}, indent=2)
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
