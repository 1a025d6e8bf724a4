"""Features: per-row and rolling per-entity features, point-in-time correct."""

from datetime import timedelta

import dagster as dg
import polars as pl

from ml_assets.metadata import check_results, check_specs, checked_write, table_metadata
from ml_assets.names import FEATURES_ASSET, Tables, asset_key, key_prefix
from ml_assets.partitions import previous_days, time_window
from ml_assets.policies import daily_asset_args, follow_parents
from ml_assets.settings import Settings
from ml_assets.spec import DatasetSpec
from ml_assets.storage.interfaces import Warehouse
from ml_assets.transforms.features import (
    ENTITY_CODE,
    build_features,
    column_lineage,
    expected_schema,
    feature_columns,
)
from ml_assets.transforms.quality import table_checks

# Rolling windows are per entity, so entities are processed in buckets of about this many rows
# (the day's and its earlier days'): memory stays flat however many rows a day holds. The earlier
# days' rows are three numbers each (entity number, time, summed value), so a bucket is small.
BUCKET_ROWS = 8_000_000


def history_queries(spec: DatasetSpec, table: str, buckets: int = 1) -> tuple[str, str]:
    """The SQL of the rows day D's features need: (D's own rows, its entities' earlier rows).

    The day's entities are numbered (ENTITY_CODE) in the query, so the rolling windows sort
    numbers rather than strings; earlier days only give what windows read (the entity's number,
    the time, the summed columns), and only for the entities seen on D. With `buckets` > 1,
    $bucket selects one bucket of entities in both.
    """
    t, e, id_col = spec.event_time_column, spec.entity_column, spec.id_column
    cols = list(dict.fromkeys([id_col, t, e, *spec.model_inputs, *spec.sensitive_columns]))
    entities = (
        f"WITH entities AS (SELECT {e}, row_number() OVER (ORDER BY {e}) - 1 AS {ENTITY_CODE} "
        f"FROM (SELECT DISTINCT {e} FROM {table} WHERE {t} >= $start AND {t} < $end)) "
    )
    # by a hash of the entity, not its number: the same entities make a bucket in every query
    bucket = f" AND hash(x.{e}) % {buckets} = $bucket" if buckets > 1 else ""
    joined = f"FROM {table} AS x JOIN entities ON x.{e} IS NOT DISTINCT FROM entities.{e}"
    day = (
        f"{entities}SELECT {', '.join(f'x.{c}' for c in cols)}, {ENTITY_CODE} {joined} "
        f"WHERE x.{t} >= $start AND x.{t} < $end{bucket}"
    )
    sums = "".join(f", x.{c}" for c in spec.features.rolling.sum_columns)
    earlier = (
        f"{entities}SELECT {ENTITY_CODE}, x.{t}{sums} {joined} "
        f"WHERE x.{t} >= $history_start AND x.{t} < $start{bucket}"
    )
    return day, earlier


def read_and_build(
    warehouse: Warehouse, spec: DatasetSpec, table: str, start, end
) -> tuple[pl.DataFrame, int]:
    """Features for [start, end), computed one bucket of entities at a time; (frame, rows read)."""
    t, e = spec.event_time_column, spec.entity_column
    params = {"start": start, "end": end}
    if e is None or spec.feature_history_days == 0:
        cols = list(dict.fromkeys([spec.id_column, t, *spec.model_inputs, *spec.sensitive_columns]))
        rows = warehouse.read(
            f"SELECT {', '.join(cols)} FROM {table} WHERE {t} >= $start AND {t} < $end", params
        )
        return build_features(rows, spec, start, end), len(rows)
    params["history_start"] = start - timedelta(days=spec.feature_history_days)
    total = warehouse.read(
        f"SELECT count(*) AS n FROM {table} WHERE {t} >= $history_start AND {t} < $end", params
    ).item()
    buckets = max(1, -(-total // BUCKET_ROWS))
    day_sql, earlier_sql = history_queries(spec, table, buckets)
    parts, read = [], 0
    for bucket in range(buckets):
        bucket_params = params | ({"bucket": bucket} if buckets > 1 else {})
        day = warehouse.read(day_sql, bucket_params)
        earlier = warehouse.read(earlier_sql, bucket_params)
        read += len(day) + len(earlier)
        parts.append(build_features(day, spec, start, end, earlier=earlier))
        del day, earlier
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
    def features(
        context: dg.AssetExecutionContext, warehouse: dg.ResourceParam[Warehouse]
    ) -> dg.MaterializeResult:
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
