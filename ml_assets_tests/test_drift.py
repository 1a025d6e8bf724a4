"""Drift statistics against SciPy, and the verdict on data with and without a known shift."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from ml_assets.transforms.drift import (
    categorical_profile,
    compare_column,
    drift_for_day,
    js_distance,
    ks_statistic,
    numeric_profile,
    psi,
)


def test_ks_statistic_matches_scipy():
    rng = np.random.default_rng(1)
    ref, cur = np.sort(rng.normal(0, 1, 3000)), rng.normal(0.2, 1.1, 2000)
    assert ks_statistic(ref, cur) == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=1e-12)


def test_ks_statistic_matches_scipy_with_ties():
    rng = np.random.default_rng(2)
    ref, cur = np.sort(rng.integers(0, 5, 500).astype(float)), rng.integers(0, 6, 300).astype(float)
    assert ks_statistic(ref, cur) == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=1e-12)


def test_js_distance_matches_scipy():
    p, q = np.array([0.5, 0.3, 0.2, 0.0]), np.array([0.1, 0.3, 0.4, 0.2])
    assert js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)


def test_psi_by_hand():
    ref, cur = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    assert psi(ref, cur) == pytest.approx(
        (0.25 - 0.5) * np.log(0.5) + (0.75 - 0.5) * np.log(1.5), abs=1e-12
    )
    assert psi(ref, ref) == 0.0


def test_numeric_shift_is_flagged_and_stable_data_is_not():
    rng = np.random.default_rng(3)
    profile = numeric_profile(rng.lognormal(3, 1, 20000))
    same = compare_column("amount", profile, pl.Series(rng.lognormal(3, 1, 5000)), 0.2, 0.1)
    shifted = compare_column(
        "amount", profile, pl.Series(rng.lognormal(3, 1, 5000) * 1.6), 0.2, 0.1
    )
    assert not same["drifted"] and same["psi"] < 0.05
    assert shifted["drifted"] and shifted["psi"] > 0.2


def test_new_and_vanished_categories_are_listed():
    profile = categorical_profile(pl.Series(["a"] * 50 + ["b"] * 50))
    row = compare_column("cat", profile, pl.Series(["a"] * 50 + ["c"] * 50), 0.2, 0.1)
    assert row["new_categories"] == "c" and row["vanished_categories"] == "b" and row["drifted"]


def test_all_null_and_constant_columns_do_not_crash():
    profile = numeric_profile(np.ones(100))
    assert not compare_column("x", profile, pl.Series([1.0] * 10), 0.2, 0.1)["drifted"]
    nulls = compare_column("x", profile, pl.Series([None] * 10, dtype=pl.Float64), 0.2, 0.1)
    assert nulls["psi"] is None and nulls["missing_rate_current"] == 1.0


def test_day_verdict_uses_the_share_of_drifted_columns():
    rng = np.random.default_rng(4)
    ref = {
        "a": numeric_profile(rng.normal(0, 1, 5000)),
        "b": numeric_profile(rng.normal(0, 1, 5000)),
    }
    day = pl.DataFrame({"a": rng.normal(3, 1, 1000), "b": rng.normal(0, 1, 1000)})
    table, verdict = drift_for_day(day, ref, 0.2, 0.1, drifted_share_threshold=0.5)
    assert table.filter(pl.col("drifted"))["column"].to_list() == ["a"]
    assert verdict["dataset_drifted"] and verdict["drifted_share"] == 0.5
