"""The retraining policy: each condition alone triggers, the cooldown holds, and the sensor wires it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.defs.models.sensors import REASON_TAG
from ml_assets.spec import Retraining
from ml_assets.transforms.retraining import (
    DriftState,
    FixedWindow,
    ModelState,
    PerformanceState,
    reasons_to_retrain,
)
from ml_assets_tests.conftest import materialize

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
POLICY = Retraining(every_days=7, drifted_days=3, new_labels=1000, cooldown_hours=12)
FRESH = ModelState("v1", NOW - timedelta(days=1), labelled_at_training=5000)


def reasons(model=FRESH, drift=None, labelled=5000, last=None, policy=POLICY, performance=None):
    return reasons_to_retrain(policy, NOW, model, drift, labelled, last, performance)


def test_a_fresh_model_with_no_drift_and_few_new_labels_stays():
    assert reasons(drift=DriftState("v1", 2), labelled=5999) == []


def test_each_condition_alone_is_enough():
    old = ModelState("v1", NOW - timedelta(days=7), 5000)
    assert reasons(model=old)[0].startswith("scheduled: the model is 7 days old")
    assert reasons(drift=DriftState("v1", 3))[0].startswith("drift: 3 days")
    assert reasons(labelled=6000)[0].startswith("new labels: 1000 events")
    assert len(reasons(model=old, drift=DriftState("v1", 4), labelled=7000)) == 3


def test_a_realised_performance_drop_of_this_model_triggers_retraining():
    drop = PerformanceState("v1", True, "2026-10-20: pr_auc 0.210 vs 0.430 on the test slice")
    assert reasons(performance=drop) == [
        "performance: 2026-10-20: pr_auc 0.210 vs 0.430 on the test slice"
    ]
    assert reasons(performance=PerformanceState("v1", False, "pr_auc 0.42 vs 0.43")) == []
    # the alert was about the model replaced since: the new one has not been judged yet
    assert reasons(performance=PerformanceState("v0", True, "old")) == []


def test_a_fixed_window_trains_once_its_labels_matured_and_then_only_for_a_new_period_or_an_erasure():
    period = "fixed 2026-01-01 .. 2026-06-30"
    waiting, ready = FixedWindow(period, ready=False), FixedWindow(period, ready=True)
    none = ModelState(None, None, None)
    assert reasons_to_retrain(POLICY, NOW, none, None, 5000, None, fixed=waiting) == []
    assert reasons_to_retrain(POLICY, NOW, none, None, 0, None, fixed=ready) == [
        f"no model yet, and the labels of the {period} training window have matured"
    ]
    old = ModelState("v1", NOW - timedelta(days=30), 5000, window=period)
    drop = PerformanceState("v1", True, "pr_auc dropped")
    # old, drifted, a performance drop, many new labels: none retrains on the same period
    assert (
        reasons_to_retrain(POLICY, NOW, old, DriftState("v1", 9), 9000, None, drop, fixed=ready)
        == []
    )
    moved = FixedWindow("fixed 2026-02-01 .. 2026-07-31", ready=True)
    assert reasons_to_retrain(POLICY, NOW, old, None, 5000, None, fixed=moved) == [
        f"training window: the spec's is fixed 2026-02-01 .. 2026-07-31, the model's {period}"
    ]
    erased = ModelState("v1", NOW - timedelta(days=30), 5000, erased_rows=3, window=period)
    assert reasons_to_retrain(POLICY, NOW, erased, None, 5000, None, fixed=ready)[0].startswith(
        "erased_since_training: 3 rows"
    )


def test_an_estimated_drop_before_the_labels_retrains_when_the_spec_asks():
    est = PerformanceState(
        "v1", True, "2026-10-20: estimated roc_auc 0.81 over the newest 7 scored days vs 0.90"
    )
    assert reasons_to_retrain(POLICY, NOW, FRESH, None, 5000, None, estimated=est) == [
        "estimated performance: 2026-10-20: estimated roc_auc 0.81 over the newest 7 scored days vs 0.90"
    ]
    # no alert (the spec leaves max_estimated_roc_auc_drop unset), or another model's: nothing
    assert (
        reasons_to_retrain(
            POLICY, NOW, FRESH, None, 5000, None, estimated=PerformanceState("v1", False)
        )
        == []
    )
    assert (
        reasons_to_retrain(
            POLICY, NOW, FRESH, None, 5000, None, estimated=PerformanceState("v0", True)
        )
        == []
    )


def test_the_drift_reason_names_the_important_inputs_that_drifted():
    drift = DriftState("v1", 3, important_drifted="amount, merchant_category")
    assert reasons(drift=drift)[0].endswith("important inputs drifted: amount, merchant_category")


def test_drift_measured_against_an_older_model_does_not_count():
    assert reasons(drift=DriftState("v0", 30)) == []


def test_no_model_trains_once_enough_events_are_labelled():
    none = ModelState(None, None, None)
    assert reasons(model=none, labelled=999) == []
    assert reasons(model=none, labelled=1000) == ["no model yet, and 1000 events are labelled"]


def test_the_cooldown_holds_after_a_training_and_after_a_request():
    just_trained = ModelState("v1", NOW - timedelta(hours=11), 0)
    assert reasons(model=just_trained, labelled=10**6) == []
    assert reasons(labelled=10**6, last=NOW - timedelta(hours=11)) == []
    assert reasons(labelled=10**6, last=NOW - timedelta(hours=12)) != []


@pytest.mark.integration
def test_the_sensor_requests_training_with_its_reasons_and_then_waits(example_env, monkeypatch):
    defs, instance = build_definitions(), dg.DagsterInstance.ephemeral()
    sensor = defs.resolve_sensor_def("retraining")

    def tick(cursor=None):
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, resources=defs.resources
        ) as context:
            return sensor(context)

    assert tick().skip_reason is not None  # nothing labelled yet
    materialize(
        defs,
        "group:ingest or group:clean or group:labels or group:features",
        instance,
        "2026-09-01",
        "2026-09-20",
    )
    first = tick()
    (request,) = first.run_requests
    assert request.asset_selection == [dg.AssetKey("training_set"), dg.AssetKey("model")]
    assert request.tags[REASON_TAG].startswith("no model yet")
    # within the cooldown after a request, nothing more
    assert tick(first.cursor).run_requests == []
    materialize(defs, "group:models", instance)
    assert tick().run_requests == []  # a model just trained: the cooldown holds


def test_rows_of_erased_people_in_its_data_retrain_the_model():
    from datetime import UTC, datetime, timedelta

    from ml_assets.spec import Retraining
    from ml_assets.transforms.retraining import ModelState, reasons_to_retrain

    now = datetime(2026, 11, 1, tzinfo=UTC)
    trained = now - timedelta(days=1)
    policy = Retraining(erased_since_training=5, cooldown_hours=0, new_labels=10**6)
    clean = ModelState("v1", trained, 100, erased_rows=4)
    assert reasons_to_retrain(policy, now, clean, None, 100, None) == []
    erased = ModelState("v1", trained, 100, erased_rows=5)
    (reason,) = reasons_to_retrain(policy, now, erased, None, 100, None)
    assert reason.startswith("erased_since_training: 5 rows")
    # a model trained a minute ago is retrained for an erasure all the same
    fresh = ModelState("v1", now - timedelta(minutes=1), 100, erased_rows=5)
    cooled = Retraining(erased_since_training=5, cooldown_hours=12)
    assert reasons_to_retrain(cooled, now, fresh, None, 100, None)[0].startswith("erased_since")


def test_the_sensor_never_waits_for_a_run_writing_the_warehouse(example_env):
    """Another process holds the DuckDB file (a run writing): the tick skips at once and says
    why, instead of waiting on the lock and holding the writer up."""
    defs, instance = build_definitions(), dg.DagsterInstance.ephemeral()
    sensor = defs.resolve_sensor_def("retraining")
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('open', flush=True); "
            "time.sleep(60)",
            str(example_env / "warehouse.duckdb"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "open"
        started = time.monotonic()
        with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
            result = sensor(context)
        assert time.monotonic() - started < 10
        assert result.run_requests == [] or result.run_requests is None
        assert "writing the warehouse" in result.skip_reason.skip_message
    finally:
        writer.kill()
        writer.wait()
    # the lock gone, the next tick decides (nothing is labelled yet: no reason to train)
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        reason = sensor(context).skip_reason
        assert reason is not None and "writing the warehouse" not in reason.skip_message


def test_a_command_line_tool_picks_its_dataset_among_several(tmp_path, monkeypatch, capsys):
    from ml_assets.settings import Settings, SettingsError
    from ml_assets_tests.conftest import FIXTURES, small_example_spec

    paths = os.pathsep.join([str(small_example_spec(tmp_path)), str(FIXTURES / "readings.yaml")])
    settings = Settings.from_env({"ML_ASSETS_SPEC": paths})
    assert settings.dataset("readings").key_prefix == "readings"
    with pytest.raises(SettingsError, match="transactions, readings: say which with --dataset"):
        settings.dataset()
    twice = Settings.from_env({"ML_ASSETS_SPEC": os.pathsep.join([paths, paths])})
    with pytest.raises(SettingsError, match="share the name"):
        twice.specs()
    # the command line says which option to give, without a traceback; with it, it acts
    from ml_assets.cli import models as registry

    monkeypatch.setenv("ML_ASSETS_SPEC", paths)
    monkeypatch.setenv("ML_ASSETS_DATA_DIR", str(tmp_path / "data"))
    assert registry.main(["list"]) == 2
    assert "say which with --dataset NAME" in capsys.readouterr().err
    assert registry.main(["--dataset", "readings", "list"]) == 0
