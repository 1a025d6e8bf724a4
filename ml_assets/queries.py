"""Reads of the warehouse that more than one stage makes, in one place each."""

from __future__ import annotations

import polars as pl

from ml_assets.names import Tables
from ml_assets.resources import Warehouse
from ml_assets.spec import DatasetSpec


def window_events(warehouse: Warehouse, spec: DatasetSpec, start, end) -> pl.DataFrame:
    """event_id (as text) and event_time of the cleaned events in [start, end): what labels join to."""
    id_col, time_col = spec.id_column, spec.event_time_column
    table = Tables(spec).cleaned
    return warehouse.read(
        f"SELECT CAST({id_col} AS VARCHAR) AS event_id, CAST({time_col} AS TIMESTAMP) AS event_time "
        f"FROM {table} WHERE {time_col} >= ? AND {time_col} < ?",
        [start, end],
    )


def labelled_events(warehouse: Warehouse, labels_table: str) -> int:
    """Events with a real label (ground truth or manual, not weak) in the whole labels table."""
    return int(
        warehouse.read(
            f"SELECT count(*) AS n FROM {labels_table} "
            "WHERE label IS NOT NULL AND label_source IS DISTINCT FROM 'weak'"
        ).item()
    )
