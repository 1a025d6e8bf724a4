"""Benchmark of the drift report: one day of 100k and of 1M rows x 30 columns against a training
reference, our statistics beside Evidently's data-drift preset on the same data.

The columns: 20 numeric (log-normal, normal, uniform, counts) and 10 categorical (4 to 40
categories). Two days per size: a light one plants five drifts (three numeric columns scaled by
1.3 or shifted by half a standard deviation, two categorical mixes reversed), a heavy one
sixteen (11 numeric, 5 categorical: more than half, so the day drifts); both carry a shift too
small to matter (0.05 standard deviations) and a new category at 0.3% in a stable column. The
reference has as many rows as the day.

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
# the columns each day shifts: a light day (no drift for the day) and a heavy one
SCENARIOS = {
    "light": {"num_0", "num_1", "num_2", "cat_0", "cat_1"},
    "heavy": {*(f"num_{i}" for i in range(11)), *(f"cat_{i}" for i in range(5))},
}


def synthetic(
    rows: int, seed: int, shifted: frozenset[str] | set[str] = frozenset()
) -> pl.DataFrame:
    """The reference (seed 1) or a day: 20 numeric and 10 categorical columns, the `shifted`
    ones drifted; a day also carries a tiny shift (num_5, unless shifted) and a new category."""
    rng = np.random.default_rng(seed)
    day = seed != 1
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
        name = f"num_{i}"
        if name in shifted:
            # x1.3 for the log-normal ones, half a standard deviation for the others
            values = values * 1.3 if kind == 0 else values + {1: 6.0, 2: 0.15, 3: 2.75}[kind]
        elif day and i == 5:
            values = values + 0.6  # 0.05 standard deviations: too small to matter
        values[rng.random(rows) < 0.01] = np.nan
        columns[name] = values
    for i in range(10):
        k = 4 + 4 * i
        names = np.array([f"c{j:02d}" for j in range(k)])
        mix = np.linspace(1, 3, k)
        if f"cat_{i}" in shifted:
            mix = mix[::-1] ** 2
        values = names[rng.choice(k, rows, p=mix / mix.sum())]
        if day and i == 9:
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


def bench(rows: int, scenario: str, evidently: bool) -> dict:
    from ml_assets.spec import Drift
    from ml_assets.transforms.drift import categorical_profile, drift_for_day, numeric_profile

    planted = SCENARIOS[scenario]
    reference, current = synthetic(rows, 1), synthetic(rows, 2, planted)
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

    # every column counts once, as in Evidently's preset (no model, no importance here)
    cfg = Drift(weight_by_importance=False)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        table, verdict = drift_for_day(read, profile, cfg)
        times.append(time.perf_counter() - started)
    ours = dict(zip(table["column"], table["drifted"], strict=True))
    flagged = {c for c, d in ours.items() if d}
    result = {
        "rows": rows,
        "scenario": scenario,
        "columns": len(profile),
        "planted": sorted(planted),
        "profile_s": profile_s,
        "read_s": read_s,
        "drift_s": min(times),
        "drift_median_s": sorted(times)[1],
        "ours_flagged": sorted(flagged),
        "ours_precision": len(flagged & planted) / max(1, len(flagged)),
        "ours_recall": len(flagged & planted) / len(planted),
        "ours_share": verdict["drifted_share"],
        "ours_day_drifted": verdict["dataset_drifted"],
    }
    if evidently:
        theirs = run_evidently(reference, current)
        their_flags = {c for c, v in theirs["columns"].items() if v["drifted"]}
        result |= {
            "evidently_s": theirs["seconds"],
            "evidently_flagged": sorted(their_flags),
            "evidently_share": theirs["drifted_share"],
            "evidently_day_drifted": theirs["drifted_share"] >= 0.5,
            "columns_agreeing": sum(ours[c] == (c in their_flags) for c in ours),
            "evidently_methods": sorted({v["method"] for v in theirs["columns"].values()}),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--no-evidently", action="store_true", help="time ours only")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    results = [
        bench(rows, scenario, not args.no_evidently) for rows in args.rows for scenario in SCENARIOS
    ]
    print(
        "| rows | day | columns | reference profile s | DuckDB read s | drift statistics s (best of 3) "
        "| Evidently s | column verdicts agreeing | ours precision / recall | day drifted: ours (share) "
        "| Evidently (share) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        evidently_share = r.get("evidently_share")
        print(
            f"| {r['rows']:,} | {r['scenario']} | {r['columns']} | {r['profile_s']:.2f} | {r['read_s']:.2f} "
            f"| {r['drift_s']:.2f} | {r.get('evidently_s', float('nan')):.1f} "
            f"| {r.get('columns_agreeing', '-')}/{r['columns']} "
            f"| {r['ours_precision']:.2f} / {r['ours_recall']:.2f} "
            f"| {r['ours_day_drifted']} ({r['ours_share']:.2f}) "
            f"| {r.get('evidently_day_drifted', '-')} ({evidently_share if evidently_share is None else f'{evidently_share:.2f}'}) |"
        )
    for r in results:
        if r.get("evidently_flagged") is not None and r["evidently_flagged"] != r["ours_flagged"]:
            print(
                f"{r['rows']:,} {r['scenario']}: ours {r['ours_flagged']}, Evidently {r['evidently_flagged']}"
            )
    out = ROOT / "bench" / "results" / "drift.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
