"""Governance from a user's command line: erasure of one person, the audit log."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.governance import audit
from ml_assets.governance.__main__ import main as governance
from ml_assets.storage.registry import current_version, load_card
from ml_assets.transforms.privacy import keyed_pseudonymizer
from ml_assets_tests.conftest import TEST_KEY, Daemon, demo_instance_home, use_spec_with
from ml_assets_tests.integration.test_pipeline import run_everything
from ml_assets_tests.integration.test_privacy import leaks_in_files, leaks_in_tables

pytestmark = pytest.mark.integration


def lines_of(landing: Path, kind: str) -> list[dict]:
    out = []
    for path in sorted((landing / kind).glob("*.csv")):
        with open(path, encoding="utf-8", newline="") as f:
            out += [r for r in csv.DictReader(f) if None not in r]
    return out


def a_person_with_a_chargeback(landing: Path) -> tuple[str, dict]:
    """A customer one of whose transactions was charged back: their id and clear values."""
    charged = {r["transaction_id"] for r in lines_of(landing, "chargebacks")}
    rows = lines_of(landing, "transactions")
    who = next(r for r in rows if r["transaction_id"] in charged)["customer_id"]
    theirs = [r for r in rows if r["customer_id"] == who]
    return who, {
        "events": sorted({r["transaction_id"] for r in theirs}),
        "emails": sorted({r["customer_email"] for r in theirs if r["customer_email"]}),
        "cards": sorted({r["card_number"] for r in theirs if r["card_number"]}),
        "days": sorted({r["event_time"][:10] for r in theirs}),
    }


def snapshot(data: Path) -> dict[str, str]:
    return {
        str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data.rglob("*"))
        if p.is_file() and p.suffix != ".wal"
    }


def count(data: Path, sql: str) -> int:
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        return con.sql(sql).fetchall()[0][0]
    finally:
        con.close()


def test_erasure_of_one_person_leaves_no_trace_and_keeps_everyone_else(
    example_env, tmp_path, monkeypatch, capsys
):
    data, landing = example_env, example_env / "landing"
    who, person = a_person_with_a_chargeback(landing)
    # an annotator labelled two of their events and one of someone else's
    other = next(r for r in lines_of(landing, "transactions") if r["customer_id"] != who)
    mine = [r for r in lines_of(landing, "transactions") if r["customer_id"] == who][:2]
    completed = data / "annotation/completed"
    completed.mkdir(parents=True)
    with open(completed / "batch_2026-09-05_x_alice.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["event_id", "event_time", "label", "annotator"])
        for r in [*mine, other]:
            out.writerow([r["transaction_id"], r["event_time"], "negative", "ann"])
    home = demo_instance_home(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("ML_ASSETS_ACTOR", "dpo@example.com")
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        run_everything(defs, instance, "2026-09-01", "2026-09-20")
    raw_before = count(data, "SELECT count(*) FROM raw.transactions")
    ours = count(data, f"SELECT count(*) FROM raw.transactions WHERE customer_id = '{who}'")
    assert ours > 0

    # --- the dry run shows the plan and changes nothing ---------------------------------------
    before = snapshot(data)
    assert governance(["erase", "--personal", person["emails"][0], "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("dry run: would erase ") and "raw.transactions:" in printed
    assert "landing/chargebacks/" in printed and "annotation/completed/" in printed
    after_dry_run = snapshot(data)
    after_dry_run.pop("governance/audit.jsonl")
    assert after_dry_run == before

    # --- the erasure ------------------------------------------------------------------------
    assert governance(["erase", "--entity", who]) == 0
    done = json.loads(capsys.readouterr().out.split("done: ", 1)[1])
    assert done["tables"]["raw.transactions"] == ours
    assert count(data, "SELECT count(*) FROM raw.transactions") == raw_before - ours
    # nobody else lost a row: the other annotated event keeps its manual label
    assert (
        count(
            data,
            f"SELECT count(*) FROM labels.transactions_manual WHERE event_id = '{other['transaction_id']}'",
        )
        == 1
    )

    # no trace: not in a table, a file (landing, archive and quarantine included), a report, a
    # batch, or anywhere in DAGSTER_HOME; by value, pseudonym, entity id or event id
    pseudonyms = keyed_pseudonymizer(TEST_KEY)(pl.Series(person["emails"] + person["cards"]))
    traces = [*person["emails"], *person["cards"], *pseudonyms.to_list(), *person["events"], who]
    assert leaks_in_tables(data / "warehouse.duckdb", traces) == {}
    everywhere = leaks_in_files([data, home], traces, tmp_path / "nowhere")
    assert everywhere == {}, everywhere
    # nor in the warehouse file's free blocks: deleted rows stay there until it is rewritten
    database = (data / "warehouse.duckdb").read_bytes()
    assert not [t for t in pseudonyms.to_list() + person["events"] if t.encode() in database]

    # the file sensors do not take the rewritten files for new ones
    daemon = Daemon(build_definitions(), dg.DagsterInstance.get())
    assert daemon.settle().run_requests == []

    # the model trained on their data says so, and the policy retrains it
    models = data / "models"
    card = load_card(models, current_version(models))
    assert card["erasures"] and card["erasures"][0]["rows_in_windows"] > 0
    with (
        dg.DagsterInstance.get() as instance,
        dg.build_sensor_context(instance=instance, resources=defs.resources) as context,
    ):
        tick = defs.resolve_sensor_def("retraining")(context)
    assert any(
        "erased_since_training" in r.tags["ml_assets/retrain_reason"] for r in tick.run_requests
    )

    # the audit log: who, what, counts, and not one value of the person
    entries = audit.read(data)
    assert [e["action"] for e in entries] == ["erasure_dry_run", "erasure"]
    assert entries[-1]["actor"] == "dpo@example.com" and entries[-1]["counts"]["rows"] > 0
    assert not [t for t in traces if t in json.dumps(entries)]
    with dg.DagsterInstance.get() as instance:
        observed = instance.fetch_observations(dg.AssetKey("audit_log"), limit=10).records
    assert len(observed) == 2


def test_a_retention_shorter_than_the_freshness_lookback_is_refused(tmp_path):
    import yaml

    from ml_assets.spec import DEFAULT_SPEC_PATH, load_spec

    raw = yaml.safe_load(DEFAULT_SPEC_PATH.read_text())
    raw["retention"] = {"raw_days": 5}
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"raw_days.*freshness.lookback_days \(7\).*gaps"):
        load_spec(path)


def test_retention_removes_old_days_but_keeps_the_models_data(
    example_env, tmp_path, monkeypatch, capsys
):
    data = example_env
    use_spec_with(
        monkeypatch,
        tmp_path,
        retention={
            "raw_days": 8,
            "predictions_days": 8,
            "reports_days": 8,
            "landing_days": 8,
            "event_log_days": 8,
            "model_versions": 1,
        },
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        run_everything(defs, instance, "2026-09-01", "2026-09-20")
    models = data / "models"
    card = load_card(models, current_version(models))
    first_model_day = card["train_window"].split(" .. ")[0]  # 2026-09-03 here
    versions = sorted(p.name for p in models.iterdir() if p.is_dir())
    assert len(versions) == 2  # the model and the baseline trained beside it

    from ml_assets.settings import Settings
    from ml_assets.storage.assembly import build_warehouse

    warehouse = build_warehouse(Settings.from_env())  # the DuckDB file or the Delta tables

    def days(table: str) -> list[str]:
        return [
            str(d)
            for d in warehouse.read(
                f"SELECT DISTINCT CAST(event_time AS DATE) AS d FROM {table} ORDER BY 1"
            )["d"]
        ]

    assert governance(["retention", "--today", "2026-09-21", "--dry-run"]) == 0
    assert "would remove" in capsys.readouterr().out and days("raw.transactions")[0] == "2026-09-01"
    assert governance(["retention", "--today", "2026-09-21"]) == 0
    capsys.readouterr()
    # raw keeps what the model in use learnt from, predictions only their 8 days
    assert days("raw.transactions")[0] == first_model_day
    assert days("predictions.transactions")[0] == "2026-09-13"

    landing = sorted(p.name for p in (data / "landing/transactions").iterdir())
    assert landing[0] == f"transactions_{first_model_day}.csv"
    assert sorted(p.name for p in models.iterdir() if p.is_dir()) == [card["version"]]
    (entry,) = [e for e in audit.read(data) if e["action"] == "retention"]
    assert entry["counts"]["rows"] > 0 and entry["counts"]["protected"][0] == first_model_day
    # told to, it removes the model's data too
    assert governance(["retention", "--today", "2026-09-21", "--include-model-data"]) == 0
    assert days("raw.transactions")[0] == "2026-09-13"


def test_an_erasure_that_stops_half_way_is_finished_by_resume(tmp_path, monkeypatch):
    from datetime import date

    from ml_assets.governance import erasure
    from ml_assets.spec import load_spec

    spec = load_spec()
    data = tmp_path / "data"
    (data / "landing/transactions").mkdir(parents=True)
    landing = data / "landing/transactions/transactions_2026-09-03.csv"
    header = ",".join(c.name for c in spec.columns)
    theirs = "T1,2026-09-03 10:00:00,C1,K1,1.0,grocery,DE,pos,mobile,x,a@b.c,4111,18-25"
    other = "T2,2026-09-03 11:00:00,C2,K2,2.0,grocery,DE,pos,mobile,y,d@e.f,4222,18-25"
    landing.write_text(f"{header}\n{theirs}\n{other}\n")
    con = duckdb.connect(str(data / "warehouse.duckdb"))
    con.execute("CREATE SCHEMA cleaned")
    con.execute("CREATE TABLE cleaned.transactions (transaction_id VARCHAR, customer_id VARCHAR)")
    con.execute("INSERT INTO cleaned.transactions VALUES ('T1', 'C1'), ('T2', 'C2')")
    con.close()
    monkeypatch.setattr(erasure, "tables_of_assets", lambda defs, raw: {})
    days = [date(2026, 9, 3)]

    def killed_before_the_rows(*args):
        raise RuntimeError("killed")

    monkeypatch.setattr(erasure, "delete_rows", killed_before_the_rows)
    plan = erasure.ErasurePlan(["C1"], ["T1"], tables={"cleaned.transactions": 1}, days=days)
    with pytest.raises(RuntimeError):
        erasure.erase(data, spec, None, None, plan)
    record = erasure.pending_path(data)
    assert record.stat().st_mode & 0o077 == 0 and erasure.pending_days(data) == days

    monkeypatch.undo()
    monkeypatch.setattr(erasure, "tables_of_assets", lambda defs, raw: {})
    made_again = []
    monkeypatch.setattr(
        erasure,
        "rematerialize",
        lambda defs, instance, spec, todo, *rest: (made_again.extend(todo) or 1, len(todo)),
    )
    resumed = erasure.resumed_plan(data, spec, None)
    assert resumed.tables == {"cleaned.transactions": 1}
    done = erasure.erase(data, spec, None, None, resumed)
    assert made_again == days and done["rows"] == 1
    assert "C1" not in landing.read_text() and "C2" in landing.read_text()
    assert not record.exists()


def leaks_in_lake(lake: Path, values: list[str]) -> dict[str, list[str]]:
    """{file: values found}, over every Parquet file under the lake root, referenced by a
    Delta table or not (decoded: its pages are compressed), and every log file as bytes."""
    import pyarrow.parquet as pq

    found = {}
    for path in sorted(lake.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            table = pl.from_arrow(pq.read_table(path))
            text = pl.concat(
                [table[c].cast(pl.String) for c in table.columns if table[c].dtype == pl.String]
                or [pl.Series([], dtype=pl.String)]
            )
        else:
            text = pl.Series([path.read_bytes().decode("utf-8", errors="ignore")])
        hits = text.drop_nulls().str.extract_many(values).explode().drop_nulls()
        if len(hits):
            found[str(path.relative_to(lake))] = sorted(set(hits.to_list()))[:5]
    return found
