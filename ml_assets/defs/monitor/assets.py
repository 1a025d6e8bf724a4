"""Monitor: each day's features and scores compared with the model's training reference."""

from datetime import datetime, timedelta

import dagster as dg
import polars as pl

from ml_assets.defs.models.assets import SCORE_COLUMN
from ml_assets.metadata import (
    check_results,
    check_specs,
    markdown_table,
    refuse_if_blocking_failed,
    table_schema,
)
from ml_assets.partitions import day_start, days_in, time_window
from ml_assets.policies import daily_asset_args, follow_parents
from ml_assets.registry import current_version, load_card
from ml_assets.resources import LocalFiles, Warehouse
from ml_assets.spec import DatasetSpec, load_spec
from ml_assets.tables import Tables
from ml_assets.transforms.drift import drift_for_day
from ml_assets.transforms.quality import table_checks

# days after the current model's data that drifted: the retraining sensor reads it
DRIFTED_SINCE_TRAINING = "drifted_days_since_training"


def card_data_end(card: dict) -> datetime | None:
    """The first day after the data the model was trained and tested on (from its test window)."""
    window = card.get("test_window")
    if not window:
        return None
    return datetime.fromisoformat(window.split(" .. ")[-1]) + timedelta(days=1)


def report_markdown(day, version: str, verdict: dict, table: pl.DataFrame) -> str:
    state = "DRIFT" if verdict["dataset_drifted"] else "no drift"
    ordered = table.sort(["drifted", "psi"], descending=True, nulls_last=True)
    return (
        f"## Drift report {day:%Y-%m-%d}: {state}\n\n"
        f"{verdict['drifted_columns']} of {verdict['columns']} columns drifted ({verdict['drifted_share']:.0%}) "
        f"on {verdict['rows']} rows, against the training reference of model `{version}`.\n\n"
        + markdown_table(
            ordered.select(
                "column",
                "kind",
                "drifted",
                "psi",
                "ks",
                "js_distance",
                "missing_rate_reference",
                "missing_rate_current",
                "new_categories",
                "vanished_categories",
            ),
            max_rows=100,
        )
    )


def build(spec: DatasetSpec) -> dg.Definitions:
    t = Tables(spec)
    d = spec.drift

    @dg.asset(
        name="drift_report",
        description=(
            "Per day, every model input and the prediction score compared with the current model's training "
            f"reference: PSI and KS for numeric columns, PSI and Jensen-Shannon distance for categorical ones, new and "
            f"vanished categories, missing-rate change. A column drifts at PSI >= {d.psi_threshold} (numeric) or JS >= "
            f"{d.js_threshold} (categorical); the day drifts when {d.drifted_share_threshold:.0%} of columns do. Stored "
            "per column and per day in the warehouse and as Markdown under data/reports."
        ),
        group_name="monitor",
        kinds={"duckdb", "polars"},
        **daily_asset_args(spec),
        deps=["features", "predictions", "model"],
        automation_condition=follow_parents(ignore_updates_of=("model",)),
        check_specs=check_specs("drift_report"),
        metadata={"tables": f"{t.drift_columns}, {t.drift_days}"},
    )
    def drift_report(
        context: dg.AssetExecutionContext, warehouse: Warehouse, files: LocalFiles
    ) -> dg.MaterializeResult:
        start, end = time_window(context)
        models_dir = files.folder("models")
        version = current_version(models_dir)
        reference = load_card(models_dir, version)["reference"]
        compared = ", ".join(f"f.{c}" for c in reference if c != SCORE_COLUMN)
        column_tables, day_rows, markdown = [], [], ""
        reports = files.folder("reports")
        for day in days_in(start, end):
            # one day at a time, only the compared columns: memory stays that of one day
            day_data = warehouse.read(
                f"""SELECT {compared}, p.score AS {SCORE_COLUMN} FROM {t.features} f
                    JOIN {t.predictions} p ON CAST(f.{spec.id_column} AS VARCHAR) = p.event_id
                    WHERE f.event_time >= ? AND f.event_time < ?""",
                [day_start(day), day_start(day) + timedelta(days=1)],
            )
            table, verdict = drift_for_day(
                day_data, reference, d.psi_threshold, d.js_threshold, d.drifted_share_threshold
            )
            column_tables.append(
                table.with_columns(day=pl.lit(day_start(day)), model_version=pl.lit(version))
            )
            day_rows.append({"day": day_start(day), "model_version": version, **verdict})
            markdown = report_markdown(day, version, verdict, table)
            (reports / f"drift_{day:%Y-%m-%d}.md").write_text(markdown)
        columns = pl.concat(column_tables).select(
            "day", "model_version", pl.exclude("day", "model_version")
        )
        days = pl.DataFrame(day_rows)
        keyed = columns.with_columns(day_column=pl.format("{} {}", pl.col("day"), pl.col("column")))
        outcomes = table_checks(
            keyed,
            {
                "day": pl.Datetime("us"),
                "column": pl.String,
                "drifted": pl.Boolean,
                "psi": pl.Float64,
            },
            {"day": 0.0, "column": 0.0, "drifted": 0.0},
            "day_column",
            {"psi": (0.0, None), "ks": (0.0, 1.0), "js_distance": (0.0, 1.0)},
        )
        refuse_if_blocking_failed("drift_report", outcomes)
        warehouse.replace_time_ranges(
            [(t.drift_columns, columns, "day", start, end), (t.drift_days, days, "day", start, end)]
        )
        trained_until = card_data_end(load_card(models_dir, version))
        drifted_since = warehouse.read(
            f"""SELECT count(DISTINCT day) AS n FROM {t.drift_days}
                WHERE model_version = ? AND dataset_drifted AND (CAST(? AS TIMESTAMP) IS NULL OR day >= ?)""",
            [version, trained_until, trained_until],
        ).item()
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": dg.MetadataValue.int(len(columns)),
                "days_drifted": dg.MetadataValue.int(int(days["dataset_drifted"].sum())),
                "verdict_per_day": dg.MetadataValue.md(
                    markdown_table(
                        days.select(
                            "day",
                            "dataset_drifted",
                            "drifted_columns",
                            "columns",
                            "drifted_share",
                            "rows",
                        ),
                        max_rows=400,
                    )
                ),
                "report": dg.MetadataValue.md(markdown),
                "model_version": version,
                DRIFTED_SINCE_TRAINING: dg.MetadataValue.int(int(drifted_since)),
                "reports_folder": dg.MetadataValue.path(str(reports)),
                "dagster/column_schema": table_schema(columns),
                "preview": dg.MetadataValue.md(markdown_table(columns)),
            },
            check_results=check_results(outcomes),
        )

    return dg.Definitions(assets=[drift_report])


@dg.definitions
def defs() -> dg.Definitions:
    return build(load_spec())
