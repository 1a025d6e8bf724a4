"""Retention: each layer kept for the spec's period, and not a day more; never what the model in
use was trained, validated or tested on (unless `retention.keep_model_data: false`).

`plan_retention` says what would go (a dry run prints it); `apply_retention` removes it and
returns the counts that go to the audit log. Days are whole partitions: a table keeps the days
on or after its cutoff; a landing, archive or report file goes with the day in its name or
folder; quarantined files by the day they were quarantined; runs by when they were created.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from ml_assets.governance.erasure import warehouse_of
from ml_assets.governance.files import files_under, remove
from ml_assets.names import Tables, dataset_folder, landing_areas
from ml_assets.spec import DatasetSpec

DAY_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")


@dataclass
class RetentionPlan:
    cutoffs: dict[str, date] = field(default_factory=dict)  # layer -> first day kept
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows to remove
    files: list = field(default_factory=list)  # local paths, or objects (cluster profile)
    runs: list[str] = field(default_factory=list)
    model_versions: list[str] = field(default_factory=list)
    protected: tuple[date, date] | None = None  # the model in use's data, kept

    def summary(self) -> dict:
        return {
            "cutoffs": {k: v.isoformat() for k, v in sorted(self.cutoffs.items())},
            "rows": sum(self.tables.values()),
            "tables": {t: n for t, n in sorted(self.tables.items()) if n},
            "files": len(self.files),
            "runs": len(self.runs),
            "model_versions": len(self.model_versions),
            "protected": [d.isoformat() for d in self.protected] if self.protected else None,
        }


def _layer_tables(spec: DatasetSpec) -> dict[str, list[tuple[str, str]]]:
    """{layer: [(table, its day or time column)]}."""
    t = Tables(spec)
    time_col = spec.event_time_column
    raw = []
    for area in landing_areas(spec):
        raw += [
            (area.table, area.time_column),
            (area.rejected_table, "day"),
            (area.files_table, "day"),
        ]
    return {
        "raw": raw,
        "cleaned": [(t.cleaned, time_col), (t.cleaning_days, "day"), (t.unknown_values, "day")],
        "features": [(t.features, time_col)],
        "predictions": [(t.predictions, "event_time")],
        "reports": [
            (t.drift_days, "day"),
            (t.drift_columns, "day"),
            (t.performance_days, "day"),
            (t.performance_slices, "day"),
        ],
    }


def protected_window(models_dir) -> tuple[date, date] | None:
    """First and last day of the data the model in use was trained, validated and tested on."""
    from ml_assets.storage.registry import ModelRegistryError, current_version, load_card

    try:
        card = load_card(models_dir, current_version(models_dir))
    except (ModelRegistryError, FileNotFoundError):
        return None
    days = []
    for key in ("train_window", "validation_window", "test_window"):
        window = card.get(key)
        if isinstance(window, str) and " .. " in window:
            days += [date.fromisoformat(d) for d in window.split(" .. ")]
    return (min(days), max(days)) if days else None


def versions_to_remove(models_dir, keep: int) -> list[str]:
    """All but the newest `keep`, the one in use and the one a rollback would go back to."""
    from ml_assets.storage.registry import ModelRegistryError, current_version, list_versions

    versions = [c["version"] for c in list_versions(models_dir)]
    needed = set(versions[-keep:])
    try:
        needed.add(current_version(models_dir))
    except ModelRegistryError:
        pass
    history = models_dir / "history.jsonl"
    if history.exists():
        changes = [json.loads(line) for line in history.read_text().splitlines() if line]
        needed.update(c["from"] for c in changes[-1:] if c.get("from"))
    return [v for v in versions if v not in needed]


def _count(warehouse, table: str, column: str, cutoff: date) -> int:
    if not warehouse.exists(table):
        return 0
    return warehouse.read(
        f'SELECT count(*) AS n FROM {table} WHERE CAST("{column}" AS DATE) < ?', [cutoff]
    ).item()


def _day_of(parts: tuple[str, ...]) -> date | None:
    for part in reversed(parts):
        if m := DAY_IN_NAME.search(part):
            try:
                return date.fromisoformat(m.group(1))
            except ValueError:
                return None
    return None


def backup_folder(data_dir: Path, spec: DatasetSpec) -> Path:
    """Where the spec's snapshots are written (`backup.folder`, under the state folder,
    ML_ASSETS_STATE_DIR or the data folder, unless absolute)."""
    from ml_assets.settings import state_dir

    folder = Path(spec.backup.folder)
    return folder if folder.is_absolute() else state_dir(data_dir) / folder


def plan_retention(
    data_dir: Path,
    spec: DatasetSpec,
    today: date,
    instance=None,
    keep_model_data: bool | None = None,
    warehouse=None,
    files_root=None,
    models_dir=None,
) -> RetentionPlan:
    """What retention would remove today; removes nothing. The code location's stores, by
    default those of the embedded profile in `data_dir`: `warehouse` (the DuckDB file or the
    Delta tables), `files_root` (the data folder, or the object store's prefix) and
    `models_dir` (the dataset's registry folder)."""
    policy = spec.retention
    warehouse = warehouse or warehouse_of(data_dir, None)
    root = Path(data_dir) if files_root is None else files_root
    models_dir = models_dir or root.joinpath(*dataset_folder(spec, "models"))
    keep_model_data = policy.keep_model_data if keep_model_data is None else keep_model_data
    plan = RetentionPlan()
    plan.protected = protected_window(models_dir) if keep_model_data else None

    def cutoff(layer: str, days: int | None, protect: bool) -> date | None:
        if days is None:
            return None
        first_kept = today - timedelta(days=days)
        if protect and plan.protected is not None:
            first_kept = min(first_kept, plan.protected[0])
        plan.cutoffs[layer] = first_kept
        return first_kept

    # the layers the model's data is read from stay for its window; predictions and reports
    # are about days, not what it learnt
    periods = {
        "raw": (policy.raw_days, True),
        "cleaned": (policy.cleaned_days, True),
        "features": (policy.features_days, True),
        "predictions": (policy.predictions_days, False),
        "reports": (policy.reports_days, False),
    }
    layers = _layer_tables(spec)
    for layer, (days, protect) in periods.items():
        if (first := cutoff(layer, days, protect)) is not None:
            for table, column in layers[layer]:
                plan.tables[table] = _count(warehouse, table, column, first)
    areas = landing_areas(spec)
    for layer, days, folders in (
        ("landing", policy.landing_days, [root / a.landing.path for a in areas]),
        # this dataset's folders only: other datasets in the data folder keep their own periods
        ("archive", policy.archive_days, [root / "archive" / a.dataset for a in areas]),
        ("reports_files", policy.reports_days, [root.joinpath(*dataset_folder(spec, "reports"))]),
    ):
        if (first := cutoff(layer, days, layer != "reports_files")) is None:
            continue
        for folder in folders:
            plan.files += [
                p
                for p in files_under(folder)
                if (d := _day_of(p.relative_to(folder).parts)) and d < first
            ]
    if (first := cutoff("quarantine", policy.quarantine_days, False)) is not None:
        sidecars = [
            sidecar
            for folder in (root / "quarantine" / a.dataset for a in areas)
            for sidecar in files_under(folder, "*.reason.json")
        ]
        for sidecar in sidecars:
            when = json.loads(sidecar.read_text()).get("quarantined_at", "")[:10]
            if when and date.fromisoformat(when) < first:
                plan.files += [sidecar, sidecar.with_name(sidecar.name[: -len(".reason.json")])]
    if (first := cutoff("backups", policy.backups_days, False)) is not None:
        from ml_assets.backup import snapshots_before

        plan.files += snapshots_before(backup_folder(data_dir, spec), first)
    if policy.event_log_days is not None and instance is not None:
        import dagster as dg

        first = cutoff("event_log", policy.event_log_days, False)
        before = datetime.combine(first, datetime.min.time())
        plan.runs = [
            r.dagster_run.run_id
            for r in instance.get_run_records(
                filters=dg.RunsFilter(
                    created_before=before,
                    statuses=[
                        dg.DagsterRunStatus.SUCCESS,
                        dg.DagsterRunStatus.FAILURE,
                        dg.DagsterRunStatus.CANCELED,
                    ],
                )
            )
        ]
    if policy.model_versions is not None and models_dir.is_dir():
        plan.model_versions = versions_to_remove(models_dir, policy.model_versions)
    return plan


def apply_retention(
    data_dir: Path,
    spec: DatasetSpec,
    plan: RetentionPlan,
    instance=None,
    warehouse=None,
    models_dir=None,
) -> dict:
    """Remove what the plan lists: table rows (in one transaction on the DuckDB file, a commit
    per table on Delta tables), then files, runs, versions (of `models_dir`, by default the
    embedded profile's)."""
    from ml_assets.storage.registry import version_folder

    warehouse = warehouse or warehouse_of(data_dir, None)
    models_dir = models_dir or Path(data_dir).joinpath(*dataset_folder(spec, "models"))
    removed_rows = {}
    if any(plan.tables.values()):
        layers = _layer_tables(spec)
        column_of = {t: c for tables in layers.values() for t, c in tables}
        layer_of = {t: layer for layer, tables in layers.items() for t, _ in tables}
        removed_rows = warehouse.delete_where(
            {
                table: (
                    f'CAST("{column_of[table]}" AS DATE) < ?',
                    [plan.cutoffs[layer_of[table]]],
                )
                for table, count in plan.tables.items()
                if count
            },
        )
    for path in plan.files:
        # a quarantined entry may be a folder or a link (landing takes regular files only)
        remove(path)
    if instance is not None:
        for run_id in plan.runs:
            instance.delete_run(run_id)
    for version in plan.model_versions:
        remove(version_folder(models_dir, version))
    if any(removed_rows.values()):
        # deleted rows stay readable in the DuckDB file's free blocks, and in Delta's replaced
        # files, until purged
        warehouse.purge_deleted([t for t, n in removed_rows.items() if n])
    return {**plan.summary(), "rows": sum(removed_rows.values())}
