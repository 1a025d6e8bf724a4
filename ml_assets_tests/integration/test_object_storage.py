"""The cluster profile's storage without its services: Delta tables and files on an S3 emulator
(moto, started here on 127.0.0.1 and stopped by its PID), the whole graph in process, the file
sensor on an S3 prefix, and the model registry's checks on objects."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.localcluster import LocalCluster
from ml_assets_tests.conftest import (
    TEST_KEY,
    Daemon,
    materialize,
    requested_days,
    small_example_spec,
)

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
for module in ("deltalake", "upath", "s3fs", "boto3"):
    pytest.importorskip(
        module, reason="the cluster extra is not installed: pip install -e '.[cluster]'"
    )


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """moto on 127.0.0.1, started and stopped by its PID (the cluster services' own launcher)."""
    if not (BIN / "moto_server").exists():
        pytest.skip("moto_server is not installed (pip install 'moto[server]'): S3 tests skipped")
    emulator = LocalCluster(tmp_path_factory.mktemp("moto"), workers=0, services=("s3",))
    emulator.start()
    try:
        yield emulator.env()["AWS_ENDPOINT_URL"]
    finally:
        emulator.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch, request):
    """A fresh bucket on the emulator, the AWS_* variables pointing at it; returns a client."""
    import boto3

    env = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3")
    bucket = "b" + str(abs(hash(request.node.name)) % 10**10)
    client.create_bucket(Bucket=bucket)
    client.bucket = bucket
    return client


def objects(client, prefix: str = "") -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=client.bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def upload_landing(client, landing: Path, names: list[str] | None = None) -> None:
    for path in sorted(landing.rglob("*")):
        if path.is_file() and (names is None or path.name in names):
            client.upload_file(str(path), client.bucket, f"ml/landing/{path.relative_to(landing)}")


@pytest.fixture
def on_s3(s3, tmp_path, small_landing, monkeypatch):
    """The cluster profile's storage (files and tables on S3), run in process."""
    monkeypatch.setenv("ML_ASSETS_SPEC", str(small_example_spec(tmp_path)))
    monkeypatch.setenv("ML_ASSETS_DATA_DIR", str(tmp_path / "local"))
    monkeypatch.setenv("ML_ASSETS_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setenv("ML_ASSETS_PROFILE", "cluster")
    monkeypatch.setenv("ML_ASSETS_EXECUTOR", "in_process")
    monkeypatch.setenv("ML_ASSETS_LAKE_ROOT", f"s3://{s3.bucket}/lake")
    monkeypatch.setenv("ML_ASSETS_FILES_ROOT", f"s3://{s3.bucket}/ml")
    return s3


def test_the_whole_graph_runs_on_object_storage(on_s3, small_landing):
    from ml_assets.definitions import build_definitions

    upload_landing(on_s3, small_landing)
    defs = build_definitions()
    with dg.DagsterInstance.ephemeral() as instance:
        before = "group:ingest or group:clean or group:labels or group:features"
        materialize(defs, before, instance, "2026-09-01", "2026-09-12")
        materialize(defs, "group:models", instance)
        materialize(defs, "group:predict or group:monitor", instance, "2026-09-01", "2026-09-12")
    warehouse = defs.resources["warehouse"]
    counts = {
        t: warehouse.read(f"SELECT count(*) AS n FROM {t}").item()
        for t in ("cleaned.transactions", "features.transactions", "predictions.transactions")
    }
    assert counts["cleaned.transactions"] > 3000 and len(set(counts.values())) == 1, counts
    logged = warehouse.read("SELECT file, archived_as FROM raw.transactions_files")
    assert len(logged) == 12
    assert all(
        f.startswith(f"s3://{on_s3.bucket}/ml/landing/transactions/") for f in logged["file"]
    )
    assert all(a.startswith(f"s3://{on_s3.bucket}/ml/archive/") for a in logged["archived_as"])
    keys = objects(on_s3)
    assert any(k.startswith("lake/features/transactions/_delta_log/") for k in keys)
    assert "ml/models/current.json" in keys and "ml/models/history.jsonl" in keys
    assert {f"ml/reports/drift_2026-09-{d:02d}.html" for d in range(1, 13)} <= set(keys)
    assert len([k for k in keys if k.startswith("ml/archive/transactions/")]) == 12
    # the local copies landing objects were read from are gone (they hold clear values)
    staged = Path(os.environ["ML_ASSETS_DATA_DIR"]) / "staged"
    assert [p for p in staged.rglob("*") if p.is_file()] == []
    # the version in use loads from the store, its hash and types checked
    registry = defs.resources["registry"].for_dataset(
        __import__("ml_assets.settings", fromlist=["Settings"]).Settings.from_env().dataset()
    )
    model, card = registry.load_model(registry.current_version())
    assert card["metrics"]["roc_auc"] > 0.6 and model.threshold == card["threshold"]


def test_the_file_sensor_takes_objects_from_an_s3_prefix_once(on_s3, small_landing):
    from ml_assets.definitions import build_definitions

    first_days = [f"transactions_2026-09-0{d}.csv" for d in (1, 2)]
    upload_landing(on_s3, small_landing, first_days)
    bad = "transactions_2026-09-03.csv"
    on_s3.put_object(Bucket=on_s3.bucket, Key=f"ml/landing/transactions/{bad}", Body=b"nope\n1\n")
    defs = build_definitions()
    with dg.DagsterInstance.ephemeral() as instance:
        daemon = Daemon(defs, instance)
        first = daemon.tick()
        assert first.run_requests == []  # seen, settling
        taken = daemon.tick()
        assert requested_days(taken) == ["2026-09-01", "2026-09-02"]
        assert daemon.tick().run_requests == []  # each version once
        # a new version of a day (a PUT) is taken again; the others are not
        body = (small_landing / "transactions" / first_days[0]).read_bytes()
        key = f"ml/landing/transactions/{first_days[0]}"
        on_s3.put_object(Bucket=on_s3.bucket, Key=key, Body=body + b"\n")
        assert requested_days(daemon.settle()) == ["2026-09-01"]
    staged = Path(os.environ["ML_ASSETS_DATA_DIR"]) / "staged"
    assert [p for p in staged.rglob("*") if p.is_file()] == []
    keys = objects(on_s3, "ml/")
    # the bad object was moved to quarantine with its reason, out of the landing prefix
    assert f"ml/landing/transactions/{bad}" not in keys
    assert f"ml/quarantine/transactions/{bad}" in keys
    reason = on_s3.get_object(
        Bucket=on_s3.bucket, Key=f"ml/quarantine/transactions/{bad}.reason.json"
    )["Body"].read()
    assert b"header" in reason.lower() and f"s3://{on_s3.bucket}/ml/landing".encode() in reason


def test_the_registry_on_objects_refuses_a_replaced_artifact(on_s3, tmp_path):
    from upath import UPath

    from ml_assets.registry import ModelRegistryError, Registry, rollback
    from ml_assets.transforms import train as training
    from ml_assets_tests.assets.test_models import frame

    registry = Registry(UPath(f"s3://{on_s3.bucket}/ml/models"))
    model = training.fit(frame(300, 1), ["x"], ["c"], seed=7)
    first = registry.save_version(model, {"trained_at": "t1"})
    time.sleep(1.1)  # version names carry the second they were trained in
    second = registry.save_version(model, {"trained_at": "t2"}, promote=False)
    assert registry.current_version() == first and registry.in_use() == first
    assert [v["version"] for v in registry.list_versions()] == [first, second]
    # the pointer switch on objects: one PUT, logged in the history object
    assert rollback(registry.folder, second) == first and registry.current_version() == second
    history = (registry.folder / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["to"] for line in history] == [first, second]
    artifact = registry.artifact_path(second)
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    with pytest.raises(ModelRegistryError, match="does not match its recorded SHA-256"):
        registry.load_model(second)
    with pytest.raises(ModelRegistryError, match="does not match its recorded SHA-256"):
        rollback(registry.folder, second)  # a replaced artifact is never put back in use
    loaded, _ = registry.load_model(first)
    assert loaded.threshold == model.threshold
    shutil.rmtree(tmp_path, ignore_errors=True)
