"""Point-in-time features per event. No Dagster here.

Per row: the spec's numeric and categorical columns, and the hour and weekday of the event.
Per entity: over each rolling window, the count of the entity's earlier events and the sum of
each `sum_columns` value, over [t - window, t): strictly before the event, so nothing from the
event itself or after it leaks in. Plus seconds since the entity's previous event (its last one at
an earlier time: events at the same time are not each other's previous).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl

from ml_assets.spec import DatasetSpec, polars_types
from ml_assets.spec.modelling import window_timedelta


def rolling_feature_names(spec: DatasetSpec) -> list[str]:
    if spec.entity_column is None:
        return []
    rolling = spec.features.rolling
    return rolling_names(rolling.windows, rolling.sum_columns, spec.entity_column)


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


ENTITY_CODE = "_entity_code"  # an integer per entity, when the reader numbered them already


def rolling_columns(
    codes: np.ndarray,
    micros: np.ndarray,
    sums: dict[str, np.ndarray],
    wanted: np.ndarray,
    windows: list[str],
    entity: str,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """For the `wanted` rows: for each window w the count of the same entity's rows in
    [t - w, t) and the sum of each `sums` column over them, and seconds since the entity's
    previous row (NaN for its first). All rows count as history; only wanted rows get values.

    Returns (the wanted rows' indices, their values in that order). One sort by (entity, time),
    then binary searches: in that order an event's window is the run of its entity's rows from
    the first at or after t - w up to the first at t (ties at t are not earlier, so they are
    out), its count the run's length and its sums differences of a running sum. The searches go
    in sorted order, so they stay in cache. No per-entity loop: O(n log n) for all windows.
    """
    names = rolling_names(windows, list(sums), entity)
    if not wanted.any():
        return np.zeros(0, np.int64), {
            name: np.zeros(0, np.int32 if name.startswith(f"{entity}_events_") else np.float64)
            for name in names
        }
    code = codes.astype(np.int64) + 1  # null entities are -1
    low, high = int(micros.min()), int(micros.max())
    widths = [int(window_timedelta(w) / timedelta(microseconds=1)) for w in windows]
    span = high - low + 1
    if (int(code.max()) + 2) * span < 2**62:
        times, position = None, micros - low  # (entity, time) packs into one int64
    else:  # too wide a time range for that: times as ranks among the distinct times
        span = len(times := np.unique(micros)) + 1
        position = np.searchsorted(times, micros)
    key = code * span + position
    # the order among events of one entity at one time changes nothing: none is before another
    order = pl.Series(key).arg_sort().to_numpy()
    key_sorted = key[order]
    at = np.flatnonzero(wanted[order])  # the wanted rows' places in that order, increasing
    row_key, row_code, row_micros = key_sorted[at], code[order[at]], micros[order[at]]
    base = row_code * span  # the key of the entity's time 0
    first_at_t = np.searchsorted(key_sorted, row_key, side="left")
    running = {
        c: np.concatenate([[0.0], np.cumsum(v.astype(np.float64)[order])]) for c, v in sums.items()
    }
    out: dict[str, np.ndarray] = {}
    for w, width in zip(windows, widths, strict=True):
        if times is None:
            lowest = np.maximum(row_micros - width - low, 0)
        else:
            lowest = np.searchsorted(times, row_micros - width, side="left")
        first_in = np.searchsorted(key_sorted, base + lowest, side="left")
        out[f"{entity}_events_{w}"] = (first_at_t - first_in).astype(np.int32)
        for c, r in running.items():
            # an empty window sums to exactly 0, not a rounding residue of the running sum
            total = np.where(first_at_t > first_in, r[first_at_t] - r[first_in], 0.0)
            out[f"{entity}_{c}_sum_{w}"] = total
    # the previous event is the entity's last one at an earlier time: of two events at the same
    # time neither is the other's previous (their order in the table is no fact about them)
    before = np.maximum(first_at_t - 1, 0)
    same = (first_at_t > 0) & (code[order[before]] == row_code)
    out[f"{entity}_seconds_since_previous"] = np.where(
        same, (row_micros - micros[order[before]]) / 1e6, np.nan
    )
    return order[at], {name: out[name] for name in names}


def rolling_names(windows: list[str], sum_columns: list[str], entity: str) -> list[str]:
    """Per window the count and the sums, then the seconds since the previous event."""
    names = []
    for w in windows:
        names.append(f"{entity}_events_{w}")
        names += [f"{entity}_{c}_sum_{w}" for c in sum_columns]
    return [*names, f"{entity}_seconds_since_previous"]


def entity_codes(frame: pl.DataFrame, entity: str) -> np.ndarray:
    """An integer per distinct entity value (null is one more value), as the reader's
    ENTITY_CODE column when it numbered them, else numbered here."""
    if ENTITY_CODE in frame.columns:
        return frame[ENTITY_CODE].to_numpy()
    codes = frame[entity].cast(pl.String).cast(pl.Categorical).to_physical().cast(pl.Int64)
    return codes.fill_null(-1).to_numpy()


def build_features(
    history: pl.DataFrame,
    spec: DatasetSpec,
    start: datetime,
    end: datetime,
    earlier: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Features for the events in [start, end); `history` also holds the earlier days windows need.

    `history` needs the id, event time, entity and sum columns for all its rows, and the model
    input columns for the rows in [start, end). Or: `history` holds the day's rows and `earlier`
    the earlier days' as ENTITY_CODE, event time and summed columns only (both numbered by the
    reader), which saves holding the day's other columns, empty, for every earlier row.
    """
    t, e, id_col = spec.event_time_column, spec.entity_column, spec.id_column
    # an event without a time is in no window and no day
    frame = history.with_columns(pl.col(t).cast(pl.Datetime("us")).alias("event_time")).filter(
        pl.col("event_time").is_not_null()
    )
    in_range = (pl.col("event_time") >= start) & (pl.col("event_time") < end)
    if e is not None and spec.features.rolling.windows:
        sum_columns = spec.features.rolling.sum_columns
        parts = [frame] if earlier is None else [frame, earlier.rename({t: "event_time"})]
        rows, rolling = rolling_columns(
            np.concatenate([entity_codes(p, e) for p in parts]),
            np.concatenate(
                [p["event_time"].cast(pl.Datetime("us")).dt.epoch("us").to_numpy() for p in parts]
            ),
            {
                c: np.concatenate([p[c].cast(pl.Float64).fill_null(0.0).to_numpy() for p in parts])
                for c in sum_columns
            },
            np.concatenate(
                [frame.select(in_range.fill_null(False)).to_series().to_numpy()]
                + [np.zeros(len(p), dtype=bool) for p in parts[1:]]
            ),
            spec.features.rolling.windows,
            e,
        )
        frame = (
            frame[rows]
            .with_columns(
                pl.Series(name, values, dtype=pl.Int32 if values.dtype == np.int32 else pl.Float64)
                for name, values in rolling.items()
            )
            .with_columns(pl.col(f"{e}_seconds_since_previous").fill_nan(None))
        )
    if spec.features.time_parts:
        frame = frame.with_columns(
            pl.col("event_time").dt.hour().cast(pl.Int8).alias("event_hour"),
            pl.col("event_time").dt.weekday().cast(pl.Int8).alias("event_weekday"),
        )
    frame = frame.filter(in_range)
    numeric, categorical = feature_columns(spec)
    keep = [id_col, "event_time"] + [
        c for c in numeric + categorical + spec.sensitive_columns if c not in (id_col, "event_time")
    ]
    return frame.select(keep).sort("event_time", id_col)
