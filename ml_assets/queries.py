"""Reads of the warehouse that more than one stage makes, in one place each."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from ml_assets.names import SCORE_COLUMN, Tables
from ml_assets.spec import DatasetSpec
from ml_assets.storage.interfaces import Warehouse


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


def matured_days(warehouse: Warehouse, labels_table: str) -> pl.DataFrame:
    """Per day of the labels table: its events and how many are still unlabelled."""
    return warehouse.read(
        f"""SELECT CAST(date_trunc('day', event_time) AS TIMESTAMP) AS day, count(*) AS events,
                   count(*) FILTER (WHERE label_status = 'unlabelled') AS unlabelled
            FROM {labels_table} GROUP BY 1 ORDER BY 1"""
    )


def labelled_in(
    warehouse: Warehouse, labels_table: str, start, end, source: str | None = None
) -> int:
    """Events with a label in [start, end): of any source, or of `source` only (validation and
    test use `ground_truth`)."""
    return int(
        warehouse.read(
            f"SELECT count(*) AS n FROM {labels_table} "
            "WHERE event_time >= ? AND event_time < ? AND label IS NOT NULL"
            + (" AND label_source = ?" if source else ""),
            [start, end, *([source] if source else [])],
        ).item()
    )


def keep_per_million(wanted: int, available: int) -> int:
    """The share of rows to keep, per million, so that about `wanted` of `available` stay."""
    return min(1_000_000, int(1_000_000 * wanted / max(1, available)))


def recent_unlabelled_features(
    warehouse: Warehouse, tables: Tables, id_col: str, days: int
) -> pl.DataFrame:
    """The feature rows of the events still without a label on the newest `days` days of
    features: where a model will be judged next, before anyone knows how it did."""
    if not (warehouse.exists(tables.features) and warehouse.exists(tables.labels)):
        return pl.DataFrame()
    return warehouse.read(
        f"""WITH newest AS (SELECT max(event_time) AS newest_time FROM {tables.features})
            SELECT f.* FROM {tables.features} f
            JOIN {tables.labels} l ON CAST(f.{id_col} AS VARCHAR) = l.event_id
            WHERE l.label_status = 'unlabelled'
              AND f.event_time >= (SELECT date_trunc('day', newest_time) FROM newest) - to_days(?)""",
        [days - 1],
    )


def training_rows(
    warehouse: Warehouse, tables: Tables, id_col: str, split, seed: int, keep: dict[str, int]
) -> pl.DataFrame:
    """The labelled feature rows of a time split, each with its slice: the gap left out,
    validation and test on ground truth only, each slice's rows sampled down to its share per
    million in `keep` (train, validation, test) by a seeded hash of the id."""
    return warehouse.read(
        f"""SELECT f.*, l.label, l.label_source,
                   CASE WHEN f.event_time < $train_end THEN 'train'
                        WHEN f.event_time < $test_start THEN 'validation'
                        ELSE 'test' END AS split
            FROM {tables.features} f JOIN {tables.labels} l ON CAST(f.{id_col} AS VARCHAR) = l.event_id
            WHERE l.label IS NOT NULL AND f.event_time >= $train_start AND f.event_time < $test_end
              -- the gap between training and validation is not used
              AND (f.event_time < $train_end OR f.event_time >= $validation_start)
              -- validated and tested on ground truth only; it may train on any source
              AND (f.event_time < $train_end OR l.label_source = 'ground_truth')
              AND hash(f.{id_col}, $seed) % 1000000 < CASE
                  WHEN f.event_time < $train_end THEN $keep_train
                  WHEN f.event_time < $test_start THEN $keep_validation
                  ELSE $keep_test END
            ORDER BY f.event_time, f.{id_col}""",
        {
            "train_start": split.train_start,
            "train_end": split.train_end,
            "validation_start": split.validation_start,
            "test_start": split.test_start,
            "test_end": split.test_end,
            "seed": seed,
            "keep_train": keep["train"],
            "keep_validation": keep["validation"],
            "keep_test": keep["test"],
        },
    )


def fingerprint(warehouse: Warehouse, table: str, id_col: str, time_col: str, start, end) -> str:
    """A content version of the rows in a window: row count and an order-free hash of all values."""
    n, h = warehouse.read(
        f"SELECT count(*) AS n, coalesce(bit_xor(hash(t)), 0) AS h "
        f"FROM {table} t WHERE {time_col} >= ? AND {time_col} < ?",
        [start, end],
    ).row(0)
    return f"{n}-{int(h):x}"


def drift_status(warehouse: Warehouse, drift_days_table: str) -> str:
    """The drift verdicts of the newest 7 reported days (what a model card records at training)."""
    days = warehouse.read_if_exists(
        drift_days_table,
        f"SELECT day, dataset_drifted FROM {drift_days_table} ORDER BY day DESC LIMIT 7",
    )
    if days is None or days.is_empty():
        return "no drift report yet"
    drifted = days.filter(pl.col("dataset_drifted"))["day"].sort()
    return (
        f"{len(drifted)} of the newest {len(days)} reported days drifted"
        + (f" ({', '.join(f'{d:%Y-%m-%d}' for d in drifted)})" if len(drifted) else "")
        + f", as of {days['day'].max():%Y-%m-%d} (against the previous model's reference)"
    )


def scored_predictions(
    warehouse: Warehouse, spec: DatasetSpec, start, end, window_start, slice_columns: list[str]
) -> pl.DataFrame:
    """day, score, model_version and label_status of the predictions from `window_start` to
    `end`, with the slice columns on the days of [start, end) only (at a million events a day,
    the slice strings of the window's earlier days would be most of it)."""
    t = Tables(spec)
    slices = ", ".join(f"f.{c}" for c in slice_columns) or "NULL AS no_slice"
    scored = warehouse.read(
        f"""SELECT CAST(date_trunc('day', p.event_time) AS TIMESTAMP) AS day, p.score, p.model_version,
                   l.label_status, {slices}
            FROM {t.predictions} p
            JOIN {t.labels} l ON p.event_id = l.event_id
            JOIN {t.features} f ON CAST(f.{spec.id_column} AS VARCHAR) = p.event_id
            WHERE p.event_time >= ? AND p.event_time < ?""",
        [start, end],
    )
    earlier = warehouse.read(
        f"""SELECT CAST(date_trunc('day', p.event_time) AS TIMESTAMP) AS day, p.score, p.model_version,
                   l.label_status
            FROM {t.predictions} p JOIN {t.labels} l ON p.event_id = l.event_id
            WHERE p.event_time >= ? AND p.event_time < ?""",
        [window_start, start],
    )
    return pl.concat([earlier, scored], how="diagonal_relaxed")


def prediction_drift_by_day(warehouse: Warehouse, drift_columns_table: str, start, end) -> dict:
    """The drift report's verdict on the prediction score, per day of [start, end)."""
    drift = warehouse.read_if_exists(
        drift_columns_table,
        f"SELECT day, statistic, drifted FROM {drift_columns_table} "
        f"WHERE \"column\" = '{SCORE_COLUMN}' AND day >= ? AND day < ?",
        [start, end],
    )
    return {r["day"]: r for r in drift.iter_rows(named=True)} if drift is not None else {}


def newest_row(warehouse: Warehouse, table: str, columns: str, where: str = "TRUE") -> dict | None:
    """The row with the newest `day` of a per-day table (None when it has none, or no table)."""
    newest = warehouse.read_if_exists(
        table, f"SELECT {columns} FROM {table} WHERE {where} ORDER BY day DESC LIMIT 1"
    )
    return newest.row(0, named=True) if newest is not None and len(newest) else None


def newest_matured_day(warehouse: Warehouse, performance_days_table: str) -> dict | None:
    """The newest matured day of model_performance: its model version, alert and why."""
    return newest_row(
        warehouse, performance_days_table, "day, model_version, alert, why", "state = 'matured'"
    )


def newest_estimated_day(warehouse: Warehouse, performance_days_table: str) -> dict | None:
    """The newest day of model_performance when it has a CBPE estimate: its version, estimated
    alert and why (None otherwise, and on a table written before the estimates)."""
    row = newest_row(warehouse, performance_days_table, "*")
    if row is None or row.get("est_window_roc_auc") is None:
        return None
    return row


def day_inputs(
    warehouse: Warehouse, tables: Tables, id_col: str, columns: list[str], day: datetime
) -> pl.DataFrame:
    """The model inputs `columns` of one day's features, with each event's prediction score."""
    compared = ", ".join(f"f.{c}" for c in columns)
    return warehouse.read(
        f"""SELECT {compared}, p.score AS {SCORE_COLUMN} FROM {tables.features} f
            JOIN {tables.predictions} p ON CAST(f.{id_col} AS VARCHAR) = p.event_id
            WHERE f.event_time >= ? AND f.event_time < ?""",
        [day, day + timedelta(days=1)],
    )


def drifted_days_since(
    warehouse: Warehouse, drift_days_table: str, version: str, since: datetime | None
) -> int:
    """Days that drifted against `version`'s reference, from `since` on (all of them with None)."""
    return int(
        warehouse.read(
            f"""SELECT count(DISTINCT day) AS n FROM {drift_days_table}
                WHERE model_version = ? AND dataset_drifted
                  AND (CAST(? AS TIMESTAMP) IS NULL OR day >= ?)""",
            [version, since, since],
        ).item()
    )


def newest_drift_day(warehouse: Warehouse, drift_days_table: str) -> dict | None:
    """The drift report's newest day: the model version it compared with, what drifted."""
    return newest_row(warehouse, drift_days_table, "day, model_version, important_drifted")


def missing_before_cleaning(
    warehouse: Warehouse, cleaning_days: str, start, end
) -> dict[object, dict[str, float]]:
    """{day: {column: share of the day's rows (after dedup) missing before imputation}} from
    the cleaning table, for the days of [start, end) that have one; and under the key "all" the
    share over the whole range."""
    counts = warehouse.read_if_exists(
        cleaning_days,
        f"""SELECT day, rule, "column", rows FROM {cleaning_days}
            WHERE day >= ? AND day < ? AND rule IN ('imputed', 'rows_in', 'duplicates_removed')""",
        [start, end],
    )
    out: dict[object, dict[str, float]] = {}
    if counts is None or counts.is_empty():
        return out
    rows = (
        counts.filter(pl.col("column").is_null())
        .group_by("day")
        .agg(
            n=pl.col("rows").filter(pl.col("rule") == "rows_in").sum()
            - pl.col("rows").filter(pl.col("rule") == "duplicates_removed").sum()
        )
    )
    missing = counts.filter(pl.col("rule") == "imputed").join(rows, on="day")
    # a day without rows has no missing share (None: the features' rate stands)
    for r in missing.iter_rows(named=True):
        out.setdefault(r["day"], {})[r["column"]] = r["rows"] / r["n"] if r["n"] else None
    total = missing.group_by("column").agg(pl.col("rows").sum(), pl.col("n").sum())
    out["all"] = {
        r["column"]: r["rows"] / r["n"] if r["n"] else None for r in total.iter_rows(named=True)
    }
    return out


def unknown_values_by_day(warehouse: Warehouse, unknown_values: str, start, end) -> dict:
    """{day: {column: "raw (rows), ..."}}: the raw values cleaning mapped to an unknown category."""
    frame = warehouse.read_if_exists(
        unknown_values,
        f"""SELECT day, "column", mapped_to, raw_value, rows FROM {unknown_values}
            WHERE day >= ? AND day < ? ORDER BY day, "column", rows DESC, raw_value""",
        [start, end],
    )
    out: dict = {}
    if frame is None:
        return out
    for r in frame.iter_rows(named=True):
        text = f"{r['raw_value']} ({r['rows']})"
        day = out.setdefault(r["day"], {})
        day[r["column"]] = (
            f"{day[r['column']]}, {text}"
            if r["column"] in day
            else f"{r['mapped_to'] or 'null'} <- {text}"
        )
    return out
