"""The code location: the stages under defs/, the resources, and project-wide policies.

Nothing happens at import: the spec, the data folder and the resources are read when Dagster
loads the definitions, so tests can point ML_ASSETS_SPEC / ML_ASSETS_DATA_DIR elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from ml_assets.policies import sensor_interval_seconds
from ml_assets.resources import build_resources

PROJECT_ROOT = Path(__file__).resolve().parent.parent


EXECUTOR_ENV_VAR = "ML_ASSETS_EXECUTOR"
# In-process by default: DuckDB takes one writer at a time anyway, and a subprocess per step
# costs seconds (docs/benchmarks.md measures both). `multiprocess` is there for heavier backends.
EXECUTORS = {"in_process": dg.in_process_executor, "multiprocess": dg.multiprocess_executor}


def automation_sensor() -> dg.AutomationConditionSensorDefinition:
    """Evaluates every asset's automation condition. Dagster's default one starts stopped; this
    one runs as soon as the daemon does."""
    return dg.AutomationConditionSensorDefinition(
        "lifecycle_automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=sensor_interval_seconds(),
        description=(
            "Runs the lifecycle by itself: each asset whose condition says 'follows its parents' is "
            "materialized for the days whose parents changed (a new or late file flows from raw to the "
            "drift report). Retraining is the retraining sensor's decision."
        ),
    )


def build_definitions() -> dg.Definitions:
    stages = dg.load_from_defs_folder(path_within_project=PROJECT_ROOT)
    executor = os.environ.get(EXECUTOR_ENV_VAR, "in_process")
    if executor not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV_VAR}={executor!r}: use one of {sorted(EXECUTORS)}")
    return dg.Definitions.merge(
        stages,
        dg.Definitions(
            resources=build_resources(),
            executor=EXECUTORS[executor],
            sensors=[automation_sensor()],
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
