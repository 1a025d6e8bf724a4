"""Features: per-row and rolling per-entity features, point-in-time correct."""

from datetime import timedelta

import dagster as dg
import polars as pl

from ml_assets.metadata import check_results, check_specs, checked_write, table_metadata
from ml_assets.names import FEATURES_ASSET, Tables, asset_key, key_prefix
from ml_assets.partitions import previous_days, time_window
from ml_assets.policies import daily_asset_args, follow_parents
from ml_assets.resources import Warehouse
from ml_assets.settings import Settings
from ml_assets.spec import DatasetSpec
from ml_assets.transforms.features import (
    build_features,
    column_lineage,
    expected_schema,
    feature_columns,
)
from ml_assets.transforms.quality import table_checks

# Rolling windows are per entity, so entities are processed in buckets of about this many rows:
# memory stays flat however many rows a day holds (1M rows a day reads ~8M rows of history).
BUCKET_ROWS = 750_000


def history_query(spec: DatasetSpec, table: str, buckets: int = 1) -> str:
    """The rows day D's features need: D itself, and the earlier days of its entities only.

    Earlier days only need what rolling windows read (id, time, entity, summed columns); the
    other columns are read as NULL there. With `buckets` > 1, $bucket selects one hash bucket
    of entities.
    """
    t, e, id_col = spec.event_time_column, spec.entity_column, spec.id_column
    if e is None or spec.feature_history_days == 0:
        cols = list(dict.fromkeys([id_col, t, *spec.model_inputs, *spec.sensitive_columns]))
        return f"SELECT {', '.join(cols)} FROM {table} WHERE {t} >= $start AND {t} < $end"
    windowed = {id_col, t, e, *spec.features.rolling.sum_columns}
    cols = list(dict.fromkeys([id_col, t, e, *spec.model_inputs, *spec.sensitive_columns]))
    select = ", ".join(
        c if c in windowed else f"CASE WHEN {t} >= $start THEN {c} END AS {c}" for c in cols
    )
    bucket = f" AND hash({e}) % {buckets} = $bucket" if buckets > 1 else ""
    return (
        f"SELECT {select} FROM {table} WHERE {t} >= $history_start AND {t} < $end{bucket} "
        f"AND {e} IN (SELECT DISTINCT {e} FROM {table} WHERE {t} >= $start AND {t} < $end)"
    )


def read_and_build(
    warehouse: Warehouse, spec: DatasetSpec, table: str, start, end
) -> tuple[pl.DataFrame, int]:
    """Features for [start, end), computed one bucket of entities at a time; (frame, rows read)."""
    t = spec.event_time_column
    params = {"start": start, "end": end}
    if spec.entity_column is None or spec.feature_history_days == 0:
        rows = warehouse.read(history_query(spec, table), params)
        return build_features(rows, spec, start, end), len(rows)
    params["history_start"] = start - timedelta(days=spec.feature_history_days)
    total = warehouse.read(
        f"SELECT count(*) AS n FROM {table} WHERE {t} >= $history_start AND {t} < $end", params
    ).item()
    buckets = max(1, -(-total // BUCKET_ROWS))
    sql = history_query(spec, table, buckets)
    parts, read = [], 0
    for bucket in range(buckets):
        rows = warehouse.read(sql, params | ({"bucket": bucket} if buckets > 1 else {}))
        read += len(rows)
        parts.append(build_features(rows, spec, start, end))
        del rows
    return pl.concat(parts).sort("event_time", spec.id_column), read


def build(spec: DatasetSpec, settings: Settings) -> dg.Definitions:
    t = Tables(spec)
    numeric, categorical = feature_columns(spec)
    history = spec.feature_history_days
    lineage = column_lineage(spec)
    cleaned_key = asset_key(spec, spec.cleaned_asset)

    @dg.asset(
        name=FEATURES_ASSET,
        description=(
            f"Model inputs per event: {len(numeric)} numeric and {len(categorical)} categorical features. "
            f"Rolling counts and sums per {spec.entity_column or '(no entity: none)'} over "
            f"{', '.join(spec.features.rolling.windows) if spec.entity_column else '-'} use only earlier events "
            f"(windows closed before the event); day D reads {spec.cleaned_asset} for days D-{history}..D."
        ),
        group_name="features",
        key_prefix=key_prefix(spec),
        kinds={"duckdb", "polars"},
        **daily_asset_args(spec, settings),
        deps=[dg.AssetDep(cleaned_key, partition_mapping=previous_days(history))],
        automation_condition=follow_parents(),
        check_specs=check_specs(asset_key(spec, FEATURES_ASSET)),
        metadata={"table": t.features},
    )
    def features(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        start, end = time_window(context)
        frame, rows_read = read_and_build(warehouse, spec, t.cleaned, start, end)
        outcomes = table_checks(
            frame,
            expected_schema(spec),
            {c: 0.0 for c in [spec.id_column, "event_time"]},
            spec.id_column,
            {c: (0, None) for c in numeric if c.startswith(f"{spec.entity_column}_")},
        )
        checked_write(
            warehouse, FEATURES_ASSET, outcomes, [(t.features, frame, "event_time", start, end)]
        )
        column_lineage_meta = dg.TableColumnLineage(
            deps_by_column={
                col: [dg.TableColumnDep(asset_key=cleaned_key, column_name=src) for src in sources]
                for col, sources in lineage.items()
                if col in frame.columns
            }
        )
        return dg.MaterializeResult(
            metadata=table_metadata(
                frame,
                hide=spec.identifying_columns,
                **{"dagster/column_lineage": column_lineage_meta},
                history_rows_read=dg.MetadataValue.int(rows_read),
                numeric_features=dg.MetadataValue.json(numeric),
                categorical_features=dg.MetadataValue.json(categorical),
            ),
            check_results=check_results(outcomes, warn_only={"value_ranges"}),
        )

    return dg.Definitions(assets=[features])
