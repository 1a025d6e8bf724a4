"""Benchmark of the cluster profile: the cost of the lake, and a backfill shared by workers.

Prints tables; it is not a test.

1. The cost of the lake: one day of the daily path (raw -> ... -> drift report, the same
   eleven assets as bench_pipeline.py) at 100k and 1M rows, on the embedded DuckDB file, on
   Delta tables on local disk, and on Delta tables and files on an S3 emulator (moto on
   127.0.0.1). Each backend gets the same landing files and a few days of history and a model;
   then the day is materialized `--repeat` times (the asset functions called directly, and one
   Dagster run), each time replacing the day's windows: the same work as a new day, measured
   the same way on all three. Each measurement runs in a fresh subprocess (bench_pipeline's
   worker), so its peak RSS is its own.
2. A backfill of `--backfill-days` days at `--backfill-rows` rows (raw to features) through
   the real services (Postgres instance, Redis, two Celery workers or one, Delta and files on
   the S3 emulator, `dagster dev` launching runs of 5 days): wall time from submission to the
   last run's end, with 1 worker and with 2.

Usage: python bench/bench_cluster.py [--rows 100000,1000000] [--history 3] [--repeat 3]
                                     [--backfill-days 30] [--backfill-rows 100000] [--skip-backfill]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_pipeline as bp  # noqa: E402

from ml_assets.devserver import DagsterDev  # noqa: E402
from ml_assets.localcluster import LocalCluster  # noqa: E402

WORK = bp.WORK / "cluster"
BACKENDS = ("duckdb", "delta-local", "delta-s3")
BEFORE_MODEL = [
    "raw_transactions",
    "raw_chargebacks",
    "cleaned_transactions",
    "ground_truth_labels",
    "weak_labels",
    "labels",
    "features",
]


def backend_env(backend: str, folder: Path, cluster: LocalCluster | None) -> dict:
    if backend == "duckdb":
        return {"ML_ASSETS_WAREHOUSE": "duckdb"}
    if backend == "delta-local":
        return {"ML_ASSETS_WAREHOUSE": "delta", "ML_ASSETS_LAKE_ROOT": str(folder / "lake")}
    prefix = f"s3://{cluster.bucket}/{folder.name}"
    return {
        **cluster.env(),
        "ML_ASSETS_WAREHOUSE": "delta",
        "ML_ASSETS_LAKE_ROOT": f"{prefix}/lake",
        "ML_ASSETS_FILES_ROOT": f"{prefix}/files",
    }


def lake_cost(rows: int, history: int, repeat: int, cluster: LocalCluster) -> list[dict]:
    landing = WORK / f"landing_r{rows}_h{history}"
    if not (landing / "transactions").exists():
        from ml_assets.example_data import generate

        generate(landing, start=bp.START, days=history + 1, rows_per_day=rows, maturity_days=2)
    day = (bp.START + timedelta(days=history)).isoformat()
    out = []
    for backend in BACKENDS:
        folder = WORK / f"r{rows}_{backend}"
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "dagster_home").mkdir(parents=True)
        shutil.copy(bp.ROOT / "data/dagster_home/dagster.yaml", folder / "dagster_home")
        spec = bp.bench_spec(folder, history + 1)
        env = backend_env(backend, folder, cluster)
        if backend == "delta-s3":
            cluster.upload(landing, f"{folder.name}/files/landing")
        else:
            shutil.copytree(landing, folder / "data" / "landing")
        t0 = time.perf_counter()
        bp.run_worker("prepare", folder, spec, day, env)
        print(
            f"  {rows:,} rows, {backend}: history and model in {time.perf_counter() - t0:.0f}s",
            flush=True,
        )
        direct = [bp.run_worker("direct", folder, spec, day, env) for _ in range(repeat)]
        run = [bp.run_worker("dagster", folder, spec, day, env) for _ in range(repeat)]
        stages = {k: statistics.median(d["stages"][k] for d in direct) for k in direct[0]["stages"]}
        out.append(
            {
                "rows": rows,
                "backend": backend,
                "stages": stages,
                "direct_s": statistics.median(d["seconds"] for d in direct),
                "dagster_s": statistics.median(r["seconds"] for r in run),
                "peak_mb": max(r["peak_rss_mb"] for r in direct + run),
            }
        )
        print(f"    {json.dumps(out[-1]['stages'])}", flush=True)
    return out


def backfill(days: int, rows: int, workers: int) -> dict:
    """Submit one backfill of `days` days through dagster dev; wall time until all runs ended."""
    landing = WORK / f"landing_backfill_{days}d_{rows}"
    if not (landing / "transactions").exists():
        from ml_assets.example_data import generate

        generate(landing, start=bp.START, days=days, rows_per_day=rows, maturity_days=2)
    folder = WORK / f"backfill_w{workers}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    spec = bp.bench_spec(folder, days)
    settings = {
        "ML_ASSETS_SPEC": str(spec),
        "ML_ASSETS_DATA_DIR": str(folder / "scratch"),
        "ML_ASSETS_PSEUDONYM_KEY": bp.KEY,
        "ML_ASSETS_PROFILE": "cluster",
        "ML_ASSETS_LAKE_ROOT": "s3://ml-assets/lake",
        "ML_ASSETS_FILES_ROOT": "s3://ml-assets/files",
        "ML_ASSETS_BACKFILL_DAYS_PER_RUN": "5",
    }
    cluster = LocalCluster(folder / "services", workers=workers, worker_env=settings)
    cluster.start()
    dev = None
    try:
        env = {**settings, **cluster.env()}
        cluster.upload(landing, "files/landing")
        dev = DagsterDev(cluster.state / "dagster_home", env, folder / "dagster_dev.log").start()
        dev.stop_running_sensors()  # the backfill alone
        names = [(bp.START + timedelta(days=i)).isoformat() for i in range(days)]
        t0 = time.perf_counter()
        backfill_id = dev.launch_backfill(BEFORE_MODEL, names)
        status = dev.wait_for(
            lambda: (s := dev.backfill_status(backfill_id)) != "REQUESTED" and s,
            3600,
            "the backfill's runs",
            every=1,
        )
        seconds = time.perf_counter() - t0
        import dagster as dg

        os.environ.update(env)
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            ok = sum(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        return {
            "workers": workers,
            "seconds": seconds,
            "runs": len(runs),
            "succeeded": ok,
            "status": status,
        }
    finally:
        if dev is not None:
            dev.stop()
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--history", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backfill-days", type=int, default=30)
    parser.add_argument("--backfill-rows", type=int, default=100_000)
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--skip-lake", action="store_true")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    if not args.skip_lake:
        s3 = LocalCluster(WORK / "s3", workers=0, services=("s3",))
        s3.start()
        try:
            lake = []
            for rows in (int(r) for r in args.rows.split(",")):
                lake += lake_cost(rows, args.history, args.repeat, s3)
        finally:
            s3.stop()
        results["lake"] = lake
        base = {r["rows"]: r for r in lake if r["backend"] == "duckdb"}
        print("\nOne day of the daily path (median of runs that replace the day; seconds)")
        print(
            bp.table(
                [
                    "rows",
                    "backend",
                    "raw",
                    "cleaned",
                    "features",
                    "all 11 direct",
                    "dagster run",
                    "vs duckdb",
                    "peak MB",
                ],
                [
                    [
                        f"{r['rows']:,}",
                        r["backend"],
                        f"{r['stages']['raw_transactions']:.2f}",
                        f"{r['stages']['cleaned_transactions']:.2f}",
                        f"{r['stages']['features']:.2f}",
                        f"{r['direct_s']:.2f}",
                        f"{r['dagster_s']:.2f}",
                        f"{r['dagster_s'] / base[r['rows']]['dagster_s']:.2f}x",
                        f"{r['peak_mb']:.0f}",
                    ]
                    for r in lake
                ],
            )
        )
    from ml_assets.localcluster import missing_programs

    if not args.skip_backfill and missing_programs():
        print(f"\nBackfill benchmark skipped: missing {'; '.join(missing_programs())}")
    elif not args.skip_backfill:
        runs = [backfill(args.backfill_days, args.backfill_rows, w) for w in (1, 2)]
        results["backfill"] = runs
        print(
            f"\nBackfill of {args.backfill_days} days x {args.backfill_rows:,} rows, raw to features"
        )
        print(
            bp.table(
                ["workers", "seconds", "runs", "succeeded", "speed-up"],
                [
                    [
                        r["workers"],
                        f"{r['seconds']:.0f}",
                        r["runs"],
                        r["succeeded"],
                        f"{runs[0]['seconds'] / r['seconds']:.2f}x",
                    ]
                    for r in runs
                ],
            )
        )
    bp.RESULTS.mkdir(exist_ok=True)
    (bp.RESULTS / "cluster.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
