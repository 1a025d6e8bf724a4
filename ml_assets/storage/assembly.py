"""The one place a storage backend is named: the settings choose the embedded profile (a DuckDB
file and the data folder) or the cluster's (Delta Lake tables, an object store), and the
cluster's modules are imported only then, so the embedded profile does not need them."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from ml_assets.storage.arrow import DUCKDB_CONFIG
from ml_assets.storage.duckdb_file import WAREHOUSE_FILE, DuckDBWarehouse
from ml_assets.storage.local_files import LocalFiles, LocalModelRegistry


def require_cluster_extra(module: str, setting: str) -> None:
    """A cluster setting without the cluster extra installed: say which, and the fix."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        from ml_assets.settings import SettingsError

        raise SettingsError(
            f"{setting} needs the `cluster` extra ({module} is not installed). "
            "Fix: pip install -e '.[cluster]' (or `make install`), or unset it for the embedded profile"
        )


def build_warehouse(settings):
    """The tables' backend: the DuckDB file (embedded), or Delta Lake tables (cluster; imported
    only then, so the embedded profile does not need deltalake)."""
    # DuckDB's default buffer pool is 80% of RAM and it keeps what it took; a cap keeps a
    # 1M-row day well under 2 GiB, and DuckDB spills to disk past it.
    memory_limit = settings.duckdb_memory_limit
    if settings.warehouse == "delta":
        require_cluster_extra("deltalake", "ML_ASSETS_WAREHOUSE=delta")
        from ml_assets.storage.delta_lake import DeltaWarehouse

        return DeltaWarehouse(root=settings.lake_root, memory_limit=memory_limit)
    return DuckDBWarehouse(
        database=str(Path(settings.data_dir) / WAREHOUSE_FILE),
        connection_config={"memory_limit": memory_limit, **DUCKDB_CONFIG},
    )


def embedded_warehouse(data_dir) -> DuckDBWarehouse:
    """The embedded profile's DuckDB file of a data folder (its default connection settings):
    for the command-line tools that read a data folder without the definitions."""
    return DuckDBWarehouse(database=str(Path(data_dir) / WAREHOUSE_FILE))


def build_file_store(settings) -> dict:
    """Landing, archive, quarantine, reports and batches (`files`) and the model registry: the
    data folder (embedded), or an object store (ML_ASSETS_FILES_ROOT=s3://...; imported only
    then)."""
    if settings.files_root:
        require_cluster_extra("upath", f"ML_ASSETS_FILES_ROOT={settings.files_root}")
        require_cluster_extra("s3fs", f"ML_ASSETS_FILES_ROOT={settings.files_root}")
        from ml_assets.storage.object_store import ObjectStoreFiles, ObjectStoreRegistry

        return {
            "files": ObjectStoreFiles(
                root=settings.files_root, staging_dir=str(Path(settings.data_dir) / "staged")
            ),
            "registry": ObjectStoreRegistry(root=settings.files_root),
        }
    return {
        "files": LocalFiles(data_dir=str(settings.data_dir)),
        "registry": LocalModelRegistry(data_dir=str(settings.data_dir)),
    }


def build_mlflow_mirror(settings):
    """The MLflow mirror: on when MLFLOW_TRACKING_URI (or a spec's `mlflow` block) names a store."""
    from ml_assets.storage.mlflow_mirror import TRACKING_URI_ENV_VAR, MLflowMirror

    # by name where it is set: a URI with a user and password would otherwise be shown in the
    # UI's resource config and written to the instance's snapshot of the definitions
    given = os.environ.get(TRACKING_URI_ENV_VAR)
    return MLflowMirror(
        tracking_uri=dg.EnvVar(TRACKING_URI_ENV_VAR) if given else "",
        artifact_root=str(Path(settings.data_dir) / "mlflow"),
    )


def build_storage(settings) -> dict:
    """The storage resources of the code location: warehouse, files, registry and MLflow mirror."""
    return {
        "warehouse": build_warehouse(settings),
        **build_file_store(settings),
        "mlflow": build_mlflow_mirror(settings),
    }
