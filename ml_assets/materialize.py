"""`python -m ml_assets.materialize --from DAY --to DAY`: the whole asset graph for a range of
days, in the order its stages need, into the instance at $DAGSTER_HOME (the UI shows the runs).

Three runs: the daily assets up to features and labels over the range in one pass each
(single-run backfill policy), then the training set and model (not partitioned: one window over
many days, chosen by `training` in the spec), then predictions, drift reports, performance,
annotation batches and the monitoring trend over the range.

Why not `dagster asset materialize --select '*' --partition-range A...B`: Dagster runs a
partition range only over partitioned assets, and refuses a selection that holds an
unpartitioned one (training_set, model, monitoring_trend) with a CheckError about
BackfillPolicy.single_run(). This command runs each kind in its own run instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from ml_assets.metadata import run_notes

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


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# the command prints each step's failure and warnings itself, without Dagster's stack traces
SILENT = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def run_graph(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    first: str,
    last: str,
    log=print,
    model_as_of: str | None = None,
    key_prefix: str | None = None,
    debug: bool = False,
) -> list[dg.ExecuteInJobResult]:
    """The three stages over first..last; `model_as_of` trains the model as if that day were the
    newest with matured labels (the demo retrains on later data afterwards, through the gate).
    `key_prefix`: only that dataset's assets, when the code location holds several. A stage that
    fails stops the next ones (they would read what it did not write); each stage's failures,
    waits and warnings are logged under it (Dagster's own log with stack traces with `debug`)."""
    # the checks defined beside the assets (freshness per partition, quarantine) run with them
    assets = [*defs.assets, *(defs.asset_checks or [])]
    results = []
    loggers = QUIET if debug else SILENT
    for title, selection in STAGES:
        started = time.perf_counter()
        run_config = loggers
        if selection == "group:models" and model_as_of:
            title = f"{title} (as of {model_as_of})"
            op = dg.AssetKey([*filter(None, [key_prefix]), "training_set"]).to_python_identifier()
            run_config = {**loggers, "ops": {op: {"config": {"as_of": model_as_of}}}}
        chosen = dg.AssetSelection.from_string(selection)
        if key_prefix:
            chosen = chosen & dg.AssetSelection.key_prefixes(key_prefix)
        with warnings.catch_warnings():
            # "Blocking asset check ... emitted no result": a skipped step's checks, not news
            warnings.simplefilter("ignore")
            result = dg.materialize(
                assets,
                selection=chosen,
                instance=instance,
                resources=defs.resources,
                run_config=run_config,
                tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
                if "models" not in selection
                else {},
                raise_on_error=False,
            )
        log(
            f"  {title}: {'ok' if result.success else 'FAILED'} in {time.perf_counter() - started:.1f}s (run {result.run_id[:8]})"
        )
        for note in run_notes(instance, result):
            log(note)
        results.append(result)
        if not result.success:
            break
    return results


def unpartitioned_in(defs: dg.Definitions, selection: str) -> list[str]:
    """The assets of `selection` that have no partitions (a partition range cannot include them)."""
    graph = defs.resolve_asset_graph()
    keys = dg.AssetSelection.from_string(selection).resolve(graph)
    return sorted(
        k.to_user_string()
        for k in keys
        if graph.get(k).is_materializable and graph.get(k).partitions_def is None
    )


def main(argv: list[str] | None = None) -> int:
    from ml_assets.definitions import build_definitions
    from ml_assets.partitions import daily_partitions
    from ml_assets.settings import Settings, SettingsError
    from ml_assets.spec import SpecError

    parser = argparse.ArgumentParser(
        prog="python -m ml_assets.materialize", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--from", dest="first", help="first day, YYYY-MM-DD (default: the first partition)"
    )
    parser.add_argument(
        "--to", dest="last", help="last day, inclusive (default: the last partition)"
    )
    parser.add_argument(
        "--dataset", help="which dataset, when ML_ASSETS_SPEC lists several (default: the only one)"
    )
    parser.add_argument(
        "--debug", action="store_true", help="Dagster's own log, stack traces included"
    )
    parser.add_argument(
        "--model-as-of",
        help="train the model as if this day were the newest with matured labels (rolling window only)",
    )
    args = parser.parse_args(argv)
    if "DAGSTER_HOME" not in os.environ:
        print(
            "set DAGSTER_HOME to the instance folder (make demo uses data/dagster_home)",
            file=sys.stderr,
        )
        return 2
    try:
        spec = Settings.from_env().dataset(args.dataset)
    except (SpecError, SettingsError) as err:
        print(err, file=sys.stderr)
        return 2
    keys = daily_partitions(spec).get_partition_keys()
    first, last = args.first or keys[0], args.last or keys[-1]
    for day in (first, last):
        if day not in keys:
            print(
                f"{day} is not a day of the partitions of {spec.name} ({keys[0]} .. {keys[-1]}, "
                f"partitions in {spec.source_path}). Fix: give days in that range as YYYY-MM-DD",
                file=sys.stderr,
            )
            return 2
    if first > last:
        print(f"--from {first} is after --to {last}", file=sys.stderr)
        return 2
    from ml_assets.console import quiet_dagster

    quiet_dagster()
    defs = build_definitions()
    print(
        f"materializing every asset of {spec.name} for {first} .. {last}; not partitioned, so run "
        f"once after the daily stage they read: {', '.join(k for k in unpartitioned_in(defs, '*') if k.startswith(spec.key_prefix or ''))}"
    )
    with dg.DagsterInstance.get() as instance:
        try:
            results = run_graph(
                defs,
                instance,
                first,
                last,
                model_as_of=args.model_as_of,
                key_prefix=spec.key_prefix,
                debug=args.debug,
            )
        except Exception as err:  # outside any step (the definitions, the instance)
            if args.debug:
                raise
            print(f"FAILED: {err} (--debug shows where)", file=sys.stderr)
            return 1
    if not all(r.success for r in results):
        print(
            f"FAILED: see the step above; the UI shows run {results[-1].run_id} in full "
            "(or run again with --debug)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
