"""Benchmark of one big day (default 5M rows) through the daily path: peak memory and time.

Prints a table; it is not a test. The example generator writes `--history` earlier days and the
measured day at `--rows` rows each; the earlier days go through ingest, cleaning, labels and
features one day per run (a range run would hold them all at once); the model is copied from a
small prepared state (`bench_pipeline.py` prepares one at 100k rows a day; training at this size
is `bench_training.py`'s subject). Then the measured day's eleven steps run:

- each step alone in a fresh process (`direct`: the asset function called with its resources),
  its time and its process's peak RSS (VmHWM), so the table says which step needs the memory;
- all of them as one Dagster run (in-process executor), the run's time and peak RSS.

Usage: python bench/bench_big_day.py [--rows 5000000] [--history 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline import (  # noqa: E402
    DAILY,
    WORK,
    bench_spec,
    env_for,
    first_day,
    peak_rss_mb,
    table,
)

MODEL_FROM = WORK / "r100000_h7" / "data" / "models"
# with two earlier days no label has matured: the weak labels' class balance is given instead
CLASS_BALANCE = 0.015


def run(args: list[str], env: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def worker(what: str, day: str) -> dict:
    import dagster as dg

    from ml_assets.definitions import build_definitions

    defs = build_definitions()
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    t0 = time.perf_counter()
    if what in ("history", "run"):
        selection = (
            "group:ingest or group:clean or group:labels or group:features"
            if what == "history"
            else " or ".join(f"key:{k}" for k in DAILY)
        )
        with dg.DagsterInstance.get() as instance:
            result = dg.materialize(
                [*defs.assets],
                selection=selection,
                instance=instance,
                resources=defs.resources,
                partition_key=day,
                run_config=quiet,
            )
            assert result.success
    else:
        asset = defs.resolve_assets_def(what)
        fn = asset.op.compute_fn.decorated_fn
        params = [p for p in fn.__code__.co_varnames[: fn.__code__.co_argcount] if p != "context"]
        kwargs = {p: defs.resources[p] for p in params if p in defs.resources}
        asset(dg.build_asset_context(partition_key=day), **kwargs)
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--history", type=int, default=2)
    parser.add_argument("--model-from", type=Path, default=MODEL_FROM)
    parser.add_argument("--worker", nargs=2)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    if not args.model_from.exists():
        raise SystemExit(
            f"no model in {args.model_from}: run bench/bench_pipeline.py --rows 100000 first"
        )
    import yaml

    from ml_assets.example_data import generate

    folder = WORK / f"big_r{args.rows}_h{args.history}"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "dagster_home").mkdir(parents=True)
    days = args.history + 1
    spec = bench_spec(folder, days)
    first = first_day(days)
    raw = yaml.safe_load(spec.read_text())
    raw["weak_labels"]["class_balance"] = CLASS_BALANCE
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = env_for(folder, spec)
    t0 = time.perf_counter()
    generate(
        folder / "data" / "landing", start=first, days=days, rows_per_day=args.rows, maturity_days=2
    )
    print(
        f"generated {days} days x {args.rows:,} rows in {time.perf_counter() - t0:.0f}s", flush=True
    )
    for i in range(args.history):
        day = (first + timedelta(days=i)).isoformat()
        out = run(["--worker", "history", day], env)
        print(
            f"  history {day}: {out['seconds']:.0f}s, peak {out['peak_rss_mb']:.0f} MB", flush=True
        )
    shutil.copytree(args.model_from, folder / "data" / "models")
    day = (first + timedelta(days=args.history)).isoformat()
    state = folder.parent / (folder.name + "_state")
    shutil.rmtree(state, ignore_errors=True)
    shutil.copytree(folder, state)  # each measurement starts from the same tables
    rows = []
    for key in DAILY:
        out = run(["--worker", key, day], env)
        rows.append([key, f"{out['seconds']:.1f}", f"{out['peak_rss_mb']:.0f}"])
        print(f"  {key}: {out['seconds']:.1f}s, peak {out['peak_rss_mb']:.0f} MB", flush=True)
    shutil.rmtree(folder)
    shutil.copytree(state, folder)
    whole = run(["--worker", "run", day], env)
    rows.append(
        ["all eleven, one Dagster run", f"{whole['seconds']:.1f}", f"{whole['peak_rss_mb']:.0f}"]
    )
    print(
        f"\nOne day of {args.rows:,} rows after {args.history} days of history "
        "(each step in its own process, then one run)\n"
        + table(["step", "seconds", "peak RSS MB"], rows)
    )


if __name__ == "__main__":
    main()
