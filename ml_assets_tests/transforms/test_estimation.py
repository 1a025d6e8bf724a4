"""Performance before the labels come (CBPE): the estimates equal the realised figures on
calibrated scores, the calibration map repairs miscalibrated ones, the interval covers, and the
one case it cannot see (concept drift) shows as it is documented."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from ml_assets.spec import Performance
from ml_assets.transforms.estimation import calibrate, estimate, fit_calibration
from ml_assets.transforms.performance import judge_days


def calibrated_events(n: int, seed: int, shift: float = 0.0, spread: float = 1.0):
    """Scores that are the true probability of each event's label (calibrated by construction)."""
    r = np.random.default_rng(seed)
    x = r.normal(shift, spread, n)
    p = 1 / (1 + np.exp(-(-3 + 1.5 * x)))
    y = (r.random(n) < p).astype(int)
    return x, p, y


def test_on_calibrated_scores_the_estimates_are_the_realised_figures():
    _, p, y = calibrated_events(400_000, seed=1)
    e = estimate(p, p, threshold=0.3)
    alerted = p >= 0.3
    assert e["est_roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=0.003)
    assert e["est_pr_auc"] == pytest.approx(average_precision_score(y, p), abs=0.005)
    assert e["est_precision"] == pytest.approx(y[alerted].mean(), abs=0.005)
    assert e["est_recall"] == pytest.approx(y[alerted].sum() / y.sum(), abs=0.005)
    assert e["est_alert_rate"] == pytest.approx(alerted.mean(), abs=1e-12)
    # a covariate shift (more risky events) moves the estimate with the realised figure
    _, p2, y2 = calibrated_events(400_000, seed=2, shift=0.8)
    shifted = estimate(p2, p2, threshold=0.3)
    assert shifted["est_pr_auc"] == pytest.approx(average_precision_score(y2, p2), abs=0.005)
    assert shifted["est_pr_auc"] > e["est_pr_auc"] + 0.1


def test_the_interval_covers_the_realised_roc_auc_about_95_times_in_100():
    covered = 0
    for seed in range(200):
        _, p, y = calibrated_events(1500, seed=100 + seed)
        e = estimate(p, p, threshold=0.3)
        covered += e["est_roc_auc_low"] <= roc_auc_score(y, p) <= e["est_roc_auc_high"]
    assert 0.9 <= covered / 200 <= 0.995


def test_miscalibrated_scores_are_calibrated_on_the_validation_slice_and_judged_on_the_test_slice():
    _, p, y = calibrated_events(60_000, seed=3)
    squashed = p**0.4  # a model that ranks well but overstates every probability
    half = len(p) // 2
    calibration = fit_calibration(y[:half], squashed[:half], y[half:], squashed[half:])
    assert calibration["method"] in {"isotonic", "sigmoid"}
    assert calibration["ece_before"] > 0.1 and calibration["ece_after"] < 0.01
    test = squashed[half:]
    raw = estimate(test, test, 0.5)["est_pr_auc"]
    fixed = estimate(calibrate(calibration, test), test, 0.5)["est_pr_auc"]
    realised = average_precision_score(y[half:], test)
    assert abs(fixed - realised) < 0.015 and abs(raw - realised) > 0.05
    # already calibrated scores are left as they are when no map does better on held-out data
    assert (
        fit_calibration(y[:half], p[:half], y[half:], p[half:])["ece_after"]
        <= calibration["ece_after"] + 0.01
    )


def test_concept_drift_is_invisible_to_the_estimate_as_documented():
    """The same inputs start meaning another outcome: the scores, and so the estimate, stay
    where they were, while the realised ROC AUC falls."""
    r = np.random.default_rng(4)
    x = r.normal(0, 1, 50_000)
    p = 1 / (1 + np.exp(-(-3 + 1.5 * x)))
    y_before = (r.random(len(x)) < p).astype(int)
    y_after = (r.random(len(x)) < 1 / (1 + np.exp(-(-3 + 0.3 * x)))).astype(
        int
    )  # the relation weakens
    before, after = estimate(p, p, 0.3), estimate(p, p, 0.3)
    assert before["est_roc_auc"] == after["est_roc_auc"]  # same scores, same estimate
    assert roc_auc_score(y_before, p) - roc_auc_score(y_after, p) > 0.15
    assert abs(after["est_roc_auc"] - roc_auc_score(y_after, p)) > 0.15


def test_model_performance_estimates_pending_days_and_records_the_error_once_they_mature():
    start = datetime(2026, 10, 1)
    rows = []
    for d in range(10):
        _, p, y = calibrated_events(2000, seed=50 + d, spread=0.5 if d >= 7 else 1.0)
        status = (
            np.where(y == 1, "positive", "negative") if d < 5 else np.full(len(y), "unlabelled")
        )
        rows.append(
            pl.DataFrame(
                {
                    "day": start + timedelta(days=d),
                    "score": p,
                    "model_version": "v1",
                    "label_status": status,
                }
            )
        )
    scored = pl.concat(rows)
    _, p0, _ = calibrated_events(20000, seed=7)
    card = {
        "metrics": {
            "threshold": 0.3,
            "roc_auc": float(estimate(p0, p0, 0.3)["est_roc_auc"]),
            "pr_auc": 0.4,
        },
        "test_window": "2026-09-20 .. 2026-09-30",
        "score_calibration": {"method": "none"},
    }
    perf = Performance(window_days=3, max_estimated_roc_auc_drop=0.02)
    days, _ = judge_days(scored, start, start + timedelta(days=10), {"v1": card}, {}, 5, perf, [])
    matured, pending = (
        days.filter(pl.col("state") == "matured"),
        days.filter(pl.col("state") == "pending"),
    )
    assert len(matured) == 5 and len(pending) == 5
    assert pending["est_roc_auc"].is_not_null().all() and pending["roc_auc"].is_null().all()
    assert matured["roc_auc_estimation_error"].abs().max() < 0.06
    assert (matured["est_roc_auc_low"] <= matured["est_roc_auc"]).all()
    # inputs that separate less from day 7 lower the pooled estimate: the estimated alert comes
    # before any label
    alerts = days.filter(pl.col("estimated_alert"))["day"].to_list()
    assert alerts and min(alerts) >= start + timedelta(days=7)
    assert "estimated roc_auc" in days.filter(pl.col("estimated_alert"))["estimated_why"][0]
    off, _ = judge_days(
        scored,
        start,
        start + timedelta(days=10),
        {"v1": card},
        {},
        5,
        Performance(window_days=3),
        [],
    )
    assert not off["estimated_alert"].any()  # unset in the spec: reported, never acted on


def test_an_estimated_drop_on_too_few_expected_positives_raises_no_alert():
    from ml_assets.transforms.performance import estimated_day

    rows = pl.DataFrame({"day": [datetime(2026, 10, 1)] * 40, "score": np.linspace(0.001, 0.2, 40)})
    card = {"metrics": {"threshold": 0.1, "roc_auc": 0.99}, "score_calibration": {"method": "none"}}
    out = estimated_day(rows, rows, card, Performance(max_estimated_roc_auc_drop=0.01), True)
    assert not out["estimated_alert"] and "too few to act on" in out["estimated_why"]
