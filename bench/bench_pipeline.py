"""Benchmark of the daily path (raw -> cleaned -> labels -> features -> predictions -> drift).

Prints tables; it is not a test. What it measures, each in a fresh subprocess so peak memory is
that of one measurement:

1. per stage, rows per second, for one day of 100k and 1M rows (`--rows`), the asset functions
   invoked directly (no run, no event log, no instance);
2. the same day through a Dagster run (`dg.materialize`, in-process executor, on-disk instance)
   against that direct invocation: the cost of Dagster's run machinery;
3. the same day from the CLI with the in-process and the multiprocess executor;
4. the cost of materializing a new day with 7 and with `--long-history` days of history stored;
5. a bare reference (`bench/bare_reference.py`: plain polars, no Dagster, no checks, no
   provenance) doing the raw, cleaned and features work of the same day on the same files, and
   the ratio of each of our stages to it (`ml_assets_tests/integration/test_bare_reference.py`
   checks that both give the same rows and values).

Usage: python bench/bench_pipeline.py [--rows 100000,1000000] [--long-history 63] [--repeat 3]
(`--rows ""` measures only the history; the history runs add model_performance and
monitoring_trend, which read windows or every reported day)
Results are also written to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bare_reference beside this file

from ml_assets.example_data import shrunk_example_spec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
RESULTS = ROOT / "bench" / "results"
START = date(2026, 9, 1)
DAILY = [
    "raw_transactions",
    "raw_chargebacks",
    "raw_annotations",
    "cleaned_transactions",
    "ground_truth_labels",
    "manual_labels",
    "features",
    "weak_labels",
    "labels",
    "predictions",
    "drift_report",
]
KEY = "bench-key-0123456789abcdef"
# the history measurement adds the assets that read windows or every day reported
HISTORY_EXTRA = ["model_performance", "monitoring_trend"]
# our stage -> the bare reference's stage doing the same work
BARE = {"raw_transactions": "raw", "cleaned_transactions": "cleaned", "features": "features"}
# Once, a multiprocess CLI run waited for a `warehouse` pool slot its own step already held and
# never finished; the bench gives up on a CLI run after this long and reports it as such.
CLI_TIMEOUT = 600


def first_day(days: int) -> date:
    """START, or earlier when `days` days from it would reach past today (a daily partition
    exists once its day has ended)."""
    return min(START, date.today() - timedelta(days=days + 1))


def bench_spec(folder: Path, days: int) -> Path:
    """The example spec over `days` days with a short label maturity, so a model can be trained."""
    return shrunk_example_spec(
        folder / "spec.yaml",
        first_day(days),
        days,
        maturity_days=2,
        training={
            "train_days": 3,
            "gap_days": 0,
            "validation_days": 1,
            "test_days": 2,
            "seed": 7,
            "max_train_rows": 2_000_000,
            "tuning_candidates": 2,
        },
    )


def env_for(folder: Path, spec: Path) -> dict:
    return {
        **os.environ,
        "ML_ASSETS_SPEC": str(spec),
        "ML_ASSETS_DATA_DIR": str(folder / "data"),
        "ML_ASSETS_PSEUDONYM_KEY": KEY,
        "DAGSTER_HOME": str(folder / "dagster_home"),
    }


def run_worker(
    mode: str, folder: Path, spec: Path, day: str, extra_env: dict | None = None
) -> dict:
    env = {**env_for(folder, spec), **(extra_env or {})}
    out = subprocess.run(
        [sys.executable, __file__, "--worker", mode, "--day", day],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker {mode} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def prepare(rows: int, history_days: int) -> tuple[Path, Path, str]:
    """Landing files for history+1 days, the history materialized, a model trained."""
    folder = WORK / f"r{rows}_h{history_days}"
    days = history_days + 1
    folder.mkdir(parents=True, exist_ok=True)
    spec = bench_spec(folder, days)
    ready = folder / "prepared.json"
    day = (first_day(days) + timedelta(days=history_days)).isoformat()
    from ml_assets.storage.registry import code_version

    code = code_version()
    # state prepared by other code may hold tables of another shape: prepare it again
    if ready.exists() and json.loads(ready.read_text() or "{}").get("code") == code:
        return folder, spec, day
    shutil.rmtree(folder / "data", ignore_errors=True)
    shutil.rmtree(folder / "dagster_home", ignore_errors=True)
    (folder / "dagster_home").mkdir(parents=True)
    shutil.copy(ROOT / "data/dagster_home/dagster.yaml", folder / "dagster_home")
    from ml_assets.example_data import generate

    t0 = time.perf_counter()
    generate(
        folder / "data" / "landing",
        start=first_day(days),
        days=days,
        rows_per_day=rows,
        maturity_days=2,
    )
    print(f"  generated {days} days x {rows:,} rows in {time.perf_counter() - t0:.0f}s", flush=True)
    t0 = time.perf_counter()
    run_worker("prepare", folder, spec, day)
    run_worker("prepare_bare", folder, spec, day)
    print(
        f"  materialized {history_days} days of history and a model in {time.perf_counter() - t0:.0f}s",
        flush=True,
    )
    ready.write_text(json.dumps({"code": code}))
    return folder, spec, day


def snapshot(folder: Path) -> Path:
    """A copy of the prepared state, so every measurement starts from the same tables."""
    target = folder.parent / (folder.name + "_run")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(folder, target)
    return target


def measure(
    mode: str, folder: Path, spec: Path, day: str, repeat: int, extra_env: dict | None = None
) -> dict:
    runs = []
    for _ in range(repeat):
        target = snapshot(folder)
        runs.append(run_worker(mode, target, spec, day, extra_env))
    best = {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
    }
    if "stages" in runs[0]:
        best["stages"] = {
            k: statistics.median(r["stages"][k] for r in runs) for k in runs[0]["stages"]
        }
        best["rows"] = runs[0]["rows"]
    return best


# ---------------------------------------------------------------- workers (run in subprocesses)
def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM).

    Not ru_maxrss: Linux keeps the larger of a parent's and a child's peak across fork and
    exec, so a child's ru_maxrss can report memory it never used.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(mode: str, day: str) -> dict:
    """One measurement in a fresh process; its peak RSS is this process's alone."""
    import dagster as dg
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from ml_assets.definitions import build_definitions

    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    defs = build_definitions()
    result: dict = {}
    if mode == "prepare":
        from ml_assets.settings import Settings

        first = Settings.from_env().dataset().partitions.start.isoformat()
        last = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
        tags = {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
        with dg.DagsterInstance.get() as instance:
            for selection, t in [
                ("group:ingest or group:clean or group:labels or group:features", tags),
                ("group:models", {}),
                ("group:predict or group:monitor", tags),
            ]:
                dg.materialize(
                    list(defs.assets),
                    selection=selection,
                    instance=instance,
                    resources=defs.resources,
                    tags=t,
                    run_config=quiet,
                )
        return {"seconds": 0, "peak_rss_mb": 0}

    started = time.perf_counter()
    if mode in ("bare", "prepare_bare"):
        return bare_worker(mode, day)
    if mode in ("dagster", "dagster_history"):
        keys = DAILY + (HISTORY_EXTRA if mode == "dagster_history" else [])
        with dg.DagsterInstance.get() as instance:
            t0 = time.perf_counter()
            out = dg.materialize(
                list(defs.assets),
                selection=" or ".join(f"key:{k}" for k in keys),
                instance=instance,
                resources=defs.resources,
                # a one-day range: monitoring_trend has no partitions
                tags={ASSET_PARTITION_RANGE_START_TAG: day, ASSET_PARTITION_RANGE_END_TAG: day},
                run_config=quiet,
            )
            assert out.success
            result["seconds"] = time.perf_counter() - t0
    elif mode == "direct":
        stages = {}
        rows = 0
        resources = defs.resources
        for key in DAILY:
            asset = defs.resolve_assets_def(key)
            params = [
                p
                for p in asset.op.compute_fn.decorated_fn.__code__.co_varnames[
                    : asset.op.compute_fn.decorated_fn.__code__.co_argcount
                ]
                if p != "context"
            ]
            kwargs = {p: resources[p] for p in params if p in resources}
            context = dg.build_asset_context(partition_key=day, resources=None)
            t0 = time.perf_counter()
            out = asset(context, **kwargs)
            stages[key] = time.perf_counter() - t0
            if key == "cleaned_transactions":
                rows = out.metadata["dagster/row_count"].value
        result["seconds"] = sum(stages.values())
        result["stages"] = stages
        result["rows"] = rows
    result["wall_seconds"] = time.perf_counter() - started
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def bare_worker(mode: str, day: str) -> dict:
    """The bare reference: its history's cleaned days (prepare_bare), or the new day's stages."""
    from datetime import datetime

    import bare_reference

    from ml_assets.settings import Settings

    spec = Settings.from_env().dataset()
    data = Path(os.environ["ML_ASSETS_DATA_DIR"])
    folder = data / "bare"
    landing = data / "landing" / "transactions"
    new_day = datetime.fromisoformat(day)
    if mode == "prepare_bare":
        for i in range(spec.feature_history_days, 0, -1):
            d = new_day - timedelta(days=i)
            raw = bare_reference.raw_day(spec, landing / f"transactions_{d:%Y-%m-%d}.csv", d, KEY)
            folder.mkdir(parents=True, exist_ok=True)
            bare_reference.cleaned_day(spec, raw).write_parquet(
                folder / f"cleaned_{d:%Y-%m-%d}.parquet"
            )
        return {"seconds": 0, "peak_rss_mb": 0}
    stages = bare_reference.run_day(
        spec, landing / f"transactions_{new_day:%Y-%m-%d}.csv", new_day, KEY, folder
    )
    return {
        "seconds": sum(stages.values()),
        "stages": stages,
        "rows": 0,
        "peak_rss_mb": peak_rss_mb(),
    }


def cli_worker(folder: Path, spec: Path, day: str, executor: str) -> dict:
    env = {**env_for(folder, spec), "ML_ASSETS_EXECUTOR": executor}
    t0 = time.perf_counter()
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "asset",
            "materialize",
            "-m",
            "ml_assets",
            "--select",
            ",".join(DAILY),
            "--partition",
            day,
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=CLI_TIMEOUT,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return {"seconds": time.perf_counter() - t0}


def table(headers: list[str], rows: list[list]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]

    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [
            line(headers),
            "|" + "|".join("-" * (w + 2) for w in widths) + "|",
            *(line(r) for r in rows),
        ]
    )


def save(report: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2))


def print_per_rows(report: dict) -> None:
    """The per-stage, bare-reference and whole-path tables."""
    stage_rows = []
    for rows, r in report["per_rows"].items():
        for stage, secs in r["direct"]["stages"].items():
            stage_rows.append(
                [f"{rows:,}", stage, f"{secs:.2f}", f"{r['direct']['rows'] / secs:,.0f}"]
            )
    print(
        "Per stage (direct invocation, one day)\n"
        + table(["rows/day", "stage", "seconds", "rows/s"], stage_rows)
    )
    bare_rows = []
    for rows, r in report["per_rows"].items():
        ours_total = bare_total = 0.0
        for stage, bare_stage in BARE.items():
            ours, bare = r["direct"]["stages"][stage], r["bare"]["stages"][bare_stage]
            ours_total, bare_total = ours_total + ours, bare_total + bare
            bare_rows.append(
                [f"{rows:,}", stage, f"{ours:.2f}", f"{bare:.2f}", f"{ours / bare:.2f}x"]
            )
        bare_rows.append(
            [
                f"{rows:,}",
                "the three",
                f"{ours_total:.2f}",
                f"{bare_total:.2f}",
                f"{ours_total / bare_total:.2f}x",
            ]
        )
        # the whole path: the bare reference where there is one, our direct call elsewhere
        floor = bare_total + sum(s for k, s in r["direct"]["stages"].items() if k not in BARE)
        r["floor_seconds"] = floor
        bare_rows.append(
            [
                f"{rows:,}",
                "daily path as a Dagster run",
                f"{r['dagster']['seconds']:.2f}",
                f"{floor:.2f}",
                f"{r['dagster']['seconds'] / floor:.2f}x",
            ]
        )
    print(
        "\nAgainst the bare reference (bench/bare_reference.py), same day, same files; the last "
        "row: the eleven steps in a Dagster run against the bare stages plus our direct call of "
        "the other eight\n"
        + table(["rows/day", "stage", "ours s", "bare s", "ratio"], bare_rows)
        + "\npeak RSS MB, bare reference: "
        + ", ".join(
            f"{r['bare']['peak_rss_mb']:.0f} ({k:,} rows)" for k, r in report["per_rows"].items()
        )
    )
    overhead = []
    for rows, r in report["per_rows"].items():
        overhead.append(
            [
                f"{rows:,}",
                f"{r['direct']['seconds']:.2f}",
                f"{r['dagster']['seconds']:.2f}",
                f"{r['dagster']['seconds'] / r['direct']['seconds']:.2f}x",
                f"{r['dagster']['peak_rss_mb']:.0f}",
                f"{r['cli'].get('in_process', float('nan')):.1f}",
                f"{r['cli'].get('multiprocess', float('nan')):.1f}",
            ]
        )
    print(
        "\nOne day, whole daily path\n"
        + table(
            [
                "rows/day",
                "direct s",
                "dagster run s",
                "ratio",
                "peak RSS MB (run)",
                "CLI in-process s",
                "CLI multiprocess s",
            ],
            overhead,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--long-history", type=int, default=63)
    parser.add_argument("--history-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI runs (the slowest)")
    parser.add_argument("--worker")
    parser.add_argument("--day")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.day)))
        return

    report: dict = {
        "machine": f"{os.cpu_count()} cores, python {sys.version.split()[0]}",
        "per_rows": {},
        "history": {},
    }
    for rows in [int(r) for r in args.rows.split(",") if r]:
        print(f"== {rows:,} rows a day", flush=True)
        folder, spec, day = prepare(rows, 7)
        direct = measure("direct", folder, spec, day, args.repeat)
        bare = measure("bare", folder, spec, day, args.repeat)
        dagster_run = measure("dagster", folder, spec, day, args.repeat)
        cli = {}
        for executor in () if args.no_cli else ("in_process", "multiprocess"):
            times = [
                cli_worker(snapshot(folder), spec, day, executor)["seconds"]
                for _ in range(args.repeat)
            ]
            cli[executor] = statistics.median(times)
        report["per_rows"][rows] = {
            "direct": direct,
            "bare": bare,
            "dagster": dagster_run,
            "cli": cli,
        }
        save(report)  # a later crash keeps what was measured

    for history in (7, args.long_history):
        print(
            f"== new day after {history} days of history ({args.history_rows:,} rows a day)",
            flush=True,
        )
        folder, spec, day = prepare(args.history_rows, history)
        report["history"][history] = measure("dagster_history", folder, spec, day, args.repeat)
        save(report)

    save(report)

    print(f"\nmachine: {report['machine']}; medians of {args.repeat} runs\n")
    if report["per_rows"]:
        print_per_rows(report)
    h = report["history"]
    if not h:
        return
    hist_rows = [
        [f"{k} days", f"{v['seconds']:.2f}", f"{v['peak_rss_mb']:.0f}"] for k, v in h.items()
    ]
    keys = list(h)
    print(
        f"\nNew day with short and long history ({args.history_rows:,} rows a day)\n"
        + table(["history", "dagster run s", "peak RSS MB"], hist_rows)
    )
    print(f"long/short ratio: {h[keys[1]]['seconds'] / h[keys[0]]['seconds']:.2f}x")


if __name__ == "__main__":
    main()
