"""Monitor: the model's realised performance once labels mature, and the trend of all days."""

from collections.abc import Iterator
from datetime import timedelta

import dagster as dg
import polars as pl

from ml_assets import reports
from ml_assets.defs.monitor.assets import with_drift_score
from ml_assets.metadata import (
    copied_per_day,
    markdown_table,
    newest_days_markdown,
    table_schema,
    waiting,
)
from ml_assets.names import (
    ALERT_REASON,
    ALERT_VERSION,
    DRIFT_REPORT_ASSET,
    LABELS_ASSET,
    MODEL_PERFORMANCE_ASSET,
    MONITORING_TREND_ASSET,
    PERFORMANCE_ALERT,
    PREDICTIONS_ASSET,
    Tables,
    asset_key,
    dataset_folder,
    key_prefix,
)
from ml_assets.partitions import time_window
from ml_assets.policies import DAILY_FRESHNESS, daily_asset_args, follow_parents, whole_table_pool
from ml_assets.queries import newest_matured_day, prediction_drift_by_day, scored_predictions
from ml_assets.settings import Settings
from ml_assets.spec import DatasetSpec
from ml_assets.storage.interfaces import FileStore, ModelRegistry, Warehouse
from ml_assets.storage.registry import Registry
from ml_assets.transforms.performance import judge_days, trend_summary, trend_table


def version_cards(models: Registry, versions) -> dict[str, dict]:
    """The cards of the versions that scored the days ({} for a version no longer kept)."""
    return {v: models.card_or_empty(v) for v in versions}


def performance_metadata(
    days: pl.DataFrame, slices: pl.DataFrame | None, newest: dict | None, table: str
) -> dict:
    """What the UI shows of a model_performance run, with the newest matured day's alert."""
    per_day = days.select(
        "day",
        "state",
        "model_version",
        "pr_auc",
        "est_pr_auc",
        "test_pr_auc",
        "window_pr_auc",
        "roc_auc",
        "est_roc_auc",
        "est_roc_auc_low",
        "est_roc_auc_high",
        "roc_auc_estimation_error",
        "alert",
        "estimated_alert",
        "ground_truth_share",
        "labels_mature_on",
        "prediction_drifted",
        "why",
    )
    metadata = {
        "dagster/row_count": dg.MetadataValue.int(len(days)),
        "matured_days": dg.MetadataValue.int(int((days["state"] == "matured").sum())),
        "pending_days": dg.MetadataValue.int(int((days["state"] == "pending").sum())),
        "per_day": dg.MetadataValue.md(newest_days_markdown(per_day, table)),
        "dagster/column_schema": table_schema(days),
        PERFORMANCE_ALERT: dg.MetadataValue.bool(bool(newest and newest["alert"])),
        ALERT_VERSION: dg.MetadataValue.text((newest or {}).get("model_version") or ""),
        ALERT_REASON: dg.MetadataValue.text(
            f"{newest['day']:%Y-%m-%d}: {newest['why']}" if newest else "no matured day yet"
        ),
        "estimated_newest_day": dg.MetadataValue.text(
            next(
                (
                    f"{r['day']:%Y-%m-%d}: {r['estimated_why']}"
                    for r in days.sort("day", descending=True).iter_rows(named=True)
                    if r["estimated_why"]
                ),
                "no scored day",
            )
        ),
    }
    if slices is not None:
        metadata["slices_newest_day"] = dg.MetadataValue.md(
            markdown_table(
                slices.filter(pl.col("day") == slices["day"].max()).drop("model_version"),
                max_rows=60,
            )
        )
    return metadata


def build(spec: DatasetSpec, settings: Settings) -> dg.Definitions:
    t = Tables(spec)
    perf, maturity = spec.performance, spec.labels.maturity_days
    slice_columns = [*spec.sensitive_columns, *spec.fairness.segments]

    @dg.asset(
        name=MODEL_PERFORMANCE_ASSET,
        description=(
            "Per day, the realised performance of the model that scored it, once the day's ground truth has "
            f"matured ({maturity} days): PR AUC, ROC AUC, Brier, precision and recall at its threshold, alert "
            f"rate, per group of {', '.join(slice_columns) or 'no column'}, beside the model card's test metrics. "
            f"The alert compares the newest {perf.window_days} matured days pooled with the test slice (PR AUC "
            f"drop over {perf.max_pr_auc_drop}, ROC AUC drop over {perf.max_roc_auc_drop}) and requests "
            "retraining; days the model was trained, validated or tested on are shown, never judged. "
            "Before a day matures: its ground-truth share so far, the day its labels mature, the "
            "prediction-score drift from drift_report, and the performance CBPE estimates from its calibrated "
            "scores (ROC AUC with an interval, PR AUC, precision, recall; per day and pooled over the window), "
            "whose error is recorded once the labels come. Thresholds: `performance` in the spec."
        ),
        group_name="monitor",
        key_prefix=key_prefix(spec),
        kinds={"duckdb", "polars"},
        **daily_asset_args(spec, settings),
        deps=[
            asset_key(spec, PREDICTIONS_ASSET),
            asset_key(spec, LABELS_ASSET),
            asset_key(spec, DRIFT_REPORT_ASSET),
        ],
        automation_condition=follow_parents(),
        metadata={"tables": f"{t.performance_days}, {t.performance_slices}"},
    )
    def model_performance(
        context: dg.AssetExecutionContext,
        warehouse: dg.ResourceParam[Warehouse],
        registry: dg.ResourceParam[ModelRegistry],
    ) -> dg.MaterializeResult:
        start, end = time_window(context)
        # the window reaches back before the range: the alert pools the newest matured days
        scored = scored_predictions(
            warehouse, spec, start, end, start - timedelta(days=perf.window_days - 1), slice_columns
        )
        drift_by_day = prediction_drift_by_day(warehouse, t.drift_columns, start, end)
        cards = version_cards(
            registry.for_dataset(spec),
            scored["model_version"].unique().drop_nulls().to_list(),
        )
        days, slices = judge_days(
            scored, start, end, cards, drift_by_day, maturity, perf, slice_columns
        )
        writes = [(t.performance_days, days, "day", start, end)]
        if slices is not None:
            writes.append(
                (
                    t.performance_slices,
                    slices.select("day", "model_version", pl.exclude("day", "model_version")),
                    "day",
                    start,
                    end,
                )
            )
        warehouse.replace_time_ranges(writes)
        newest = newest_matured_day(warehouse, t.performance_days)
        return dg.MaterializeResult(
            metadata=copied_per_day(performance_metadata(days, slices, newest, t.performance_days))
        )

    @dg.asset(
        name=MONITORING_TREND_ASSET,
        description=(
            "Every reported day in one table and one plot: the drift score and verdict (drift_report), the "
            "realised PR AUC and ROC AUC beside the test slice's and the performance alert (model_performance), "
            "and the model version that scored the day. Also written to data/reports/trend.html."
        ),
        group_name="monitor",
        key_prefix=key_prefix(spec),
        kinds={"duckdb", "polars"},
        deps=[asset_key(spec, DRIFT_REPORT_ASSET), asset_key(spec, MODEL_PERFORMANCE_ASSET)],
        pool=whole_table_pool(settings),
        freshness_policy=DAILY_FRESHNESS,
        automation_condition=follow_parents(
            ignore_missing_of=(
                asset_key(spec, DRIFT_REPORT_ASSET),
                asset_key(spec, MODEL_PERFORMANCE_ASSET),
            )
        ),
        metadata={"table": t.monitoring_trend},
        output_required=False,  # waits, without failing the run, for a first drift report
    )
    def monitoring_trend(
        context: dg.AssetExecutionContext,
        warehouse: dg.ResourceParam[Warehouse],
        files: dg.ResourceParam[FileStore],
    ) -> Iterator:
        drift = warehouse.read_if_exists(t.drift_days, f"SELECT * FROM {t.drift_days}")
        if drift is None or drift.is_empty():
            yield from waiting(
                context,
                "no drift report yet: drift_report needs a model in use and the days it scored",
            )
            return
        performance = warehouse.read_if_exists(
            t.performance_days, f"SELECT * FROM {t.performance_days}"
        )
        trend = trend_table(with_drift_score(drift), performance)
        warehouse.replace_table(t.monitoring_trend, trend)
        # realised performance on the days the model learnt from says nothing: judged days only
        plot = reports.trend_plot(
            trend.drop_nulls("drift_score"),
            spec.drift.drifted_share_threshold,
            trend.filter(pl.col("judged").fill_null(False)),
            trend.select("day", "est_pr_auc"),
        )
        summary = trend_summary(trend)
        page = files.folder(*dataset_folder(spec, "reports")) / "trend.html"
        page.write_text(
            reports.report_html(
                "Monitoring trend",
                summary,
                [("Per day", reports.html_table(trend))],
                {"trend": plot},
            )
        )
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": dg.MetadataValue.int(len(trend)),
                "summary": dg.MetadataValue.text(summary),
                "trend": dg.MetadataValue.md(
                    f"{summary}\n\n![drift score and realised PR AUC per day]({plot})\n\n"
                    + newest_days_markdown(trend, t.monitoring_trend)
                ),
                "html_report": dg.MetadataValue.path(str(page)),
                "dagster/column_schema": table_schema(trend),
            }
        )

    return dg.Definitions(assets=[model_performance, monitoring_trend])
