"""Comparing a day's model inputs and scores with the model's training reference. No Dagster here.

The reference (built when the model is trained, stored in its card) keeps per column what the
tests need: numeric columns a sorted random sample, the decile edges with the share of rows
between them, the standard deviation; categorical columns the count of every category; every
column its missing rate.

Per column and day, the test suited to the column's type and the day's size (docs/drift.md):

==============  =======================================  ==========================================
column          day with <= small_sample_rows values     larger day
==============  =======================================  ==========================================
numeric         Kolmogorov-Smirnov, drifts at p < alpha  Wasserstein distance / reference std,
                (asymptotic p-value, SciPy's 'asymp')    drifts at >= threshold
categorical     chi-square test of homogeneity on the     Jensen-Shannon distance (natural log),
                2 x k table of counts, p < alpha         drifts at >= threshold
==============  =======================================  ==========================================

Beside it, always: PSI (ten bins at the reference deciles for numeric columns, the categories
for categorical ones; an empty bin counts as 0.0001), new and vanished categories, and the
missing-rate change, which drifts the column on its own when it moves by `missing_rate_change`.
A numeric column with at most five distinct reference values is compared as categorical (as
Evidently does). Every statistic is computed exactly on the arrays given, vectorized: each
column is sorted once and the Wasserstein distance is the integral of the two quantile
functions' gap in one pass (no SciPy call per column; ml_assets_tests/transforms/test_drift.py holds each
one to SciPy's to 1e-9).
"""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl
from scipy import stats

from ml_assets.spec import Drift

EPS = 1e-4  # the share an empty PSI bin counts as
REFERENCE_SAMPLE = 10_000  # sorted values kept per numeric column
MIN_SPREAD = 1e-3  # floor of the reference std that normalises the Wasserstein distance
MAX_CATEGORICAL_NUMERIC = 5  # numeric columns with this few distinct values are categories
MAX_LISTED = 10  # new / vanished categories named per column


# ---- the reference -------------------------------------------------------------------------


def numeric_profile(values: np.ndarray, seed: int = 0) -> dict:
    """What a numeric column's later days are compared with (see the module docstring)."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    distinct = np.unique(finite)
    if 0 < len(distinct) <= MAX_CATEGORICAL_NUMERIC:
        return categorical_profile(pl.Series(values).fill_nan(None), from_numeric=True)
    finite = np.sort(finite)
    edges = decile_edges(finite)
    rng = np.random.default_rng(seed)
    sample = (
        np.sort(rng.choice(finite, REFERENCE_SAMPLE, replace=False))
        if len(finite) > REFERENCE_SAMPLE
        else finite
    )
    return {
        "kind": "numeric",
        "rows": int(len(finite)),
        "edges": edges.tolist(),
        "proportions": binned_shares(finite, edges).tolist(),
        "std": float(np.std(finite)) if len(finite) else 0.0,
        "sample": sample.tolist(),
        "missing_rate": float(1 - len(finite) / max(1, len(values))),
    }


def categorical_profile(values: pl.Series, from_numeric: bool = False) -> dict:
    counts = category_counts(values, from_numeric)
    total = max(1, sum(counts.values()))
    return {
        "kind": "categorical",
        "from_numeric": from_numeric,
        "rows": int(sum(counts.values())),
        "counts": counts,
        "proportions": {k: v / total for k, v in counts.items()},
        "missing_rate": float(values.null_count() / max(1, len(values))),
    }


def category_counts(values: pl.Series, from_numeric: bool = False) -> dict[str, int]:
    if from_numeric:
        # 1.0 and 1 are one category whatever the day's dtype
        values = values.cast(pl.Float64).fill_nan(None)
    counts = values.cast(pl.String).drop_nulls().value_counts()
    return {str(k): int(v) for k, v in counts.iter_rows()}


def decile_edges(sorted_values: np.ndarray) -> np.ndarray:
    if not len(sorted_values):
        return np.array([])
    return np.unique(np.quantile(sorted_values, np.linspace(0, 1, 11)[1:-1]))


def binned_shares(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of values in each bin (-inf, e0), [e0, e1), ..., [ek, inf) of sorted values."""
    cuts = np.searchsorted(sorted_values, edges, side="left")
    counts = np.diff(np.concatenate([[0], cuts, [len(sorted_values)]]))
    return counts / max(1, len(sorted_values))


# rows of the training (and test) slice a weekday or weekend profile needs
MIN_DAY_TYPE_ROWS = 1000


def reference_profiles(
    train: pl.DataFrame,
    test: pl.DataFrame,
    test_scores: np.ndarray,
    numeric: list[str],
    categorical: list[str],
    score_column: str,
    seed: int,
) -> dict[str, dict[str, dict]]:
    """What each later day is compared with: the training slice's inputs, and the model's scores
    on the test slice (held out: scores on its own training rows would be overconfident, and
    every new day would look drifted against them).

    `all` profiles the whole slices; `weekday` and `weekend` (Saturday, Sunday) each get their
    own when both slices hold MIN_DAY_TYPE_ROWS rows of that kind, so that a weekly rhythm
    (fewer, sparser events on weekends) is not taken for drift. The weekday input itself is
    left out: one value per day, it would always differ.
    """

    def profiles(inputs: pl.DataFrame, scores: np.ndarray) -> dict[str, dict]:
        out = {
            c: numeric_profile(inputs[c].cast(pl.Float64).to_numpy(), seed)
            for c in numeric
            if c != "event_weekday"
        }
        out.update({c: categorical_profile(inputs[c]) for c in categorical})
        out[score_column] = numeric_profile(np.asarray(scores, dtype=float), seed)
        return out

    scores = np.asarray(test_scores, dtype=float)
    reference = {"all": profiles(train, scores)}
    train_weekend = train["event_time"].dt.weekday() >= 6
    test_weekend = (test["event_time"].dt.weekday() >= 6).to_numpy()
    for name, keep_train, keep_test in (
        ("weekday", ~train_weekend, ~test_weekend),
        ("weekend", train_weekend, test_weekend),
    ):
        if keep_train.sum() >= MIN_DAY_TYPE_ROWS and keep_test.sum() >= MIN_DAY_TYPE_ROWS:
            reference[name] = profiles(train.filter(keep_train), scores[keep_test])
    return reference


def reference_for(card_reference: dict, day: date | None) -> tuple[str, dict[str, dict]]:
    """(which, profiles) of a model card's reference for a day: the training weekdays' or
    weekend days' when the card has them and a day is given, else the whole slice's. (Cards
    written before the weekly profiles hold the whole slice's profiles directly.)"""
    if "all" not in card_reference:
        return "training slice", card_reference
    if day is not None:
        kind = "weekend" if day.weekday() >= 5 else "weekday"
        if kind in card_reference:
            return f"training {kind}s", card_reference[kind]
    return "training slice", card_reference["all"]


# ---- the statistics, each exact on the arrays given ------------------------------------------


def psi(ref: np.ndarray, cur: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    ref = np.clip(np.asarray(ref, dtype=float), EPS, None)
    cur = np.clip(np.asarray(cur, dtype=float), EPS, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def js_distance(ref: np.ndarray, cur: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log, as scipy.spatial.distance.jensenshannon's default)
    of two share vectors over the same categories."""
    ref = np.asarray(ref, dtype=float) / np.sum(ref)
    cur = np.asarray(cur, dtype=float) / np.sum(cur)
    m = (ref + cur) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / b[mask])))

    return float(np.sqrt(max(0.0, (kl(ref, m) + kl(cur, m)) / 2)))


def ks_statistic(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic of two sorted samples."""
    if not len(ref_sorted) or not len(cur_sorted):
        return float("nan")
    points = np.concatenate([ref_sorted, cur_sorted])
    cdf_ref = np.searchsorted(ref_sorted, points, side="right") / len(ref_sorted)
    cdf_cur = np.searchsorted(cur_sorted, points, side="right") / len(cur_sorted)
    return float(np.max(np.abs(cdf_ref - cdf_cur)))


def ks_p_value(statistic: float, n_ref: int, n_cur: int) -> float:
    """Two-sided p-value of the KS statistic, Smirnov's asymptotic distribution on the effective
    sample size (scipy.stats.ks_2samp with method='asymp')."""
    m, n = sorted([float(n_ref), float(n_cur)], reverse=True)
    return float(min(1.0, max(0.0, stats.kstwo.sf(statistic, np.round(m * n / (m + n))))))


def wasserstein(a_sorted: np.ndarray, b_sorted: np.ndarray) -> float:
    """First Wasserstein distance of two sorted samples: the integral over t in (0, 1) of
    |Q_a(t) - Q_b(t)|, the empirical quantile functions being steps of width 1/len.

    Counted in units of 1 / (len(a) len(b)) the step edges are integers, so every step of the
    longer sample meets at most one edge of the shorter one: one vectorized pass, no merge sort.
    """
    if len(a_sorted) < len(b_sorted):
        a_sorted, b_sorted = b_sorted, a_sorted
    n_a, n_b = len(a_sorted), len(b_sorted)
    if not n_b:
        return float("nan")
    start = np.arange(n_a, dtype=np.int64) * n_b
    i0 = start // n_a
    edge = (i0 + 1) * n_a
    split = edge < start + n_b
    first = np.where(split, edge - start, n_b).astype(float)
    second = n_b - first
    i1 = np.minimum(i0 + 1, n_b - 1)
    total = np.dot(first, np.abs(a_sorted - b_sorted[i0])) + np.dot(
        second, np.abs(a_sorted - b_sorted[i1])
    )
    return float(total / (float(n_a) * float(n_b)))


def chi_square(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity on the 2 x k table of counts, without Yates' correction
    (scipy.stats.chi2_contingency(..., correction=False)); categories absent from both are
    dropped. One category left: (0, 1)."""
    table = np.vstack([ref_counts, cur_counts]).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, float(stats.chi2.sf(statistic, table.shape[1] - 1))


# ---- one column ------------------------------------------------------------------------------

COLUMNS_SCHEMA = {
    "column": pl.String,
    "kind": pl.String,
    "rows": pl.Int64,
    "test": pl.String,
    "statistic": pl.Float64,
    "p_value": pl.Float64,
    "threshold": pl.Float64,
    "psi": pl.Float64,
    "missing_rate_reference": pl.Float64,
    "missing_rate_current": pl.Float64,
    "missing_rate_change": pl.Float64,
    "new_categories": pl.String,
    "vanished_categories": pl.String,
    "importance": pl.Float64,
    "severity": pl.Float64,
    "drifted": pl.Boolean,
    "why": pl.String,
    # the raw values cleaning mapped to the column's unknown category that day, with counts
    "unknown_raw_values": pl.String,
}


def listed(names: list[str]) -> str:
    return ", ".join(names[:MAX_LISTED]) + (
        f" (+{len(names) - MAX_LISTED})" if len(names) > MAX_LISTED else ""
    )


def compare_numeric(profile: dict, values: np.ndarray, cfg: Drift) -> dict:
    finite = np.sort(values[np.isfinite(values)])
    if not len(finite):
        return {"rows": 0}
    edges = np.asarray(profile["edges"], dtype=float)
    sample = np.asarray(profile["sample"], dtype=float)
    out = {
        "rows": len(finite),
        "psi": psi(np.asarray(profile["proportions"]), binned_shares(finite, edges)),
    }
    if len(finite) <= cfg.small_sample_rows:
        d = ks_statistic(sample, finite)
        p = ks_p_value(d, len(sample), len(finite))
        return {**out, "test": "ks", "statistic": d, "p_value": p, "threshold": cfg.ks_p_value}
    spread = max(profile.get("std", float(np.std(sample))), MIN_SPREAD)
    return {
        **out,
        "test": "wasserstein",
        "statistic": wasserstein(finite, sample) / spread,
        "threshold": cfg.wasserstein_threshold,
    }


def compare_categorical(profile: dict, values: pl.Series, cfg: Drift) -> dict:
    current = category_counts(values, profile.get("from_numeric", False))
    n = sum(current.values())
    if not n:
        return {"rows": 0}
    reference = profile.get("counts") or {
        k: v * profile.get("rows", REFERENCE_SAMPLE) for k, v in profile["proportions"].items()
    }
    cats = sorted(set(reference) | set(current))
    ref = np.array([reference.get(c, 0) for c in cats], dtype=float)
    cur = np.array([current.get(c, 0) for c in cats], dtype=float)
    out = {
        "rows": n,
        "psi": psi(ref / max(1.0, ref.sum()), cur / n),
        "new_categories": listed([c for c in cats if c not in reference]),
        "vanished_categories": listed([c for c in cats if reference.get(c) and c not in current]),
    }
    if not ref.sum():
        return out
    if n <= cfg.small_sample_rows:
        statistic, p = chi_square(ref, cur)
        return {
            **out,
            "test": "chi_square",
            "statistic": statistic,
            "p_value": p,
            "threshold": cfg.chi_square_p_value,
        }
    return {
        **out,
        "test": "jensen_shannon",
        "statistic": js_distance(ref, cur),
        "threshold": cfg.js_threshold,
    }


def judge(row: dict, cfg: Drift, family: int = 1) -> dict:
    """drifted, severity (1.0 = at the threshold) and why, from a compared column (`family`: the
    p-value tests of the day its threshold was corrected for)."""
    reasons, severity = [], 0.0
    test, threshold = row.get("test"), row.get("threshold")
    if row.get("p_value") is not None:
        p = max(row["p_value"], 1e-300)
        severity = math.log(p) / math.log(threshold)
        if p < threshold:
            corrected = f" (Holm, {family} tests)" if family > 1 else ""
            reasons.append(f"{test} p = {row['p_value']:.2g} < {threshold:.2g}{corrected}")
    elif row.get("statistic") is not None:
        severity = row["statistic"] / threshold
        if row["statistic"] >= threshold:
            reasons.append(f"{test} {row['statistic']:.3g} >= {threshold:g}")
    change = row["missing_rate_change"]
    if abs(change) >= cfg.missing_rate_change:
        reasons.append(
            f"missing rate {row['missing_rate_reference']:.1%} -> {row['missing_rate_current']:.1%}"
        )
    severity = max(severity, abs(change) / cfg.missing_rate_change)
    if row["rows"] == 0 and not reasons:
        reasons_text = "no values today"
    else:
        reasons_text = "; ".join(reasons)
    return {"drifted": bool(reasons), "severity": float(severity), "why": reasons_text}


def compare_column(name: str, profile: dict, current: pl.Series, cfg: Drift) -> dict:
    """One column of the day against its reference profile: a row of COLUMNS_SCHEMA."""
    if not len(current):
        return {
            **dict.fromkeys(COLUMNS_SCHEMA),
            "column": name,
            "kind": profile["kind"],
            "rows": 0,
            "new_categories": "",
            "vanished_categories": "",
            "missing_rate_reference": profile["missing_rate"],
            "severity": 0.0,
            "drifted": False,
            "why": "no rows today",
        }
    if profile["kind"] == "numeric":
        values = current.cast(pl.Float64).to_numpy()
        missing = float(1 - np.isfinite(values).sum() / len(values))
        compared = compare_numeric(profile, values, cfg)
    else:
        # NaN is missing too when the categories are a numeric column's values
        counted = (
            current.cast(pl.Float64).fill_nan(None) if profile.get("from_numeric") else current
        )
        missing = float(counted.null_count() / len(current))
        compared = compare_categorical(profile, current, cfg)
    row = {
        "column": name,
        "kind": profile["kind"],
        "test": None,
        "statistic": None,
        "p_value": None,
        "threshold": None,
        "psi": None,
        "new_categories": "",
        "vanished_categories": "",
        "importance": None,
        **compared,
        "missing_rate_reference": profile["missing_rate"],
        "missing_rate_current": missing,
        "missing_rate_change": missing - profile["missing_rate"],
    }
    return {**row, **judge(row, cfg)}


# ---- one day ---------------------------------------------------------------------------------


def holm_thresholds(p_values: list[float], level: list[float]) -> list[float]:
    """Holm's step-down thresholds: the i-th smallest of k p-values is held to level / (k - i)
    while every smaller one was below its own; from the first that is not, all later ones are
    held to that one's threshold (so none of them passes either). The chance that a day with no
    drift flags any column stays at most `level` (family-wise), however many columns are tested;
    Bonferroni's level / k for all is never less strict."""
    k = len(p_values)
    out = [0.0] * k
    stop = None
    for i, j in enumerate(sorted(range(k), key=lambda j: p_values[j])):
        threshold = level[j] / (k - i) if stop is None else stop
        if stop is None and p_values[j] >= threshold:
            stop = threshold
        out[j] = threshold
    return out


def corrected(rows: list[dict], cfg: Drift) -> list[dict]:
    """The day's p-value tests (small days) judged together, Holm-corrected (cfg.multiple_testing)."""
    tested = [r for r in rows if r.get("p_value") is not None and r.get("threshold")]
    if cfg.multiple_testing == "none" or len(tested) < 2:
        return rows
    levels = holm_thresholds([r["p_value"] for r in tested], [r["threshold"] for r in tested])
    for row, level in zip(tested, levels, strict=True):
        row["threshold"] = level
        row.update(judge(row, cfg, family=len(tested)))
    return rows


def importance_weights(importance: dict[str, float] | None, columns: list[str]) -> dict[str, float]:
    """Each model input's weight in the day's drift score: its permutation importance (negative
    counts as 0), normalised to sum 1; equal weights when none is positive."""
    raw = {c: max(0.0, float((importance or {}).get(c) or 0.0)) for c in columns}
    total = sum(raw.values())
    if total <= 0:
        return {c: 1 / len(columns) for c in columns} if columns else {}
    return {c: v / total for c, v in raw.items()}


def before_cleaning(row: dict, raw: dict, cfg: Drift) -> dict:
    """A compared column with its missing rates replaced by those before imputation (an imputed
    column has none left to compare) and the raw values behind its unknown category named."""
    if raw.get("missing_reference") is not None and raw.get("missing_current") is not None:
        row = {
            **row,
            "missing_rate_reference": raw["missing_reference"],
            "missing_rate_current": raw["missing_current"],
            "missing_rate_change": raw["missing_current"] - raw["missing_reference"],
        }
        row.update(judge(row, cfg))
    return {**row, "unknown_raw_values": raw.get("unknown_values") or ""}


def drift_for_day(
    frame: pl.DataFrame,
    reference: dict[str, dict],
    cfg: Drift,
    importance: dict[str, float] | None = None,
    score_column: str | None = None,
    raw: dict[str, dict] | None = None,
) -> tuple[pl.DataFrame, dict]:
    """Every reference column present in `frame` compared, and the day's verdict.

    `drifted_share` counts every column once (the prediction score included, as Evidently
    counts); `drift_score` is the importance-weighted share of drifted model inputs when
    `cfg.weight_by_importance` (and `drifted_share` otherwise); the day drifted when it reaches
    `cfg.drifted_share_threshold`. Rows are sorted drifted first, then by severity.

    `raw`: {column: {missing_reference, missing_current, unknown_values}} from before cleaning
    (see `before_cleaning`): the missing rates judged are then those the source delivered.
    """
    rows = corrected(
        [
            before_cleaning(
                compare_column(name, profile, frame[name], cfg), (raw or {}).get(name, {}), cfg
            )
            for name, profile in reference.items()
            if name in frame.columns
        ],
        cfg,
    )
    table = (
        pl.DataFrame(rows, schema=COLUMNS_SCHEMA, orient="row")
        if rows
        else pl.DataFrame(schema=COLUMNS_SCHEMA)
    )
    inputs = [c for c in table["column"].to_list() if c != score_column]
    weights = importance_weights(importance, inputs)
    table = table.with_columns(
        importance=pl.col("column").replace_strict(
            importance or {}, default=None, return_dtype=pl.Float64
        )
    ).sort(["drifted", "severity"], descending=True)
    drifted = set(table.filter(pl.col("drifted"))["column"].to_list())
    share = len(drifted) / len(table) if len(table) else 0.0
    weighted = float(sum(w for c, w in weights.items() if c in drifted))
    score = weighted if cfg.weight_by_importance else share
    ranked = sorted(inputs, key=lambda c: -(importance or {}).get(c, 0.0))[: cfg.important_features]
    verdict = {
        "rows": len(frame),
        "columns": len(table),
        "drifted_columns": len(drifted),
        "drifted_share": share,
        "weighted_drift_share": weighted,
        "drift_score": score,
        "dataset_drifted": bool(len(table)) and score >= cfg.drifted_share_threshold,
        "prediction_drifted": score_column in drifted,
        "important_drifted": ", ".join(c for c in ranked if c in drifted),
    }
    return table, verdict
