"""Metrics per slice of the test events, and the fairness gaps between the groups of a sensitive
attribute. No Dagster here.

Definitions follow fairlearn's: the demographic-parity difference is the largest gap in
selection rate (the share of a group that the model alerts on) between two groups; the
equalized-odds difference is the larger of the largest gap in true-positive rate and the largest
gap in false-positive rate. A group with fewer than `min_events` events, or without both classes
for the rates that need them, is reported but left out of the gaps (its rates are noise).
"""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score, roc_auc_score

from ml_assets.spec import Fairness
from ml_assets.transforms.quality import CheckOutcome

# the model asset's check that the gaps below stay within the spec's limits
FAIRNESS_CHECK = "fairness"

SLICE_SCHEMA = {
    "column": pl.String,
    "group": pl.String,
    "events": pl.Int64,
    "positives": pl.Int64,
    "selection_rate": pl.Float64,
    "true_positive_rate": pl.Float64,
    "false_positive_rate": pl.Float64,
    "precision": pl.Float64,
    "roc_auc": pl.Float64,
    "pr_auc": pl.Float64,
}


def slice_metrics(
    y: np.ndarray, p: np.ndarray, threshold: float, groups: pl.Series
) -> pl.DataFrame:
    """One row per value of `groups` (null as "(missing)"): size, rates at the threshold, AUCs."""
    alerts = p >= threshold
    names = groups.cast(pl.String).fill_null("(missing)").to_numpy()
    rows = []
    for group in sorted(set(names)):
        mask = names == group
        gy, gp, ga = y[mask], p[mask], alerts[mask]
        pos, neg = gy == 1, gy == 0
        both = pos.any() and neg.any()
        rows.append(
            {
                "column": groups.name,
                "group": group,
                "events": int(mask.sum()),
                "positives": int(pos.sum()),
                "selection_rate": float(ga.mean()),
                "true_positive_rate": float(ga[pos].mean()) if pos.any() else None,
                "false_positive_rate": float(ga[neg].mean()) if neg.any() else None,
                "precision": float(gy[ga].mean()) if ga.any() else None,
                "roc_auc": float(roc_auc_score(gy, gp)) if both else None,
                "pr_auc": float(average_precision_score(gy, gp)) if both else None,
            }
        )
    return pl.DataFrame(rows, schema=SLICE_SCHEMA)


def _gap(values: pl.Series) -> float | None:
    values = values.drop_nulls()
    return float(values.max() - values.min()) if len(values) >= 2 else None


def fairness_gaps(slices: pl.DataFrame, min_events: int) -> dict[str, float | None]:
    """Demographic-parity and equalized-odds differences over the groups of one column's slices."""
    big = slices.filter(pl.col("events") >= min_events)
    tpr, fpr = _gap(big["true_positive_rate"]), _gap(big["false_positive_rate"])
    odds = None if tpr is None and fpr is None else max(v for v in (tpr, fpr) if v is not None)
    return {
        "groups_compared": len(big),
        "demographic_parity_difference": _gap(big["selection_rate"]),
        "true_positive_rate_difference": tpr,
        "false_positive_rate_difference": fpr,
        "equalized_odds_difference": odds,
    }


def _rate_gaps(
    y: np.ndarray, alerts: np.ndarray, codes: np.ndarray, n_groups: int, min_events: int
):
    """(parity, tpr, fpr) gaps over the groups with at least `min_events` events, by bincount."""
    events = np.bincount(codes, minlength=n_groups)
    pos = np.bincount(codes, weights=y == 1, minlength=n_groups)
    neg = events - pos
    alerted = np.bincount(codes, weights=alerts, minlength=n_groups)
    hits = np.bincount(codes, weights=alerts & (y == 1), minlength=n_groups)
    big = events >= min_events

    def gap(num, den, ok):
        ok = ok & (den > 0)
        if ok.sum() < 2:
            return np.nan
        rate = num[ok] / den[ok]
        return rate.max() - rate.min()

    return (
        gap(alerted, events, big),
        gap(hits, pos, big),
        gap(alerted - hits, neg, big),
    )


def gap_intervals(
    y: np.ndarray,
    p: np.ndarray,
    threshold: float,
    groups: pl.Series,
    min_events: int,
    samples: int,
    seed: int,
    max_events: int = 200_000,
) -> dict[str, list[float] | None]:
    """95% bootstrap intervals of the demographic-parity and equalized-odds differences.

    A gap measured on a few dozen positives per group moves by tenths from sample to sample;
    the interval says whether a gap over the limit is more than that noise. Above `max_events`
    the resamples come from a seeded sample of that many events (a little wider, cost flat).
    """
    rng = np.random.default_rng(seed)
    if len(y) > max_events:
        keep = rng.choice(len(y), max_events, replace=False)
        y, p, groups = y[keep], p[keep], groups.gather(keep)
    _, codes = np.unique(
        groups.cast(pl.String).fill_null("(missing)").to_numpy(), return_inverse=True
    )
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    alerts = p >= threshold
    parity, odds = [], []
    for _ in range(samples):
        idx = rng.integers(0, len(y), len(y))
        dp, tpr, fpr = _rate_gaps(y[idx], alerts[idx], codes[idx], n_groups, min_events)
        parity.append(dp)
        odds.append(np.nanmax([tpr, fpr]) if not (np.isnan(tpr) and np.isnan(fpr)) else np.nan)

    def interval(values):
        values = np.asarray(values)
        values = values[~np.isnan(values)]
        if not len(values):
            return None
        return [float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))]

    return {
        "demographic_parity_difference": interval(parity),
        "equalized_odds_difference": interval(odds),
    }


SHORT = {"demographic_parity_difference": "parity", "equalized_odds_difference": "odds"}


def judge_fairness(gaps: dict[str, dict], fair: Fairness) -> CheckOutcome:
    """Fail when a sensitive column's gap is over its limit beyond sampling noise.

    Each gap may carry a 95% bootstrap interval (`intervals`); a gap fails when even the
    interval's low end is over the limit. A point estimate over the limit whose interval reaches
    below it is named in the description but does not fail (a few dozen positives per group
    make gaps of 0.2 by chance). Without an interval the point estimate decides.
    """
    limits = {
        "demographic_parity_difference": fair.max_demographic_parity_difference,
        "equalized_odds_difference": fair.max_equalized_odds_difference,
    }
    over, noisy, described = [], [], []
    for col, g in gaps.items():
        parts = []
        for name, limit in limits.items():
            value = g[name]
            if value is None:
                parts.append(f"{SHORT[name]} n/a")
                continue
            interval = (g.get("intervals") or {}).get(name)
            low = interval[0] if interval else value
            shown = f"{value:.3f}" + (
                f" (95% {interval[0]:.3f}-{interval[1]:.3f})" if interval else ""
            )
            parts.append(f"{SHORT[name]} {shown}")
            if low > limit:
                over.append(f"{col}: {name.replace('_', ' ')} {shown} > {limit}")
            elif value > limit:
                noisy.append(f"{col}: {name.replace('_', ' ')} {shown}")
        described.append(f"{col}: " + ", ".join(parts) + f" over {g['groups_compared']} groups")
    if over:
        description = (
            "over the limits: "
            + "; ".join(over)
            + ". Fix: compare the groups in the `slices` metadata and the training data they "
            "come from; the limits are `fairness` in the spec"
        )
    else:
        description = (
            f"within the limits ({'; '.join(described) or 'no sensitive column declared'})"
        )
        if noisy:
            description += ". Over the limit as measured but within sampling noise: " + "; ".join(
                noisy
            )
    return CheckOutcome(FAIRNESS_CHECK, not over, description, {"gaps": gaps})


def fairness_report(
    y: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    test: pl.DataFrame,
    sensitive_columns: list[str],
    fair: Fairness,
    samples: int,
    seed: int,
) -> tuple[pl.DataFrame, dict[str, dict], CheckOutcome]:
    """Metrics per group of each sensitive column and segment, the gaps of each sensitive column
    with bootstrap intervals, and the judgement against the spec's limits."""
    slices = pl.concat(
        [
            slice_metrics(y, scores, threshold, test[col])
            for col in [*sensitive_columns, *fair.segments]
        ]
        or [pl.DataFrame(schema=SLICE_SCHEMA)]
    )
    gaps = {
        col: {
            **fairness_gaps(slices.filter(pl.col("column") == col), fair.min_group_events),
            "intervals": gap_intervals(
                y, scores, threshold, test[col], fair.min_group_events, samples, seed
            ),
        }
        for col in sensitive_columns
    }
    return slices, gaps, judge_fairness(gaps, fair)
