"""The label model against the majority vote, on votes whose truth and error rates are known."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from ml_assets.transforms.weak import (
    fit_label_model,
    function_stats,
    majority_vote,
    vote_patterns,
)

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


def test_fitting_on_vote_patterns_and_counts_is_the_same_as_on_every_event():
    votes, *_ = simulate(n=5000)
    patterns, counts = vote_patterns(votes)
    assert len(patterns) <= 3 ** votes.shape[1] and counts.sum() == len(votes)
    every = fit_label_model(votes, class_balance=0.08)
    grouped = fit_label_model(patterns, class_balance=0.08, counts=counts)
    np.testing.assert_allclose(grouped.given_positive, every.given_positive, atol=1e-9)
    np.testing.assert_allclose(grouped.predict_proba(votes), every.predict_proba(votes), atol=1e-9)


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


@pytest.fixture(scope="module")
def example_30_days(tmp_path_factory):
    """30 days of the example data, 1,000 rows a day: enough matured chargebacks to compare."""
    from datetime import date

    from ml_assets.example_data import generate

    root = tmp_path_factory.mktemp("weak")
    generate(
        root / "data/landing", start=date(2026, 9, 1), days=30, rows_per_day=1000, maturity_days=5
    )
    return root


@pytest.mark.integration
def test_on_the_example_data_the_label_model_beats_the_majority_vote(example_30_days, monkeypatch):
    import dagster as dg

    from ml_assets.definitions import build_definitions
    from ml_assets_tests.conftest import TEST_KEY, materialize, small_example_spec

    monkeypatch.setenv("ML_ASSETS_SPEC", str(small_example_spec(example_30_days, days=30)))
    monkeypatch.setenv("ML_ASSETS_DATA_DIR", str(example_30_days / "data"))
    monkeypatch.setenv("ML_ASSETS_PSEUDONYM_KEY", TEST_KEY)
    defs, instance = build_definitions(), dg.DagsterInstance.ephemeral()
    materialize(
        defs,
        "group:ingest or group:clean or group:labels or group:features",
        instance,
        "2026-09-01",
        "2026-09-30",
    )
    metadata = instance.get_latest_materialization_event(
        dg.AssetKey("weak_labels")
    ).asset_materialization.metadata
    agreement = metadata["agreement_with_ground_truth"].data
    assert agreement["events_compared"] > 10_000
    assert agreement["label_model_auc"] > agreement["majority_vote_auc"] + 0.02, agreement
    assert metadata["label_model_converged"].value is True
    assert "| everyday_purchase |" in metadata["functions"].value


def test_a_labelling_function_that_does_not_run_is_named_with_the_fix(
    example_env, tmp_path, monkeypatch
):
    import dagster as dg
    import yaml

    from ml_assets.definitions import build_definitions
    from ml_assets_tests.conftest import materialize

    spec_path = tmp_path / "transactions_small.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["weak_labels"]["functions"].append(
        {"name": "typo", "vote": "positive", "when": "amout > 10"}
    )
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    defs, instance = build_definitions(), dg.DagsterInstance.ephemeral()
    materialize(
        defs, "group:ingest or group:clean or group:features", instance, "2026-09-01", "2026-09-08"
    )
    result = materialize(defs, "key:weak_labels", instance, "2026-09-08", raise_on_error=False)
    assert not result.success
    failure = next(
        e for e in result.all_events if e.event_type_value == "STEP_FAILURE"
    ).step_failure_data.error.message
    assert "labelling function 'typo'" in failure and "amout" in failure
