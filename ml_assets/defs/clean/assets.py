"""Clean: duplicates removed, categories and ranges enforced, missing values imputed."""

import dagster as dg
import polars as pl

from ml_assets.metadata import (
    check_results,
    check_specs,
    checked_write,
    newest_days_markdown,
    table_metadata,
)
from ml_assets.names import Tables, asset_key, key_prefix, raw_schema
from ml_assets.partitions import day_start, days_in, time_window
from ml_assets.policies import daily_asset_args, follow_parents
from ml_assets.settings import Settings
from ml_assets.spec import DatasetSpec
from ml_assets.storage.interfaces import Warehouse
from ml_assets.transforms.clean import clean_by_day
from ml_assets.transforms.quality import table_checks

CLEANED_BLOCKING = {"schema", "unique_id", "value_ranges"}


def cleaned_null_limits(spec: DatasetSpec) -> dict[str, float]:
    """After cleaning: required and imputed columns have no nulls; the rest at most 20%."""
    return {
        c.name: 0.0 if (not c.nullable or c.impute.strategy not in ("none",)) else 0.2
        for c in spec.columns
    }


def cleaned_allowed_values(spec: DatasetSpec) -> dict[str, list[str]]:
    allowed = {}
    for c in spec.columns:
        if c.categories is not None:
            extra = [v for v in (c.unknown_category, c.impute.value) if isinstance(v, str)]
            allowed[c.name] = list(c.categories) + extra
    return allowed


def per_day_markdown(per_day: pl.DataFrame, table: str) -> str:
    """Each day's story in one row: rows in and out, and every rule that changed something."""
    if per_day.is_empty():
        return "(no rows)"
    wide = (
        per_day.filter(pl.col("rows") > 0)
        .with_columns(
            what=pl.when(pl.col("column").is_null())
            .then(pl.col("rule"))
            .otherwise(pl.format("{} {}", pl.col("rule"), pl.col("column")))
        )
        .group_by("day")
        .agg(
            changes=pl.format("{}: {}", pl.col("what"), pl.col("rows"))
            .filter(~pl.col("rule").is_in(["rows_in", "rows_out"]))
            .str.join(", "),
            rows_in=pl.col("rows").filter(pl.col("rule") == "rows_in").sum(),
            rows_out=pl.col("rows").filter(pl.col("rule") == "rows_out").sum(),
        )
        .with_columns(pl.col("day").dt.date())
        .select("day", "rows_in", "rows_out", "changes")
    )
    return newest_days_markdown(wide, table)


def unknown_markdown(unknown: pl.DataFrame, table: str) -> str:
    """Per day and column: the raw values mapped to the unknown category, with their counts."""
    if unknown.is_empty():
        return "(every value was one of the spec's categories)"
    wide = (
        unknown.group_by("day", "column", "mapped_to")
        .agg(raw_values=pl.format("{} ({})", pl.col("raw_value"), pl.col("rows")).str.join(", "))
        .sort("day", "column", descending=[True, False])
        .with_columns(pl.col("day").dt.date())
    )
    return newest_days_markdown(wide, table)


def build(spec: DatasetSpec, settings: Settings) -> dg.Definitions:
    t = Tables(spec)
    time_col = spec.event_time_column

    @dg.asset(
        name=spec.cleaned_asset,
        description=(
            f"The {spec.name} rows ready for use: one row per {spec.id_column}, categories and ranges as the spec "
            f"allows, missing values imputed per column; personal data ({', '.join(spec.personal_columns) or 'none'}) "
            f"holds the keyed pseudonyms ingestion gave it. Made from {spec.raw_asset} one day at a time; counts in and out per rule "
            f"are in the metadata."
        ),
        group_name="clean",
        key_prefix=key_prefix(spec),
        kinds={"duckdb", "polars"},
        **daily_asset_args(spec, settings),
        deps=[asset_key(spec, spec.raw_asset)],
        automation_condition=follow_parents(),
        check_specs=check_specs(asset_key(spec, spec.cleaned_asset), blocking=CLEANED_BLOCKING),
        metadata={"table": t.cleaned},
    )
    def cleaned(
        context: dg.AssetExecutionContext, warehouse: dg.ResourceParam[Warehouse]
    ) -> dg.MaterializeResult:
        start, end = time_window(context)
        raw = warehouse.read(
            # in file order, as stored: a repeated id keeps its first row
            f"SELECT * FROM {t.raw} WHERE {time_col} >= ? AND {time_col} < ?",
            [start, end],
        )
        days = [day_start(d) for d in days_in(start, end)]
        frame, stats, per_day, unknown = clean_by_day(
            raw, spec.columns, spec.id_column, time_col, days
        )
        outcomes = table_checks(
            frame,
            raw_schema(spec.columns),
            cleaned_null_limits(spec),
            spec.id_column,
            {c.name: (c.range.min, c.range.max) for c in spec.columns if c.range},
            cleaned_allowed_values(spec),
            day_column=time_col,
        )
        checked_write(
            warehouse,
            spec.cleaned_asset,
            outcomes,
            [
                (t.cleaned, frame, time_col, start, end),
                (t.cleaning_days, per_day, "day", start, end),
                (t.unknown_values, unknown, "day", start, end),
            ],
            CLEANED_BLOCKING,
        )
        return dg.MaterializeResult(
            metadata=table_metadata(
                frame,
                hide=spec.identifying_columns,
                rows_in=dg.MetadataValue.int(stats["rows_in"]),
                rows_out=dg.MetadataValue.int(stats["rows_out"]),
                duplicates_removed=dg.MetadataValue.int(stats["duplicates_removed"]),
                changes_per_rule=dg.MetadataValue.json(
                    {k: v for k, v in stats.items() if ":" in k}
                ),
                changes_per_day=dg.MetadataValue.md(per_day_markdown(per_day, t.cleaning_days)),
                unknown_category_values=dg.MetadataValue.md(
                    unknown_markdown(unknown, t.unknown_values)
                ),
                cleaning_tables=f"{t.cleaning_days}, {t.unknown_values}",
            ),
            check_results=check_results(outcomes, warn_only={"null_rates"}),
        )

    return dg.Definitions(assets=[cleaned])
