"""Governance in the asset graph: the audit log every governance action observes, and the
nightly backup as a schedule."""

import os
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from ml_assets.governance import audit
from ml_assets.governance.audit import AUDIT_ASSET
from ml_assets.governance.retention import apply_retention, backup_folder, plan_retention
from ml_assets.names import instigator
from ml_assets.settings import Settings
from ml_assets.spec import DatasetSpec
from ml_assets.storage.interfaces import FileStore, ModelRegistry, Warehouse
from ml_assets.storage.lock import GOVERNANCE_RUN_TAG, governance_lock, hold_for_run


def build_shared(spec: DatasetSpec, settings: Settings) -> dg.Definitions:
    """What the data folder has once, whatever the datasets in it: the audit log and the nightly
    backup (the first dataset's `backup` block)."""
    keep = spec.backup.keep

    @dg.op(
        name="backup_snapshot",
        description=(
            f"A consistent snapshot (warehouse, models, reports, annotation batches, the instance's "
            f"run and event storage, the spec, a manifest of SHA-256s) under `{spec.backup.folder}`, "
            f"keeping the newest {keep}; recorded in the audit log."
        ),
    )
    def backup_snapshot(context: dg.OpExecutionContext) -> None:
        # here, not at import: `python -m ml_assets.backup` imports the package (so these
        # definitions) first, and runpy warns of a module already imported
        from ml_assets import backup

        # shared, as every run: never a snapshot of what an erasure or restore is changing
        held = hold_for_run(context.log)
        try:
            _snapshot(context, backup)
        finally:
            if held is not None:
                os.close(held)

    def _snapshot(context: dg.OpExecutionContext, backup) -> None:
        folder = backup_folder(settings.data_dir, spec)
        where, manifest = backup.create(
            settings.data_dir,
            Path(context.instance.root_directory),
            Path(spec.source_path) if spec.source_path else None,
            to=folder,
            keep=keep,
            **settings.backup_stores(),
        )
        size = sum(f["bytes"] for f in manifest["files"].values())
        audit.record(
            settings.data_dir,
            "backup",
            {"files": len(manifest["files"]), "bytes": size},
            to=str(where),
        )
        context.log.info(f"snapshot {where}: {len(manifest['files'])} files, {size:,} bytes")

    job = dg.JobDefinition(
        name="nightly_backup",
        graph_def=dg.GraphDefinition(name="nightly_backup", node_defs=[backup_snapshot]),
        description="python -m ml_assets.backup create, as a job: see README (Backup and restore).",
    )
    schedule = dg.ScheduleDefinition(
        name="nightly_backup_schedule",
        job=job,
        cron_schedule=spec.backup.cron,
        execution_timezone=spec.partitions.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"The nightly snapshot, keeping {keep} (backup.cron and backup.keep in the spec).",
    )

    audit_log = dg.AssetSpec(
        AUDIT_ASSET,
        group_name="governance",
        kinds={"jsonl"},
        description=(
            "Every governance action (erasure, retention run, key rotation, backup, restore, "
            "registry rollback): when, who, what and counts, never a personal value. Kept as "
            "append-only JSON lines in data/governance/audit.jsonl; each action is an "
            "observation here. `python -m ml_assets.governance audit` prints it."
        ),
    )
    return dg.Definitions(assets=[audit_log], jobs=[job], schedules=[schedule])


def build(spec: DatasetSpec, settings: Settings) -> dg.Definitions:
    """The dataset's retention, as a job on a schedule."""

    @dg.op(
        name=instigator(spec, "apply_retention"),
        description=(
            "The spec's retention block: rows, files, runs and model versions past each layer's "
            "period go, never the data of the model in use; what went is in the audit log."
        ),
    )
    def apply_retention_op(
        context: dg.OpExecutionContext,
        files: dg.ResourceParam[FileStore],
        warehouse: dg.ResourceParam[Warehouse],
        registry: dg.ResourceParam[ModelRegistry],
    ) -> None:
        today = datetime.now(UTC).date()
        models_dir = registry.for_dataset(spec).folder
        # exclusive, as the command line's: no run reads a day while it goes (this job's run
        # holds no share, GOVERNANCE_RUN_TAG); runs in progress are waited for, up to an hour
        with governance_lock("retention (schedule)", wait_seconds=3600, own_run=context.run_id):
            plan = plan_retention(
                settings.data_dir,
                spec,
                today,
                context.instance,
                warehouse=warehouse,
                files_root=files.folder(),
                models_dir=models_dir,
            )
            done = apply_retention(
                settings.data_dir, spec, plan, context.instance, warehouse, models_dir=models_dir
            )
        audit.record(settings.data_dir, "retention", done)
        context.log.info(f"retention: {done}")

    retention_job = dg.JobDefinition(
        name=instigator(spec, "retention"),
        graph_def=dg.GraphDefinition(
            name=instigator(spec, "retention"), node_defs=[apply_retention_op]
        ),
        description="python -m ml_assets.governance retention, as a job.",
        tags={GOVERNANCE_RUN_TAG: "retention"},
    )
    retention_schedule = dg.ScheduleDefinition(
        name=instigator(spec, "retention_schedule"),
        job=retention_job,
        cron_schedule=spec.retention.cron,
        execution_timezone=spec.partitions.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Applies the spec's retention block daily (retention.cron).",
    )
    return dg.Definitions(jobs=[retention_job], schedules=[retention_schedule])
