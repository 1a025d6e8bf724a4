"""train_challenger, the model asset's one call, on a small frame: no Dagster, no warehouse."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ml_assets.spec import Fairness, Training
from ml_assets.transforms import train as training


def training_frame(rows: int = 3000, signal: float = 3.0, seed: int = 1) -> pl.DataFrame:
    """x drives the label (by `signal`), c and group do not; 80/10/10 train/validation/test."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    label = (rng.random(rows) < 1 / (1 + np.exp(-(signal * x - 2)))).astype(np.int8)
    position = np.arange(rows)
    return pl.DataFrame(
        {
            "x": x,
            "noise": rng.normal(size=rows),
            "c": rng.choice(["a", "b"], rows),
            "group": rng.choice(["g1", "g2"], rows),
            "label": label,
            "split": np.where(
                position < 0.8 * rows,
                "train",
                np.where(position < 0.9 * rows, "validation", "test"),
            ),
        }
    )


CFG = Training(tuning_candidates=2, bootstrap_samples=20, seed=3)
FAIR = Fairness(min_group_events=20)


def test_train_challenger_tests_both_models_and_explains_the_better_one():
    timings: dict[str, float] = {}
    outcome = training.train_challenger(
        training_frame(), ["x", "noise"], ["c"], CFG, FAIR, ["group"], timings
    )
    assert len(outcome.train) == 2400 and len(outcome.test) == 300
    assert len(outcome.trials) == 2
    better = outcome.candidate_metrics["pr_auc"] > outcome.baseline_metrics["pr_auc"]
    assert outcome.beats_baseline is better
    assert outcome.challenger is (outcome.candidate if better else outcome.baseline)
    # the challenger's metrics are its own, at its own threshold, on the test slice
    again = training.evaluate(outcome.challenger, outcome.test)
    assert again["pr_auc"] == pytest.approx(outcome.challenger_metrics["pr_auc"])
    assert outcome.challenger_metrics["threshold"] == outcome.challenger.threshold
    # x carries the signal: it matters most; the sensitive column is judged
    assert outcome.importance.row(0, named=True)["feature"] == "x"
    assert set(outcome.gaps) == {"group"} and outcome.fairness.name == "fairness"
    assert set(outcome.slices["group"]) == {"g1", "g2"}
    assert {"tune", "fit", "baseline", "importance", "slices + fairness"} <= set(timings)


def test_train_challenger_names_the_missing_slice_and_the_fix():
    frame = training_frame().filter(pl.col("split") != "validation")
    with pytest.raises(
        training.TrainingDataError, match=r"0 validation .* re-materialize training_set"
    ):
        training.train_challenger(frame, ["x"], ["c"], CFG, FAIR, [])
