"""Monitor: each day's model inputs and scores compared with the model's training reference."""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import dagster as dg
import polars as pl

from ml_assets import reports
from ml_assets.metadata import (
    check_results,
    check_specs,
    checked_write,
    copied_per_day,
    newest_days_markdown,
    table_schema,
)
from ml_assets.names import (
    DRIFT_REPORT_ASSET,
    DRIFTED_SINCE_TRAINING,
    FEATURES_ASSET,
    IMPORTANT_DRIFTED,
    MODEL_ASSET,
    PREDICTIONS_ASSET,
    SCORE_COLUMN,
    Tables,
    asset_key,
    dataset_folder,
    key_prefix,
)
from ml_assets.partitions import day_start, days_in, time_window
from ml_assets.policies import daily_asset_args, follow_parents
from ml_assets.queries import (
    day_inputs,
    drifted_days_since,
    missing_before_cleaning,
    unknown_values_by_day,
)
from ml_assets.settings import Settings
from ml_assets.spec import DatasetSpec, Drift
from ml_assets.storage.interfaces import FileStore, ModelRegistry, Warehouse
from ml_assets.transforms.drift import drift_for_day, reference_for
from ml_assets.transforms.model_card import card_data_end
from ml_assets.transforms.quality import table_checks


def importance_of(card: dict) -> dict[str, float]:
    """Permutation importance per model input, from the model card."""
    return {r["feature"]: float(r["pr_auc_drop"]) for r in card.get("feature_importance") or []}


def worst_columns(table: pl.DataFrame, n: int) -> list[str]:
    """The columns to plot: the drifted ones, the model's most important first, then the most
    severe of the rest."""
    return (
        table.sort(["drifted", "importance", "severity"], descending=True, nulls_last=True)[
            "column"
        ]
        .head(n)
        .to_list()
    )


def day_report(
    day,
    version: str,
    verdict: dict,
    table: pl.DataFrame,
    reference: dict,
    day_data: pl.DataFrame,
    d: Drift,
    html_path: Path,
) -> tuple[str, dict[str, str]]:
    """Write the day's standalone HTML report; return its summary line and plots.

    The plots are what `drift.plots` asks for: by default those of the day's drifted columns
    among the model's `drift.important_features` most important inputs, the most important
    first (a day where none of them drifted draws none, so a backfill of a stable year draws no
    picture nobody looks at). The drift score per day is monitoring_trend's plot."""
    summary = reports.summary_line(day_start(day), version, verdict, d.drifted_share_threshold)
    why = dict(zip(table["column"], table["why"], strict=True))
    if d.plots == "all":
        plotted = worst_columns(table, PLOTTED_COLUMNS)
    elif d.plots == "drifted":  # the model's most important inputs that drifted, in that order
        important = (verdict.get("important_drifted") or "").split(", ")
        plotted = [c for c in important if c in why][:PLOTTED_COLUMNS]
    else:
        plotted = []
    plots = {
        f"{c}: reference vs {day:%Y-%m-%d}": reports.distribution_plot(
            c, reference[c], day_data[c], why[c]
        )
        for c in plotted
    }
    html_path.write_text(
        reports.report_html(
            f"Drift report {day:%Y-%m-%d}",
            summary,
            [
                (
                    "Columns by severity",
                    reports.html_table(
                        table.select([c for c in reports.TABLE_COLUMNS if c in table.columns])
                    ),
                ),
                ("Tests and thresholds", DRIFT_METHOD_HTML.format(d=d)),
            ],
            plots,
        )
    )
    return summary, plots


PLOTTED_COLUMNS = 3
DRIFT_METHOD_HTML = (
    "<p>Numeric columns: Kolmogorov-Smirnov p &lt; {d.ks_p_value} on days with at most {d.small_sample_rows} values, "
    "Wasserstein distance / reference std &ge; {d.wasserstein_threshold} on larger days. Categorical columns: chi-square "
    "p &lt; {d.chi_square_p_value} on small days, Jensen-Shannon distance &ge; {d.js_threshold} on larger ones. A "
    "missing-rate change of {d.missing_rate_change} drifts any column. PSI (reference-decile bins) is shown beside; "
    "{d.psi_threshold} is its usual alarm level. The day drifts when the drift score (share of drifted inputs, "
    "weighted by the model's permutation importance: {d.weight_by_importance}) reaches {d.drifted_share_threshold}.</p>"
)
DAY_SCHEMA = {
    "day": pl.Datetime("us"),
    "model_version": pl.String,
    "reference": pl.String,
    "rows": pl.Int64,
    "columns": pl.Int64,
    "drifted_columns": pl.Int64,
    "drifted_share": pl.Float64,
    "weighted_drift_share": pl.Float64,
    "drift_score": pl.Float64,
    "dataset_drifted": pl.Boolean,
    "prediction_drifted": pl.Boolean,
    "important_drifted": pl.String,
}


def with_drift_score(days: pl.DataFrame) -> pl.DataFrame:
    """Rows of the drift_days table with a drift score on each: days reported before the score
    existed (an older table, or older rows) count their unweighted share."""
    if "drift_score" not in days.columns:
        days = days.with_columns(drift_score=pl.lit(None, pl.Float64))
    return days.with_columns(drift_score=pl.col("drift_score").fill_null(pl.col("drifted_share")))


VERDICT_COLUMNS = (
    "day",
    "dataset_drifted",
    "drift_score",
    "drifted_columns",
    "columns",
    "prediction_drifted",
    "important_drifted",
    "rows",
)


@dataclass
class DriftRun:
    """The drift tables of a run's days, and the newest day's report (what the UI shows)."""

    columns: pl.DataFrame
    days: pl.DataFrame
    summary: str
    table: pl.DataFrame
    plots: dict[str, str]
    html_path: Path


def report_days(
    warehouse: Warehouse,
    spec: DatasetSpec,
    card: dict,
    version: str,
    start: datetime,
    end: datetime,
    reports_dir: Path,
) -> DriftRun:
    """Each day of [start, end) against the model's reference: its column table, its verdict and
    its standalone HTML report (one day in memory at a time, only the compared columns)."""
    d, t = spec.drift, Tables(spec)
    importance = importance_of(card)
    compared = [c for c in reference_for(card["reference"], None)[1] if c != SCORE_COLUMN]
    column_tables, day_rows = [], []
    days = days_in(start, end)
    # what the source delivered, before imputation and the unknown-category mapping
    missing_then = card.get("missing_before_imputation") or {}
    missing_now = missing_before_cleaning(warehouse, t.cleaning_days, start, end)
    unknown = unknown_values_by_day(warehouse, t.unknown_values, start, end)
    for day in days:
        day_data = day_inputs(warehouse, t, spec.id_column, compared, day_start(day))
        reference_name, reference = reference_for(
            card["reference"], day if d.weekly_reference else None
        )
        raw = {
            c: {
                "missing_reference": missing_then.get(c),
                "missing_current": missing_now.get(day_start(day), {}).get(c),
                "unknown_values": unknown.get(day_start(day), {}).get(c),
            }
            for c in compared
        }
        table, verdict = drift_for_day(day_data, reference, d, importance, SCORE_COLUMN, raw)
        column_tables.append(
            table.with_columns(day=pl.lit(day_start(day)), model_version=pl.lit(version))
        )
        row = {"day": day_start(day), "model_version": version, "reference": reference_name}
        day_rows.append(row | verdict)
        html_path = reports_dir / f"drift_{day:%Y-%m-%d}.html"
        summary, plots = day_report(
            day, version, day_rows[-1], table, reference, day_data, d, html_path
        )
    columns = pl.concat(column_tables).select(
        "day", "model_version", pl.exclude("day", "model_version")
    )
    return DriftRun(
        columns, pl.DataFrame(day_rows, schema=DAY_SCHEMA), summary, table, plots, html_path
    )


def drift_checks(columns: pl.DataFrame) -> list:
    """The drift tables' checks: one row per day and column, verdicts and statistics in range."""
    keyed = columns.with_columns(day_column=pl.format("{} {}", pl.col("day"), pl.col("column")))
    return table_checks(
        keyed,
        {
            "day": pl.Datetime("us"),
            "column": pl.String,
            "drifted": pl.Boolean,
            "statistic": pl.Float64,
        },
        {"day": 0.0, "column": 0.0, "drifted": 0.0},
        "day_column",
        {"psi": (0.0, None), "p_value": (0.0, 1.0), "statistic": (0.0, None)},
    )


def build(spec: DatasetSpec, settings: Settings) -> dg.Definitions:
    t = Tables(spec)
    d = spec.drift

    @dg.asset(
        name=DRIFT_REPORT_ASSET,
        description=(
            "Per day, every model input and the prediction score compared with the current model's training "
            "reference, each column with the test suited to its type and the day's size: Kolmogorov-Smirnov or the "
            "normalised Wasserstein distance (numeric), chi-square or the Jensen-Shannon distance (categorical), "
            "PSI beside, new and vanished categories, missing-rate change. The day drifts when the drifted inputs, "
            f"weighted by the model's feature importance, reach {d.drifted_share_threshold:.0%}. Summary, columns by "
            "severity and plots in the metadata; a standalone HTML report per day under data/reports/. "
            "Tests and thresholds: `drift` in the spec, docs/drift.md."
        ),
        group_name="monitor",
        key_prefix=key_prefix(spec),
        kinds={"duckdb", "polars"},
        **daily_asset_args(spec, settings),
        deps=[
            asset_key(spec, FEATURES_ASSET),
            asset_key(spec, PREDICTIONS_ASSET),
            asset_key(spec, MODEL_ASSET),
        ],
        automation_condition=follow_parents(ignore_updates_of=(asset_key(spec, MODEL_ASSET),)),
        check_specs=check_specs(asset_key(spec, DRIFT_REPORT_ASSET)),
        metadata={"tables": f"{t.drift_columns}, {t.drift_days}"},
    )
    def drift_report(
        context: dg.AssetExecutionContext,
        warehouse: dg.ResourceParam[Warehouse],
        files: dg.ResourceParam[FileStore],
        registry: dg.ResourceParam[ModelRegistry],
    ) -> dg.MaterializeResult:
        start, end = time_window(context)
        models = registry.for_dataset(spec)
        version = models.current_version()
        card = models.load_card(version)
        reports_dir = files.folder(*dataset_folder(spec, "reports"))
        run = report_days(warehouse, spec, card, version, start, end, reports_dir)
        outcomes = drift_checks(run.columns)
        checked_write(
            warehouse,
            DRIFT_REPORT_ASSET,
            outcomes,
            [
                (t.drift_columns, run.columns, "day", start, end),
                (t.drift_days, run.days, "day", start, end),
            ],
        )
        drifted_since = drifted_days_since(warehouse, t.drift_days, version, card_data_end(card))
        return dg.MaterializeResult(
            metadata=copied_per_day(
                {
                    "dagster/row_count": dg.MetadataValue.int(len(run.columns)),
                    "days_drifted": dg.MetadataValue.int(int(run.days["dataset_drifted"].sum())),
                    "summary": dg.MetadataValue.text(run.summary.replace("**", "")),
                    "report": dg.MetadataValue.md(
                        reports.report_markdown(
                            run.summary,
                            run.table,
                            # a range run's metadata is copied onto each of its days' events
                            run.plots if len(run.days) == 1 else {},
                            str(run.html_path),
                            plots_elsewhere=len(run.days) > 1,
                        )
                    ),
                    "html_report": dg.MetadataValue.path(str(run.html_path)),
                    "verdict_per_day": dg.MetadataValue.md(
                        newest_days_markdown(run.days.select(*VERDICT_COLUMNS), t.drift_days)
                    ),
                    "model_version": version,
                    DRIFTED_SINCE_TRAINING: dg.MetadataValue.int(int(drifted_since)),
                    IMPORTANT_DRIFTED: dg.MetadataValue.text(
                        run.days["important_drifted"][-1] or ""
                    ),
                    "reports_folder": dg.MetadataValue.path(str(reports_dir)),
                    "dagster/column_schema": table_schema(run.columns),
                }
            ),
            check_results=check_results(outcomes),
        )

    return dg.Definitions(assets=[drift_report])
