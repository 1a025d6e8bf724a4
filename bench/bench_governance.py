"""Benchmark of governance: erasure of one person, backup and restore, on a materialized graph.

Prints a table; it is not a test. The data folder is built once per size under bench/work/
(generated landing files, the whole graph materialized as `make demo` does) and copied before each
destructive step, so every figure starts from the same state.

    python bench/bench_governance.py                                  # the 60-day example
    python bench/bench_governance.py --days 8 --rows-per-day 1000000  # 1M rows a day

Each step runs once (an erasure cannot run twice on the same person): trust orders of magnitude
and ratios, not the last digit.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import yaml

from ml_assets.example_data import shrunk_example_spec

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
START = date(2026, 9, 1)
KEY = "bench-key-0123456789abcdef"


def spec_for(folder: Path, days: int) -> Path:
    if days >= 60:
        path = folder / "spec.yaml"
        path.write_text((ROOT / "ml_assets/specs/transactions.yaml").read_text())
        return path
    # a short range: short label maturity and windows so a model can be trained
    training = yaml.safe_load((ROOT / "ml_assets/specs/transactions.yaml").read_text())["training"]
    training.update(train_days=3, gap_days=0, validation_days=1, test_days=1, tuning_candidates=1)
    return shrunk_example_spec(folder / "spec.yaml", START, days, 2, training=training)


def build(days: int, rows: int) -> Path:
    """A data folder and instance with the whole graph materialized (cached under bench/work)."""
    base = WORK / f"governance_{days}d_{rows}r"
    if (base / "ready").exists():
        return base
    shutil.rmtree(base, ignore_errors=True)
    (base / "home").mkdir(parents=True)
    shutil.copy(ROOT / "data/dagster_home/dagster.yaml", base / "home")
    from ml_assets.example_data import generate

    maturity = 14 if days >= 60 else 3
    generate(
        base / "data/landing", start=START, days=days, rows_per_day=rows, maturity_days=maturity
    )
    env = environment(base)
    code = (
        "import dagster as dg\n"
        "from ml_assets.definitions import build_definitions\n"
        "from ml_assets.demo import run_graph\n"
        "defs = build_definitions()\n"
        "with dg.DagsterInstance.get() as i:\n"
        f"    r = run_graph(defs, i, '{START}', '{START + timedelta(days=days - 1)}', log=print)\n"
        "    assert all(x.success for x in r)\n"
    )
    run([sys.executable, "-c", code], env)
    (base / "ready").touch()
    return base


def environment(base: Path) -> dict:
    return {
        **os.environ,
        "ML_ASSETS_SPEC": str(spec_for(base, int(base.name.split("_")[1][:-1]))),
        "ML_ASSETS_DATA_DIR": str(base / "data"),
        "DAGSTER_HOME": str(base / "home"),
        "ML_ASSETS_PSEUDONYM_KEY": KEY,
    }


def run(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess = __import__("subprocess")
    subprocess.run(command, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def a_person(landing: Path) -> str:
    with open(sorted((landing / "chargebacks").glob("*.csv"))[-1], encoding="utf-8") as f:
        charged = {r["transaction_id"] for r in csv.DictReader(f)}
    for path in sorted((landing / "transactions").glob("*.csv")):
        with open(path, encoding="utf-8") as f:
            for r in csv.DictReader(f):
                if r["transaction_id"] in charged:
                    return r["customer_id"]
    raise SystemExit("no charged-back transaction found")


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--rows-per-day", type=int, default=2000)
    args = parser.parse_args()
    base = build(args.days, args.rows_per_day)
    trial = WORK / f"{base.name}_trial"
    shutil.rmtree(trial, ignore_errors=True)
    shutil.copytree(base, trial)
    env = environment(trial)
    who = a_person(trial / "data/landing")
    py = [sys.executable, "-m"]
    results = {
        "erase --dry-run": run(
            [*py, "ml_assets.governance", "erase", "--entity", who, "--dry-run"], env
        ),
        "erase": run([*py, "ml_assets.governance", "erase", "--entity", who], env),
    }
    warehouse = trial / "data/warehouse.duckdb"
    results["backup create"] = run([*py, "ml_assets.backup", "create"], env)
    snapshot = sorted((trial / "data/backups").iterdir())[-1]
    warehouse.unlink()
    shutil.rmtree(trial / "data/models")
    results["backup restore"] = run([*py, "ml_assets.backup", "restore", str(snapshot)], env)
    print(
        f"\ngovernance on {args.days} days x {args.rows_per_day:,} rows a day "
        f"(warehouse {warehouse.stat().st_size / 1e6:.0f} MB, snapshot {size_of(snapshot) / 1e6:.0f} MB)\n"
    )
    print("| step | seconds |\n|---|---|")
    for step, seconds in results.items():
        print(f"| {step} | {seconds:.1f} |")
    shutil.rmtree(trial)


if __name__ == "__main__":
    main()
