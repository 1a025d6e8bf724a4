"""The model's performance before its labels come: confidence-based performance estimation (CBPE,
as NannyML defines it). No Dagster here.

If a model's scores are calibrated (an event scored 0.3 is positive three times in ten), the
scores of a day say what its confusion matrix will be once the labels arrive: at the threshold,
the expected true positives are the sum of the calibrated scores of the alerted events, the
expected false positives the sum of (1 - score) over them, and so on; sweeping the threshold over
every score gives the expected ROC and precision-recall curves, hence the expected ROC AUC and
PR AUC. The alert rate needs no estimate: it is known as soon as the day is scored.

Scores are calibrated first, on the validation slice (`fit_calibration`): isotonic regression or
a sigmoid (Platt) on the scores, whichever brings the expected calibration error on the held-out
test slice lowest, or none when neither improves it; the card records the error before and
after. The interval of an estimated ROC AUC is Hanley and McNeil's for the expected numbers of
positives and negatives: what the realised figure may be off by from sampling alone.

What it cannot see: a change in the relation between inputs and label (concept drift). The
estimate assumes the calibration learnt on the validation slice still holds; when the same
inputs start meaning another outcome, the scores and so the estimate stay where they were while
the realised performance falls (docs/drift.md shows it on generated data). Drift in the inputs
(covariate shift) is what it handles: the estimate moves with the scores.
"""

from __future__ import annotations

import math

import numpy as np

from ml_assets.transforms.promotion import calibration_error
from ml_assets.transforms.train import calibration_table

MIN_CALIBRATION_POSITIVES = 5  # fewer positives on the validation slice: no calibration fitted


def fit_calibration(
    validation_y: np.ndarray,
    validation_p: np.ndarray,
    test_y: np.ndarray,
    test_p: np.ndarray,
) -> dict:
    """The calibration map CBPE applies to a model's scores, chosen on held-out evidence:
    fitted on the validation slice, judged by the expected calibration error on the test slice.
    Returns {"method": none|sigmoid|isotonic, its parameters, "ece_before", "ece_after"}."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    vy, vp = np.asarray(validation_y, dtype=int), np.asarray(validation_p, dtype=float)
    ty, tp = np.asarray(test_y, dtype=int), np.asarray(test_p, dtype=float)
    before = calibration_error(calibration_table(ty, tp))
    best = {"method": "none", "ece_before": before, "ece_after": before}
    if vy.sum() < MIN_CALIBRATION_POSITIVES or vy.sum() == len(vy):
        return best | {"why": f"{int(vy.sum())} positives on the validation slice: too few to fit"}
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(vp, vy)
    candidates = {
        "isotonic": {
            "x": [float(v) for v in isotonic.X_thresholds_],
            "y": [float(v) for v in isotonic.y_thresholds_],
        }
    }
    platt = LogisticRegression(C=1e6).fit(_logit(vp).reshape(-1, 1), vy)
    candidates["sigmoid"] = {"a": float(platt.coef_[0][0]), "b": float(platt.intercept_[0])}
    for method, params in candidates.items():
        calibration = {"method": method, **params}
        after = calibration_error(calibration_table(ty, calibrate(calibration, tp)))
        if after < best["ece_after"]:
            best = {**calibration, "ece_before": before, "ece_after": after}
    return best


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def calibrate(calibration: dict | None, scores: np.ndarray) -> np.ndarray:
    """The calibrated probabilities of `scores` under a map of `fit_calibration` (None: as they are)."""
    scores = np.asarray(scores, dtype=float)
    method = (calibration or {}).get("method", "none")
    if method == "isotonic":
        return np.interp(scores, calibration["x"], calibration["y"])
    if method == "sigmoid":
        return 1 / (1 + np.exp(-(calibration["a"] * _logit(scores) + calibration["b"])))
    return scores


def expected_curves(p: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(expected true positives, false positives, alerted events) when alerting at each distinct
    score from the highest down: the expected confusion matrix at every threshold."""
    order = np.argsort(-scores, kind="stable")
    s, q = scores[order], p[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # the end of each tie group
    tp = np.cumsum(q)[last]
    fp = np.cumsum(1 - q)[last]
    return tp, fp, last + 1


def estimate(p: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float | int | None]:
    """Expected ROC AUC (with a 95 % interval), PR AUC, precision and recall at `threshold` of
    events with calibrated probabilities `p` and model scores `scores`; the alert rate as is."""
    p, scores = np.asarray(p, dtype=float), np.asarray(scores, dtype=float)
    n = len(p)
    none = dict.fromkeys(ESTIMATES)
    if not n:
        return none | {"est_events": 0}
    positives = float(p.sum())
    negatives = n - positives
    alerted = scores >= threshold
    out = none | {
        "est_events": n,
        "est_positives": positives,
        "est_alert_rate": float(alerted.mean()),
    }
    tp_t = float(p[alerted].sum())
    out["est_precision"] = float(tp_t / alerted.sum()) if alerted.any() else None
    out["est_recall"] = float(tp_t / positives) if positives > 0 else None
    if positives <= 0 or negatives <= 0:
        return out
    tp, fp, _ = expected_curves(p, scores)
    tpr = np.r_[0.0, tp / positives]
    fpr = np.r_[0.0, fp / negatives]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    precision = tp / (tp + fp)
    recall = tp / positives
    out["est_pr_auc"] = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    out["est_roc_auc"] = auc
    half = 1.96 * hanley_mcneil_se(auc, positives, negatives)
    out["est_roc_auc_low"], out["est_roc_auc_high"] = max(0.0, auc - half), min(1.0, auc + half)
    return out


def hanley_mcneil_se(auc: float, positives: float, negatives: float) -> float:
    """The standard error of a ROC AUC over `positives` and `negatives` events (Hanley and
    McNeil, 1982)."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (
        auc * (1 - auc)
        + max(positives - 1, 0) * (q1 - auc * auc)
        + max(negatives - 1, 0) * (q2 - auc * auc)
    ) / max(positives * negatives, 1e-9)
    return math.sqrt(max(var, 0.0))


ESTIMATES = (
    "est_roc_auc",
    "est_roc_auc_low",
    "est_roc_auc_high",
    "est_pr_auc",
    "est_precision",
    "est_recall",
    "est_alert_rate",
    "est_positives",
)
