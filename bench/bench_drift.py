"""Benchmark of the drift report: one day of 100k and of 1M rows x 30 columns against a training
reference, our statistics beside Evidently's data-drift preset on the same data.

The columns: 20 numeric (log-normal, normal, uniform, counts) and 10 categorical (4 to 40
categories). The day plants five drifts (three numeric columns scaled by 1.3 or shifted by
half a standard deviation, two categorical mixes changed), one shift too small to matter
(0.05 standard deviations) and one new category in a column otherwise stable. The reference has
as many rows as the day.

Timed for ours: building the reference profile (done once, when the model is trained), reading
the day's 30 columns from DuckDB into polars (what the asset does), and `drift_for_day` (best
of three). Evidently 0.7.23 runs in its own virtualenv (bench/work/evidently-venv, made on first
use; it needs pandas < 3) through bench/evidently_drift.py, so it never enters the project's
dependencies; its time is its `Report.run` + `dict()` on pandas frames already in memory.
The verdicts are compared per column and for the day (Evidently's share rule, 0.5, is also ours
with `weight_by_importance: false`).

    python bench/bench_drift.py                     # 100k and 1M rows, with Evidently
    python bench/bench_drift.py --rows 100000 --no-evidently
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
EVIDENTLY_VENV = WORK / "evidently-venv"
EVIDENTLY_PINS = ["evidently==0.7.23", "pandas<3", "pyarrow"]
PLANTED = {"num_0", "num_1", "num_2", "cat_0", "cat_1"}


def synthetic(rows: int, seed: int, drifted: bool) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    columns = {}
    for i in range(20):
        kind = i % 4
        if kind == 0:
            values = rng.lognormal(3, 1, rows)
        elif kind == 1:
            values = rng.normal(40, 12, rows)
        elif kind == 2:
            values = rng.uniform(0, 1, rows)
        else:
            values = rng.poisson(30, rows).astype(float)
        if drifted and i in (0, 1):
            values = values * 1.3 if kind == 0 else values + 6  # x1.3 / half a std
        if drifted and i == 2:
            values = values + 0.15  # half the uniform's std (0.29)
        if drifted and i == 5:
            values = values + 0.6  # 0.05 std: too small to matter
        values[rng.random(rows) < 0.01] = np.nan
        columns[f"num_{i}"] = values
    for i in range(10):
        k = 4 + 4 * i
        names = np.array([f"c{j:02d}" for j in range(k)])
        mix = np.linspace(1, 3, k)
        if drifted and i in (0, 1):
            mix = mix[::-1] ** 2
        values = names[rng.choice(k, rows, p=mix / mix.sum())]
        if drifted and i == 9:
            values[rng.random(rows) < 0.003] = "brand_new"
        columns[f"cat_{i}"] = values
    return pl.DataFrame(columns)


def ensure_evidently() -> Path:
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        print(f"making {EVIDENTLY_VENV} with {' '.join(EVIDENTLY_PINS)} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *EVIDENTLY_PINS], check=True)
    return python


def run_evidently(reference: pl.DataFrame, current: pl.DataFrame) -> dict:
    python = ensure_evidently()
    ref_path, cur_path = WORK / "drift_reference.parquet", WORK / "drift_current.parquet"
    reference.write_parquet(ref_path)
    current.write_parquet(cur_path)
    out = subprocess.run(
        [str(python), str(ROOT / "bench" / "evidently_drift.py"), str(ref_path), str(cur_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(rows: int, evidently: bool) -> dict:
    from ml_assets.spec import Drift
    from ml_assets.transforms.drift import categorical_profile, drift_for_day, numeric_profile

    reference, current = synthetic(rows, 1, False), synthetic(rows, 2, True)
    started = time.perf_counter()
    profile = {
        c: numeric_profile(reference[c].to_numpy(), seed=0)
        if c.startswith("num")
        else categorical_profile(reference[c])
        for c in reference.columns
    }
    profile_s = time.perf_counter() - started

    db = WORK / "drift_bench.duckdb"
    db.unlink(missing_ok=True)
    with duckdb.connect(str(db)) as conn:
        conn.register("incoming", current.to_arrow())
        conn.execute("CREATE TABLE day AS SELECT * FROM incoming")
    started = time.perf_counter()
    with duckdb.connect(str(db), read_only=True) as conn:
        read = conn.sql("SELECT * FROM day").pl()
    read_s = time.perf_counter() - started
    db.unlink()

    cfg = Drift(weight_by_importance=False)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        table, verdict = drift_for_day(read, profile, cfg)
        times.append(time.perf_counter() - started)
    ours = dict(zip(table["column"], table["drifted"], strict=True))
    result = {
        "rows": rows,
        "columns": len(profile),
        "profile_s": profile_s,
        "read_s": read_s,
        "drift_s": min(times),
        "drift_median_s": sorted(times)[1],
        "ours_flagged": sorted(c for c, d in ours.items() if d),
        "ours_share": verdict["drifted_share"],
        "ours_day_drifted": verdict["dataset_drifted"],
    }
    if evidently:
        theirs = run_evidently(reference, current)
        flagged = {c for c, v in theirs["columns"].items() if v["drifted"]}
        result |= {
            "evidently_s": theirs["seconds"],
            "evidently_flagged": sorted(flagged),
            "evidently_share": theirs["drifted_share"],
            "evidently_day_drifted": theirs["drifted_share"] >= 0.5,
            "columns_agreeing": sum((ours[c]) == (c in flagged) for c in ours),
            "evidently_methods": sorted({v["method"] for v in theirs["columns"].values()}),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--no-evidently", action="store_true", help="time ours only")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    results = [bench(rows, not args.no_evidently) for rows in args.rows]
    header = f"{'rows':>9} {'cols':>4} {'profile s':>9} {'read s':>7} {'drift s':>7} {'Evidently s':>11} {'agree':>6}  flagged (ours | Evidently)"
    print(header)
    for r in results:
        print(
            f"{r['rows']:>9,} {r['columns']:>4} {r['profile_s']:>9.2f} {r['read_s']:>7.2f} {r['drift_s']:>7.2f} "
            f"{r.get('evidently_s', float('nan')):>11.2f} {r.get('columns_agreeing', '-'):>3}/{r['columns']:<2}  "
            f"{','.join(r['ours_flagged'])} | {','.join(r.get('evidently_flagged', []))}"
        )
        print(
            f"{'':>9} day drifted: ours {r['ours_day_drifted']} (share {r['ours_share']:.2f}), "
            f"Evidently {r.get('evidently_day_drifted', '-')} (share {r.get('evidently_share', float('nan')):.2f}); "
            f"planted: {','.join(sorted(PLANTED))}"
        )
    out = ROOT / "bench" / "results" / "drift.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
