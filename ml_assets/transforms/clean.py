"""Cleaning a raw table by the rules of its spec: dedup, categories, ranges, missing values.

No Dagster here. Every rule returns what it changed, so the asset can report counts in and out.
Personal columns arrive pseudonymized already: ingestion replaces them (transforms/privacy.py),
so no table, raw included, holds a clear personal value.
"""

from __future__ import annotations

import polars as pl

from ml_assets.spec import Column
from ml_assets.transforms.ingest import SOURCE_FILE_COLUMN


def deduplicate(frame: pl.DataFrame, id_column: str | None) -> tuple[pl.DataFrame, int]:
    """Keep the first row per id (by file order); identical rows when there is no id."""
    # a mask over the key, then one filter: `unique()` would hash and gather every column
    subset = [id_column] if id_column else [c for c in frame.columns if c != SOURCE_FILE_COLUMN]
    key = pl.col(id_column) if id_column else pl.struct(subset)
    out = frame.filter(key.is_first_distinct())
    return out, len(frame) - len(out)


def _category_rule(col: Column) -> tuple[pl.Expr, pl.Expr]:
    value = pl.col(col.name).str.strip_chars()
    unknown = value.is_not_null() & ~value.is_in(col.categories)
    replacement = (
        pl.lit(col.unknown_category, pl.String) if col.unknown_category else pl.lit(None, pl.String)
    )
    return pl.when(unknown).then(replacement).otherwise(value).alias(col.name), unknown.sum()


def _range_rule(col: Column) -> tuple[pl.Expr, pl.Expr]:
    c = pl.col(col.name)
    low = c < col.range.min if col.range.min is not None else pl.lit(False)
    high = c > col.range.max if col.range.max is not None else pl.lit(False)
    outside = (low | high).fill_null(False)
    if col.range.action == "clip":
        # bounds are floats in the spec; an int column stays int
        low_b = (
            None
            if col.range.min is None
            else (int(col.range.min) if col.type == "int" else col.range.min)
        )
        high_b = (
            None
            if col.range.max is None
            else (int(col.range.max) if col.type == "int" else col.range.max)
        )
        fixed = c.clip(low_b, high_b)
    else:
        fixed = pl.when(outside).then(None).otherwise(c)
    return fixed.alias(col.name), outside.sum()


def _impute_value(frame: pl.DataFrame, col: Column):
    strategy = col.impute.strategy
    series = frame[col.name]
    if strategy == "constant":
        return col.impute.value
    if series.null_count() == len(series):
        return None  # nothing to learn a statistic from; leave the nulls
    if strategy == "median":
        return series.median()
    if strategy == "mean":
        return series.mean()
    if strategy == "mode":
        return series.drop_nulls().mode().sort().first()
    return None


def clean(
    frame: pl.DataFrame,
    spec_columns: list[Column],
    id_column: str | None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Apply the spec's rules in order; returns the cleaned frame and what each rule changed."""
    stats: dict[str, int] = {"rows_in": len(frame)}
    frame, stats["duplicates_removed"] = deduplicate(frame, id_column)

    rules, counters = [], []
    for col in spec_columns:
        if col.categories is not None:
            expr, count = _category_rule(col)
            rules.append(expr)
            counters.append(count.alias(f"unknown_category:{col.name}"))
        elif col.range is not None:
            expr, count = _range_rule(col)
            rules.append(expr)
            counters.append(count.alias(f"out_of_range:{col.name}"))
    if counters:
        counts = frame.select(counters).row(0, named=True)
        stats.update({k: int(v) for k, v in counts.items()})
        frame = frame.with_columns(rules)

    drop_mask = pl.lit(False)
    fills = []
    for col in spec_columns:
        if col.impute.strategy == "none":
            continue
        missing = frame[col.name].null_count()
        stats[f"imputed:{col.name}"] = missing
        if col.impute.strategy == "drop_row":
            drop_mask = drop_mask | pl.col(col.name).is_null()
            continue
        value = _impute_value(frame, col)
        if value is not None and missing:
            fills.append(pl.col(col.name).fill_null(pl.lit(value).cast(frame.schema[col.name])))
    if fills:
        frame = frame.with_columns(fills)
    before = len(frame)
    frame = frame.filter(~drop_mask)
    stats["rows_dropped_missing"] = before - len(frame)

    stats["rows_out"] = len(frame)
    return frame, stats
