"""Project-wide policies: freshness per cadence, backfills, the warehouse pool."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from ml_assets.partitions import daily_partitions
from ml_assets.spec import DatasetSpec

# Every asset that opens the DuckDB file claims this pool; the instance limits it to one slot
# (data/dagster_home/dagster.yaml) because DuckDB allows one writer per file.
WAREHOUSE_POOL = "warehouse"
# On Delta tables (several writers), only the assets that replace a whole table share a slot;
# a day's window is one commit, so runs of different days write the same table side by side.
WHOLE_TABLES_POOL = "warehouse_whole_tables"

# Daily partitions: a new day lands once a day; warn after 26 hours, fail after 30.
DAILY_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=30), warn_window=timedelta(hours=26)
)
# Models retrain weekly: warn after 7 days, fail after 8.
WEEKLY_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(days=8), warn_window=timedelta(days=7)
)

# A backfill over many days is one run that processes the whole range in one pass.
SINGLE_RUN = dg.BackfillPolicy.single_run()


def backfill_policy(settings) -> dg.BackfillPolicy:
    """One run per backfill on one machine; runs of a bounded number of days each on a
    cluster (ML_ASSETS_BACKFILL_DAYS_PER_RUN), so that workers share a long backfill."""
    if settings.backfill_days_per_run:
        return dg.BackfillPolicy.multi_run(settings.backfill_days_per_run)
    return SINGLE_RUN


def whole_table_pool(settings) -> str:
    """The pool of an asset that replaces a whole table: one at a time on either backend."""
    return WAREHOUSE_POOL if settings.warehouse == "duckdb" else WHOLE_TABLES_POOL


def model_search_executor(settings) -> dg.ExecutorDefinition | None:
    """The executor of the model search's runs (training_set, then model): None, the code
    location's own; on Kubernetes with ML_ASSETS_MODEL_EXECUTOR=k8s_job, dagster-k8s'
    `k8s_job_executor`, which runs each of the two steps in a pod of its own, sized for
    training (ML_ASSETS_MODEL_POD_CPU / _MEMORY), from inside the run's pod that the
    K8sRunLauncher started (one pod per run, steps in process, for every other run)."""
    if settings.model_executor != "k8s_job":
        return None
    from ml_assets.storage.assembly import require_cluster_extra

    require_cluster_extra("dagster_k8s", "ML_ASSETS_MODEL_EXECUTOR=k8s_job")
    from dagster_k8s import k8s_job_executor

    resources = {
        "requests": {"cpu": settings.model_pod_cpu, "memory": settings.model_pod_memory},
        "limits": {"memory": settings.model_pod_memory},
    }
    return k8s_job_executor.configured(
        {
            # the two steps depend on each other: one pod at a time
            "max_concurrent": 1,
            "step_k8s_config": {"container_config": {"resources": resources}},
        },
        name="model_search_k8s_job_executor",
    )


def daily_asset_args(spec: DatasetSpec, settings) -> dict:
    """What every daily asset shares: the day partitions, backfills, freshness, the pool (the
    DuckDB file's single writer slot; none on Delta tables, where each day is its own commit)."""
    return {
        "partitions_def": daily_partitions(spec),
        "backfill_policy": backfill_policy(settings),
        "freshness_policy": DAILY_FRESHNESS,
        "pool": WAREHOUSE_POOL if settings.warehouse == "duckdb" else None,
    }


def follow_parents(
    *, ignore_updates_of: tuple[str, ...] = (), ignore_missing_of: tuple[str, ...] = ()
) -> dg.AutomationCondition:
    """Materialize a partition when a parent partition it reads was updated (or it is new), once
    none of its parents is missing or running.

    Dagster's `eager()` without its `in_latest_time_window()`: a late file for an old day must
    flow through that day too. `ignore_updates_of` names parents whose updates do not re-run
    history (a retrained model scores new days; it does not rewrite old predictions);
    `ignore_missing_of` names parents that may have gaps (label files of days still to come).
    """
    updated = dg.AutomationCondition.any_deps_updated()
    if ignore_updates_of:
        updated = updated.ignore(dg.AssetSelection.assets(*ignore_updates_of))
    missing = dg.AutomationCondition.any_deps_missing()
    if ignore_missing_of:
        missing = missing.ignore(dg.AssetSelection.assets(*ignore_missing_of))
    return (
        (dg.AutomationCondition.newly_missing() | updated).since_last_handled()
        & ~missing
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("follows its parents")
