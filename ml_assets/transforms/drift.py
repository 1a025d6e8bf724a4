"""Comparing a day's features and scores with the model's training reference. No Dagster here.

Numeric columns: population stability index (PSI) over ten bins cut at the reference deciles,
and the two-sample Kolmogorov-Smirnov statistic against the stored reference sample.
Categorical columns: PSI over categories and the Jensen-Shannon distance (base 2), with new and
vanished categories listed. Every column: the change in missing rate. A column drifts when its
PSI (numeric) or JS distance (categorical) passes the spec's threshold; the day drifts when the
share of drifted columns passes `drifted_share_threshold`.
"""

from __future__ import annotations

import numpy as np
import polars as pl

EPS = 1e-4
REFERENCE_SAMPLE = 10_000


def numeric_profile(values: np.ndarray, seed: int = 0) -> dict:
    finite = values[np.isfinite(values)]
    edges = (
        np.unique(np.quantile(finite, np.linspace(0, 1, 11)[1:-1])) if len(finite) else np.array([])
    )
    counts = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1)
    rng = np.random.default_rng(seed)
    sample = (
        np.sort(rng.choice(finite, min(REFERENCE_SAMPLE, len(finite)), replace=False))
        if len(finite)
        else finite
    )
    return {
        "kind": "numeric",
        "edges": edges.tolist(),
        "proportions": (counts / max(1, counts.sum())).tolist(),
        "sample": sample.tolist(),
        "missing_rate": float(1 - len(finite) / max(1, len(values))),
    }


def categorical_profile(values: pl.Series) -> dict:
    counts = values.drop_nulls().value_counts()
    total = max(1, int(counts["count"].sum()))
    return {
        "kind": "categorical",
        "proportions": {str(k): int(v) / total for k, v in counts.iter_rows()},
        "missing_rate": float(values.null_count() / max(1, len(values))),
    }


def psi(ref: np.ndarray, cur: np.ndarray) -> float:
    ref = np.clip(ref, EPS, None)
    cur = np.clip(cur, EPS, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def js_distance(ref: np.ndarray, cur: np.ndarray) -> float:
    m = (ref + cur) / 2

    def kl(a, b):
        mask = a > 0
        return np.sum(a[mask] * np.log2(a[mask] / b[mask]))

    return float(np.sqrt(max(0.0, (kl(ref, m) + kl(cur, m)) / 2)))


def ks_statistic(ref_sorted: np.ndarray, cur: np.ndarray) -> float:
    if not len(ref_sorted) or not len(cur):
        return float("nan")
    cur_sorted = np.sort(cur)
    points = np.concatenate([ref_sorted, cur_sorted])
    cdf_ref = np.searchsorted(ref_sorted, points, side="right") / len(ref_sorted)
    cdf_cur = np.searchsorted(cur_sorted, points, side="right") / len(cur_sorted)
    return float(np.max(np.abs(cdf_ref - cdf_cur)))


def compare_column(
    name: str, profile: dict, current: pl.Series, psi_threshold: float, js_threshold: float
) -> dict:
    missing_rate = float(current.null_count() / max(1, len(current)))
    row = {
        "column": name,
        "kind": profile["kind"],
        "psi": None,
        "ks": None,
        "js_distance": None,
        "missing_rate_reference": profile["missing_rate"],
        "missing_rate_current": missing_rate,
        "new_categories": "",
        "vanished_categories": "",
        "drifted": False,
    }
    if profile["kind"] == "numeric":
        values = current.cast(pl.Float64).to_numpy()
        finite = values[np.isfinite(values)]
        if len(finite):
            edges = np.asarray(profile["edges"])
            counts = np.bincount(
                np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1
            )
            row["psi"] = psi(np.asarray(profile["proportions"]), counts / counts.sum())
            row["ks"] = ks_statistic(np.asarray(profile["sample"]), finite)
            row["drifted"] = row["psi"] >= psi_threshold
    else:
        counts = current.cast(pl.String).drop_nulls().value_counts()
        if len(counts):
            cur = {str(k): int(v) for k, v in counts.iter_rows()}
            total = sum(cur.values())
            ref_props = profile["proportions"]
            cats = sorted(set(ref_props) | set(cur))
            r = np.array([ref_props.get(c, 0.0) for c in cats])
            c = np.array([cur.get(k, 0) / total for k in cats])
            row["psi"] = psi(r, c)
            row["js_distance"] = js_distance(r, c)
            row["new_categories"] = ",".join(k for k in cats if k not in ref_props)
            row["vanished_categories"] = ",".join(
                k for k in cats if k in ref_props and k not in cur
            )
            row["drifted"] = row["js_distance"] >= js_threshold
    return row


def drift_for_day(
    frame: pl.DataFrame,
    reference: dict[str, dict],
    psi_threshold: float,
    js_threshold: float,
    drifted_share_threshold: float,
) -> tuple[pl.DataFrame, dict]:
    rows = [
        compare_column(name, profile, frame[name], psi_threshold, js_threshold)
        for name, profile in reference.items()
        if name in frame.columns
    ]
    table = pl.DataFrame(
        rows,
        schema={
            "column": pl.String,
            "kind": pl.String,
            "psi": pl.Float64,
            "ks": pl.Float64,
            "js_distance": pl.Float64,
            "missing_rate_reference": pl.Float64,
            "missing_rate_current": pl.Float64,
            "new_categories": pl.String,
            "vanished_categories": pl.String,
            "drifted": pl.Boolean,
        },
    )
    share = float(table["drifted"].mean()) if len(table) else 0.0
    verdict = {
        "rows": len(frame),
        "columns": len(table),
        "drifted_columns": int(table["drifted"].sum()),
        "drifted_share": share,
        "dataset_drifted": share >= drifted_share_threshold,
    }
    return table, verdict
