"""Backup and restore as a user runs them: snapshot, lose the warehouse and models, restore, go on."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from ml_assets.backup import main as backup
from ml_assets.backup import snapshots
from ml_assets.definitions import build_definitions
from ml_assets.governance import audit
from ml_assets.settings import Settings
from ml_assets.storage.assembly import build_warehouse
from ml_assets_tests.conftest import demo_instance_home, materialize, use_spec_with
from ml_assets_tests.integration.test_pipeline import (
    AFTER_MODEL,
    DAILY_BEFORE_MODEL,
    run_everything,
)

pytestmark = pytest.mark.integration


def table_fingerprints() -> dict[str, tuple[int, str]]:
    """{table: (rows, checksum of its sorted rows)} of every table of the warehouse the
    environment selects (the DuckDB file or the Delta tables)."""
    warehouse = build_warehouse(Settings.from_env())
    return {
        t: warehouse.read(
            f"SELECT count(*) AS n, coalesce(md5(string_agg(CAST(x AS VARCHAR), '|' "
            f"ORDER BY CAST(x AS VARCHAR))), '') AS h FROM {t} x"
        ).row(0)
        for t in warehouse.columns()
    }


def test_backup_restore_and_the_next_day(example_env, backend, tmp_path, monkeypatch, capsys):
    data = example_env
    home = demo_instance_home(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        run_everything(defs, instance, "2026-09-01", "2026-09-19")
        runs_before = len(instance.get_run_records())
    before = table_fingerprints()
    assert len(before) > 20
    models_before = sorted(p.name for p in (data / "models").rglob("*") if p.is_file())

    assert backup(["create"]) == 0
    (snapshot,) = snapshots(data / "backups")
    assert "files" in capsys.readouterr().out
    assert backup(["create", "--to", str(tmp_path / "offsite/nightly.tar.gz")]) == 0
    assert (tmp_path / "offsite/nightly.tar.gz").stat().st_mode & 0o077 == 0

    # a changed file in a snapshot is caught before anything is restored
    tampered = tmp_path / "tampered"
    shutil.copytree(snapshot, tampered)
    card = next(tampered.glob("models/*/model.json"))
    card.write_text(card.read_text().replace('"threshold"', '"thresh0ld"'))
    assert backup(["restore", str(tampered)]) == 2
    assert "does not match its SHA-256" in capsys.readouterr().err

    # the disaster: warehouse, models and the instance's history are gone
    if backend == "duckdb":
        (data / "warehouse.duckdb").unlink()
    else:
        shutil.rmtree(data / "lake")
    shutil.rmtree(data / "models")
    shutil.rmtree(home / "history")
    assert backup(["restore", str(tmp_path / "offsite/nightly.tar.gz")]) == 0
    assert table_fingerprints() == before
    assert sorted(p.name for p in (data / "models").rglob("*") if p.is_file()) == models_before

    # the platform goes on from the restored state: the next day runs through the graph
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_run_records()) == runs_before
        defs = build_definitions()
        materialize(defs, DAILY_BEFORE_MODEL, instance, "2026-09-20")
        materialize(defs, AFTER_MODEL, instance, "2026-09-20")
    scored = (
        build_warehouse(Settings.from_env())
        .read(
            "SELECT count(*) AS n FROM predictions.transactions "
            "WHERE CAST(event_time AS DATE) = '2026-09-20'"
        )
        .item()
    )
    assert scored > 200
    assert [e["action"] for e in audit.read(data)] == ["backup", "backup", "restore"]


def test_the_nightly_schedule_writes_a_snapshot_and_keeps_n(
    example_env, tmp_path, monkeypatch, capsys
):
    data = example_env
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    use_spec_with(monkeypatch, tmp_path, backup={"keep": 2})
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        materialize(defs, "raw_transactions", instance, "2026-09-01")
        job = defs.resolve_job_def("nightly_backup")
        for _ in range(3):
            assert job.execute_in_process(instance=instance, resources=defs.resources).success
    kept = snapshots(data / "backups")
    assert len(kept) == 2
    assert "warehouse.duckdb" in (kept[-1] / "manifest.json").read_text()
    schedule = defs.resolve_schedule_def("nightly_backup_schedule")
    assert schedule.cron_schedule == "30 2 * * *"
    # the snapshot caught the nightly job's own run in progress: once restored, that run is
    # over (failed), or every governance command would be refused for it for ever
    assert backup(["restore", str(kept[-1])]) == 0
    assert "marked 1 run(s) the snapshot caught in progress as failed" in capsys.readouterr().out
    assert backup(["create"]) == 0


def test_a_lake_restore_removes_newer_commits_but_nothing_outside_the_tables(tmp_path):
    """Only what lies inside a Delta table (a folder with a _delta_log) is the snapshot's to
    remove: another store sharing the root keeps its files; a table folder gone is made again."""
    from ml_assets.backup import _restore_objects

    snapshot = tmp_path / "snapshot"
    (snapshot / "raw/t/_delta_log").mkdir(parents=True)
    (snapshot / "raw/t/_delta_log/00000000000000000000.json").write_text("{}")
    (snapshot / "raw/t/part-0.parquet").write_bytes(b"old")
    lake = tmp_path / "lake"
    (lake / "raw/t/_delta_log").mkdir(parents=True)
    (lake / "raw/t/_delta_log/00000000000000000000.json").write_text("{}")
    (lake / "raw/t/_delta_log/00000000000000000001.json").write_text("{}")  # newer commit
    (lake / "raw/t/part-1.parquet").write_bytes(b"new")
    (lake / "landing").mkdir()
    (lake / "landing/transactions_2026-09-01.csv").write_text("id\n1\n")  # not a table's
    (snapshot / "raw/u/_delta_log").mkdir(parents=True)  # a table the lake lost
    (snapshot / "raw/u/_delta_log/00000000000000000000.json").write_text("{}")
    assert _restore_objects(snapshot, str(lake), delta=True) == 3
    kept = sorted(str(p.relative_to(lake)) for p in lake.rglob("*") if p.is_file())
    assert kept == [
        "landing/transactions_2026-09-01.csv",
        "raw/t/_delta_log/00000000000000000000.json",
        "raw/t/part-0.parquet",
        "raw/u/_delta_log/00000000000000000000.json",
    ]


@pytest.mark.parametrize("state", ["data folder", "ML_ASSETS_STATE_DIR"])
def test_a_restore_re_applies_the_erasures_made_after_its_snapshot(
    example_env, tmp_path, monkeypatch, capsys, state
):
    """A snapshot taken before an erasure brought the person back on 9ab9dbc ("restored 200
    files", nothing re-applied). The erasure ledger (pseudonyms only, outside every snapshot)
    is re-applied before the restored data is read, and restore says so. With
    ML_ASSETS_STATE_DIR (the cluster's persistent volume; the data folder is a pod's scratch)
    ledger, audit log and snapshots are all there, none in the data folder."""
    import json

    from ml_assets.governance.__main__ import main as governance
    from ml_assets.governance.audit import audit_path
    from ml_assets.governance.erasure import ledger_path

    data = example_env
    kept = data
    if state == "ML_ASSETS_STATE_DIR":
        kept = tmp_path / "state volume"
        monkeypatch.setenv("ML_ASSETS_STATE_DIR", str(kept))
    home = demo_instance_home(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        materialize(defs, DAILY_BEFORE_MODEL, instance, "2026-09-01", "2026-09-02")
    warehouse = build_warehouse(Settings.from_env())
    person = warehouse.read("SELECT min(customer_id) AS c FROM raw.transactions").item()

    def theirs() -> int:
        return warehouse.read(
            f"SELECT count(*) AS n FROM raw.transactions WHERE customer_id = '{person}'"
        ).item()

    assert theirs() > 0
    assert backup(["create"]) == 0
    (snapshot,) = snapshots(kept / "backups")
    assert governance(["erase", "--entity", person]) == 0
    assert theirs() == 0
    ledger = (kept / "governance/erasure_ledger.jsonl").read_text()
    assert ledger_path(data) == kept / "governance/erasure_ledger.jsonl"
    assert person not in ledger and len(json.loads(ledger)["entities"]) == 1
    assert audit_path(data) == kept / "governance/audit.jsonl"
    actions = [json.loads(line)["action"] for line in audit_path(data).read_text().splitlines()]
    assert actions[0] == "backup" and "erasure" in actions
    if kept != data:
        assert not (data / "governance").exists() and not (data / "backups").exists()
    capsys.readouterr()

    assert backup(["restore", str(snapshot)]) == 0
    out = capsys.readouterr().out
    assert "re-applied 1 erasure(s) made since the snapshot: 1 person(s)" in out, out
    assert theirs() == 0
    assert warehouse.read("SELECT count(*) AS n FROM raw.transactions").item() > 200


def test_snapshots_are_pruned_by_keep_and_by_retention_archives_too(
    example_env, tmp_path, monkeypatch, capsys
):
    import tarfile

    from ml_assets.governance.__main__ import main as governance

    data = example_env
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    use_spec_with(monkeypatch, tmp_path, retention={"backups_days": 30})
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        materialize(defs, "raw_transactions", instance, "2026-09-01")
    assert backup(["create"]) == 0
    (new,) = snapshots(data / "backups")
    # two older snapshots: a folder, and an archive as `create --to X.tar.gz` writes one
    shutil.copytree(new, data / "backups/snapshot_20260801T023000.000Z")
    old = data / "backups/snapshot_20260815T023000.000Z"
    with tarfile.open(data / "backups/august.tar.gz", "w:gz") as tar:
        tar.add(new, arcname=old.name)
    (data / "backups/notes.tar.gz").write_bytes(b"not a snapshot")
    assert [p.name for p in snapshots(data / "backups")] == [
        "snapshot_20260801T023000.000Z",
        "august.tar.gz",
        new.name,
    ]
    capsys.readouterr()
    # retention removes the snapshots older than backups_days, folders and archives alike
    assert governance(["retention", "--today", "2026-09-10"]) == 0
    assert [p.name for p in snapshots(data / "backups")] == ["august.tar.gz", new.name]
    assert governance(["retention", "--today", "2026-09-21"]) == 0
    assert [p.name for p in snapshots(data / "backups")] == [new.name]
    assert (data / "backups/notes.tar.gz").exists()  # not a snapshot: not retention's
    (entry, later) = [e for e in audit.read(data) if e["action"] == "retention"]
    assert entry["counts"]["files"] == 1 and entry["counts"]["cutoffs"]["backups"] == "2026-08-11"
    # `create --to FILE.tar.gz --keep N` prunes that folder's snapshots, archives included
    elsewhere = tmp_path / "offsite"
    elsewhere.mkdir()
    shutil.copytree(new, elsewhere / "snapshot_20260901T023000.000Z")
    assert backup(["create", "--to", str(elsewhere / "tonight.tar.gz"), "--keep", "1"]) == 0
    assert [p.name for p in snapshots(elsewhere)] == ["tonight.tar.gz"]
