"""The code location: the stages under defs/, the resources, and project-wide policies.

Nothing happens at import: the spec, the data folder and the resources are read when Dagster
loads the definitions, so tests can point ML_ASSETS_SPEC / ML_ASSETS_DATA_DIR elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ml_assets.resources import build_resources

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def build_definitions() -> dg.Definitions:
    stages = dg.load_from_defs_folder(path_within_project=PROJECT_ROOT)
    return dg.Definitions.merge(
        stages,
        dg.Definitions(
            resources=build_resources(),
            # In-process: DuckDB takes one writer at a time anyway, and a subprocess per step costs
            # seconds (docs/benchmarks.md measures both).
            executor=dg.in_process_executor,
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
