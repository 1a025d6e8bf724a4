"""The model's realised performance once the ground truth of a day has matured. No Dagster here.

A day is matured when none of its events is still waiting for ground truth (labels'
`label_status`; a chargeback may arrive up to `labels.maturity_days` after the event). Only
ground truth counts: weak and manual labels are the model's training aids, not its judge.
Single days hold a few dozen positives, so the alert compares the newest `window_days` matured
days pooled with the model card's test metrics, and stays silent below MIN_POSITIVES positives.
"""

from __future__ import annotations

import numpy as np

from ml_assets.spec import Performance
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
