"""Time-based training windows, training on a tiny frame, and the registry's integrity check."""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest

from ml_assets.defs.models.assets import choose_window
from ml_assets.registry import (
    ModelRegistryError,
    current_version,
    list_versions,
    load_model,
    save_version,
)
from ml_assets.transforms import train as training

D0 = datetime(2026, 9, 1)


def days(unlabelled_from: int, n: int = 20) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "day": [D0 + timedelta(days=i) for i in range(n)],
            "events": [100] * n,
            "unlabelled": [0 if i < unlabelled_from else 5 for i in range(n)],
        }
    )


def test_window_tests_on_the_last_matured_days_and_trains_before():
    train_start, test_start, test_end = choose_window(days(15), train_days=8, test_days=3)
    assert (test_start, test_end) == (D0 + timedelta(days=12), D0 + timedelta(days=15))
    assert train_start == D0 + timedelta(days=4)
    assert choose_window(days(15), 8, 3, as_of=D0 + timedelta(days=9))[2] == D0 + timedelta(days=10)


def test_window_needs_matured_days():
    with pytest.raises(dg.Failure, match="only 1 day"):
        choose_window(days(1), 8, 3)


def frame(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pl.DataFrame(
        {
            "x": x,
            "c": rng.choice(["a", "b"], n),
            "label": (x + rng.normal(0, 0.5, n) > 1.2).astype(np.int8),
        }
    )


def test_fit_is_reproducible_and_learns(tmp_path):
    train, test = frame(3000, 1), frame(1000, 2)
    first = training.evaluate(training.fit(train, ["x"], ["c"], seed=7), test)
    second = training.evaluate(training.fit(train, ["x"], ["c"], seed=7), test)
    assert first == second and first["roc_auc"] > 0.9
    assert len(first["calibration"]) == 10


def test_single_class_training_window_is_refused():
    train = frame(200, 1).with_columns(label=pl.lit(0, pl.Int8))
    with pytest.raises(ValueError, match="only one class"):
        training.fit(train, ["x"], ["c"], seed=7)


def test_registry_saves_versions_and_refuses_a_tampered_artifact(tmp_path):
    model = training.fit(frame(500, 1), ["x"], ["c"], seed=7)
    version = save_version(tmp_path, model, {"metrics": {"roc_auc": 0.9}})
    assert current_version(tmp_path) == version and [
        v["version"] for v in list_versions(tmp_path)
    ] == [version]
    loaded, card = load_model(tmp_path, version)
    assert card["metrics"]["roc_auc"] == 0.9 and loaded.threshold == model.threshold
    artifact = tmp_path / version / "model.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    with pytest.raises(ModelRegistryError, match="does not match its recorded SHA-256"):
        load_model(tmp_path, version)


def test_no_model_yet_says_what_to_materialize(tmp_path):
    with pytest.raises(ModelRegistryError, match="materialize the `model` asset first"):
        current_version(tmp_path)
