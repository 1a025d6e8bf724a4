"""MLflow as a mirror of the registry: every version logged to a local MLflow store and read back
with MLflow's own client, the champion alias following promotion and rollback, and a tracking
server that is down costing a warning, never the run."""

from __future__ import annotations

import time

import dagster as dg
import numpy as np
import polars as pl
import pytest

from ml_assets.cli import models as registry_cli
from ml_assets.definitions import build_definitions
from ml_assets.storage.registry import current_version, list_versions, load_model
from ml_assets_tests.conftest import materialize

mlflow = pytest.importorskip(
    "mlflow", reason="the mlflow extra is not installed: pip install -e '.[mlflow]'"
)

pytestmark = pytest.mark.integration

DAILY = "group:ingest or group:clean or group:labels or group:features"


def test_every_version_is_mirrored_to_mlflow_and_the_champion_alias_follows_the_registry(
    example_env, tmp_path, monkeypatch
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    defs = build_definitions()
    with dg.DagsterInstance.ephemeral() as instance:
        materialize(defs, DAILY, instance, "2026-09-01", "2026-09-20")
        materialize(defs, "group:models", instance)
        models = example_env / "models"
        first = current_version(models)
        time.sleep(1.1)  # a version is named by its training second
        materialize(defs, "group:models", instance)
    ours = [v["version"] for v in list_versions(models)]
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("transactions")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["ml_assets_version"] for r in runs) == sorted(ours)
    run = next(r for r in runs if r.data.tags["ml_assets_version"] == first)
    card = load_model(models, first)[1]
    assert run.data.metrics["pr_auc"] == pytest.approx(card["metrics"]["pr_auc"])
    low, high = card["metrics"]["intervals"]["roc_auc"]
    assert run.data.metrics["roc_auc_ci_low"] == pytest.approx(low)
    assert run.data.metrics["roc_auc_ci_high"] == pytest.approx(high)
    assert run.data.tags["test_window"] == card["test_window"]
    assert run.data.tags["training_window"] == "rolling"
    assert "features" in run.data.tags["input_data_versions"]
    assert run.data.params["threshold"] == str(card["metrics"]["threshold"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {
        "model_card.json",
        "model_card.md",
    } <= artifacts  # the model is a logged model of its own
    # the artifacts sit in the data folder, not in the working directory's ./mlruns
    assert any((example_env / "mlflow").rglob("MLmodel"))
    # the champion alias is on the version in use, and MLflow's copy scores as ours does
    in_use = current_version(models)
    champion = client.get_model_version_by_alias("transactions", "champion")
    assert champion.tags["ml_assets_version"] == in_use
    mirrored = mlflow.sklearn.load_model("models:/transactions@champion")
    ours_model, _ = load_model(models, in_use)
    rows = pl.DataFrame(
        {c: np.linspace(0, 100, 5) for c in ours_model.numeric}
        | {c: ["grocery"] * 5 for c in ours_model.categorical}
    )
    from ml_assets.transforms.train import to_model_input

    frame = to_model_input(rows, ours_model.numeric, ours_model.categorical)
    assert np.allclose(mirrored.predict_proba(frame)[:, 1], ours_model.score(rows))
    # a rollback moves it
    back_to = first if first != in_use else next(v for v in reversed(ours) if v != in_use)
    assert registry_cli.main(["rollback", back_to]) == 0
    assert current_version(models) == back_to
    champion = client.get_model_version_by_alias("transactions", "champion")
    assert champion.tags["ml_assets_version"] == back_to


def test_a_tracking_server_that_is_down_costs_a_warning_not_the_model(example_env, monkeypatch):
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster_shared.serdes import serialize_value

    # nothing listens there; its user and password are in the URI, as some servers want
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:s3cret@127.0.0.1:9")
    defs = build_definitions()
    # the definitions name the variable, not its value: the UI's resource config and the
    # instance's snapshot of the code location never hold the password
    snapshot = serialize_value(RepositorySnap.from_def(defs.get_repository_def()))
    assert "MLFLOW_TRACKING_URI" in snapshot and "s3cret" not in snapshot
    with dg.DagsterInstance.ephemeral() as instance:
        materialize(defs, DAILY, instance, "2026-09-01", "2026-09-20")
        started = time.monotonic()
        result = materialize(defs, "group:models", instance)
        took = time.monotonic() - started
    assert result.success and current_version(example_env / "models")
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("model")
    ]
    warning = event.materialization.metadata["mlflow_warning"].value
    assert "MLflow at http://***@127.0.0.1:9 was not updated" in warning  # the run read it
    assert "s3cret" not in warning and "alice" not in warning
    assert "our registry is unaffected" in warning
    assert took < 60, f"the model step waited {took:.0f} s on a server that is down"
