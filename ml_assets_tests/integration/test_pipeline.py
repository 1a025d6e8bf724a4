"""The whole graph, in process, on small generated data: counts, idempotence, backfills, second spec."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from ml_assets.definitions import build_definitions
from ml_assets.names import Tables
from ml_assets.settings import Settings
from ml_assets.storage.assembly import build_warehouse
from ml_assets.storage.registry import current_version, load_card
from ml_assets_tests.conftest import (
    FIXTURES,
    TEST_KEY,
    materialize,
    small_example_spec,
    write_readings,
)

pytestmark = pytest.mark.integration

DAILY_BEFORE_MODEL = "group:ingest or group:clean or group:labels or group:features"
AFTER_MODEL = "group:predict or group:monitor or group:annotation"


def run_everything(defs, instance, first, last):
    materialize(defs, DAILY_BEFORE_MODEL, instance, first, last)
    materialize(defs, "group:models", instance)
    materialize(defs, AFTER_MODEL, instance, first, last)


def query(data, sql):
    """A query on the warehouse the environment selects (the DuckDB file or the Delta tables)."""
    return build_warehouse(Settings.from_env()).read(sql)


DAILY_TABLES = [
    "raw.transactions",
    "cleaned.transactions",
    "labels.transactions",
    "features.transactions",
    "predictions.transactions",
]


def row_counts(data, tables):
    return {t: query(data, f"SELECT count(*) AS n FROM {t}").item() for t in tables}


def test_whole_graph_over_all_partitions(example_env, backend):
    defs = build_definitions()
    with dg.DagsterInstance.ephemeral() as instance:
        run_everything(defs, instance, "2026-09-01", "2026-09-20")
        # single-run backfill: one run per stage for all 20 days, not one per partition
        assert len(instance.get_run_records()) == 3
        for key in [
            "raw_transactions",
            "cleaned_transactions",
            "ground_truth_labels",
            "labels",
            "weak_labels",
            "features",
            "predictions",
            "drift_report",
        ]:
            status = instance.get_status_by_partition(
                dg.AssetKey(key),
                partition_keys=[f"2026-09-{d:02d}" for d in range(1, 21)],
                partitions_def=defs.resolve_assets_def(key).partitions_def,
            )
            assert set(status.values()) == {dg.AssetPartitionStatus.MATERIALIZED}, key
        scored = instance.get_latest_materialization_event(
            dg.AssetKey("predictions")
        ).asset_materialization.metadata
        in_use = current_version(example_env / "models")
        by_day = scored["model_version_by_day"].data
        # the run's newest days (its metadata is copied onto each day); the column says it per event
        assert sorted(by_day) == [f"2026-09-{d}" for d in range(14, 21)]
        assert set(by_day.values()) == {in_use}

    counts = row_counts(example_env, DAILY_TABLES)
    assert counts["raw.transactions"] > counts["cleaned.transactions"] > 5000  # duplicates removed
    assert (
        counts["cleaned.transactions"]
        == counts["labels.transactions"]
        == counts["features.transactions"]
        == counts["predictions.transactions"]
    )
    # the planted malformed rows (3 a day) are quarantined with their reason, not lost
    rejected = query(example_env, "SELECT * FROM raw.transactions_rejected_rows")
    assert (
        len(rejected) == 60
        and rejected["reason"].null_count() == 0
        and rejected["line"].null_count() == 0
    )

    # personal data never reaches features; raw and cleaned hold the same pseudonyms, never a
    # name of the landing files
    feature_cols = query(example_env, "SELECT * FROM features.transactions LIMIT 1").columns
    assert not {"customer_name", "customer_email", "card_number"} & set(feature_cols)
    clear_names = set(
        pl.read_csv(
            example_env / "landing/transactions/*.csv",
            infer_schema=False,
            truncate_ragged_lines=True,
        )["customer_name"].drop_nulls()
    )
    raw_names = set(
        query(example_env, "SELECT DISTINCT customer_name FROM raw.transactions")["customer_name"]
    )
    clean_names = set(
        query(example_env, "SELECT DISTINCT customer_name FROM cleaned.transactions")[
            "customer_name"
        ]
    )
    assert clear_names and not (raw_names | clean_names) & clear_names
    assert clean_names <= raw_names and all(len(n) == 24 for n in raw_names - {None})

    card = load_card(example_env / "models", current_version(example_env / "models"))
    versions = query(example_env, "SELECT DISTINCT model_version FROM predictions.transactions")[
        "model_version"
    ]
    assert versions.to_list() == [card["version"]]  # each event says which version scored it
    assert card["metrics"]["roc_auc"] > 0.7, card["metrics"]
    assert card["input_data_versions"]["features"] and card["train_window"]
    labels = query(
        example_env, "SELECT label_status, count(*) AS n FROM labels.transactions GROUP BY 1"
    )
    assert set(labels["label_status"]) == {"positive", "negative", "unlabelled"}
    assert (
        query(
            example_env, "SELECT count(DISTINCT day) AS n FROM monitor.transactions_drift_days"
        ).item()
        == 20
    )
    page = (example_env / "reports" / "drift_2026-09-20.html").read_text()
    assert "<h1>Drift report 2026-09-20</h1>" in page and "<h2>Columns by severity</h2>" in page


def test_rematerializing_a_partition_replaces_it(example_env):
    """(DuckDB only: on Delta tables a window write's replacement is shown by test_lake.py and
    by the backends' agreement below, whose runs replace windows the same way.)"""
    defs = build_definitions()
    with dg.DagsterInstance.ephemeral() as instance:
        run_everything(defs, instance, "2026-09-01", "2026-09-20")
        before = row_counts(example_env, [*DAILY_TABLES, "monitor.transactions_drift_columns"])
        materialize(defs, DAILY_BEFORE_MODEL, instance, "2026-09-10")
        materialize(defs, AFTER_MODEL, instance, "2026-09-10")
        materialize(defs, DAILY_BEFORE_MODEL, instance, "2026-09-09", "2026-09-11")
        after = row_counts(example_env, list(before))
    assert after == before
    dupes = query(
        example_env,
        "SELECT transaction_id FROM cleaned.transactions GROUP BY 1 HAVING count(*) > 1",
    )
    assert dupes.is_empty()


def test_new_day_touches_only_its_partition(example_env, backend):
    defs = build_definitions()
    with dg.DagsterInstance.ephemeral() as instance:
        materialize(defs, DAILY_BEFORE_MODEL, instance, "2026-09-01", "2026-09-10")
        before = query(example_env, "SELECT * FROM features.transactions ORDER BY transaction_id")
        materialize(defs, DAILY_BEFORE_MODEL, instance, "2026-09-11")
        after = query(
            example_env,
            "SELECT * FROM features.transactions WHERE event_time < '2026-09-11' ORDER BY transaction_id",
        )
        stored = instance.get_latest_materialization_event(dg.AssetKey("features"))
    assert after.equals(before)
    # day 11 read days 4..11 of its customers only, not the whole history
    assert stored.asset_materialization.metadata["history_rows_read"].value < len(before)


def run_dataset(defs, instance, prefix: str, first: str, last: str) -> None:
    """One dataset's graph in a code location of several (its assets under its key prefix)."""
    assets = [*defs.assets, *(defs.asset_checks or [])]
    own = dg.AssetSelection.key_prefixes([prefix])
    tags = {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
    stages = [
        (own & dg.AssetSelection.groups("ingest", "clean", "labels", "features"), tags),
        (own & dg.AssetSelection.groups("models"), {}),
        (own & dg.AssetSelection.groups("predict", "monitor", "annotation"), tags),
    ]
    for selection, run_tags in stages:
        result = dg.materialize(
            assets, selection=selection, instance=instance, resources=defs.resources, tags=run_tags
        )
        assert result.success


def test_two_datasets_run_side_by_side_in_one_warehouse_and_code_location(example_env, monkeypatch):
    """The example and a differently shaped second spec (other column names, ';' files, no
    entity column, numeric-only inputs, a DATE label column) in one code location and one data
    folder: each under its own key prefix, tables, models and reports apart."""
    data = example_env
    write_readings(data)
    monkeypatch.setenv(
        "ML_ASSETS_SPEC",
        os.pathsep.join([os.environ["ML_ASSETS_SPEC"], str(FIXTURES / "readings.yaml")]),
    )
    defs = build_definitions()
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    for prefix, own in (("transactions", "raw_transactions"), ("readings", "raw_readings")):
        assert {f"{prefix}/{own}", f"{prefix}/features", f"{prefix}/model"} <= keys
        assert f"{prefix}/drift_report" in keys
    assert {"readings/cleaned_readings", "readings/raw_inspections"} <= keys
    assert not {"features", "model"} & keys  # nothing unprefixed that two datasets would share
    sensors = {s.name for s in defs.sensors}
    assert {"transactions_retraining", "readings_retraining", "readings_raw_readings_files"} <= (
        sensors
    )
    with dg.DagsterInstance.ephemeral() as instance:
        run_dataset(defs, instance, "readings", "2026-03-01", "2026-03-14")
        run_dataset(defs, instance, "transactions", "2026-09-01", "2026-09-20")

    features = query(data, "SELECT * FROM features.readings")
    assert set(features.columns) == {
        "reading_id",
        "event_time",
        "temperature",
        "pressure",
        "vibration",
    }
    assert features["temperature"].null_count() == 0  # imputed with the day's mean
    cleaned = query(data, "SELECT operator_email FROM cleaned.readings")
    assert not cleaned["operator_email"].str.contains("@").any()
    labels = query(data, "SELECT label_status, count(*) AS n FROM labels.readings GROUP BY 1")
    assert "positive" in set(labels["label_status"])
    assert query(data, "SELECT count(*) AS n FROM predictions.readings").item() == len(features)
    # the other dataset's tables beside them, each training set and monitor table its own
    assert query(data, "SELECT count(*) AS n FROM predictions.transactions").item() > 0
    for name in ("transactions", "readings"):
        assert query(data, f"SELECT count(*) AS n FROM models.{name}_training_set").item() > 0
        assert query(data, f"SELECT count(DISTINCT day) AS n FROM monitor.{name}_drift_days").item()
        models = data / "models" / name
        card = load_card(models, current_version(models))
        assert set(card["numeric_features"]) >= (
            {"temperature", "vibration"} if name == "readings" else {"amount"}
        )
        assert list((data / "reports" / name).glob("drift_*.html"))
        assert (data / "reports" / name / "trend.html").exists()


def test_the_second_spec_alone_keeps_plain_keys(readings_env):
    """One dataset in the code location: its assets keep plain keys (as the example's do)."""
    keys = {
        k.to_user_string() for k in build_definitions().resolve_asset_graph().get_all_asset_keys()
    }
    assert {
        "raw_readings",
        "cleaned_readings",
        "raw_inspections",
        "features",
        "model",
        "drift_report",
    } <= keys


def outcome(data: Path) -> tuple[dict, dict]:
    """Every table's row count and the model's test metrics, read through the selected backend."""
    settings = Settings.from_env()
    warehouse = build_warehouse(settings)
    counts = {
        table: warehouse.read(f"SELECT count(*) AS n FROM {table}").item()
        for table in vars(Tables(settings.specs()[0])).values()
        if warehouse.exists(table)
    }
    card = load_card(data / "models", current_version(data / "models"))
    return counts, card["metrics"]


def test_both_backends_give_the_same_tables_and_model(tmp_path, small_landing, monkeypatch):
    """The same data through the embedded DuckDB file and through Delta Lake tables: the same
    tables with the same row counts, and (same seed) the same model metrics."""
    monkeypatch.setenv("ML_ASSETS_PSEUDONYM_KEY", TEST_KEY)
    results = {}
    for backend in ("duckdb", "delta"):
        root = tmp_path / backend
        data = root / "data"
        shutil.copytree(small_landing, data / "landing")
        monkeypatch.setenv("ML_ASSETS_SPEC", str(small_example_spec(root)))
        monkeypatch.setenv("ML_ASSETS_DATA_DIR", str(data))
        monkeypatch.setenv("ML_ASSETS_WAREHOUSE", backend)
        with dg.DagsterInstance.ephemeral() as instance:
            run_everything(build_definitions(), instance, "2026-09-01", "2026-09-20")
        results[backend] = outcome(data)
    assert (data / "lake" / "features" / "transactions" / "_delta_log").is_dir()
    assert not (data / "warehouse.duckdb").exists()  # the Delta run wrote no DuckDB file
    (duck_counts, duck_metrics), (delta_counts, delta_metrics) = results["duckdb"], results["delta"]
    assert len(duck_counts) >= 25 and duck_counts["features.transactions"] > 5000
    assert delta_counts == duck_counts
    assert delta_metrics == duck_metrics
