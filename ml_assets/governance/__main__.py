"""`python -m ml_assets.governance erase | retention | rotate-key | audit`: governance from the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ml_assets.governance import audit


def _erase(args) -> int:

    from ml_assets.definitions import build_definitions
    from ml_assets.governance.erasure import (
        ErasureError,
        abandon,
        pending_days,
        plan_erasure,
        resumed_plan,
    )
    from ml_assets.governance.erasure import pending as resumed_plan_exists
    from ml_assets.settings import PSEUDONYM_KEY_ENV_VAR, Settings, data_dir_from_env

    data_dir, spec = data_dir_from_env(), Settings.from_env().dataset(args.dataset)
    if args.abandon:
        left = abandon(data_dir)
        if left is None:
            print("no erasure to abandon")
            return 0
        audit.record(data_dir, "erasure_abandoned", left)
        print(
            "abandoned the erasure that stopped: the person's rows and lines were already gone; "
            f"{left['days_left_as_they_are']} day(s) were not made again (materialize them "
            "when their cause is fixed)"
        )
        return 0
    defs = build_definitions()
    if args.resume:
        plan = resumed_plan(data_dir, spec, defs)
        if plan is None:
            print("no erasure to finish")
            return 0
        print("finishing an erasure that stopped: " + _describe(plan.summary()))
        return _carry_out(data_dir, spec, defs, plan, "erasure_resumed")
    if pending_days(data_dir) or resumed_plan_exists(data_dir):
        print(
            "note: an earlier erasure stopped half-way; it is finished together with this one "
            "(or `erase --abandon` it)"
        )
    try:
        plan = plan_erasure(
            data_dir,
            spec,
            defs,
            entity=args.entity,
            personal=args.personal,
            key=os.environ.get(PSEUDONYM_KEY_ENV_VAR),
        )
    except (ErasureError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = plan.summary()
    print(("dry run: would erase " if args.dry_run else "erasing ") + _describe(summary))
    for table, n in summary["tables"].items():
        print(f"  table {table}: {n} rows")
    for name, n in sorted(plan.files.items()):
        print(f"  file {name}: {n} lines")
    if plan.unnamed_tables:
        print(f"  (tables no asset names, erased too: {', '.join(plan.unnamed_tables)})")
    if plan.models:
        print(f"  model versions to mark on their card: {', '.join(plan.models)}")
    if args.dry_run:
        audit.record(data_dir, "erasure_dry_run", summary)
        return 0
    return _carry_out(data_dir, spec, defs, plan, "erasure")


def _carry_out(data_dir, spec, defs, plan, action: str) -> int:
    """Run a plan; a failure prints its reason and fix (the plan stays pending, to resume)."""
    import dagster as dg

    from ml_assets.governance.erasure import ErasureError, erase

    with dg.DagsterInstance.get() as instance:
        try:
            done = erase(data_dir, spec, defs, instance, plan)
        except ErasureError as err:
            audit.record(data_dir, f"{action}_stopped", {"entities": len(plan.entity_ids)})
            print(f"error: {err}", file=sys.stderr)
            return 1
    audit.record(data_dir, action, done)
    print("done: " + json.dumps(done, sort_keys=True))
    return 0


def _describe(summary: dict) -> str:
    return (
        f"{summary['rows']} rows in {len(summary['tables'])} tables, {summary['lines']} lines in "
        f"{summary['files']} files; {summary['days']} days of theirs (the stored ones made "
        "again); "
        f"{summary['models_marked']} model versions marked"
    )


def _retention(args) -> int:
    from datetime import UTC, date, datetime

    import dagster as dg

    from ml_assets.governance.retention import apply_retention, plan_retention
    from ml_assets.settings import Settings, data_dir_from_env
    from ml_assets.storage.assembly import build_file_store, build_warehouse

    settings = Settings.from_env()
    data_dir, spec = data_dir_from_env(), settings.dataset(args.dataset)
    warehouse = build_warehouse(settings)  # the DuckDB file, or the Delta tables
    store = build_file_store(settings)  # the data folder, or the object store
    models_dir = store["registry"].for_dataset(spec).folder
    today = date.fromisoformat(args.today) if args.today else datetime.now(UTC).date()
    with dg.DagsterInstance.get() as instance:
        plan = plan_retention(
            data_dir,
            spec,
            today,
            instance,
            keep_model_data=not args.include_model_data,
            warehouse=warehouse,
            files_root=store["files"].folder(),
            models_dir=models_dir,
        )
        summary = plan.summary()
        print(("dry run: would remove " if args.dry_run else "removing ") + json.dumps(summary))
        if args.dry_run:
            return 0
        done = apply_retention(
            data_dir, spec, plan, instance, warehouse=warehouse, models_dir=models_dir
        )
    audit.record(data_dir, "retention", done)
    print("done: " + json.dumps(done, sort_keys=True))
    return 0


def _rotate_key(args) -> int:
    import dagster as dg

    from ml_assets.governance.keys import NEW_KEY_ENV_VAR, KeyRotationError, rotate_key
    from ml_assets.settings import PSEUDONYM_KEY_ENV_VAR, Settings, data_dir_from_env

    data_dir = data_dir_from_env()
    old, new = os.environ.get(PSEUDONYM_KEY_ENV_VAR), os.environ.get(NEW_KEY_ENV_VAR)
    if not new:
        print(
            f"error: set {NEW_KEY_ENV_VAR} to the new key (and keep the old one in "
            f"{PSEUDONYM_KEY_ENV_VAR})",
            file=sys.stderr,
        )
        return 2
    try:
        with dg.DagsterInstance.get() as instance:
            done = rotate_key(
                data_dir, Settings.from_env().dataset(args.dataset), old, new, instance
            )
    except (KeyRotationError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    audit.record(
        data_dir,
        "key_rotation",
        {"days": done["days"], "rows": done["rows"]},
        from_key=done["from_key"],
        to_key=done["to_key"],
    )
    print(
        f"every stored day ({done['days']} days, {done['rows']} rows) is pseudonymized with key "
        f"{done['to_key']} now. Set {PSEUDONYM_KEY_ENV_VAR} to the new key wherever the pipeline "
        "runs (the daemon too) and restart it."
    )
    return 0


def _audit(args) -> int:
    from ml_assets.settings import data_dir_from_env

    for entry in audit.read(data_dir_from_env())[-args.last :]:
        print(json.dumps(entry, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ml_assets.governance",
        description="Governance of the data under $ML_ASSETS_DATA_DIR (default ./data).",
    )
    parser.add_argument(
        "--dataset",
        help="the dataset to act on, when ML_ASSETS_SPEC lists several (default: the only one)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    erase = sub.add_parser(
        "erase",
        help="erase one person from every table, file and report (GDPR art. 17)",
        description=(
            "Erase one person: their rows in every table downstream of the raw assets, their lines "
            "in landing, archive and quarantine files and annotation batches; the days concerned "
            "are made again. Needs ML_ASSETS_PSEUDONYM_KEY and DAGSTER_HOME like a run."
        ),
    )
    who = erase.add_mutually_exclusive_group(required=True)
    who.add_argument("--entity", help="the person's entity id (e.g. a customer id)")
    who.add_argument("--personal", help="a personal value of theirs, e.g. an email")
    who.add_argument(
        "--resume",
        action="store_true",
        help="finish an erasure that stopped half-way (make its days again)",
    )
    who.add_argument(
        "--abandon",
        action="store_true",
        help="forget an erasure that stopped half-way (its rows and lines are gone already; "
        "its days are left as they are)",
    )
    erase.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    erase.set_defaults(run=_erase)
    keep = sub.add_parser(
        "retention",
        help="remove what is older than the spec's `retention` periods",
        description=(
            "Apply the spec's retention block: rows, files, runs and model versions older than "
            "each layer's period go; what the model in use was trained, validated and tested on "
            "stays unless --include-model-data."
        ),
    )
    keep.add_argument("--dry-run", action="store_true", help="show what would go, change nothing")
    keep.add_argument("--today", help="YYYY-MM-DD the periods count back from (default: today)")
    keep.add_argument(
        "--include-model-data",
        action="store_true",
        help="also remove the data of the model in use (it cannot be retrained on it any more)",
    )
    keep.set_defaults(run=_retention)
    rotate = sub.add_parser(
        "rotate-key",
        help="pseudonymize every stored day again with a new key, in one run",
        description=(
            "Rotate the pseudonym key: with the key in use in ML_ASSETS_PSEUDONYM_KEY and the new "
            "one in ML_ASSETS_NEW_PSEUDONYM_KEY, every stored day is ingested again from its "
            "landing files and cleaned with the new key in one run; then use the new key."
        ),
    )
    rotate.set_defaults(run=_rotate_key)
    show = sub.add_parser("audit", help="print the newest audit log entries")
    show.add_argument("--last", type=int, default=20)
    show.set_defaults(run=_audit)
    args = parser.parse_args(argv)
    from ml_assets.console import quiet_dagster

    quiet_dagster()
    from contextlib import nullcontext

    from ml_assets.settings import SettingsError
    from ml_assets.spec import SpecError
    from ml_assets.storage.lock import RunInProgress, governance_lock

    changes = args.command in ("erase", "retention", "rotate-key") and not getattr(
        args, "dry_run", False
    )
    try:
        with governance_lock(args.command) if changes else nullcontext():
            return args.run(args)
    except (SettingsError, SpecError, RunInProgress) as err:  # which dataset, a bad spec, busy
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
