"""`make demo`: generate the example data if missing, materialize every asset for every example
partition into the instance at $DAGSTER_HOME, and print what came out.

Three runs, each a single pass over its whole partition range (single-run backfill policy):
the daily assets up to features and labels, then the training set and model, then predictions
and drift reports.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from ml_assets.definitions import build_definitions
from ml_assets.example_data import generate
from ml_assets.partitions import daily_partitions
from ml_assets.registry import current_version, load_card
from ml_assets.resources import WAREHOUSE_FILE, Warehouse, data_dir_from_env
from ml_assets.spec import DEFAULT_SPEC_PATH, load_spec
from ml_assets.tables import Tables

STAGES = [
    (
        "ingest, clean, labels, features",
        "group:ingest or group:clean or group:labels or group:features",
    ),
    ("training set and model", "group:models"),
    (
        "predictions, drift reports, annotation batches",
        "group:predict or group:monitor or group:annotation",
    ),
]


def run_graph(
    defs: dg.Definitions, instance: dg.DagsterInstance, first: str, last: str, log=print
) -> list[dg.ExecuteInJobResult]:
    # the checks defined beside the assets (freshness per partition, quarantine) run with them
    assets = [*defs.assets, *(defs.asset_checks or [])]
    results = []
    for title, selection in STAGES:
        started = time.perf_counter()
        result = dg.materialize(
            assets,
            selection=selection,
            instance=instance,
            resources=defs.resources,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
            if "models" not in selection
            else {},
        )
        log(
            f"  {title}: {'ok' if result.success else 'FAILED'} in {time.perf_counter() - started:.1f}s (run {result.run_id[:8]})"
        )
        results.append(result)
    return results


def drift_ranges(days) -> list[str]:
    """Consecutive drifted days as 'first .. last' ranges."""
    ranges: list[list] = []
    for day, drifted in days.select("day", "dataset_drifted").iter_rows():
        if not drifted:
            continue
        if ranges and (day - ranges[-1][1]).days == 1:
            ranges[-1][1] = day
        else:
            ranges.append([day, day])
    return [f"{a:%Y-%m-%d}" + (f" .. {b:%Y-%m-%d}" if b != a else "") for a, b in ranges]


def summary(data_dir: Path) -> str:
    spec = load_spec()
    t = Tables(spec)
    wh = Warehouse(database=str(data_dir / WAREHOUSE_FILE))
    lines = ["", "rows per asset:"]
    for asset, table in [
        (spec.raw_asset, t.raw),
        (spec.raw_labels_asset, t.raw_labels),
        (spec.cleaned_asset, t.cleaned),
        ("ground_truth_labels", t.ground_truth),
        *([("weak_labels", t.weak_votes)] if spec.weak_labels.functions else []),
        ("labels", t.labels),
        ("features", t.features),
        ("training_set", t.training_set),
        ("predictions", t.predictions),
        ("drift_report", t.drift_columns),
    ]:
        n = wh.read(f"SELECT count(*) AS n FROM {table}").item()
        lines.append(f"  {asset:<22} {n:>10,}  ({table})")
    sources = wh.read(
        f"SELECT coalesce(label_source, 'none') AS source, count(*) AS n FROM {t.labels} GROUP BY 1 ORDER BY 1"
    )
    lines.append("  labels by source: " + ", ".join(f"{s} {n:,}" for s, n in sources.iter_rows()))
    models = data_dir / "models"
    card = load_card(models, current_version(models))
    m = card["metrics"]
    lines += [
        "",
        f"model {card['version']}: trained on {card['train_window']}, tested on {card['test_window']}",
        f"  ROC AUC {m['roc_auc']:.3f}  PR AUC {m['pr_auc']:.3f}  Brier {m['brier']:.4f}  "
        f"precision {m['precision_at_threshold']:.2f} / recall {m['recall_at_threshold']:.2f} at threshold {m['threshold']:.3f}",
        "",
        "drift verdicts per day (D = drifted):",
    ]
    days = wh.read(
        f"SELECT day, dataset_drifted, drifted_columns, columns FROM {t.drift_days} ORDER BY day"
    )
    lines.append("  " + "".join("D" if d else "." for d in days["dataset_drifted"].to_list()))
    lines.append(
        f"  drifted days ({int(days['dataset_drifted'].sum())} of {len(days)}): {', '.join(drift_ranges(days))}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rows-per-day",
        type=int,
        default=None,
        help="generate this many rows a day (default: generator's)",
    )
    args = parser.parse_args(argv)
    if "DAGSTER_HOME" not in os.environ:
        print("set DAGSTER_HOME (make demo sets it to data/dagster_home)", file=sys.stderr)
        return 2
    data_dir = data_dir_from_env()
    spec = load_spec()
    landing = data_dir / spec.landing.path
    if not any(landing.glob("*")):
        if (
            os.environ.get("ML_ASSETS_SPEC")
            and Path(os.environ["ML_ASSETS_SPEC"]).resolve() != DEFAULT_SPEC_PATH.resolve()
        ):
            print(f"no landing files in {landing} for spec {spec.source_path}", file=sys.stderr)
            return 2
        kwargs = {"rows_per_day": args.rows_per_day} if args.rows_per_day else {}
        counts = generate(data_dir / "landing", **kwargs)
        print(f"generated example data in {data_dir / 'landing'}: {counts}")
    keys = daily_partitions(spec).get_partition_keys()
    print(f"materializing every asset for {len(keys)} partitions {keys[0]} .. {keys[-1]}")
    # Dagster's own selection parser raises beta/preview warnings that are not ours to fix
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        results = run_graph(defs, instance, keys[0], keys[-1])
    if not all(r.success for r in results):
        return 1
    print(summary(data_dir))
    print(
        "\nopen the UI and start the daemon:  make dev   (http://127.0.0.1:3000)\n"
        f"then drop a file into {landing} and watch it flow (README: 'New data arrives by itself')"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
