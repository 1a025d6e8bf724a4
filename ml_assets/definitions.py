"""The code location: each dataset's stages, the resources, and project-wide policies.

Nothing happens at import: the environment is read once into Settings when Dagster loads the
definitions, and each stage is built from a dataset's spec (several specs in ML_ASSETS_SPEC run
side by side, each under its own key prefix).
"""

from __future__ import annotations

import dagster as dg

from ml_assets.defs.clean import assets as clean
from ml_assets.defs.features import assets as features
from ml_assets.defs.governance import assets as governance
from ml_assets.defs.ingest import assets as ingest
from ml_assets.defs.ingest import checks as ingest_checks
from ml_assets.defs.ingest import sensors as ingest_sensors
from ml_assets.defs.labels import assets as labels
from ml_assets.defs.labels import manual, queue, weak
from ml_assets.defs.models import assets as models
from ml_assets.defs.models import sensors as model_sensors
from ml_assets.defs.monitor import assets as monitor
from ml_assets.defs.monitor import checks as monitor_checks
from ml_assets.defs.monitor import performance
from ml_assets.defs.platform import sensors as platform
from ml_assets.defs.predict import assets as predict
from ml_assets.names import every_day_expected
from ml_assets.resources import build_resources
from ml_assets.settings import Settings

# every stage of one dataset, in lifecycle order: build(spec, settings) -> Definitions
DATASET_STAGES = (
    ingest,
    ingest_sensors,
    ingest_checks,
    clean,
    labels,
    manual,
    weak,
    queue,
    features,
    models,
    model_sensors,
    predict,
    monitor,
    performance,
    governance,
)
LOCAL_EXECUTORS = {"in_process": dg.in_process_executor, "multiprocess": dg.multiprocess_executor}


def executor(settings: Settings) -> dg.ExecutorDefinition:
    """How a run executes its steps: in its own process (embedded), or on Celery workers
    (cluster: dagster-celery, imported only then)."""
    if settings.executor == "celery":
        from ml_assets.storage.assembly import require_cluster_extra

        require_cluster_extra("dagster_celery", "ML_ASSETS_EXECUTOR=celery")
        import os

        from dagster_celery import celery_executor

        from ml_assets.settings import CELERY_BACKEND_ENV_VAR, CELERY_BROKER_ENV_VAR

        # from the environment by name where it is set: a broker URL with a password would
        # otherwise be written into the job's snapshot in the instance (and shown in the UI)
        def source(var: str, value: str):
            return {"env": var} if os.environ.get(var) else value

        return celery_executor.configured(
            {
                "broker": source(CELERY_BROKER_ENV_VAR, settings.celery_broker),
                "backend": source(CELERY_BACKEND_ENV_VAR, settings.celery_backend),
            }
        )
    return LOCAL_EXECUTORS[settings.executor]


def automation_sensor(settings: Settings) -> dg.AutomationConditionSensorDefinition:
    """Evaluates every asset's automation condition. Dagster's default one starts stopped; this
    one runs as soon as the daemon does."""
    return dg.AutomationConditionSensorDefinition(
        "lifecycle_automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        description=(
            "Runs the lifecycle by itself: each asset whose condition says 'follows its parents' is "
            "materialized for the days whose parents changed (a new or late file flows from raw to the "
            "drift report). Retraining is the retraining sensor's decision."
        ),
    )


def dataset_definitions(spec, settings: Settings) -> dg.Definitions:
    """One dataset's stages, and the per-day freshness check on each of its daily assets that
    expects every day (derived from the stages' graph, not listed)."""
    stages = dg.Definitions.merge(*(stage.build(spec, settings) for stage in DATASET_STAGES))
    daily = every_day_expected(stages.assets)
    return dg.Definitions.merge(stages, monitor_checks.build(spec, daily))


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    specs = settings.specs()
    return dg.Definitions.merge(
        *(dataset_definitions(spec, settings) for spec in specs),
        # once per data folder and instance, whatever the datasets
        governance.build_shared(specs[0], settings),
        platform.build(settings),
        dg.Definitions(
            resources=build_resources(settings),
            executor=executor(settings),
            sensors=[automation_sensor(settings)],
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
