"""The file sensors through Dagster: `build_sensor_context` against an instance that has runs."""

from __future__ import annotations

import json
import os
import time

import dagster as dg
import duckdb
import pytest
import yaml

from ml_assets.definitions import build_definitions
from ml_assets.names import QUARANTINE_CHECK
from ml_assets_tests.conftest import Daemon, materialize
from ml_assets_tests.conftest import requested_days as days

pytestmark = pytest.mark.integration

SENSOR = "raw_transactions_files"


def landing(data):
    return data / "landing/transactions"


def keep_only(data, *days_kept):
    for path in landing(data).iterdir():
        if not any(d in path.name for d in days_kept):
            path.unlink()


@pytest.fixture
def env(example_env):
    return example_env, build_definitions(), dg.DagsterInstance.ephemeral()


def test_first_tick_requests_each_day_once_and_then_nothing(env):
    data, defs, instance = env
    keep_only(data, "2026-09-01", "2026-09-02", "2026-09-03")
    daemon = Daemon(defs, instance)
    first = daemon.tick()
    assert first.run_requests == [] and "3 settling" in first.skip_reason.skip_message
    second = daemon.tick()
    assert days(second) == ["2026-09-01", "2026-09-02", "2026-09-03"]
    assert len(second.run_requests) == 1, "consecutive days are one run"
    assert all(r.asset_selection == [dg.AssetKey("raw_transactions")] for r in second.run_requests)
    third = daemon.tick()
    assert third.run_requests == [] and "no new files" in third.skip_reason.skip_message


def test_files_already_ingested_with_the_same_checksum_are_not_requested_again(env):
    data, defs, instance = env
    keep_only(data, "2026-09-01", "2026-09-02")
    materialize(defs, "key:raw_transactions", instance, "2026-09-01", "2026-09-02")
    # a fresh cursor (a new sensor, or a reset one) recognises what was ingested by its checksum
    assert days(Daemon(defs, instance).settle()) == []


def test_after_a_long_backfill_the_sensor_reads_the_files_table_and_requests_only_a_changed_day(
    env,
):
    """A range run over more than a week keeps the file checksums out of its metadata (Dagster
    copies it onto every day's event); a fresh sensor finds them in raw.transactions_files."""
    data, defs, instance = env
    days_run = [f"2026-09-{d:02d}" for d in range(1, 11)]
    keep_only(data, *days_run)
    materialize(defs, "key:raw_transactions", instance, days_run[0], days_run[-1])
    record = instance.get_latest_materialization_event(dg.AssetKey("raw_transactions"))
    assert "source_files_sha256" not in record.asset_materialization.metadata
    assert "3 earlier day(s)" in record.asset_materialization.metadata["source_files"].value
    daemon = Daemon(defs, instance)
    assert days(daemon.settle()) == []
    path = landing(data) / "transactions_2026-09-04.csv"
    path.write_text("\n".join(path.read_text().splitlines()[:-5]) + "\n")
    assert days(daemon.settle()) == ["2026-09-04"]


def test_a_late_file_requests_only_its_day(env):
    data, defs, instance = env
    keep_only(data, "2026-09-01", "2026-09-02", "2026-09-03")
    materialize(defs, "key:raw_transactions", instance, "2026-09-01", "2026-09-03")
    daemon = Daemon(defs, instance)
    assert days(daemon.settle()) == []
    extra = landing(data) / "transactions_2026-09-02_late.csv"
    extra.write_text(
        (landing(data) / "transactions_2026-09-02.csv").read_text().splitlines()[0]
        + "\nlate-1,2026-09-02 23:59:00,c1,k1,10.0,grocery,DE,pos,terminal,N,e@x,4111,26-35\n"
    )
    result = daemon.settle()
    assert days(result) == ["2026-09-02"]
    assert result.run_requests[0].tags["ml_assets/landing_files"] == extra.name


def test_a_changed_file_is_requested_again_and_both_versions_are_kept(env):
    data, defs, instance = env
    keep_only(data, "2026-09-01")
    materialize(defs, "key:raw_transactions", instance, "2026-09-01")
    daemon = Daemon(defs, instance)
    assert days(daemon.settle()) == []
    path = landing(data) / "transactions_2026-09-01.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-10]) + "\n")  # the source re-exported the day, shorter
    result = daemon.settle()
    assert days(result) == ["2026-09-01"]
    materialize(defs, "key:raw_transactions", instance, "2026-09-01")
    archived = sorted((data / "archive/transactions/2026-09-01").iterdir())
    assert len(archived) == 2 and all(a.name.endswith(path.name) for a in archived)
    assert {len(a.read_text().splitlines()) for a in archived} == {len(lines), len(lines) - 10}
    # the run key names the new checksum, so the daemon would not skip it as a repeat
    assert days(daemon.settle()) == []


def test_a_bad_file_is_moved_to_quarantine_and_the_good_ones_of_the_tick_go_on(env):
    data, defs, instance = env
    keep_only(data, "2026-09-01", "2026-09-02")
    bad = landing(data) / "transactions_2026-09-02_extra.csv"
    bad.write_bytes(b"transaction_id,event_time\n\xff\xfe broken\n")
    wrong_day = landing(data) / "transactions_2027-01-01.csv"
    wrong_day.write_text((landing(data) / "transactions_2026-09-01.csv").read_text())
    # parses, but most rows are bad: the run would fail on it, so the sensor stops it
    dirty = landing(data) / "transactions_2026-09-02_dirty.csv"
    good = (landing(data) / "transactions_2026-09-02.csv").read_text().splitlines()
    dirty.write_text("\n".join([good[0]] + [line.replace(",", ";") for line in good[1:50]]) + "\n")
    result = Daemon(defs, instance).settle()
    assert days(result) == ["2026-09-01", "2026-09-02"]
    assert not any(p.exists() for p in (bad, wrong_day, dirty))  # moved: the day can go on
    quarantine = data / "quarantine/transactions"
    reasons = {
        p.name: json.loads(p.read_text())["reason"] for p in quarantine.glob("*.reason.json")
    }
    assert "not UTF-8" in reasons[bad.name + ".reason.json"]
    assert "outside the spec's partitions" in reasons[wrong_day.name + ".reason.json"]
    assert "rows are bad" in reasons[dirty.name + ".reason.json"]
    assert (quarantine / bad.name).read_bytes().startswith(b"transaction_id,event_time\n\xff")
    failed = [e for e in result.asset_events if isinstance(e, dg.AssetCheckEvaluation)]
    assert {e.check_name for e in failed} == {QUARANTINE_CHECK} and len(failed) == 3
    assert not any(e.passed for e in failed)


def test_a_file_being_written_is_not_taken_until_it_holds_still(example_env, tmp_path, monkeypatch):
    spec = tmp_path / "slow.yaml"
    text = (tmp_path / "transactions_small.yaml").read_text()
    spec.write_text(text.replace("settle_seconds: 0", "settle_seconds: 2"))
    monkeypatch.setenv("ML_ASSETS_SPEC", str(spec))
    keep_only(example_env, "2026-09-01")
    defs, instance = build_definitions(), dg.DagsterInstance.ephemeral()
    daemon = Daemon(defs, instance)
    path = landing(example_env) / "transactions_2026-09-01.csv"
    body = path.read_text()
    path.write_text(body[: len(body) // 2])  # the copy is half done
    assert days(daemon.tick()) == [] and days(daemon.tick()) == []
    path.write_text(body)  # the copy completes
    assert days(daemon.tick()) == []
    time.sleep(2.1)
    assert days(daemon.tick()) == ["2026-09-01"]


def test_a_restarted_daemon_neither_misses_nor_repeats_a_file(env):
    data, defs, instance = env
    keep_only(data, "2026-09-01", "2026-09-02")
    daemon = Daemon(defs, instance)
    daemon.tick()
    saved = daemon.cursor
    requested = daemon.tick()
    # the daemon died after submitting the runs but before saving the cursor: the tick is
    # evaluated again from the saved cursor and yields the same run keys, which Dagster skips
    repeated = Daemon(defs, instance).tick(cursor=saved)
    assert [r.run_key for r in repeated.run_requests] == [r.run_key for r in requested.run_requests]
    # files that landed while it was down are taken after the restart
    (landing(data) / "transactions_2026-09-03.csv").write_text(
        (landing(data) / "transactions_2026-09-01.csv")
        .read_text()
        .replace("2026-09-01", "2026-09-03")
        .replace("T20260901", "T20260903")
    )
    os.utime(landing(data) / "transactions_2026-09-03.csv")
    assert days(daemon.settle()) == ["2026-09-03"]


@pytest.fixture
def spanning_env(example_env, tmp_path, monkeypatch):
    """The example spec with partition_by: event_time, and one file holding two days."""
    spec = yaml.safe_load((tmp_path / "transactions_small.yaml").read_text())
    spec["landing"].update(partition_by="event_time", pattern="transactions_*.csv")
    path = tmp_path / "spanning.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    monkeypatch.setenv("ML_ASSETS_SPEC", str(path))
    keep_only(example_env, "2026-09-01", "2026-09-02", "2026-09-03")
    folder = landing(example_env)
    day1, day2 = (folder / f"transactions_2026-09-0{d}.csv" for d in (1, 2))
    lines2 = day2.read_text().splitlines()
    (folder / "transactions_week36.csv").write_text(day1.read_text() + "\n".join(lines2[1:]) + "\n")
    day1.unlink()
    day2.unlink()
    return example_env, build_definitions(), dg.DagsterInstance.ephemeral()


def test_a_file_spanning_days_requests_each_day_and_each_day_keeps_only_its_rows(spanning_env):
    data, defs, instance = spanning_env
    result = Daemon(defs, instance).settle()
    assert days(result) == ["2026-09-01", "2026-09-02", "2026-09-03"]
    materialize(defs, "key:raw_transactions", instance, "2026-09-02")
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        by_day = dict(
            con.sql(
                "SELECT CAST(event_time AS DATE)::VARCHAR, count(*) FROM raw.transactions GROUP BY 1"
            ).fetchall()
        )
        logged = con.sql(
            "SELECT day::DATE::VARCHAR, file, rows FROM raw.transactions_files"
        ).fetchall()
    finally:
        con.close()
    assert list(by_day) == ["2026-09-02"] and by_day["2026-09-02"] > 200
    assert [(d, f.rsplit("/", 1)[-1], n) for d, f, n in logged] == [
        ("2026-09-02", "transactions_week36.csv", by_day["2026-09-02"])
    ]
    materialize(defs, "key:raw_transactions", instance, "2026-09-01", "2026-09-03")
    # the whole file once ingested: the sensor has nothing left to request
    assert days(Daemon(defs, instance).settle()) == []


@pytest.mark.slow
def test_a_thousand_files_are_taken_in_batches_once_each_and_the_cursor_shrinks_again(
    env, monkeypatch
):
    data, defs, instance = env
    folder = landing(data)
    header, *rows = (folder / "transactions_2026-09-01.csv").read_text().splitlines()
    keep_only(data)
    for i in range(1050):  # 20 days x 52-53 small files, e.g. one per upload batch
        day = f"2026-09-{1 + i % 20:02d}"
        (folder / f"transactions_{day}_batch{i:04d}.csv").write_text(
            f"{header}\n{rows[i % len(rows)].replace('2026-09-01', day)}\n"
        )
    clock = {"ns": time.time_ns()}
    monkeypatch.setattr("ml_assets.defs.ingest.sensors.now_ns", lambda: clock["ns"])
    daemon = Daemon(defs, instance)
    decided, requested_days = [], set()
    for _ in range(5):
        result = daemon.tick()
        requested_days |= set(days(result))
        decided.append(len(json.loads(daemon.cursor)["decided"]))
        clock["ns"] += 2_000_000_000
    assert decided == [0, 500, 1000, 1050, 1050], "500 files a tick, each once"
    assert len(requested_days) == 20
    clock["ns"] += 120_000_000_000  # past the watermark's margin: decided files leave the cursor
    quiet = daemon.tick()
    assert quiet.run_requests == [] and len(daemon.cursor) < 300


def test_links_and_folders_in_landing_are_quarantined_as_they_are_never_followed(env, tmp_path):
    data, defs, instance = env
    keep_only(data, "2026-09-01")
    folder = landing(data)
    outside = tmp_path / "outside.csv"
    outside.write_text((folder / "transactions_2026-09-01.csv").read_text())
    (folder / "transactions_2026-09-02.csv").symlink_to(outside)  # a CSV outside the folder
    (folder / "transactions_2026-09-03.csv").symlink_to("/etc/passwd")
    (folder / "transactions_2026-09-04.csv").symlink_to("/dev/zero")  # would hang a reader
    (folder / "transactions_2026-09-05.csv").mkdir()  # a folder named like a file
    daemon = Daemon(defs, instance)
    first = daemon.tick()  # links and folders are decided at once: nothing to settle
    result = daemon.tick()
    assert days(result) == ["2026-09-01"]
    # the UI shows each one on the quarantine check, without the target's content
    flagged = sorted(e.metadata["file"].value for e in first.asset_events)
    assert flagged == [f"transactions_2026-09-0{d}.csv" for d in (2, 3, 4, 5)]
    assert not [e for e in first.asset_events if "root:" in e.description]
    quarantine = data / "quarantine/transactions"
    for day in ("02", "03", "04"):
        moved = quarantine / f"transactions_2026-09-{day}.csv"
        assert moved.is_symlink() and not os.path.lexists(folder / moved.name)
        reason = json.loads((quarantine / f"{moved.name}.reason.json").read_text())["reason"]
        assert "symbolic link" in reason and "root:" not in reason
    assert (quarantine / "transactions_2026-09-05.csv").is_dir()
    assert "a folder" in (quarantine / "transactions_2026-09-05.csv.reason.json").read_text()
    assert outside.exists() and len(outside.read_text()) > 100  # the target is untouched


def test_a_link_the_run_meets_fails_it_by_name_without_reading_it(env):
    data, defs, instance = env
    keep_only(data, "2026-09-01")
    (landing(data) / "transactions_2026-09-01_late.csv").symlink_to("/dev/zero")
    result = materialize(defs, "raw_transactions", instance, "2026-09-01", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.user_failure_data.description)
    assert "transactions_2026-09-01_late.csv" in message and "symbolic link" in message
    assert (data / "quarantine/transactions/transactions_2026-09-01_late.csv").is_symlink()


def test_a_label_file_dated_after_the_last_partition_goes_into_it_up_to_the_maturity_window(env):
    """Chargebacks on the last days' events arrive after the partitions end: a file of the
    maturity window after the last day goes into the last partition, a later one is quarantined."""
    data, defs, instance = env
    keep_only(data, "2026-09-19", "2026-09-20")
    for path in (data / "landing/chargebacks").iterdir():
        if "2026-09-20" not in path.name:
            path.unlink()
    materialize(
        defs,
        "key:raw_transactions or key:cleaned_transactions",
        instance,
        "2026-09-19",
        "2026-09-20",
    )
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        event = con.sql(
            "SELECT transaction_id FROM cleaned.transactions WHERE event_time >= '2026-09-19' "
            "AND event_time < '2026-09-20' ORDER BY transaction_id LIMIT 1"
        ).fetchall()[0][0]
    header = "chargeback_id,transaction_id,reported_at,reason_code"
    late = data / "landing/chargebacks/chargebacks_2026-09-23.csv"  # end is 2026-09-21, maturity 5
    late.write_text(f"{header}\nCB-late,{event},2026-09-23 10:00:00,fraud\n")
    too_late = data / "landing/chargebacks/chargebacks_2026-09-27.csv"
    too_late.write_text(f"{header}\nCB-too-late,{event},2026-09-27 10:00:00,fraud\n")
    daemon = Daemon(defs, instance, name="raw_chargebacks_files")
    result = daemon.settle()
    assert days(result) == ["2026-09-20"]  # the trailing file asks for the last partition
    assert "chargebacks_2026-09-23.csv" in result.run_requests[0].tags["ml_assets/landing_files"]
    reasons = {
        p.name: json.loads(p.read_text())["reason"]
        for p in (data / "quarantine/chargebacks").glob("*.reason.json")
    }
    assert (
        "or the 5 days after it that labels may still report on"
        in reasons["chargebacks_2026-09-27.csv.reason.json"]
    )
    materialize(defs, "key:raw_chargebacks", instance, "2026-09-20")
    materialize(defs, "key:ground_truth_labels", instance, "2026-09-19")
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        stored = con.sql("SELECT chargeback_id FROM raw.chargebacks ORDER BY 1").pl()
        label = con.sql(
            f"SELECT label_status FROM labels.transactions_ground_truth WHERE event_id = '{event}'"
        ).fetchall()[0][0]
        logged = con.sql(
            "SELECT DISTINCT CAST(day AS DATE) AS d FROM raw.chargebacks_files ORDER BY 1"
        ).pl()
    assert "CB-late" in stored["chargeback_id"].to_list() and label == "positive"
    assert [str(d) for d in logged["d"]] == ["2026-09-20", "2026-09-23"]
    # ingested: the next ticks ask for nothing
    assert days(daemon.tick()) == []
    assert days(Daemon(defs, instance, name="raw_chargebacks_files").settle()) == []


def test_a_file_of_a_day_past_raw_retention_is_never_requested(example_env, tmp_path, monkeypatch):
    """Landing kept longer than raw: an erasure rewrites the landing file of a day raw no longer
    holds, and the new checksum made the sensor ingest the day again, with the rows of the
    others retention had removed. Days past `retention.raw_days` are never requested."""
    from datetime import UTC, date, datetime

    from ml_assets_tests.conftest import use_spec_with

    # derived from today, as the sensor's clock: 2026-09-01 is past the period, 09-02 is not
    raw_days = (datetime.now(UTC).date() - date(2026, 9, 2)).days
    use_spec_with(monkeypatch, tmp_path, retention={"raw_days": raw_days})
    keep_only(example_env, "2026-09-01", "2026-09-02")
    defs = build_definitions()
    with dg.DagsterInstance.ephemeral() as instance:
        daemon = Daemon(defs, instance)
        assert days(daemon.settle()) == ["2026-09-02"]
        path = landing(example_env) / "transactions_2026-09-01.csv"
        lines = path.read_text().splitlines()
        path.write_text("\n".join(lines[:-1]) + "\n")  # as an erasure rewrites it
        assert days(daemon.settle()) == []
        # within the period a changed file is requested again as before
        path = landing(example_env) / "transactions_2026-09-02.csv"
        path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
        assert days(daemon.settle()) == ["2026-09-02"]
