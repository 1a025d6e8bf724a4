"""Point-in-time features per event. No Dagster here.

Per row: the spec's numeric and categorical columns, and the hour and weekday of the event.
Per entity: over each rolling window, the count of the entity's earlier events and the sum of
each `sum_columns` value, over [t - window, t): strictly before the event, so nothing from the
event itself or after it leaks in. Plus seconds since the entity's previous event.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from ml_assets.spec import DatasetSpec, polars_types


def rolling_feature_names(spec: DatasetSpec) -> list[str]:
    entity = spec.entity_column
    if entity is None:
        return []
    names = []
    for w in spec.features.rolling.windows:
        names.append(f"{entity}_events_{w}")
        names += [f"{entity}_{c}_sum_{w}" for c in spec.features.rolling.sum_columns]
    names.append(f"{entity}_seconds_since_previous")
    return names


def time_feature_names(spec: DatasetSpec) -> list[str]:
    return ["event_hour", "event_weekday"] if spec.features.time_parts else []


def feature_columns(spec: DatasetSpec) -> tuple[list[str], list[str]]:
    """(numeric, categorical) model inputs, in a fixed order."""
    numeric = spec.numeric_columns + time_feature_names(spec) + rolling_feature_names(spec)
    return numeric, spec.categorical_columns


def expected_schema(spec: DatasetSpec) -> dict[str, pl.DataType]:
    """The columns and types `build_features` returns for this spec."""
    types = polars_types()
    schema: dict[str, pl.DataType] = {
        spec.id_column: types[spec.column(spec.id_column).type],
        "event_time": pl.Datetime("us"),
    }
    schema.update({c: types[spec.column(c).type] for c in spec.numeric_columns})
    schema.update({c: pl.Int8 for c in time_feature_names(spec)})
    e = spec.entity_column
    for name in rolling_feature_names(spec):
        schema[name] = pl.Int32 if name.startswith(f"{e}_events_") else pl.Float64
    schema.update({c: pl.String for c in spec.categorical_columns + spec.sensitive_columns})
    return schema


def column_lineage(spec: DatasetSpec) -> dict[str, list[str]]:
    """Feature column -> the cleaned columns it is computed from."""
    t, e = spec.event_time_column, spec.entity_column
    lineage = {spec.id_column: [spec.id_column], "event_time": [t]}
    lineage.update(
        {c: [c] for c in spec.numeric_columns + spec.categorical_columns + spec.sensitive_columns}
    )
    lineage.update({f: [t] for f in time_feature_names(spec)})
    if e is not None:
        for w in spec.features.rolling.windows:
            lineage[f"{e}_events_{w}"] = [e, t]
            for c in spec.features.rolling.sum_columns:
                lineage[f"{e}_{c}_sum_{w}"] = [e, t, c]
        lineage[f"{e}_seconds_since_previous"] = [e, t]
    return lineage


def build_features(
    history: pl.DataFrame, spec: DatasetSpec, start: datetime, end: datetime
) -> pl.DataFrame:
    """Features for the events in [start, end); `history` also holds the earlier days windows need.

    `history` needs the id, event time, entity and sum columns for all its rows, and the model
    input columns for the rows in [start, end).
    """
    t, e, id_col = spec.event_time_column, spec.entity_column, spec.id_column
    frame = history.with_columns(
        pl.col(t).cast(pl.Datetime("us")).alias("event_time")
        if t != "event_time"
        else pl.col(t).cast(pl.Datetime("us"))
    )
    exprs: list[pl.Expr] = []
    if e is not None and spec.features.rolling.windows:
        frame = frame.sort([e, "event_time"], maintain_order=True)
        one = pl.col("event_time").is_not_null().cast(pl.Int32)
        for w in spec.features.rolling.windows:
            exprs.append(
                one.rolling_sum_by("event_time", window_size=w, closed="left")
                .over(e)
                .fill_null(0)
                .cast(pl.Int32)
                .alias(f"{e}_events_{w}")
            )
            for c in spec.features.rolling.sum_columns:
                exprs.append(
                    pl.col(c)
                    .fill_null(0)
                    .rolling_sum_by("event_time", window_size=w, closed="left")
                    .over(e)
                    .fill_null(0.0)
                    .cast(pl.Float64)
                    .alias(f"{e}_{c}_sum_{w}")
                )
        exprs.append(
            (pl.col("event_time").diff().over(e).dt.total_seconds())
            .cast(pl.Float64)
            .alias(f"{e}_seconds_since_previous")
        )
    if spec.features.time_parts:
        exprs += [
            pl.col("event_time").dt.hour().cast(pl.Int8).alias("event_hour"),
            pl.col("event_time").dt.weekday().cast(pl.Int8).alias("event_weekday"),
        ]
    if exprs:
        frame = frame.with_columns(exprs)
    frame = frame.filter((pl.col("event_time") >= start) & (pl.col("event_time") < end))
    numeric, categorical = feature_columns(spec)
    keep = [id_col, "event_time"] + [
        c for c in numeric + categorical + spec.sensitive_columns if c not in (id_col, "event_time")
    ]
    return frame.select(keep).sort("event_time", id_col)
