"""The model's realised performance once the ground truth of a day has matured. No Dagster here.

A day is matured when none of its events is still waiting for ground truth (labels'
`label_status`; a label may arrive up to `labels.maturity_days` after the event). Only
ground truth counts: weak and manual labels are the model's training aids, not its judge.
Single days hold a few dozen positives, so the alert compares the newest `window_days` matured
days pooled with the model card's test metrics, and stays silent below MIN_POSITIVES positives.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl

from ml_assets.spec import Performance
from ml_assets.transforms.estimation import ESTIMATES, calibrate, estimate
from ml_assets.transforms.fairness import slice_metrics
from ml_assets.transforms.model_card import card_data_end
from ml_assets.transforms.train import point_metrics

MIN_POSITIVES = 20  # fewer positives in the window: the AUCs are too noisy to alert on

PERFORMANCE_METRICS = (
    "roc_auc",
    "pr_auc",
    "brier",
    "precision_at_threshold",
    "recall_at_threshold",
)


def realised_metrics(
    y: np.ndarray, p: np.ndarray, threshold: float
) -> dict[str, float | int | None]:
    """Metrics of scores `p` against ground truth `y` (0/1): the test slice's headline metrics
    (AUCs None without both classes) plus the alert and positive rates."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    if not len(y):
        return {m: None for m in PERFORMANCE_METRICS} | {
            "events": 0,
            "positives": 0,
            "alert_rate": None,
        }
    metrics = point_metrics(y, p, threshold)
    out: dict = {m: (None if np.isnan(metrics[m]) else metrics[m]) for m in PERFORMANCE_METRICS}
    return out | {
        "events": int(len(y)),
        "positives": int(y.sum()),
        "alert_rate": float((p >= threshold).mean()),
    }


def judge_window(window: dict, test: dict, cfg: Performance) -> tuple[bool, str]:
    """(alert, why): the pooled window's AUCs against the test slice's, each with its allowed drop."""
    if window.get("positives", 0) < MIN_POSITIVES:
        return False, (
            f"{window.get('positives', 0)} positives in the matured window: too few to judge "
            f"(at least {MIN_POSITIVES})"
        )
    drops, fine = [], []
    for metric, allowed in (("pr_auc", cfg.max_pr_auc_drop), ("roc_auc", cfg.max_roc_auc_drop)):
        realised, expected = window.get(metric), test.get(metric)
        if realised is None or expected is None:
            continue
        text = f"{metric} {realised:.3f} vs {expected:.3f} on the test slice"
        if expected - realised > allowed:
            drops.append(f"{text} (drop {expected - realised:.3f} > {allowed:g})")
        else:
            fine.append(text)
    if drops:
        return True, "; ".join(drops)
    return False, "; ".join(fine) or "no metric to compare"


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
    # before the labels: CBPE's estimates from the day's calibrated scores (transforms/estimation.py)
    "est_roc_auc": pl.Float64,
    "est_roc_auc_low": pl.Float64,
    "est_roc_auc_high": pl.Float64,
    "est_pr_auc": pl.Float64,
    "est_precision": pl.Float64,
    "est_recall": pl.Float64,
    "est_window_roc_auc": pl.Float64,  # the newest window_days scored days pooled
    "est_window_pr_auc": pl.Float64,
    "estimated_alert": pl.Boolean,  # the pooled estimate fell further than allowed
    "estimated_why": pl.String,
    # once matured: estimate minus realised
    "roc_auc_estimation_error": pl.Float64,
    "pr_auc_estimation_error": pl.Float64,
}


def estimated_day(
    rows: pl.DataFrame, window: pl.DataFrame, card: dict, perf: Performance, after_model_data: bool
) -> dict:
    """The day's CBPE estimates, its pooled window's, and whether the window's estimated ROC AUC
    fell below the test slice's by more than `perf.max_estimated_roc_auc_drop`."""
    test = card.get("metrics", {})
    threshold = test.get("threshold", 0.5)
    calibration = card.get("score_calibration")
    scores = rows["score"].to_numpy()
    day = estimate(calibrate(calibration, scores), scores, threshold)
    pooled_scores = window["score"].to_numpy()
    pooled = estimate(calibrate(calibration, pooled_scores), pooled_scores, threshold)
    out = {k: day[k] for k in ESTIMATES if k in DAY_SCHEMA}
    out |= {"est_window_roc_auc": pooled["est_roc_auc"], "est_window_pr_auc": pooled["est_pr_auc"]}
    allowed, expected = perf.max_estimated_roc_auc_drop, test.get("roc_auc")
    estimated = pooled["est_roc_auc"]
    if estimated is None or expected is None:
        return out | {"estimated_alert": False, "estimated_why": "no estimate"}
    text = (
        f"estimated roc_auc {estimated:.3f} over the newest {window['day'].n_unique()} scored days "
        f"vs {expected:.3f} on the test slice"
    )
    if (pooled["est_positives"] or 0) < MIN_POSITIVES:
        return out | {
            "estimated_alert": False,
            "estimated_why": f"{text}; {pooled['est_positives'] or 0:.0f} expected positives: "
            f"too few to act on (at least {MIN_POSITIVES})",
        }
    alert = allowed is not None and after_model_data and expected - estimated > allowed
    if alert:
        text += f" (drop {expected - estimated:.3f} > {allowed:g})"
    return out | {"estimated_alert": alert, "estimated_why": text}


def judge_days(
    scored: pl.DataFrame,
    start: datetime,
    end: datetime,
    cards: dict[str, dict],
    drift_by_day: dict[datetime, dict],
    maturity: int,
    perf: Performance,
    slice_columns: list[str],
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """One row per day of [start, end) in DAY_SCHEMA, and the metrics per group of the matured
    days (None without slice columns).

    scored: day, score, model_version, label_status of the predictions from `perf.window_days`
    before `start` on (the window's earlier days pool into the alert), with the slice columns on
    the days of [start, end). A day is "no predictions", "pending" (some ground truth still to
    come) or "matured"; a matured day after the model's own data is judged on the pooled window
    of its newest matured days against the model card's test metrics.
    """
    per_day = scored.group_by("day").agg(
        unlabelled=(pl.col("label_status") == "unlabelled").sum(), events=pl.len()
    )
    matured_days = set(per_day.filter(pl.col("unlabelled") == 0)["day"].to_list())
    day_rows, slice_rows = [], []
    for n in range((end - start) // timedelta(days=1)):
        at = start + timedelta(days=n)
        day = at.date()
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
        live_from = card_data_end(cards.get(version, {}))
        scored_window = scored.filter(
            pl.col("day").is_between(at - timedelta(days=perf.window_days - 1), at),
            pl.col("model_version") == version,
        )
        if live_from is not None:
            scored_window = scored_window.filter(pl.col("day") >= live_from)
        base |= estimated_day(
            rows,
            scored_window if len(scored_window) else rows,
            cards.get(version, {}),
            perf,
            live_from is not None and at >= live_from,
        )
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
        row = {
            **base,
            **{k: metrics[k] for k in DAY_SCHEMA if k in metrics},
            "state": "matured",
        }
        for metric in ("roc_auc", "pr_auc"):
            if row.get(metric) is not None and row.get(f"est_{metric}") is not None:
                row[f"{metric}_estimation_error"] = row[f"est_{metric}"] - row[metric]
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
            slice_rows.append(groups.with_columns(day=pl.lit(at), model_version=pl.lit(version)))
    days = pl.DataFrame(day_rows, schema=DAY_SCHEMA)
    return days, pl.concat(slice_rows) if slice_rows else None


def trend_table(drift: pl.DataFrame, performance: pl.DataFrame | None) -> pl.DataFrame:
    """One row per day: the drift report's verdict beside the realised performance (a full join:
    a day may have either). `drift` carries a drift_score on every row."""
    if performance is None:
        performance = pl.DataFrame(schema=DAY_SCHEMA)
    # a table written before a column was added: that column is empty on its days
    performance = performance.with_columns(
        pl.lit(None, DAY_SCHEMA[c]).alias(c) for c in DAY_SCHEMA if c not in performance.columns
    )
    return (
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
                "est_pr_auc",
                "est_roc_auc",
                "est_window_roc_auc",
                "estimated_alert",
                "pr_auc_estimation_error",
                "roc_auc_estimation_error",
            ),
            on="day",
            how="full",
            coalesce=True,
        )
        .sort("day")
    )


def trend_summary(trend: pl.DataFrame) -> str:
    """Days, drifted days, matured days and performance alerts, each with its first day."""
    drifted = trend.filter(pl.col("dataset_drifted").fill_null(False))
    alerts = trend.filter(pl.col("alert").fill_null(False))
    return (
        f"{len(trend)} days: {len(drifted)} drifted"
        + (f" (first {drifted['day'].min():%Y-%m-%d})" if len(drifted) else "")
        + f"; {int((trend['state'] == 'matured').sum())} with matured labels, {len(alerts)} with a performance alert"
        + (f" (first {alerts['day'].min():%Y-%m-%d})" if len(alerts) else "")
    )
