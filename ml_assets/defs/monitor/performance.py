"""Monitor: the model's realised performance once labels mature, and the trend of all days."""

from datetime import timedelta

import dagster as dg
import polars as pl

from ml_assets import reports
from ml_assets.defs.monitor.assets import card_data_end, with_drift_score
from ml_assets.metadata import markdown_table, table_schema
from ml_assets.names import ALERT_REASON, ALERT_VERSION, PERFORMANCE_ALERT, Tables
from ml_assets.partitions import day_start, days_in, time_window
from ml_assets.policies import DAILY_FRESHNESS, WAREHOUSE_POOL, daily_asset_args, follow_parents
from ml_assets.registry import ModelRegistryError, load_card
from ml_assets.resources import LocalFiles, Warehouse
from ml_assets.spec import DatasetSpec, load_spec
from ml_assets.transforms.fairness import slice_metrics
from ml_assets.transforms.performance import judge_window, realised_metrics

# what the retraining sensor reads from the newest model_performance materialization

DAY_SCHEMA = {
    "day": pl.Datetime("us"),
    "model_version": pl.String,
    "state": pl.String,  # matured | pending | no predictions
    "events": pl.Int64,
    "ground_truth_share": pl.Float64,
    "positives": pl.Int64,
    "labels_mature_on": pl.Date,
    "prediction_drift": pl.Float64,
    "prediction_drifted": pl.Boolean,
    "alert_rate": pl.Float64,
    "pr_auc": pl.Float64,
    "roc_auc": pl.Float64,
    "brier": pl.Float64,
    "precision_at_threshold": pl.Float64,
    "recall_at_threshold": pl.Float64,
    "test_pr_auc": pl.Float64,
    "test_roc_auc": pl.Float64,
    "window_days": pl.Int64,
    "window_pr_auc": pl.Float64,
    "window_roc_auc": pl.Float64,
    "judged": pl.Boolean,  # a day after the model's own data, compared with its test slice
    "alert": pl.Boolean,
    "why": pl.String,
}


def version_cards(models_dir, versions) -> dict[str, dict]:
    cards = {}
    for v in versions:
        try:
            cards[v] = load_card(models_dir, v)
        except (ModelRegistryError, FileNotFoundError):
            cards[v] = {}
    return cards


def build(spec: DatasetSpec) -> dg.Definitions:
    t = Tables(spec)
    perf, maturity = spec.performance, spec.labels.maturity_days
    slice_columns = [*spec.sensitive_columns, *spec.fairness.segments]

    @dg.asset(
        name="model_performance",
        description=(
            "Per day, the realised performance of the model that scored it, once the day's ground truth has "
            f"matured ({maturity} days): PR AUC, ROC AUC, Brier, precision and recall at its threshold, alert "
            f"rate, per group of {', '.join(slice_columns) or 'no column'}, beside the model card's test metrics. "
            f"The alert compares the newest {perf.window_days} matured days pooled with the test slice (PR AUC "
            f"drop over {perf.max_pr_auc_drop}, ROC AUC drop over {perf.max_roc_auc_drop}) and requests "
            "retraining; days the model was trained, validated or tested on are shown, never judged. "
            "Before a day matures: its ground-truth share so far, the day its labels mature, and the "
            "prediction-score drift from drift_report. Thresholds: `performance` in the spec."
        ),
        group_name="monitor",
        kinds={"duckdb", "polars"},
        **daily_asset_args(spec),
        deps=["predictions", "labels", "drift_report"],
        automation_condition=follow_parents(),
        metadata={"tables": f"{t.performance_days}, {t.performance_slices}"},
    )
    def model_performance(
        context: dg.AssetExecutionContext, warehouse: Warehouse, files: LocalFiles
    ) -> dg.MaterializeResult:
        start, end = time_window(context)
        # the window reaches back before the range: the alert pools the newest matured days
        window_start = start - timedelta(days=perf.window_days - 1)
        # the run's days with the slice columns; the window's earlier days only what the pooled
        # alert needs (at a million events a day, the slice strings of a week would be most of it)
        scored = warehouse.read(
            f"""SELECT CAST(date_trunc('day', p.event_time) AS TIMESTAMP) AS day, p.score, p.model_version,
                       l.label_status, {", ".join(f"f.{c}" for c in slice_columns) or "NULL AS no_slice"}
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
        scored = pl.concat([earlier, scored], how="diagonal_relaxed")
        drift = warehouse.read_if_exists(
            t.drift_columns,
            f"SELECT day, statistic, drifted FROM {t.drift_columns} WHERE \"column\" = 'prediction_score' "
            "AND day >= ? AND day < ?",
            [start, end],
        )
        drift_by_day = (
            {r["day"]: r for r in drift.iter_rows(named=True)} if drift is not None else {}
        )
        cards = version_cards(
            files.folder("models"), scored["model_version"].unique().drop_nulls().to_list()
        )
        per_day = scored.group_by("day").agg(
            unlabelled=(pl.col("label_status") == "unlabelled").sum(), events=pl.len()
        )
        matured_days = set(per_day.filter(pl.col("unlabelled") == 0)["day"].to_list())
        day_rows, slice_rows = [], []
        for day in days_in(start, end):
            at = day_start(day)
            rows = scored.filter(pl.col("day") == at)
            drift_row = drift_by_day.get(at, {})
            base = {
                "day": at,
                "events": len(rows),
                "labels_mature_on": day + timedelta(days=maturity + 1),
                "prediction_drift": drift_row.get("statistic"),
                "prediction_drifted": drift_row.get("drifted"),
                "window_days": 0,
                "judged": False,
                "alert": False,
            }
            if rows.is_empty():
                day_rows.append(
                    {**base, "state": "no predictions", "why": "no predictions for this day"}
                )
                continue
            version = rows["model_version"].mode().sort()[0]
            test = cards.get(version, {}).get("metrics", {})
            known = rows.filter(pl.col("label_status") != "unlabelled")
            y = (known["label_status"] == "positive").to_numpy()
            threshold = test.get("threshold", 0.5)
            base |= {
                "model_version": version,
                "ground_truth_share": len(known) / len(rows),
                "positives": int(y.sum()),
                "test_pr_auc": test.get("pr_auc"),
                "test_roc_auc": test.get("roc_auc"),
            }
            if at not in matured_days:
                day_rows.append(
                    {
                        **base,
                        "state": "pending",
                        "why": f"{base['ground_truth_share']:.0%} of the events have ground truth so far; "
                        f"the day matures on {base['labels_mature_on']:%Y-%m-%d}",
                    }
                )
                continue
            metrics = realised_metrics(y, known["score"].to_numpy(), threshold)
            live_from = card_data_end(cards.get(version, {}))
            row = {
                **base,
                **{k: metrics[k] for k in DAY_SCHEMA if k in metrics},
                "state": "matured",
            }
            if live_from is None or at < live_from:
                # the model was trained, tuned or tested on this day: its figures say nothing
                # about how it does on new data, so they are shown but never judged
                row["why"] = (
                    "the model's own data (trained, validated and tested up to "
                    f"{live_from - timedelta(days=1):%Y-%m-%d}): shown, not judged"
                    if live_from
                    else "the model card has no test window: not judged"
                )
                day_rows.append(row)
            else:
                window = scored.filter(
                    pl.col("day").is_in(
                        [
                            d
                            for d in matured_days
                            if max(live_from, at - timedelta(days=perf.window_days - 1)) <= d <= at
                        ]
                    ),
                    pl.col("model_version") == version,
                )
                pooled = realised_metrics(
                    (window["label_status"] == "positive").to_numpy(),
                    window["score"].to_numpy(),
                    threshold,
                )
                alert, why = judge_window(pooled, test, perf)
                day_rows.append(
                    row
                    | {
                        "judged": True,
                        "window_days": window["day"].n_unique(),
                        "window_pr_auc": pooled["pr_auc"],
                        "window_roc_auc": pooled["roc_auc"],
                        "alert": alert,
                        "why": why,
                    }
                )
            for column in slice_columns:
                groups = slice_metrics(
                    y.astype(int), known["score"].to_numpy(), threshold, known[column]
                )
                slice_rows.append(
                    groups.with_columns(day=pl.lit(at), model_version=pl.lit(version))
                )
        days = pl.DataFrame(day_rows, schema=DAY_SCHEMA)
        slices = pl.concat(slice_rows) if slice_rows else None
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
        newest = warehouse.read(
            f"SELECT day, model_version, alert, why FROM {t.performance_days} WHERE state = 'matured' "
            "ORDER BY day DESC LIMIT 1"
        )
        newest_row = newest.row(0, named=True) if len(newest) else None
        metadata = {
            "dagster/row_count": dg.MetadataValue.int(len(days)),
            "matured_days": dg.MetadataValue.int(int((days["state"] == "matured").sum())),
            "pending_days": dg.MetadataValue.int(int((days["state"] == "pending").sum())),
            "per_day": dg.MetadataValue.md(
                markdown_table(
                    days.select(
                        "day",
                        "state",
                        "model_version",
                        "pr_auc",
                        "test_pr_auc",
                        "window_pr_auc",
                        "roc_auc",
                        "alert",
                        "ground_truth_share",
                        "labels_mature_on",
                        "prediction_drifted",
                        "why",
                    ),
                    max_rows=400,
                )
            ),
            "dagster/column_schema": table_schema(days),
            PERFORMANCE_ALERT: dg.MetadataValue.bool(bool(newest_row and newest_row["alert"])),
            ALERT_VERSION: dg.MetadataValue.text((newest_row or {}).get("model_version") or ""),
            ALERT_REASON: dg.MetadataValue.text(
                f"{newest_row['day']:%Y-%m-%d}: {newest_row['why']}"
                if newest_row
                else "no matured day yet"
            ),
        }
        if slices is not None:
            metadata["slices_newest_day"] = dg.MetadataValue.md(
                markdown_table(
                    slices.filter(pl.col("day") == slices["day"].max()).drop("model_version"),
                    max_rows=60,
                )
            )
        return dg.MaterializeResult(metadata=metadata)

    @dg.asset(
        name="monitoring_trend",
        description=(
            "Every reported day in one table and one plot: the drift score and verdict (drift_report), the "
            "realised PR AUC and ROC AUC beside the test slice's and the performance alert (model_performance), "
            "and the model version that scored the day. Also written to data/reports/trend.html."
        ),
        group_name="monitor",
        kinds={"duckdb", "polars"},
        deps=["drift_report", "model_performance"],
        pool=WAREHOUSE_POOL,
        freshness_policy=DAILY_FRESHNESS,
        automation_condition=follow_parents(
            ignore_missing_of=("drift_report", "model_performance")
        ),
        metadata={"table": t.monitoring_trend},
    )
    def monitoring_trend(warehouse: Warehouse, files: LocalFiles) -> dg.MaterializeResult:
        drift = warehouse.read_if_exists(t.drift_days, f"SELECT * FROM {t.drift_days}")
        if drift is None or drift.is_empty():
            raise dg.Failure("no drift report yet: materialize drift_report for some days first")
        drift = with_drift_score(drift)
        performance = warehouse.read_if_exists(
            t.performance_days, f"SELECT * FROM {t.performance_days}"
        )
        if performance is None:
            performance = pl.DataFrame(schema=DAY_SCHEMA)
        trend = (
            drift.select(
                "day",
                "model_version",
                "drift_score",
                "dataset_drifted",
                "drifted_columns",
                "prediction_drifted",
            )
            .join(
                performance.select(
                    "day",
                    "state",
                    "pr_auc",
                    "roc_auc",
                    "test_pr_auc",
                    "window_pr_auc",
                    "judged",
                    "alert",
                    "ground_truth_share",
                ),
                on="day",
                how="full",
                coalesce=True,
            )
            .sort("day")
        )
        warehouse.replace_table(t.monitoring_trend, trend)
        threshold = spec.drift.drifted_share_threshold
        # realised performance on the days the model learnt from says nothing: judged days only
        plot = reports.trend_plot(
            trend.drop_nulls("drift_score"),
            threshold,
            trend.filter(pl.col("judged").fill_null(False)),
        )
        drifted = trend.filter(pl.col("dataset_drifted").fill_null(False))
        alerts = trend.filter(pl.col("alert").fill_null(False))
        summary = (
            f"{len(trend)} days: {len(drifted)} drifted"
            + (f" (first {drifted['day'].min():%Y-%m-%d})" if len(drifted) else "")
            + f"; {int((trend['state'] == 'matured').sum())} with matured labels, {len(alerts)} with a performance alert"
            + (f" (first {alerts['day'].min():%Y-%m-%d})" if len(alerts) else "")
        )
        page = files.folder("reports") / "trend.html"
        page.write_text(
            reports.report_html(
                "Monitoring trend",
                summary,
                [("Per day", reports.html_table(trend))],
                {"trend": plot},
            )
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": dg.MetadataValue.int(len(trend)),
                "summary": dg.MetadataValue.text(summary),
                "trend": dg.MetadataValue.md(
                    f"{summary}\n\n![drift score and realised PR AUC per day]({plot})\n\n"
                    + markdown_table(trend.sort("day", descending=True), max_rows=60)
                ),
                "html_report": dg.MetadataValue.path(str(page)),
                "dagster/column_schema": table_schema(trend),
            }
        )

    return dg.Definitions(assets=[model_performance, monitoring_trend])


@dg.definitions
def defs() -> dg.Definitions:
    return build(load_spec())
