"""The label model against the majority vote, on votes whose truth and error rates are known."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from ml_assets.transforms.weak import fit_label_model, function_stats, majority_vote

NAN = np.nan


def simulate(n=40_000, balance=0.08, seed=5):
    """Conditionally independent functions of very different quality, as the model assumes.

    (P(vote positive | positive), P(vote positive | negative)) for the positive rules, and
    (P(vote negative | negative), P(vote negative | positive)) for the negative ones.
    """
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < balance).astype(float)
    positive_rules = [(0.55, 0.01), (0.40, 0.15), (0.30, 0.20), (0.50, 0.03)]
    negative_rules = [(0.60, 0.05), (0.35, 0.25)]
    columns = []
    for hit, false_alarm in positive_rules:
        fires = rng.random(n) < np.where(y == 1, hit, false_alarm)
        columns.append(np.where(fires, 1.0, NAN))
    for hit, miss in negative_rules:
        fires = rng.random(n) < np.where(y == 0, hit, miss)
        columns.append(np.where(fires, 0.0, NAN))
    return np.column_stack(columns), y, positive_rules, negative_rules


def test_the_label_model_learns_each_rules_quality_without_ground_truth():
    votes, y, positive_rules, negative_rules = simulate()
    model = fit_label_model(votes, class_balance=0.08)
    assert model.converged
    for j, (hit, false_alarm) in enumerate(positive_rules):
        assert model.given_positive[j, 1] == pytest.approx(hit, abs=0.04)
        assert model.given_negative[j, 1] == pytest.approx(false_alarm, abs=0.02)
    for j, (hit, miss) in enumerate(negative_rules, start=len(positive_rules)):
        assert model.given_negative[j, 0] == pytest.approx(hit, abs=0.03)
        assert model.given_positive[j, 0] == pytest.approx(miss, abs=0.05)


def test_the_label_model_beats_the_majority_vote_against_the_truth():
    votes, y, *_ = simulate()
    mv = majority_vote(votes)
    covered = ~np.isnan(mv)
    proba = fit_label_model(votes, class_balance=0.08).predict_proba(votes)
    assert roc_auc_score(y[covered], proba[covered]) > roc_auc_score(y[covered], mv[covered]) + 0.02
    assert log_loss(y[covered], proba[covered]) < log_loss(
        y[covered], np.clip(mv[covered], 0.01, 0.99)
    )


def test_majority_vote_and_the_statistics_of_each_function():
    votes = np.array(
        [
            [1, 1, NAN],
            [1, 0, NAN],
            [NAN, 0, 0],
            [NAN, NAN, NAN],
        ]
    )
    np.testing.assert_allclose(majority_vote(votes), [1.0, 0.5, 0.0, NAN])
    truth = np.array([1, 0, NAN, 0])
    stats = function_stats(votes, ["a", "b", "c"], truth).to_dicts()
    a, b, c = stats
    assert (a["coverage"], a["overlap"], a["conflict"]) == (0.5, 0.5, 0.25)
    assert (b["coverage"], b["overlap"], b["conflict"]) == (0.75, 0.75, 0.25)
    assert (c["coverage"], c["overlap"], c["conflict"]) == (0.25, 0.25, 0.0)
    assert a["empirical_accuracy"] == 0.5 and a["votes_with_truth"] == 2
    assert b["empirical_accuracy"] == 1.0 and c["empirical_accuracy"] is None


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="class balance"):
        fit_label_model(np.ones((3, 2)), class_balance=0)
    with pytest.raises(ValueError, match="column per function"):
        fit_label_model(np.ones((3, 0)), class_balance=0.1)
