"""Realised performance: the metrics are scikit-learn's, and the alert fires on a real drop only."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from ml_assets.spec import Performance
from ml_assets.transforms.performance import MIN_POSITIVES, judge_window, realised_metrics

CFG = Performance(window_days=7, max_pr_auc_drop=0.1, max_roc_auc_drop=0.05)
TEST = {"pr_auc": 0.45, "roc_auc": 0.90}


def test_realised_metrics_are_scikit_learns():
    rng = np.random.default_rng(5)
    y = (rng.random(3000) < 0.03).astype(int)
    p = np.clip(0.02 + 0.4 * y + rng.normal(0, 0.15, 3000), 0, 1)
    m = realised_metrics(y, p, threshold=0.3)
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m["alert_rate"] == pytest.approx((p >= 0.3).mean())
    assert m["recall_at_threshold"] == pytest.approx(((p >= 0.3) & (y == 1)).sum() / y.sum())
    assert (m["events"], m["positives"]) == (3000, int(y.sum()))


def test_a_day_without_positives_has_no_auc_and_an_empty_day_no_metric():
    m = realised_metrics(np.zeros(50, dtype=int), np.linspace(0, 1, 50), 0.5)
    assert m["pr_auc"] is None and m["roc_auc"] is None and m["alert_rate"] == 0.5
    empty = realised_metrics(np.array([], dtype=int), np.array([]), 0.5)
    assert empty["events"] == 0 and empty["pr_auc"] is None


def test_the_alert_fires_on_a_drop_beyond_the_allowed_one_only():
    fine = {"pr_auc": 0.40, "roc_auc": 0.88, "positives": 80}
    assert judge_window(fine, TEST, CFG) == (
        False,
        "pr_auc 0.400 vs 0.450 on the test slice; roc_auc 0.880 vs 0.900 on the test slice",
    )
    dropped = {"pr_auc": 0.20, "roc_auc": 0.88, "positives": 80}
    alert, why = judge_window(dropped, TEST, CFG)
    assert alert and why == "pr_auc 0.200 vs 0.450 on the test slice (drop 0.250 > 0.1)"
    roc = {"pr_auc": 0.44, "roc_auc": 0.80, "positives": 80}
    assert judge_window(roc, TEST, CFG)[0]


def test_too_few_positives_are_never_judged():
    noisy = {"pr_auc": 0.0, "roc_auc": 0.5, "positives": MIN_POSITIVES - 1}
    alert, why = judge_window(noisy, TEST, CFG)
    assert not alert and why.startswith(f"{MIN_POSITIVES - 1} positives in the matured window")
