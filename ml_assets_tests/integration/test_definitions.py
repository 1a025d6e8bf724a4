"""The code location loads cleanly, every asset is described, and the CLI materializes a partition."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from ml_assets.definitions import build_definitions
from ml_assets_tests.conftest import DAILY_ASSETS as DAILY
from ml_assets_tests.conftest import EXTERNAL_ASSETS, demo_instance_home

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_definitions_load_without_deprecation_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        defs = build_definitions()
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == DAILY | {"training_set", "model", "monitoring_trend"} | EXTERNAL_ASSETS


def test_every_asset_has_description_group_freshness_and_partitions():
    defs = build_definitions()
    for key in defs.resolve_asset_graph().get_all_asset_keys():
        spec = defs.resolve_assets_def(key).specs_by_key[key]
        name = key.to_user_string()
        assert spec.description and len(spec.description) > 60, name
        assert spec.group_name in {
            "ingest",
            "clean",
            "labels",
            "features",
            "models",
            "predict",
            "monitor",
            "annotation",
            "governance",
        }, name
        if name in EXTERNAL_ASSETS:
            continue  # observed by governance actions, never materialized: no freshness
        assert spec.freshness_policy is not None, name
        assert (spec.partitions_def is not None) == (name in DAILY), name
        if name in DAILY:
            assert defs.resolve_assets_def(key).backfill_policy == dg.BackfillPolicy.single_run(), (
                name
            )


def test_rolling_features_read_the_previous_week_and_labels_the_maturity_window():
    graph = build_definitions().resolve_asset_graph()
    features = graph.get(dg.AssetKey("features"))
    mapping = features.partition_mappings[dg.AssetKey("cleaned_transactions")]
    assert (mapping.start_offset, mapping.end_offset) == (-7, 0)
    labels = graph.get(dg.AssetKey("ground_truth_labels")).partition_mappings[
        dg.AssetKey("raw_chargebacks")
    ]
    assert (labels.start_offset, labels.end_offset) == (0, 14)


def test_each_label_source_is_its_own_asset_upstream_of_labels():
    graph = build_definitions().resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("labels")).parent_keys}
    assert parents == {"ground_truth_labels", "manual_labels", "weak_labels"}
    manual = {k.to_user_string() for k in graph.get(dg.AssetKey("manual_labels")).parent_keys}
    assert manual == {"raw_annotations", "cleaned_transactions"}
    # the queue reads labels, so an event labelled by any source leaves it
    queue = {k.to_user_string() for k in graph.get(dg.AssetKey("annotation_queue")).parent_keys}
    assert {"labels", "predictions"} <= queue


@pytest.mark.integration
def test_dagster_definitions_validate_passes():
    result = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


@pytest.mark.integration
def test_dg_check_defs_passes():
    result = subprocess.run(
        [str(BIN / "dg"), "check", "defs"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_cli_materializes_one_partition(example_env, tmp_path):
    home = demo_instance_home(tmp_path)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    cmd = [
        str(BIN / "dagster"),
        "asset",
        "materialize",
        "-m",
        "ml_assets",
        "--select",
        "raw_transactions,cleaned_transactions",
        "--partition",
        "2026-09-05",
    ]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    con = duckdb.connect(str(example_env / "warehouse.duckdb"), read_only=True)
    days = con.sql("SELECT DISTINCT CAST(event_time AS DATE) FROM cleaned.transactions").fetchall()
    con.close()
    assert [str(d[0]) for d in days] == ["2026-09-05"]
    # the run is recorded in the instance, so the UI shows it afterwards
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert len(instance.get_run_records()) == 1


def test_every_daily_asset_but_the_sparse_annotations_has_a_partition_freshness_check():
    defs = build_definitions()
    fresh = {
        key.asset_key.to_user_string()
        for checks in defs.asset_checks
        for key in checks.check_keys
        if key.name == "partitions_fresh"
    }
    # a day nobody annotated is not late
    assert fresh == DAILY - {"raw_annotations"}


CLUSTER_ONLY_MODULES = (
    "deltalake",
    "upath",
    "s3fs",
    "dagster_celery",
    "dagster_postgres",
    "dagster_aws",
)


def test_the_embedded_profile_imports_none_of_the_cluster_dependencies(tmp_path):
    """The cluster extra's packages stay out of the embedded profile: building its definitions
    and resources imports none of them (so a plain `pip install ml_assets` runs the demo)."""
    probe = (
        "import sys\n"
        "from ml_assets.definitions import build_definitions\n"
        "defs = build_definitions()\n"
        "defs.resolve_asset_graph()\n"
        "print(type(defs.resources['warehouse']).__name__)\n"
        f"print(sorted(m for m in {CLUSTER_ONLY_MODULES!r} if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_ASSETS_")}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["DuckDBWarehouse", "[]"]
    clustered = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={**env, "ML_ASSETS_PROFILE": "cluster", "ML_ASSETS_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert clustered.returncode == 0, clustered.stderr[-3000:]
    assert clustered.stdout.split()[0] == "DeltaWarehouse"


def test_dead_runs_is_only_where_the_run_processes_are_visible(monkeypatch):
    """In the cluster profile a run's steps are on other hosts: a PID looked up here would
    fail a working run, so the sensor is left out and Dagster's run monitoring is on."""
    import yaml

    from ml_assets.definitions import build_definitions
    from ml_assets_tests.conftest import PROJECT_ROOT

    names = {s.name for s in build_definitions().sensors}
    assert "dead_runs" in names
    monkeypatch.setenv("ML_ASSETS_PROFILE", "cluster")
    monkeypatch.setenv("ML_ASSETS_WAREHOUSE", "duckdb")
    monkeypatch.setenv("ML_ASSETS_EXECUTOR", "in_process")
    assert "dead_runs" not in {s.name for s in build_definitions().sensors}
    cluster = yaml.safe_load((PROJECT_ROOT / "deploy/cluster/dagster.yaml").read_text())
    assert cluster["run_monitoring"]["enabled"] is True
