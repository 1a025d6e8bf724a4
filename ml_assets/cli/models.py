"""The model registry from the command line: list versions, compare them, roll back."""

from __future__ import annotations

from ml_assets.storage.registry import (
    ModelRegistryError,
    compare,
    current_version,
    list_versions,
    rollback,
)


def main(argv: list[str] | None = None) -> int:
    """`python -m ml_assets.cli.models list | compare V1 V2 ... | rollback VERSION`."""
    import argparse
    import sys

    from ml_assets.settings import data_dir_from_env

    parser = argparse.ArgumentParser(
        prog="python -m ml_assets.cli.models",
        description="The model versions under $ML_ASSETS_DATA_DIR/models (default data/models).",
    )
    parser.add_argument(
        "--dataset", help="whose models, when ML_ASSETS_SPEC lists several (default: the only one)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every version, oldest first; * marks the one in use")
    cmp = sub.add_parser("compare", help="metrics and windows of versions side by side")
    cmp.add_argument("versions", nargs="+")
    back = sub.add_parser("rollback", help="put an earlier version back in use")
    back.add_argument("version")
    args = parser.parse_args(argv)
    from ml_assets.settings import Settings, SettingsError
    from ml_assets.spec import SpecError
    from ml_assets.storage.assembly import build_file_store

    try:
        settings = Settings.from_env()
        spec = settings.dataset(args.dataset)
        # the data folder's models, or the object store's (ML_ASSETS_FILES_ROOT)
        models = build_file_store(settings)["registry"].for_dataset(spec).folder
    except (SettingsError, SpecError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        if args.command == "list":
            in_use = current_version(models) if (models / "current.json").exists() else None
            for v in list_versions(models):
                m = v.get("metrics", {})
                print(
                    f"{'*' if v['version'] == in_use else ' '} {v['version']}  {v.get('kind', ''):<29} "
                    f"test {v.get('test_window', '')}  PR AUC {m.get('pr_auc', float('nan')):.4f}  "
                    f"ROC AUC {m.get('roc_auc', float('nan')):.4f}  "
                    f"promoted {(v.get('promotion') or {}).get('promote', '')}"
                )
        elif args.command == "compare":
            print(compare(models, args.versions))
        else:
            from ml_assets.governance import audit

            previous = rollback(models, args.version)
            audit.record(
                data_dir_from_env(),
                "registry_rollback",
                {"versions": 1},
                from_version=previous,
                to_version=args.version,
            )
            print(
                f"{args.version} is in use again (was {previous}); predictions of new days use it"
            )
            from ml_assets.storage.assembly import build_mlflow_mirror

            mirrored = build_mlflow_mirror(settings).move_champion(spec, args.version)
            if mirrored.warning:
                print(f"warning: {mirrored.warning}", file=sys.stderr)
            elif mirrored.versions:
                print(f"MLflow: the champion alias is on version {mirrored.versions[args.version]}")
    except (ModelRegistryError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
