"""Every asset in every state a deployment passes through: it does what it can, says what waits
and why, and the run succeeds."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import duckdb
import pytest

from ml_assets_tests.conftest import SMALL_START, demo_instance_home

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def module_cli(module: str, *args: str, home) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` as a user runs it, with the instance at `home`."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def materialize_cli(*args: str, home) -> subprocess.CompletedProcess:
    return module_cli("ml_assets.materialize", *args, home=home)


def test_day_one_runs_the_whole_graph_and_says_what_waits(example_env, tmp_path):
    """A new deployment's first day: no matured labels, no class balance for the label model,
    no model. The command succeeds, stores what it can, and names what waits and why."""
    home = demo_instance_home(tmp_path)
    day = SMALL_START.isoformat()
    done = materialize_cli("--from", day, "--to", day, home=home)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "Stack Trace" not in out, out[-3000:]
    assert "training_set: waits: no day has fully matured labels yet" in out, out
    assert "predictions: waits: no model in use yet" in out, out
    con = duckdb.connect(str(example_env / "warehouse.duckdb"), read_only=True)
    try:
        features = con.sql("SELECT count(*) FROM features.transactions").fetchall()[0][0]
        weak = con.sql(
            "SELECT count(*), count(probability), count(majority_vote) FROM labels.transactions_weak_votes"
        ).fetchall()[0]
        weak_labels = con.sql(
            "SELECT count(*) FROM labels.transactions WHERE label_source = 'weak'"
        ).fetchall()[0][0]
    finally:
        con.close()
    assert features > 200
    # the votes are kept, the label model waits for a class balance: no weak label yet
    assert weak[0] == features and weak[1] == 0 and weak[2] > 0, weak
    assert weak_labels == 0
    with dg.DagsterInstance.from_config(str(home)) as instance:
        observed = instance.fetch_observations(dg.AssetKey("weak_labels"), limit=1).records
        materialized = instance.get_latest_materialization_event(dg.AssetKey("weak_labels"))
        assert not observed  # weak_labels itself is built: it is the probability that waits
        waiting = materialized.asset_materialization.metadata["label_model"].value
        assert "waiting" in waiting and "class_balance" in waiting, waiting
        assert instance.get_latest_materialization_event(dg.AssetKey("model")) is None
        seen = instance.fetch_observations(dg.AssetKey("predictions"), limit=1).records
        assert "no model in use" in seen[0].asset_observation.metadata["waiting"].value


def test_a_step_that_fails_prints_its_reason_and_fix_not_a_stack_trace(example_env, tmp_path):
    home = demo_instance_home(tmp_path)
    day = SMALL_START.isoformat()
    (example_env / "landing/transactions" / f"transactions_{day}.csv").unlink()
    done = materialize_cli("--from", day, "--to", day, home=home)
    assert done.returncode == 1
    out = done.stdout + done.stderr
    assert "Traceback" not in out and "Stack Trace" not in out, out
    assert f"raw_transactions: FAILED: no landing file for {day}" in out, out
    assert "Fix: drop the day's file there" in out
    # the later stages read what the failed one did not write: not run
    assert "training set and model" not in out


def governance_cli(*args: str, home) -> subprocess.CompletedProcess:
    return module_cli("ml_assets.governance", *args, home=home)


def rows_of(data, sql: str) -> int:
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        return con.sql(sql).fetchall()[0][0]
    finally:
        con.close()


def test_erasure_before_any_model_and_after_landing_is_gone(example_env, tmp_path):
    """Before any model exists (it failed in predictions on 9ab9dbc, and every later erasure
    was refused), and for a day whose landing file retention removed (it failed for ever on
    the missing file): the person goes, the others stay, nothing is left pending."""
    home = demo_instance_home(tmp_path)
    days = [SMALL_START.isoformat(), "2026-09-02"]
    done = materialize_cli("--from", days[0], "--to", days[1], home=home)
    assert done.returncode == 0, done.stderr[-3000:]
    landing = example_env / "landing/transactions"
    first, second = (landing / f"transactions_{d}.csv" for d in days)
    person = first.read_text().splitlines()[1].split(",")[2]
    gone = second.read_text().splitlines()[1].split(",")[2]
    second.unlink()  # retention removed this landing day; raw keeps it
    before = rows_of(example_env, "SELECT count(*) FROM raw.transactions")
    theirs = rows_of(
        example_env,
        f"SELECT count(*) FROM raw.transactions WHERE customer_id IN ('{person}', '{gone}')",
    )
    assert theirs > 0
    con = duckdb.connect(str(example_env / "warehouse.duckdb"), read_only=True)
    ids = [
        r[0]
        for r in con.sql(
            f"SELECT transaction_id FROM raw.transactions WHERE customer_id IN ('{person}', '{gone}')"
        ).fetchall()
    ]
    con.close()
    for who in (person, gone):
        erased = governance_cli("erase", "--entity", who, home=home)
        out = erased.stdout + erased.stderr
        assert erased.returncode == 0, out[-3000:]
        assert "Traceback" not in out and "BetaWarning" not in out, out[-3000:]
    for table in ("raw.transactions", "cleaned.transactions", "features.transactions"):
        listed = ", ".join(f"'{i}'" for i in ids)
        left = rows_of(
            example_env, f"SELECT count(*) FROM {table} WHERE transaction_id IN ({listed})"
        )
        assert left == 0, table
    # the others stay: the day without its landing file was not made again from landing
    assert rows_of(example_env, "SELECT count(*) FROM raw.transactions") == before - theirs
    assert (
        rows_of(
            example_env,
            "SELECT count(*) FROM cleaned.transactions WHERE CAST(event_time AS DATE) = DATE '2026-09-02'",
        )
        > 100
    )
    assert not (example_env / "governance/erasure_pending.json").exists()


def test_a_failed_erasure_names_the_fix_and_blocks_no_other(example_env, tmp_path):
    home = demo_instance_home(tmp_path)
    day = SMALL_START.isoformat()
    assert materialize_cli("--from", day, "--to", day, home=home).returncode == 0
    lines = (example_env / "landing/transactions" / f"transactions_{day}.csv").read_text()
    one, two = (line.split(",")[2] for line in lines.splitlines()[1:3])
    # a landing file that breaks the day's rebuild: too many bad rows
    broken = example_env / "landing/transactions" / f"transactions_{day}_late.csv"
    header = lines.splitlines()[0]
    broken.write_text(header + "\n" + "x,y\n" * 50)
    failed = governance_cli("erase", "--entity", one, home=home)
    assert failed.returncode == 1
    assert "erase --resume" in failed.stderr and "erase --abandon" in failed.stderr
    assert "Traceback" not in failed.stderr, failed.stderr[-3000:]
    assert (
        rows_of(example_env, f"SELECT count(*) FROM raw.transactions WHERE customer_id = '{one}'")
        == 0
    )
    # the next erasure is not refused; it fails the same way until the cause is gone
    assert "refused" not in governance_cli("erase", "--entity", two, home=home).stderr
    broken.unlink()
    resumed = governance_cli("erase", "--resume", home=home)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not (example_env / "governance/erasure_pending.json").exists()
    # abandon: nothing pending to abandon now
    assert "no erasure to abandon" in governance_cli("erase", "--abandon", home=home).stdout


def test_after_retention_a_person_is_found_in_the_files_that_still_hold_them(tmp_path):
    """Retention removed the rows; the archive still holds the email: `--personal` finds the
    person there (it said "no such person" on 9ab9dbc)."""
    from ml_assets.governance.erasure import find_in_files
    from ml_assets.spec import load_spec

    spec = load_spec()
    archive = tmp_path / "archive/transactions/2026-09-03"
    archive.mkdir(parents=True)
    header = ",".join(c.name for c in spec.columns)
    theirs = "T1,2026-09-03 10:00:00,C1,K1,1.0,grocery,DE,pos,mobile,Jo,jo@b.example,4111,18-25"
    other = "T2,2026-09-03 11:00:00,C2,K2,2.0,grocery,DE,pos,mobile,Al,al@b.example,4222,18-25"
    (archive / "0123456789abcdef_transactions_2026-09-03.csv").write_text(
        f"{header}\n{theirs}\n{other}\n"
    )
    assert find_in_files(tmp_path, spec, "jo@b.example") == (["C1"], ["T1"])
    assert find_in_files(tmp_path, spec, "nobody@b.example") == ([], [])


def test_days_raw_no_longer_holds_are_not_made_again_and_days_without_landing_from_raw(
    tmp_path,
):
    from datetime import date

    import polars as pl

    from ml_assets.governance.erasure import rebuildable_days
    from ml_assets.spec import load_spec
    from ml_assets.storage.duckdb_file import DuckDBWarehouse

    kept = tmp_path / "transactions_2026-09-01.csv"
    kept.write_text("x\n")
    warehouse = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    warehouse.replace_table(
        "raw.transactions_files",
        pl.DataFrame(
            {
                "day": [date(2026, 9, 1), date(2026, 9, 2)],
                "file": [str(kept), str(tmp_path / "transactions_2026-09-02.csv")],
            }
        ).with_columns(pl.col("day").cast(pl.Datetime("us"))),
    )
    days = [date(2026, 9, 1), date(2026, 9, 2), date(2026, 9, 3)]
    # 09-03 is gone from raw (retention): ingesting it from landing would bring others back
    assert rebuildable_days(warehouse, load_spec(), days) == (
        [date(2026, 9, 1)],
        [date(2026, 9, 2)],
    )


def test_governance_commands_refuse_while_a_run_is_in_progress(
    example_env, tmp_path, monkeypatch, capsys
):
    """A run that reads a day before an erasure and writes it after would bring the person back:
    erase, retention, rotate-key and backup refuse while one is in progress, and work after."""
    from dagster._core.storage.dagster_run import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    from ml_assets.backup import main as backup
    from ml_assets.governance.__main__ import main as governance

    home = demo_instance_home(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        run = create_run_for_test(
            instance, job_name="writes_the_warehouse", status=DagsterRunStatus.STARTED
        )
        commands = [
            (governance, ["erase", "--entity", "C0000001"]),
            (governance, ["retention"]),
            (governance, ["rotate-key"]),
            (backup, ["create"]),
        ]
        for main, argv in commands:
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert "refused" in err and run.run_id[:8] in err and "Fix:" in err, err
        # a dry run changes nothing: it may look
        assert governance(["retention", "--dry-run"]) == 0
        instance.report_run_canceled(run)
    capsys.readouterr()
    assert backup(["create"]) == 0


def test_every_governance_command_on_a_first_day_instance_then_the_next_day_runs(
    example_env, tmp_path, monkeypatch
):
    """A deployment's first day (no matured labels, no model): backup, erasure, retention,
    restore, audit and key rotation each succeed with a plain answer, in that order, and the
    graph then runs the next day on what they left."""
    import secrets
    import shutil

    from ml_assets_tests.conftest import use_spec_with

    home = demo_instance_home(tmp_path)
    first, second = SMALL_START.isoformat(), "2026-09-02"
    use_spec_with(monkeypatch, tmp_path, retention={"landing_days": 8, "event_log_days": 8})
    done = materialize_cli("--from", first, "--to", first, home=home)
    assert done.returncode == 0, done.stderr[-3000:]
    landing = example_env / "landing/transactions"
    person = (landing / f"transactions_{first}.csv").read_text().splitlines()[1].split(",")[2]

    def ok(*argv: str, module="ml_assets.governance") -> str:
        done = module_cli(module, *argv, home=home)
        out = done.stdout + done.stderr
        assert done.returncode == 0, (argv, out[-3000:])
        assert "Traceback" not in out and "Warning" not in out, (argv, out[-3000:])
        return out

    assert "snapshot" in ok("create", module="ml_assets.backup")
    (snapshot,) = (example_env / "backups").iterdir()
    erased = ok("erase", "--entity", person)
    # only the first day is stored: the person's lines in later landing files are gone, and
    # those days, never ingested, are not made by the erasure
    assert '"days_rematerialized": 1' in erased, erased
    # ten days on: the first day's landing file is past landing_days (no model keeps it)
    assert "would remove" in ok("retention", "--dry-run", "--today", "2026-09-10")
    ok("retention", "--today", "2026-09-10")
    assert not (landing / f"transactions_{first}.csv").exists()
    restored = ok("restore", str(snapshot), module="ml_assets.backup")
    assert "re-applied 1 erasure(s)" in restored, restored
    theirs = f"SELECT count(*) FROM raw.transactions WHERE customer_id = '{person}'"
    assert rows_of(example_env, theirs) == 0
    audit = ok("audit")
    for action in ("backup", "erasure", "retention", "restore"):
        assert action in audit, audit
    # a new key: a pseudonym is made again from the clear value only, and the first day's
    # landing file is gone; refused before anything changes, saying where the file is
    new_key = secrets.token_hex(32)
    monkeypatch.setenv("ML_ASSETS_NEW_PSEUDONYM_KEY", new_key)
    refused = module_cli("ml_assets.governance", "rotate-key", home=home)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert f"no landing files any more ({first})" in refused.stderr, refused.stderr
    assert "archive/transactions/<day>/" in refused.stderr and "Traceback" not in refused.stderr
    # the fix it names: the archive copy back to landing, then rotate
    (copy,) = (example_env / "archive/transactions" / first).iterdir()
    shutil.copy(copy, landing / copy.name.split("_", 1)[1])
    ok("rotate-key")
    monkeypatch.setenv("ML_ASSETS_PSEUDONYM_KEY", new_key)
    monkeypatch.delenv("ML_ASSETS_NEW_PSEUDONYM_KEY")
    assert rows_of(example_env, "SELECT count(*) FROM raw.transactions") > 200
    done = materialize_cli("--from", second, "--to", second, home=home)
    assert done.returncode == 0, done.stderr[-3000:]
    day_two = "SELECT count(*) FROM cleaned.transactions WHERE CAST(event_time AS DATE) = DATE '2026-09-02'"
    assert rows_of(example_env, day_two) > 200
    assert rows_of(example_env, theirs) == 0


def test_a_run_and_a_governance_command_at_the_same_time_never_interleave(example_env, tmp_path):
    """Run and command concurrently, each started while the other is at work: an erasure is
    refused while a run reads and writes; a run started during an erasure waits for it (it
    would read a landing file before the person's lines go and write them back after), then
    reads what the erasure left: the person is in no day it made."""
    import json
    import time

    home = demo_instance_home(tmp_path)
    landing = example_env / "landing/transactions"
    first, second, third = SMALL_START.isoformat(), "2026-09-02", "2026-09-03"
    assert materialize_cli("--from", first, "--to", first, home=home).returncode == 0
    lock = example_env / "governance/runs.lock"

    def start(module: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env={**os.environ, "DAGSTER_HOME": str(home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def holder() -> dict:
        try:
            return json.loads(lock.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def run_holds_the_lock() -> bool:
        import fcntl

        with open(lock, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False

    # 1. a run at work: the erasure is refused, naming the fix
    run = start("ml_assets.materialize", "--from", second, "--to", second)
    deadline = time.monotonic() + 120
    while not (lock.exists() and run_holds_the_lock()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run.poll() is None, "the run ended before the erasure could be tried beside it"
    person = (landing / f"transactions_{third}.csv").read_text().splitlines()[1].split(",")[2]
    refused = governance_cli("erase", "--entity", person, home=home)
    assert refused.returncode == 2 and "refused" in refused.stderr, refused.stderr[-2000:]
    assert "Fix:" in refused.stderr and "Traceback" not in refused.stderr
    assert run.wait(timeout=600) == 0, run.stderr.read()[-3000:]

    # 2. an erasure at work: a run started now waits for it, then reads the files it left
    from ml_assets.definitions import build_definitions
    from ml_assets_tests.conftest import materialize

    defs = build_definitions()  # ready before the erasure starts: the run starts at once
    with dg.DagsterInstance.from_config(str(home)) as instance:
        erase = start("ml_assets.governance", "erase", "--entity", person)
        deadline = time.monotonic() + 120
        while holder().get("action") != "erase" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert erase.poll() is None, erase.stderr.read()[-3000:]
        result = materialize(defs, "group:ingest or group:clean", instance, third)
        assert erase.poll() is not None, "the run went on while the erasure held the lock"
        assert result.success
        said = [
            e.user_message
            for e in instance.all_logs(result.run_id)
            if "waiting for" in e.user_message
        ]
        assert said and said[0].startswith("waiting for erase (by "), said
    assert erase.wait(timeout=600) == 0, erase.stderr.read()[-3000:]
    theirs = f"SELECT count(*) FROM raw.transactions WHERE customer_id = '{person}'"
    assert rows_of(example_env, theirs) == 0
    assert rows_of(example_env, "SELECT count(*) FROM raw.transactions") > 600
