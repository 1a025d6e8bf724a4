"""Metrics per group and the fairness gaps, on numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import polars as pl

from ml_assets.spec import Fairness
from ml_assets.transforms.fairness import fairness_gaps, slice_metrics


def test_rates_per_group_and_the_gaps_between_groups():
    # group a: 4 events, 2 positive; alerts on 1 positive and 1 negative
    # group b: 4 events, 2 positive; alerts on both positives, no negative
    # group c: 1 event only (left out of the gaps with min_events=2)
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0, 1])
    p = np.array([0.9, 0.1, 0.8, 0.2, 0.9, 0.7, 0.3, 0.1, 0.95])
    groups = pl.Series("age_band", ["a", "a", "a", "a", "b", "b", "b", "b", "c"])
    slices = slice_metrics(y, p, 0.5, groups)
    rows = {r["group"]: r for r in slices.to_dicts()}
    assert rows["a"]["selection_rate"] == 0.5 and rows["b"]["selection_rate"] == 0.5
    assert (rows["a"]["true_positive_rate"], rows["a"]["false_positive_rate"]) == (0.5, 0.5)
    assert (rows["b"]["true_positive_rate"], rows["b"]["false_positive_rate"]) == (1.0, 0.0)
    assert rows["b"]["roc_auc"] == 1.0 and rows["c"]["roc_auc"] is None  # one class in c
    gaps = fairness_gaps(slices, min_events=2)
    assert gaps["groups_compared"] == 2
    assert gaps["demographic_parity_difference"] == 0.0  # same alert rate...
    assert gaps["true_positive_rate_difference"] == 0.5
    # ...but not the same errors: equalized odds takes the worse of the TPR and FPR gaps
    assert gaps["equalized_odds_difference"] == 0.5
    alone = fairness_gaps(slices, min_events=5)
    assert alone["groups_compared"] == 0 and alone["equalized_odds_difference"] is None


def test_the_fairness_check_names_the_column_and_the_gap_over_its_limit():
    from ml_assets.transforms.fairness import judge_fairness

    gaps = {
        "age_band": {
            "groups_compared": 3,
            "demographic_parity_difference": 0.15,
            "true_positive_rate_difference": 0.1,
            "false_positive_rate_difference": 0.05,
            "equalized_odds_difference": 0.1,
        }
    }
    strict = judge_fairness(gaps, Fairness(max_demographic_parity_difference=0.1))
    assert not strict.passed
    assert "age_band: demographic parity difference 0.150 > 0.1" in strict.description
    loose = judge_fairness(gaps, Fairness(max_demographic_parity_difference=0.2))
    assert loose.passed and "age_band" in loose.description
    assert judge_fairness({}, Fairness()).passed


def test_a_missing_group_value_is_its_own_group():
    slices = slice_metrics(np.array([1, 0]), np.array([0.9, 0.1]), 0.5, pl.Series("g", ["x", None]))
    assert slices["group"].to_list() == ["(missing)", "x"]


def test_gap_intervals_separate_a_real_gap_from_noise():
    from ml_assets.transforms.fairness import gap_intervals

    rng = np.random.default_rng(2)
    n = 4000
    groups = pl.Series("g", rng.choice(["a", "b"], n))
    y = (rng.random(n) < 0.05).astype(int)
    fair_scores = np.where(y == 1, 0.8, 0.2) + rng.normal(0, 0.2, n)
    fair = gap_intervals(y, fair_scores, 0.5, groups, 100, 200, seed=1)
    low, high = fair["demographic_parity_difference"]
    assert low >= 0 and high < 0.05  # the same rule for both groups: a small gap at most
    # alert on every event of group b and none of a: as unfair as it gets
    unfair_scores = np.where(groups.to_numpy() == "b", 1.0, 0.0)
    unfair = gap_intervals(y, unfair_scores, 0.5, groups, 100, 200, seed=1)
    assert unfair["demographic_parity_difference"][0] > 0.99
    assert unfair["equalized_odds_difference"][0] > 0.99


def test_a_gap_over_the_limit_within_noise_is_named_but_does_not_fail():
    from ml_assets.transforms.fairness import judge_fairness

    def gaps(odds, interval):
        return {
            "age_band": {
                "groups_compared": 5,
                "demographic_parity_difference": 0.01,
                "true_positive_rate_difference": odds,
                "false_positive_rate_difference": 0.01,
                "equalized_odds_difference": odds,
                "intervals": {
                    "demographic_parity_difference": [0.0, 0.02],
                    "equalized_odds_difference": interval,
                },
            }
        }

    noisy = judge_fairness(gaps(0.28, [0.12, 0.41]), Fairness(max_equalized_odds_difference=0.2))
    assert noisy.passed and "within sampling noise: age_band: equalized odds" in noisy.description
    clear = judge_fairness(gaps(0.5, [0.31, 0.62]), Fairness(max_equalized_odds_difference=0.2))
    assert not clear.passed and "0.500 (95% 0.310-0.620) > 0.2" in clear.description
