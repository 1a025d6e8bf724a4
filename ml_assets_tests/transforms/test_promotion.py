"""The champion/challenger gate, rule by rule."""

from __future__ import annotations

import pytest

from ml_assets.spec import Promotion
from ml_assets.transforms.promotion import calibration_error, decide

CALIBRATED = [{"mean_score": 0.1, "observed_rate": 0.1, "events": 100}]


def metrics(pr_auc=0.4, roc_auc=0.9, calibration=CALIBRATED):
    return {"pr_auc": pr_auc, "roc_auc": roc_auc, "calibration": calibration}


def test_calibration_error_weights_each_bin_by_its_events():
    bins = [
        {"mean_score": 0.1, "observed_rate": 0.2, "events": 300},  # off by 0.1
        {"mean_score": 0.5, "observed_rate": 0.5, "events": 100},  # spot on
    ]
    assert calibration_error(bins) == pytest.approx(0.075)
    assert calibration_error([]) == 0.0


def test_the_first_version_is_promoted_when_calibrated_and_fair():
    decision = decide(metrics(), None, True, Promotion())
    assert decision.promote and "no champion to compare with" in decision.reasons


def test_a_challenger_within_tolerance_of_the_champion_is_promoted():
    rules = Promotion(pr_auc_tolerance=0.01, roc_auc_tolerance=0.01)
    decision = decide(metrics(pr_auc=0.395), metrics(pr_auc=0.40), True, rules)
    assert decision.promote
    assert any("pr_auc 0.3950 vs the champion's 0.4000" in r for r in decision.reasons)


@pytest.mark.parametrize(
    "challenger, fair, reason",
    [
        (
            metrics(pr_auc=0.38),
            True,
            "pr_auc 0.3800 is below the champion's 0.4000 by more than 0.01",
        ),
        (metrics(roc_auc=0.85), True, "roc_auc 0.8500 is below the champion's 0.9000"),
        (metrics(), False, "the fairness check failed"),
        (
            metrics(calibration=[{"mean_score": 0.1, "observed_rate": 0.2, "events": 10}]),
            True,
            "calibration error 0.1000 is above promotion.max_calibration_error 0.02",
        ),
    ],
)
def test_each_rule_alone_holds_a_challenger_back_and_says_why(challenger, fair, reason):
    decision = decide(challenger, metrics(), fair, Promotion())
    assert not decision.promote
    assert any(reason in r for r in decision.reasons), decision.reasons
