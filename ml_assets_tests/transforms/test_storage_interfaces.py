"""Every backend has what its Protocol asks for (the stages are typed against the Protocols)."""

from __future__ import annotations

import pytest

from ml_assets.storage.duckdb_file import DuckDBReader, DuckDBWarehouse
from ml_assets.storage.interfaces import FileStore, ModelRegistry, Warehouse, WarehouseReader
from ml_assets.storage.local_files import LocalFiles, LocalModelRegistry


def test_the_embedded_backends_satisfy_their_protocols(tmp_path):
    warehouse = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    assert isinstance(warehouse, Warehouse)
    assert isinstance(DuckDBReader(None), WarehouseReader)
    assert isinstance(LocalFiles(data_dir=str(tmp_path)), FileStore)
    assert isinstance(LocalModelRegistry(data_dir=str(tmp_path)), ModelRegistry)
    # a reader is not a warehouse: it has no writes
    assert not isinstance(DuckDBReader(None), Warehouse)


def test_the_cluster_backends_satisfy_their_protocols(tmp_path):
    pytest.importorskip("deltalake", reason="the cluster extra is not installed")
    pytest.importorskip("upath", reason="the cluster extra is not installed")
    from ml_assets.storage.delta_lake import DeltaWarehouse
    from ml_assets.storage.object_store import ObjectStoreFiles, ObjectStoreRegistry

    assert isinstance(DeltaWarehouse(root=str(tmp_path / "lake")), Warehouse)
    files = ObjectStoreFiles(root=f"file://{tmp_path}/store", staging_dir=str(tmp_path / "s"))
    assert isinstance(files, FileStore)
    assert isinstance(ObjectStoreRegistry(root=f"file://{tmp_path}/store"), ModelRegistry)
