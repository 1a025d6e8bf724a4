"""The cluster profile's storage without its services: Delta tables and files on an S3 emulator
(moto, started here on 127.0.0.1 and stopped by its PID), the whole graph in process, the file
sensor on an S3 prefix, and the model registry's checks on objects."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow.parquet as pq
import pytest

from ml_assets.backup import main as backup
from ml_assets.backup import snapshots
from ml_assets.governance import audit
from ml_assets.governance.__main__ import main as governance
from ml_assets.localcluster import LocalCluster
from ml_assets.transforms.privacy import keyed_pseudonymizer
from ml_assets_tests.conftest import (
    TEST_KEY,
    Daemon,
    demo_instance_home,
    materialize,
    requested_days,
    small_example_spec,
    use_spec_with,
)
from ml_assets_tests.integration.test_backup import table_fingerprints
from ml_assets_tests.integration.test_governance import a_person_with_a_chargeback, leaks_in_lake
from ml_assets_tests.integration.test_privacy import leaks_in_files

# run by `make test-cluster`, alone: beside other tests, the emulator's loopback HTTP traffic
# (all system time on this VM) made them up to ten times slower
pytestmark = [pytest.mark.cluster, pytest.mark.integration]

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


def download(client, into: Path, prefix: str = "") -> Path:
    """The bucket's objects under `prefix`, as files under `into` (to be searched byte by byte)."""
    for key in objects(client, prefix):
        (into / key).parent.mkdir(parents=True, exist_ok=True)
        client.download_file(client.bucket, key, str(into / key))
    return into


def test_the_whole_graph_and_the_governance_commands_run_on_object_storage(
    on_s3, small_landing, tmp_path, monkeypatch, capsys
):
    from ml_assets.definitions import build_definitions

    upload_landing(on_s3, small_landing)
    home = demo_instance_home(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
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

    # --- backup and restore of the bucket's tables and files ----------------------------------
    tables = table_fingerprints()
    version = warehouse._table("predictions.transactions").version()
    models = sorted(k for k in objects(on_s3, "ml/models/"))
    assert backup(["create"]) == 0
    assert "its storage is not SQLite" not in capsys.readouterr().out  # SQLite instance here
    (snapshot,) = snapshots(Path(os.environ["ML_ASSETS_DATA_DIR"]) / "backups")
    held = json.loads((snapshot / "manifest.json").read_text())["files"]
    assert any(f.startswith("lake/predictions/transactions/_delta_log/") for f in held)
    assert any(f.startswith("models/") for f in held) and any(
        f.startswith("reports/") for f in held
    )
    # the disaster: a table's newest commits and files, and the model registry, are gone or new
    with dg.DagsterInstance.get() as instance:
        materialize(defs, "predictions", instance, "2026-09-12")
    for key in objects(on_s3, "ml/models/") + objects(on_s3, "lake/features/"):
        on_s3.delete_object(Bucket=on_s3.bucket, Key=key)
    on_s3.put_object(Bucket=on_s3.bucket, Key="ml/models/stray.json", Body=b"{}")
    assert backup(["restore", str(snapshot)]) == 0
    capsys.readouterr()
    assert table_fingerprints() == tables
    # the commit made after the snapshot is gone with it: the table is at the snapshot's version
    assert warehouse._table("predictions.transactions").version() == version
    assert sorted(objects(on_s3, "ml/models/")) == models
    # the restored tables take the next write as any other
    with dg.DagsterInstance.get() as instance:
        materialize(defs, "predictions", instance, "2026-09-12")

    # --- erasure of one person: every object of the bucket, every Delta file and log ---------
    who, person = a_person_with_a_chargeback(small_landing)
    pseudonyms = keyed_pseudonymizer(TEST_KEY)(pl.Series(person["emails"] + person["cards"]))
    traces = [*person["emails"], *person["cards"], *pseudonyms.to_list(), *person["events"], who]
    before = download(on_s3, tmp_path / "before")
    # the checks find the person before the erasure: landing, archive, annotation batches
    found = leaks_in_files([before / "ml"], traces, tmp_path / "none")
    assert {"landing", "archive"} <= {Path(f).relative_to(before / "ml").parts[0] for f in found}
    assert leaks_in_lake(before / "lake", traces)
    assert governance(["erase", "--entity", who]) == 0
    done = json.loads(capsys.readouterr().out.split("done: ", 1)[1])
    assert done["files"] >= 4 and done["tables"]["raw.transactions"] > 0
    after = download(on_s3, tmp_path / "after")
    assert leaks_in_files([after / "ml"], traces, tmp_path / "none") == {}
    assert leaks_in_lake(after / "lake", traces) == {}
    raw = warehouse.read("SELECT count(*) AS n FROM raw.transactions WHERE customer_id = ?", [who])
    assert raw.item() == 0
    # an archive copy is renamed to its new checksum, and the file sensor does not take the
    # rewritten landing objects for new ones
    for path in (after / "ml/archive").rglob("*.csv"):
        assert path.name[:16] == hashlib.sha256(path.read_bytes()).hexdigest()[:16], path
    with dg.DagsterInstance.get() as instance:
        tick = Daemon(build_definitions(), instance).settle()
    # only the days never ingested are asked for (the bucket holds 20 days, 12 were run)
    assert requested_days(tick)[0] == "2026-09-13", requested_days(tick)
    card = registry.load_card(registry.current_version())
    assert card["erasures"][0]["rows_in_windows"] > 0  # the model in use learnt from them

    # --- retention on the bucket: landing, archive and report objects of old days go ----------
    use_spec_with(
        monkeypatch,
        tmp_path,
        retention={"landing_days": 8, "archive_days": 8, "reports_days": 8, "predictions_days": 8},
    )
    assert governance(["retention", "--today", "2026-09-14", "--include-model-data"]) == 0
    done = json.loads(capsys.readouterr().out.split("done: ", 1)[1])
    kept = objects(on_s3, "ml/")
    for folder in ("landing/transactions/transactions_", "archive/transactions/", "reports/drift_"):
        days = sorted({k.split(folder, 1)[1][:10] for k in kept if f"ml/{folder}" in k})
        assert days[0] == "2026-09-06" and "2026-09-12" in days, (folder, days)
    assert done["files"] >= 3 * 5
    # the Delta table too: no Parquet file of it (referenced or not) holds an earlier day
    first = warehouse.read(
        "SELECT min(CAST(event_time AS DATE)) AS d FROM predictions.transactions"
    )
    assert str(first.item()) == "2026-09-06"
    lake = download(on_s3, tmp_path / "retained", "lake/predictions/")
    stored = [
        pq.read_table(f, columns=["event_time"])["event_time"].to_pylist()
        for f in lake.rglob("*.parquet")
        if "_delta_log" not in f.parts  # the log's checkpoint is Parquet too
    ]
    assert stored and min(min(t) for t in stored if t).date().isoformat() == "2026-09-06"
    # the scheduled job does the same through the resources (nothing is left to remove now)
    job = build_definitions().resolve_job_def("retention")
    with dg.DagsterInstance.get() as instance:
        assert job.execute_in_process(instance=instance).success
    assert [e["action"] for e in audit.read(Path(os.environ["ML_ASSETS_DATA_DIR"]))] == [
        "backup",
        "restore",
        "erasure",
        "retention",
        "retention",
    ]


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

    from ml_assets.storage.registry import ModelRegistryError, Registry, rollback
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
