"""Time-based training windows, training on a tiny frame, and the registry's integrity check."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from ml_assets.spec import ThresholdRule, Training
from ml_assets.storage.registry import (
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


def split_cfg(**kw) -> Training:
    return Training(**{"train_days": 8, "gap_days": 2, "validation_days": 3, "test_days": 3, **kw})


def test_split_tests_on_the_newest_matured_days_validates_before_and_trains_before_a_gap():
    split = training.choose_split(days(18), split_cfg())
    at = [D0 + timedelta(days=i) for i in range(19)]
    # matured through day 17: test 15..17, validation 12..14, gap 10..11, train 2..9
    assert (split.test_start, split.test_end) == (at[15], at[18])
    assert split.validation_start == at[12]
    assert (split.train_start, split.train_end) == (at[2], at[10])
    assert split.describe() == {
        "train": "2026-09-03 .. 2026-09-10",
        "gap": "2026-09-11 .. 2026-09-12",
        "validation": "2026-09-13 .. 2026-09-15",
        "test": "2026-09-16 .. 2026-09-18",
    }
    # as if day 12 were the newest matured one; the training slice is cut at the first day
    early = training.choose_split(days(18), split_cfg(), as_of=at[12])
    assert (early.train_start, early.train_end, early.test_end) == (at[0], at[5], at[13])
    no_gap = training.choose_split(days(18), split_cfg(gap_days=0))
    assert no_gap.train_end == no_gap.validation_start


def test_split_refuses_too_little_history_and_says_what_it_needs():
    with pytest.raises(training.TrainingDataError, match="no day has fully matured"):
        training.choose_split(days(0), split_cfg())
    with pytest.raises(training.TrainingDataError, match=r"needs at least 9 \(test 3"):
        training.choose_split(days(8), split_cfg())


def test_a_fixed_window_lays_the_slices_in_its_period_whatever_matured_since():
    fixed = split_cfg(
        window="fixed", start=D0.date() + timedelta(days=1), end=D0.date() + timedelta(days=13)
    )
    split = training.choose_split(days(18), fixed)
    at = [D0 + timedelta(days=i) for i in range(19)]
    # period days 1..12: test 10..12, validation 7..9, gap 5..6, train 1..4 (train_days unused)
    assert (split.train_start, split.train_end) == (at[1], at[5])
    assert (split.validation_start, split.test_start, split.test_end) == (at[7], at[10], at[13])
    assert fixed.describe_window() == "fixed 2026-09-02 .. 2026-09-13"
    # the same split whatever matured after the period
    assert training.choose_split(days(20), fixed) == split
    with pytest.raises(
        training.TrainingDataError,
        match="1 day\\(s\\) still have events whose labels have not matured, the first 2026-09-13",
    ):
        training.choose_split(days(12), fixed)
    # a window whose days have not all landed is not trained on half of it
    with pytest.raises(training.TrainingDataError, match="its days have not all landed"):
        training.choose_split(days(18, n=10), fixed)
    with pytest.raises(training.TrainingDataError, match="as_of is for the rolling window"):
        training.choose_split(days(18), fixed, as_of=at[12])
    with pytest.raises(ValueError, match="has 5 days; .* need 9"):
        split_cfg(window="fixed", start=D0.date(), end=D0.date() + timedelta(days=5))
    with pytest.raises(ValueError, match="add `window: fixed`"):
        split_cfg(start=D0.date())


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


def test_registry_saves_skops_versions_and_refuses_tampered_or_pickled_artifacts(tmp_path):
    import json

    data = frame(500, 1)
    model = training.fit(data, ["x"], ["c"], seed=7)
    version = save_version(tmp_path, model, {"metrics": {"roc_auc": 0.9}})
    assert current_version(tmp_path) == version and [
        v["version"] for v in list_versions(tmp_path)
    ] == [version]
    loaded, card = load_model(tmp_path, version)
    assert card["metrics"]["roc_auc"] == 0.9 and loaded.threshold == model.threshold
    assert np.array_equal(loaded.score(data), model.score(data))  # the same model back
    baseline = training.fit_baseline(data, ["x"], ["c"], seed=7)
    other = save_version(tmp_path, baseline, {}, promote=False)
    assert current_version(tmp_path) == version  # saved, not put in use
    assert np.array_equal(load_model(tmp_path, other)[0].score(data), baseline.score(data))

    artifact = tmp_path / version / "model.skops"
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    with pytest.raises(ModelRegistryError, match="does not match its recorded SHA-256"):
        load_model(tmp_path, version)
    # a version from before skops: a pickle is never loaded
    card_path = tmp_path / other / "model.json"
    old = json.loads(card_path.read_text())
    old.pop("artifact")
    card_path.write_text(json.dumps(old))
    with pytest.raises(ModelRegistryError, match="pickle from an earlier ml_assets"):
        load_model(tmp_path, other)


def test_no_model_yet_says_what_to_materialize(tmp_path):
    with pytest.raises(ModelRegistryError, match="materialize the `model` asset first"):
        current_version(tmp_path)


def test_tuning_keeps_the_best_validation_candidate_within_the_budget():
    train, validation = frame(3000, 1), frame(1000, 2)
    params, trials = training.tune(train, validation, ["x"], ["c"], 7, candidates=4, seconds=600)
    assert len(trials) == 4 and trials.row(0, named=True)["learning_rate"] == 0.08  # defaults first
    best = trials.sort("validation_pr_auc", descending=True).row(0, named=True)
    assert params == {k: best[k] for k in training.DEFAULT_PARAMS}
    # the same seed draws the same candidates
    again = training.tune(train, validation, ["x"], ["c"], 7, candidates=4, seconds=600)[1]
    assert again.drop("seconds").equals(trials.drop("seconds"))
    # a clock past the budget after the first trial: no second candidate starts
    ticks = iter(range(0, 1000, 10))
    _, cut = training.tune(
        train, validation, ["x"], ["c"], 7, candidates=4, seconds=15, clock=lambda: next(ticks)
    )
    assert len(cut) == 1


def test_threshold_by_alert_rate_and_by_cost():
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.05).astype(int)
    p = np.clip(rng.normal(0.2 + 0.5 * y, 0.15), 0, 1)
    rate = training.choose_threshold(y, p, ThresholdRule(rule="alert_rate", alert_rate=0.1))
    assert (p >= rate).mean() == pytest.approx(0.1, abs=0.001)
    rule = ThresholdRule(rule="cost", false_positive_cost=1, false_negative_cost=10)
    chosen = training.choose_threshold(y, p, rule)

    def cost(t):
        alert = p >= t
        return 1 * (alert & (y == 0)).sum() + 10 * (~alert & (y == 1)).sum()

    # no threshold (any score, or alerting on nothing) costs less
    assert cost(chosen) == min(min(cost(t) for t in np.unique(p)), cost(np.inf))
    # misses cost more -> alert on more events
    costly_misses = ThresholdRule(rule="cost", false_positive_cost=1, false_negative_cost=100)
    assert training.choose_threshold(y, p, costly_misses) <= chosen


def test_bootstrap_intervals_hold_the_point_estimate_and_repeat_with_the_seed():
    model = training.fit(frame(3000, 1), ["x"], ["c"], seed=7)
    test = frame(1500, 2)
    metrics = training.evaluate(model, test, bootstrap_samples=100, seed=7)
    for name in ("roc_auc", "pr_auc", "brier", "log_loss", "precision_at_threshold"):
        low, high = metrics["intervals"][name]
        assert low <= metrics[name] <= high and low < high, name
    assert training.evaluate(model, test, 100, 7)["intervals"] == metrics["intervals"]
    wider = training.evaluate(model, frame(300, 2), 100, 7)["intervals"]["roc_auc"]
    assert (
        wider[1] - wider[0]
        > metrics["intervals"]["roc_auc"][1] - metrics["intervals"]["roc_auc"][0]
    )


def test_the_baseline_is_a_logistic_regression_that_a_nonlinear_signal_beats():
    rng = np.random.default_rng(5)
    n = 6000
    x = rng.normal(size=n)
    # positive in the middle band of x: a straight line in x cannot rank that, the trees can
    label = ((np.abs(x) < 0.3) & (rng.random(n) < 0.6)).astype(np.int8)
    data = pl.DataFrame({"x": x, "c": rng.choice(["a", "b"], n), "label": label})
    train, test = data.head(4000), data.tail(2000)
    baseline = training.fit_baseline(train, ["x"], ["c"], seed=7)
    assert type(baseline.pipeline.named_steps["model"]).__name__ == "LogisticRegression"
    trees = training.fit(train, ["x"], ["c"], seed=7)
    assert (
        training.evaluate(trees, test)["pr_auc"] > training.evaluate(baseline, test)["pr_auc"] + 0.2
    )


@pytest.mark.integration
def test_a_candidate_that_does_not_beat_the_baseline_is_saved_but_the_baseline_is_used(
    example_env, monkeypatch
):
    import dagster as dg

    from ml_assets.definitions import build_definitions
    from ml_assets.transforms.model_card import fmt_number
    from ml_assets_tests.conftest import materialize

    defs, instance = build_definitions(), dg.DagsterInstance.ephemeral()
    before_model = "group:ingest or group:clean or group:labels or group:features"
    materialize(defs, before_model, instance, "2026-09-01", "2026-09-20")
    models = example_env / "models"

    materialize(defs, "group:models", instance)
    card = load_model(models, current_version(models))[1]
    # the slices and what was chosen on validation are on the card
    assert set(card["time_split"]) == {"train", "gap", "validation", "test"}
    assert card["train_rows"] and card["validation_rows"] and card["test_rows"]
    assert card["code_version"].startswith("ml_assets ")
    assert set(card["metrics"]["intervals"]) >= {"roc_auc", "pr_auc", "brier", "log_loss"}
    # what explains it: permutation importance on test, metrics per age band and segment, gaps
    importance = {r["feature"]: r["pr_auc_drop"] for r in card["feature_importance"]}
    assert set(importance) == set(card["numeric_features"]) | set(card["categorical_features"])
    assert max(importance.values()) > 0
    assert {s["column"] for s in card["slices"]} == {"age_band", "channel", "device"}
    assert set(card["fairness"]["gaps"]) == {"age_band"}
    # the model card: a Markdown file beside the artifact, with the figures of the card
    markdown = (models / card["version"] / "model_card.md").read_text()
    for section in (
        "## Intended use",
        "## Training data",
        "## Metrics on the test slice",
        "## Calibration",
        "## Slices and fairness",
        "## Feature importance",
        "## Drift at training time",
        "## Known limits",
    ):
        assert section in markdown, section
    low, high = card["metrics"]["intervals"]["pr_auc"]
    pr_auc = fmt_number(card["metrics"]["pr_auc"])
    assert f"| PR AUC | {pr_auc} | {low:.3f} - {high:.3f} |" in markdown
    assert card["time_split"]["validation"] in markdown and "| age_band |" in markdown
    in_use_is_candidate = card["kind"] == "gradient boosting"
    assert in_use_is_candidate == card["beats_baseline"]
    first_versions = len(list_versions(models))
    assert first_versions == (1 if in_use_is_candidate else 2)

    assert card["promotion"]["promote"] and card["promotion"]["champion"] is None
    assert "no champion to compare with" in card["promotion"]["reasons"]
    champion = current_version(models)
    split_check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("training_set"), "time_split")]
    )
    assert all(r.event.dagster_event.event_specific_data.passed for r in split_check.values())

    # reproducible: the same data and seed give the same model (the same metrics and choices;
    # the artifact's bytes differ only by the zip timestamps skops writes)
    materialize(defs, "group:models", instance)
    again = load_model(models, current_version(models))[1]
    assert again["version"] != champion and again["kind"] == card["kind"]
    assert again["metrics"] == card["metrics"] and again.get("tuned_params") == card.get(
        "tuned_params"
    )
    assert again["feature_importance"] == card["feature_importance"]
    first_versions = len(list_versions(models))
    champion = current_version(models)

    # a candidate fitted on shuffled labels learns nothing: the baseline becomes the challenger
    real_fit, real_baseline = training.fit, training.fit_baseline

    def on_noise(fit):
        def fit_on_noise(train, *args, **kwargs):
            return fit(train.with_columns(pl.col("label").shuffle(seed=1)), *args, **kwargs)

        return fit_on_noise

    monkeypatch.setattr(training, "fit", on_noise(real_fit))
    result = materialize(defs, "group:models", instance)
    metadata = result.asset_materializations_for_node("model")[0].metadata
    assert metadata["beats_baseline"].value is False
    assert metadata["model_kind"].text == "logistic regression baseline"
    versions = {v["version"]: v for v in list_versions(models)}
    assert len(versions) == first_versions + 2  # the candidate and the baseline, both versions
    candidate = versions[metadata["candidate_version"].text]
    assert candidate["kind"] == "gradient boosting" and not candidate["promotion"]["promote"]
    assert (
        "did not beat the baseline" in (models / candidate["version"] / "model_card.md").read_text()
    )
    assert candidate["candidate_metrics"]["pr_auc"] <= candidate["baseline_metrics"]["pr_auc"]
    challenger = versions[metadata["model_version"].text]
    assert challenger["kind"] == "logistic regression baseline"
    assert challenger["promotion"]["champion"] == champion
    # whichever way the gate went, the one in use is the one its decision says
    expected = challenger["version"] if challenger["promotion"]["promote"] else champion
    assert current_version(models) == expected == metadata["in_use"].text

    # both models on noise: far worse than the champion on the same slice, so it stays
    monkeypatch.setattr(training, "fit_baseline", on_noise(real_baseline))
    before = current_version(models)
    result = materialize(defs, "group:models", instance)
    metadata = result.asset_materializations_for_node("model")[0].metadata
    assert metadata["promoted"].value is False and current_version(models) == before
    assert "below the champion's" in metadata["promotion_reasons"].value
    held = load_model(models, metadata["model_version"].text)[1]
    assert not held["promotion"]["promote"] and held["promotion"]["champion"] == before
    assert "Not put in use." in (models / held["version"] / "model_card.md").read_text()
    assert "| False |" in metadata["versions"].value and "| True |" in metadata["versions"].value


def test_an_artifact_holding_an_untrusted_type_is_not_loaded(tmp_path):
    import hashlib
    import json
    import os

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    blob = sio.dumps(FunctionTransformer(func=os.system))  # would run a shell command
    folder = tmp_path / V1
    folder.mkdir()
    (folder / "model.skops").write_bytes(blob)
    card = {
        "artifact": "model.skops",
        "sha256": hashlib.sha256(blob).hexdigest(),
        "numeric": [],
        "categorical": [],
        "threshold": 0.5,
    }
    (folder / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelRegistryError, match="does not trust"):
        load_model(tmp_path, V1)


V1 = "20261029T101500Z-0123456789ab"


def test_a_pickle_in_place_of_the_artifact_gets_the_registrys_own_error(tmp_path):
    import hashlib
    import json
    import pickle

    blob = pickle.dumps({"not": "a model"})
    folder = tmp_path / V1
    folder.mkdir()
    (folder / "model.skops").write_bytes(blob)
    card = {"artifact": "model.skops", "sha256": hashlib.sha256(blob).hexdigest()}
    (folder / "model.json").write_text(json.dumps(card))  # the hash updated to match
    with pytest.raises(
        ModelRegistryError, match=f"version {V1}: .* is not a skops model file.*Fix"
    ):
        load_model(tmp_path, V1)


@pytest.mark.parametrize("version", ["../../outside/evil", "/tmp/evil", "..", "v1", ""])
def test_a_version_that_is_a_path_is_refused_and_nothing_moves(
    tmp_path, monkeypatch, capsys, version
):
    import json

    from ml_assets.cli.models import main as registry

    models = tmp_path / "data/models"
    models.mkdir(parents=True)
    data = frame(300, 1)
    kept = save_version(models, training.fit_baseline(data, ["x"], ["c"], seed=7), {"kind": "b"})
    # a model folder outside the registry, complete with a card
    evil = tmp_path / "outside/evil"
    evil.mkdir(parents=True)
    (evil / "model.json").write_text((models / kept / "model.json").read_text())
    (evil / "model.skops").write_bytes((models / kept / "model.skops").read_bytes())
    monkeypatch.setenv("ML_ASSETS_DATA_DIR", str(tmp_path / "data"))
    assert registry(["rollback", version]) == 2
    assert "is not a model version" in capsys.readouterr().err
    assert current_version(models) == kept
    # a pointer edited by hand to a path is refused where predictions read it
    (models / "current.json").write_text(json.dumps({"version": "../../outside/evil"}))
    with pytest.raises(ModelRegistryError, match="is not a model version"):
        current_version(models)


def test_rollback_is_one_command_and_is_logged(tmp_path, monkeypatch, capsys):
    import json

    from ml_assets.cli.models import main as registry

    data = frame(500, 1)
    models = tmp_path / "models"
    models.mkdir()
    first = save_version(models, training.fit(data, ["x"], ["c"], seed=7), {"kind": "a"})
    second = save_version(models, training.fit_baseline(data, ["x"], ["c"], seed=7), {"kind": "b"})
    assert current_version(models) == second
    monkeypatch.setenv("ML_ASSETS_DATA_DIR", str(tmp_path))

    assert registry(["rollback", first]) == 0
    assert current_version(models) == first
    assert f"{first} is in use again (was {second})" in capsys.readouterr().out
    history = [json.loads(line) for line in (models / "history.jsonl").read_text().splitlines()]
    assert [(h["from"], h["to"]) for h in history] == [
        (None, first),
        (first, second),
        (second, first),
    ]
    assert "rolled back by hand" in history[-1]["why"]
    from ml_assets.governance.audit import read

    (logged,) = read(tmp_path)
    assert logged["action"] == "registry_rollback" and logged["to_version"] == first

    assert registry(["list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith(f"* {first}") and listed[1].startswith(f"  {second}")
    assert registry(["compare", first, second]) == 0
    table = capsys.readouterr().out
    assert first in table and second in table and "pr_auc" in table

    # an unknown version, or one whose artifact was changed, is refused and nothing moves
    assert registry(["rollback", "nope"]) == 2
    assert "'nope' is not a model version" in capsys.readouterr().err
    missing = first[:-12] + "0" * 12
    assert registry(["rollback", missing]) == 2
    assert f"no version '{missing}'" in capsys.readouterr().err
    artifact = models / second / "model.skops"
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    assert registry(["rollback", second]) == 2
    assert current_version(models) == first


def test_bootstrap_on_a_big_slice_resamples_a_seeded_sample(monkeypatch):
    monkeypatch.setattr(training, "BOOTSTRAP_MAX_EVENTS", 500)
    model = training.fit(frame(3000, 1), ["x"], ["c"], seed=7)
    test = frame(2000, 2)
    first = training.evaluate(model, test, bootstrap_samples=50, seed=3)["intervals"]
    assert training.evaluate(model, test, bootstrap_samples=50, seed=3)["intervals"] == first
    full = training.evaluate(model, test, bootstrap_samples=50, seed=3)
    low, high = first["roc_auc"]
    assert low < full["roc_auc"] < high


def test_a_row_from_the_future_in_an_earlier_slice_is_a_leak():
    split = training.choose_split(days(18), split_cfg())
    at = [D0 + timedelta(days=i) for i in range(19)]
    good = pl.DataFrame(
        {
            "id": ["a", "b", "c"],
            "event_time": [at[3], at[12], at[16]],
            "split": ["train", "validation", "test"],
            "label_source": ["weak", "ground_truth", "ground_truth"],
        }
    )
    assert training.split_leaks(good, split, "id") == []
    # a test-day event in the training slice: the future leaking into training
    leak = good.with_columns(split=pl.Series(["train", "validation", "train"]))
    assert any("train row(s) outside" in p for p in training.split_leaks(leak, split, "id"))
    gap = good.with_columns(event_time=pl.Series([at[10], at[12], at[16]]))  # a gap day
    assert any("train row(s) outside" in p for p in training.split_leaks(gap, split, "id"))
    twice = pl.concat(
        [good, good.head(1).with_columns(split=pl.lit("test"), event_time=pl.lit(at[16]))]
    )
    assert any("more than one slice" in p for p in training.split_leaks(twice, split, "id"))
    weak_test = good.with_columns(label_source=pl.lit("weak"))
    assert any(
        "not labelled by ground truth" in p for p in training.split_leaks(weak_test, split, "id")
    )
