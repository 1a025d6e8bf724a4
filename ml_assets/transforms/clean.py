"""Cleaning a raw table by the rules of its spec: dedup, categories, ranges, missing values.

No Dagster here. Every rule returns what it changed, so the asset can report counts in and out.
Personal columns arrive pseudonymized already: ingestion replaces them (transforms/privacy.py),
so no table, raw included, holds a clear personal value.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta

import polars as pl

from ml_assets.spec import Column
from ml_assets.transforms.ingest import SOURCE_FILE_COLUMN

FLOATS = (pl.Float32, pl.Float64)


def deduplicate(frame: pl.DataFrame, id_column: str | None) -> tuple[pl.DataFrame, int]:
    """Keep the first row per id (by file order); identical rows when there is no id."""
    # a mask over the key, then one filter: `unique()` would hash and gather every column
    subset = [id_column] if id_column else [c for c in frame.columns if c != SOURCE_FILE_COLUMN]
    key = pl.col(id_column) if id_column else pl.struct(subset)
    out = frame.filter(key.is_first_distinct())
    return out, len(frame) - len(out)


# characters that do not show but make two equal-looking values differ
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def normalize_category(value: str, categories: list[str]) -> tuple[str | None, list[str]]:
    """The allowed category `value` means, or None, and the normalizations that found it.

    Tried in order, each only when the previous did not match: surrounding spaces; invisible
    characters (zero-width space, soft hyphen, byte-order mark); Unicode compatibility form NFKC
    (full-width `ｇｒｏｃｅｒｙ`); case (`GROCERY`); accents (`grocéry`).
    """
    allowed = set(categories)
    steps: list[str] = []
    v = value.strip()
    if v in allowed:
        return v, steps
    if _INVISIBLE.search(v):
        v = _INVISIBLE.sub("", v).strip()
        steps.append("invisible")
        if v in allowed:
            return v, steps
    nfkc = unicodedata.normalize("NFKC", v).strip()
    if nfkc != v:
        v = nfkc
        steps.append("unicode")
        if v in allowed:
            return v, steps
    by_case = {c.casefold(): c for c in categories}
    if v.casefold() in by_case:
        return by_case[v.casefold()], [*steps, "case"]
    by_letters = {_without_accents(c).casefold(): c for c in categories}
    if _without_accents(v).casefold() in by_letters:
        return by_letters[_without_accents(v).casefold()], [*steps, "accents"]
    return None, steps


def _without_accents(text: str) -> str:
    return "".join(
        ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)
    )


def _category_rule(
    frame: pl.DataFrame, col: Column, unknown: dict[str, int] | None = None
) -> tuple[pl.Expr, dict[str, int]]:
    """Each distinct value mapped once to its category (or the unknown one), with counts of
    the values each normalization rescued and of those still unknown (each such raw value with
    its count into `unknown`, when given)."""
    replacement = col.unknown_category if col.unknown_category else None
    counts = frame[col.name].drop_nulls().value_counts()
    mapping: dict[str, str | None] = {}
    stats = {f"unknown_category:{col.name}": 0} | {
        f"normalized_{step}:{col.name}": 0 for step in ("invisible", "unicode", "case", "accents")
    }
    for value, n in counts.iter_rows():
        category, steps = normalize_category(value, col.categories)
        mapping[value] = category if category is not None else replacement
        if category is None:
            stats[f"unknown_category:{col.name}"] += n
            if unknown is not None:
                unknown[value] = n
        elif steps:
            for step in steps:
                stats[f"normalized_{step}:{col.name}"] += n
    expr = pl.col(col.name).replace_strict(mapping, default=None, return_dtype=pl.String)
    return expr.alias(col.name), stats


def _not_finite_rule(col: Column) -> tuple[pl.Expr, pl.Expr]:
    """NaN and infinities are no amounts: null (then imputed), counted apart from the range."""
    bad = pl.col(col.name).is_nan() | pl.col(col.name).is_infinite()
    return (
        pl.when(bad.fill_null(False)).then(None).otherwise(pl.col(col.name)).alias(col.name),
        bad.fill_null(False).sum().alias(f"not_finite:{col.name}"),
    )


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
    unknown_values: dict[str, dict[str, int]] | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Apply the spec's rules in order; returns the cleaned frame and what each rule changed.

    `imputed:<column>` counts the column's missing values before imputation (after the range
    rule nulled what it nulls). With `unknown_values`, the raw values each category column mapped
    to its unknown category go into it: {column: {raw value: rows}}."""
    stats: dict[str, int] = {"rows_in": len(frame)}
    frame, stats["duplicates_removed"] = deduplicate(frame, id_column)

    finite = [_not_finite_rule(c) for c in spec_columns if frame.schema.get(c.name) in FLOATS]
    if finite:
        counts = frame.select(count for _, count in finite).row(0, named=True)
        stats.update({k: int(v) for k, v in counts.items()})
        frame = frame.with_columns(expr for expr, _ in finite)

    rules, counters = [], []
    for col in spec_columns:
        if col.categories is not None:
            unknown = None
            if unknown_values is not None:
                unknown = unknown_values.setdefault(col.name, {})
            expr, category_stats = _category_rule(frame, col, unknown)
            rules.append(expr)
            stats.update(category_stats)
        elif col.range is not None:
            expr, count = _range_rule(col)
            rules.append(expr)
            counters.append(count.alias(f"out_of_range:{col.name}"))
    if counters:
        counts = frame.select(counters).row(0, named=True)
        stats.update({k: int(v) for k, v in counts.items()})
    if rules:
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


CLEANING_DAYS_SCHEMA = {
    "day": pl.Datetime("us"),
    "rule": pl.String,
    "column": pl.String,
    "rows": pl.Int64,
}
UNKNOWN_VALUES_SCHEMA = {
    "day": pl.Datetime("us"),
    "column": pl.String,
    "mapped_to": pl.String,
    "raw_value": pl.String,
    "rows": pl.Int64,
}
UNKNOWN_VALUES_KEPT = 5  # raw values named per column and day, the most frequent first


def clean_by_day(
    frame: pl.DataFrame,
    spec_columns: list[Column],
    id_column: str | None,
    time_column: str,
    days: list[datetime],
) -> tuple[pl.DataFrame, dict[str, int], pl.DataFrame, pl.DataFrame]:
    """`clean` on the rows of `days` (day starts), with what each rule changed per day
    (CLEANING_DAYS_SCHEMA) and the raw values mapped to an unknown category per day and column,
    the most frequent UNKNOWN_VALUES_KEPT (UNKNOWN_VALUES_SCHEMA). Returns the cleaned rows, the
    run's totals and those two tables.

    The rows are cleaned in one pass over the whole range, as before (a range run imputes with
    the range's statistics); the per-day figures come from each day's rules on its own rows, a
    second pass only when the run holds more than one day."""
    unknown_to = {c.name: c.unknown_category for c in spec_columns if c.categories is not None}
    when = pl.col(time_column).cast(pl.Datetime("us"))
    counts, values = [], []
    found_all: dict[str, dict[str, int]] = {}
    out, totals = clean(frame, spec_columns, id_column, found_all)
    for start in days:
        end = start + timedelta(days=1)
        found: dict[str, dict[str, int]] = found_all
        stats = totals
        if len(days) > 1:
            found = {}
            _, stats = clean(
                frame.filter((when >= start) & (when < end)), spec_columns, id_column, found
            )
        for key, n in stats.items():
            rule, _, column = key.partition(":")
            counts.append({"day": start, "rule": rule, "column": column or None, "rows": n})
        for column, by_value in found.items():
            top = sorted(by_value.items(), key=lambda kv: (-kv[1], kv[0]))[:UNKNOWN_VALUES_KEPT]
            values += [
                {
                    "day": start,
                    "column": column,
                    "mapped_to": unknown_to[column],
                    "raw_value": value,
                    "rows": n,
                }
                for value, n in top
            ]
    return (
        out,
        totals,
        pl.DataFrame(counts, schema=CLEANING_DAYS_SCHEMA),
        pl.DataFrame(values, schema=UNKNOWN_VALUES_SCHEMA),
    )
