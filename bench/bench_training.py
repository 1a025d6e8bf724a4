"""Benchmark of training: time and peak memory of the model asset's steps at 1M and 5M training rows.

Each size runs in a fresh process (peak RSS = that process's VmHWM). The rows are synthetic but
shaped like the example's `training_set` (its feature columns and categories, ~1.5% positives
driven by a few of the inputs); the training slice is 80% of them, validation and test 10% each,
and the training slice is sampled down to `training.max_train_rows` (2M) as training_set does.
The steps are the model asset's own call, `transforms.train.train_challenger`, with the example
spec's settings (its step timings: hyperparameter search within `training.tuning_seconds`, the
fit, the baseline, test metrics with bootstrap intervals for both, permutation importance,
metrics per group with the fairness intervals), then saving the skops artifact.

    python bench/bench_training.py                 # 1M and 5M rows
    python bench/bench_training.py --rows 200000   # a quick run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic(rows: int, seed: int = 7):
    import numpy as np
    import polars as pl

    from ml_assets.spec import load_spec
    from ml_assets.transforms.features import feature_columns

    spec = load_spec()
    numeric, categorical = feature_columns(spec)
    rng = np.random.default_rng(seed)
    cols = {}
    for name in numeric:
        cols[name] = rng.gamma(2.0, 20.0, rows).astype(np.float64)
    for name in [*categorical, *spec.sensitive_columns]:
        col = spec.column(name) if name in {c.name for c in spec.columns} else None
        values = (col.categories if col and col.categories else ["a", "b", "c"]) + ["unknown"]
        cols[name] = pl.Series(rng.choice(values, rows)).cast(pl.String)
    frame = pl.DataFrame(cols)
    signal = (
        0.02 * frame[numeric[0]].to_numpy()
        - 0.01 * frame[numeric[-1]].to_numpy()
        + (frame[categorical[0]] == frame[categorical[0]][0]).to_numpy() * 1.5
        if categorical
        else 0.0
    )
    logit = -5.5 + signal + rng.normal(0, 1, rows)
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    split = np.where(
        np.arange(rows) < 0.8 * rows,
        "train",
        np.where(np.arange(rows) < 0.9 * rows, "validation", "test"),
    )
    return (
        spec,
        numeric,
        categorical,
        frame.with_columns(label=pl.Series(label), split=pl.Series(split)),
    )


def worker(rows: int) -> dict:
    import polars as pl

    from ml_assets.storage.registry import save_version
    from ml_assets.transforms import train as training

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    spec, numeric, categorical, frame = synthetic(rows)
    timings["synthesize"] = time.perf_counter() - t0
    cfg = spec.training
    # as training_set does: the training slice is sampled down to training.max_train_rows
    train_rows_offered = int((frame["split"] == "train").sum())
    if train_rows_offered > cfg.max_train_rows:
        train = frame.filter(pl.col("split") == "train").sample(cfg.max_train_rows, seed=cfg.seed)
        frame = pl.concat([train, frame.filter(pl.col("split") != "train")])
    # the model asset's own call
    outcome = training.train_challenger(
        frame, numeric, categorical, cfg, spec.fairness, spec.sensitive_columns, timings
    )
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        save_version(Path(folder), outcome.challenger, {"metrics": outcome.challenger_metrics})
        timings["save (skops)"] = time.perf_counter() - t0
    return {
        "rows": rows,
        "train_rows": len(outcome.train),
        "train_rows_offered": train_rows_offered,
        "trials": len(outcome.trials),
        "pr_auc": outcome.candidate_metrics["pr_auc"],
        "timings": timings,
        "seconds": sum(timings.values()) - timings["synthesize"],
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="1000000,5000000")
    parser.add_argument("--worker", type=int)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    results = []
    for rows in [int(r) for r in args.rows.split(",")]:
        out = subprocess.run(
            [sys.executable, __file__, "--worker", str(rows)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if out.returncode:
            print(out.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"worker for {rows:,} rows failed")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  {rows:,} rows done in {results[-1]['seconds']:.0f} s", flush=True)
    steps = list(results[0]["timings"])
    print("\nTraining, one process per size (seconds per step; peak RSS of the process)")
    print("| step | " + " | ".join(f"{r['rows']:,} rows" for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for step in steps:
        print(f"| {step} | " + " | ".join(f"{r['timings'][step]:.1f}" for r in results) + " |")
    print(
        "| total (without synthesize) | "
        + " | ".join(f"{r['seconds']:.1f}" for r in results)
        + " |"
    )
    print(
        "| training rows (after max_train_rows) | "
        + " | ".join(f"{r['train_rows']:,}" for r in results)
        + " |"
    )
    print("| hyperparameter trials | " + " | ".join(str(r["trials"]) for r in results) + " |")
    print("| peak RSS MB | " + " | ".join(f"{r['peak_rss_mb']:.0f}" for r in results) + " |")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "training.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
