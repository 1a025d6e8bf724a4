"""Faults under the real `dagster dev`: a run worker killed with SIGKILL in the middle of its
write transaction, and what the platform does by itself afterwards.

The fault hook (fixtures/fault_hook/sitecustomize.py, on PYTHONPATH of `dagster dev` only) makes
a run worker pause inside the write transaction of a chosen table, so the test can kill it there.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from ml_assets.devserver import DagsterDev
from ml_assets_tests.conftest import demo_instance_home
from ml_assets_tests.sensors.test_daemon import drop, seeded  # noqa: F401  (a fixture)

# `make test` runs two pytest workers (pytest-xdist, --dist loadgroup): this module's tests stay
# on one worker, one after the other, while the daemon test run on the other one
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("faults")]

FAULT_HOOK = Path(__file__).parents[1] / "fixtures/fault_hook"
RECOVERY_TIMEOUT = 240


def paused_pids(control: Path) -> list[int]:
    return [int(p.name.split(".")[1]) for p in control.glob("paused.*")]


def release(control: Path) -> None:
    """Let paused processes go on, and forget them (the next pause is another process)."""
    (control / "pause").unlink(missing_ok=True)
    for marker in control.glob("paused.*"):
        marker.unlink()


def with_fault_hook(env: dict, control: Path) -> dict:
    """`env` for processes that pause where `control/pause` says (fixtures/fault_hook)."""
    return {
        **env,
        "ML_ASSETS_FAULT_DIR": str(control),
        "PYTHONPATH": os.pathsep.join([str(FAULT_HOOK), os.environ.get("PYTHONPATH", "")]),
    }


def materialize_command(select: str, *partitions: str) -> list[str]:
    """`dagster asset materialize` of the code location, as a user runs it."""
    dagster = Path(sys.executable).parent / "dagster"
    return [
        str(dagster),
        "asset",
        "materialize",
        "-m",
        "ml_assets",
        "--select",
        select,
        *partitions,
    ]


def kill_when_paused(command: list[str], env: dict, control: Path, what: str) -> str:
    """Start `command`, SIGKILL it once it pauses in a write, release the pause; returns the
    table whose write transaction it died in."""
    cli = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not paused_pids(control) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert paused_pids(control), f"the run never reached {what}"
        table = next(control.glob("paused.*")).read_text()
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait()
    finally:
        release(control)
        if cli.poll() is None:
            cli.kill()
    return table


def count(data: Path, sql: str, *params) -> int:
    """A count read as any reader would while the platform runs."""
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        return con.sql(sql, params=list(params)).fetchall()[0][0]
    finally:
        con.close()


def assert_day_stored_once(data: Path, day: str) -> None:
    """Every data line of the day's file is stored or rejected exactly once: 0 lost, 0 twice."""
    path = data / f"landing/transactions/transactions_{day}.csv"
    lines = sum(1 for line in path.read_text(encoding="utf-8").splitlines()[1:] if line)
    stored = count(
        data, "SELECT count(*) FROM raw.transactions WHERE CAST(event_time AS DATE) = ?", day
    )
    rejected = count(
        data, "SELECT count(*) FROM raw.transactions_rejected_rows WHERE CAST(day AS DATE) = ?", day
    )
    assert stored + rejected == lines, (
        f"{day}: {lines} lines, {stored} stored + {rejected} rejected"
    )
    assert count(
        data, "SELECT count(*) FROM cleaned.transactions WHERE CAST(event_time AS DATE) = ?", day
    ) == count(
        data,
        "SELECT count(DISTINCT transaction_id) FROM raw.transactions WHERE CAST(event_time AS DATE) = ?",
        day,
    )


def descendants(pid: int) -> set[int]:
    """Every live process started by `pid`, however deep (zombies count as gone)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if state[state.rindex(")") + 2] != "Z":
            out.add(pid)
    return out


def finished_cleanly(dev: DagsterDev) -> list[str]:
    dev.wait_for(dev.quiet, RECOVERY_TIMEOUT, "every run and backfill to end")
    statuses = [r["status"] for r in dev.runs()]
    assert "STARTED" not in statuses and "QUEUED" not in statuses, statuses
    return statuses


def test_killed_and_stopped_runs_recover_by_themselves(seeded, tmp_path):  # noqa: F811
    """SIGKILL of a run worker inside its write (an ingest run a file sensor launched, then a
    run automation launched, in its features write), then SIGTERM to `make dev` while a cleaning
    run writes: every time the platform completes the work by itself, every line stored once."""
    data, staging, home, env = seeded
    landing = data / "landing"
    control = tmp_path / "faults"
    control.mkdir()
    env = with_fault_hook(env, control)
    dev = DagsterDev(home, env, tmp_path / "dagster_dev.log", as_make_dev=True)
    try:
        # --- SIGKILL inside the transaction: no handler runs, nothing is rolled back by Python --
        dev.start()
        (control / "pause").write_text("raw.transactions")
        drop(staging, landing, "transactions", "2026-09-13")
        pids = dev.wait_for(
            lambda: paused_pids(control), 120, "the ingest run to reach its write transaction"
        )
        os.kill(pids[0], signal.SIGKILL)
        killed_at = time.monotonic()
        release(control)
        # a new file while the killed run is being found out: its run must not wait for ever
        drop(staging, landing, "transactions", "2026-09-14")
        dev.wait_for(
            lambda: (
                {"2026-09-13", "2026-09-14"} <= set(dev.materialized_partitions("drift_report"))
            ),
            RECOVERY_TIMEOUT,
            "the retried run and the next sensor run to carry both days to drift_report",
        )
        statuses = finished_cleanly(dev)
        assert statuses.count("FAILURE") == 1, statuses  # the killed run, retried
        print(f"recovered {time.monotonic() - killed_at:.0f} s after SIGKILL")
        for day in ("2026-09-13", "2026-09-14"):
            assert_day_stored_once(data, day)

        # --- SIGKILL in a later stage, in the run automation launched for the day --------------
        (control / "pause").write_text("features.transactions")
        drop(staging, landing, "transactions", "2026-09-15")
        pids = dev.wait_for(
            lambda: paused_pids(control), 120, "the automation run to reach its features write"
        )
        os.kill(pids[0], signal.SIGKILL)
        release(control)
        dev.wait_for(
            lambda: "2026-09-15" in dev.materialized_partitions("drift_report"),
            RECOVERY_TIMEOUT,
            "the killed automation run to be retried and reach drift_report",
        )
        statuses = finished_cleanly(dev)
        assert statuses.count("FAILURE") == 2, statuses  # the two killed runs, both retried
        assert_day_stored_once(data, "2026-09-15")

        # --- SIGTERM to `make dev` while a run writes: all of it stops within 15 s --------------
        (control / "pause").write_text("cleaned.transactions")
        drop(staging, landing, "transactions", "2026-09-16")
        dev.wait_for(
            lambda: paused_pids(control), 120, "the cleaning run to reach its write transaction"
        )
        started = descendants(dev.proc.pid)
        assert len(started) >= 5  # dagster dev, webserver, daemon, code servers, the run worker
        os.kill(dev.proc.pid, signal.SIGTERM)
        t0 = time.monotonic()
        while (alive(started) or dev.proc.poll() is None) and time.monotonic() - t0 < 30:
            time.sleep(0.2)
        stopped_in = time.monotonic() - t0
        assert not alive(started) and dev.proc.poll() is not None
        assert stopped_in < 15, f"make dev took {stopped_in:.1f} s to stop"
        print(f"make dev and its {len(started)} processes stopped {stopped_in:.1f} s after SIGTERM")
        release(control)
        dev.stop()
        # the warehouse is readable, the day's cleaning did not happen or happened whole
        cleaned = count(
            data,
            "SELECT count(*) FROM cleaned.transactions WHERE CAST(event_time AS DATE) = ?",
            "2026-09-16",
        )
        assert cleaned == 0
        # --- the next start finishes what was stopped ----------------------------------------
        dev.start()
        dev.wait_for(
            lambda: "2026-09-16" in dev.materialized_partitions("drift_report"),
            RECOVERY_TIMEOUT,
            "the stopped run to be retried after the restart and reach drift_report",
        )
        finished_cleanly(dev)
        assert_day_stored_once(data, "2026-09-16")
    except Exception:
        print(dev.log_tail(8000))
        raise
    finally:
        (control / "pause").unlink(missing_ok=True)
        dev.stop()


def test_two_overlapping_ranges_run_at_once_store_each_day_once(example_env, tmp_path):
    """Two CLI runs over overlapping days at the same time (outside the queue, as CI or a user
    at a terminal would start them): both finish, waiting on DuckDB's lock, and every day is
    stored once."""

    import dagster as dg

    home = demo_instance_home(tmp_path)
    # the instance exists before the runs, as it does for a user (two processes creating its
    # SQLite schema at the same moment race in SQLAlchemy, not in this project)
    dg.DagsterInstance.from_config(str(home)).dispose()
    env = {**os.environ, "DAGSTER_HOME": str(home)}

    def cli(first: str, last: str) -> subprocess.Popen:
        return subprocess.Popen(
            materialize_command(
                "raw_transactions,cleaned_transactions", "--partition-range", f"{first}...{last}"
            ),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    runs = [cli("2026-09-01", "2026-09-10"), cli("2026-09-05", "2026-09-15")]
    errors = [r.communicate(timeout=600)[1] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], "\n".join(e[-2000:] for e in errors)
    for day in range(1, 16):
        assert_day_stored_once(example_env, f"2026-09-{day:02d}")


def test_a_full_disk_during_a_write_leaves_the_stored_days_readable(
    example_env, tmp_path, monkeypatch
):
    """The data folder on a 40 MiB tmpfs, filled up before a day's write: the run fails, the days
    stored before stay readable and whole, and once space is freed the day goes through."""

    import dagster as dg

    from ml_assets.definitions import build_definitions
    from ml_assets_tests.conftest import materialize

    if os.geteuid() != 0:
        pytest.skip(
            "FULL-DISK FAULT NOT TESTED: mounting a small tmpfs needs root (CI runs as root)"
        )
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=40m,mode=0700", "tmpfs", str(small)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"FULL-DISK FAULT NOT TESTED: could not mount a tmpfs: {mounted.stderr.strip()}"
        )
    try:
        data = small / "data"
        (data / "landing/transactions").mkdir(parents=True)
        for day in ("01", "02", "03"):
            name = f"transactions_2026-09-{day}.csv"
            shutil.copy(example_env / "landing/transactions" / name, data / "landing/transactions")
        monkeypatch.setenv("ML_ASSETS_DATA_DIR", str(data))
        selection = "key:raw_transactions or key:cleaned_transactions"
        with dg.DagsterInstance.ephemeral() as instance:
            defs = build_definitions()
            materialize(defs, selection, instance, "2026-09-01", "2026-09-02")
            filler = small / "filler"
            with open(filler, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * (1 << 20))
                        f.flush()
                except OSError:
                    pass
            failed = materialize(defs, selection, instance, "2026-09-03", raise_on_error=False)
            assert not failed.success
            for day in ("2026-09-01", "2026-09-02"):
                assert_day_stored_once(data, day)
            assert (
                count(
                    data,
                    "SELECT count(*) FROM raw.transactions WHERE CAST(event_time AS DATE) = ?",
                    "2026-09-03",
                )
                == 0
            )
            filler.unlink()
            assert materialize(defs, selection, instance, "2026-09-03").success
            assert_day_stored_once(data, "2026-09-03")
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_a_slot_a_dead_run_claimed_blocks_no_step(example_env, tmp_path):
    """A run killed under op granularity left its `warehouse` slot claimed; the next run's step
    then waited for it for ever, spinning at 100% CPU and deaf to SIGTERM. With the project's
    dagster.yaml (run granularity) a step never waits for a slot: the run goes through."""

    import dagster as dg

    home = demo_instance_home(tmp_path)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.initialize_concurrency_limit_to_default("warehouse")
        claim = instance.event_log_storage.claim_concurrency_slot(
            "warehouse", "a-run-killed-with-sigkill", "raw_transactions"
        )
        assert claim.is_claimed
    run = subprocess.run(
        materialize_command("raw_transactions", "--partition", "2026-09-01"),
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Step blocked by limit" not in run.stderr


def test_a_cli_run_killed_in_its_write_is_failed_by_the_dead_runs_sensor(
    example_env, tmp_path, monkeypatch
):
    """`dagster asset materialize` killed with SIGKILL inside its write: the day's earlier rows
    stay whole, and the run, which nothing watched, is failed by the dead_runs sensor instead of
    counting as in progress for ever (it held the warehouse queue)."""

    import dagster as dg

    import ml_assets.defs.platform.sensors as platform
    from ml_assets.definitions import build_definitions
    from ml_assets_tests.conftest import materialize

    home = demo_instance_home(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        materialize(build_definitions(), "raw_transactions", instance, "2026-09-01")
    before = count(example_env, "SELECT count(*) FROM raw.transactions")
    control = tmp_path / "faults"
    control.mkdir()
    (control / "pause").write_text("raw.transactions")
    kill_when_paused(
        materialize_command("raw_transactions", "--partition", "2026-09-01"),
        with_fault_hook(dict(os.environ), control),
        control,
        "its raw write",
    )
    assert count(example_env, "SELECT count(*) FROM raw.transactions") == before
    monkeypatch.setattr(platform, "GRACE_SECONDS", 0)
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        started = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        assert len(started) == 1  # what held the queue before
        with dg.build_sensor_context(instance=instance) as context:
            result = defs.resolve_sensor_def("dead_runs")(context)
        assert "failed 1 run" in str(result.skip_message)
        run = instance.get_run_by_id(started[0].dagster_run.run_id)
        assert run.status == dg.DagsterRunStatus.FAILURE


STAGES = ["cleaned.", "labels.", "features.", "predictions.", "monitor."]


def duckdb_fingerprints(database) -> dict[str, tuple[int, str]]:
    """{schema.table: (rows, checksum of its sorted rows)} of every table of the DuckDB file,
    read-only (the file a killed transaction must leave as it was)."""
    import duckdb

    con = duckdb.connect(str(database), read_only=True)
    try:
        tables = con.sql(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables"
        ).fetchall()
        return {
            t: con.sql(
                f"SELECT count(*), coalesce(md5(string_agg(CAST(x AS VARCHAR), '|' "
                f"ORDER BY CAST(x AS VARCHAR))), '') FROM {t} x"
            ).fetchall()[0]
            for (t,) in tables
        }
    finally:
        con.close()


def test_a_run_killed_in_each_stages_write_leaves_every_table_as_it_was(
    example_env, tmp_path, monkeypatch
):
    """The day's whole daily path from the CLI, killed with SIGKILL inside the write transaction
    of each stage in turn: the table being written keeps exactly the rows it had, the DuckDB file
    opens, the dead run is failed by the dead_runs sensor, and the next run completes with the
    day stored once."""

    import dagster as dg

    import ml_assets.defs.platform.sensors as platform
    from ml_assets.definitions import build_definitions
    from ml_assets_tests.conftest import DAILY_ASSETS, materialize
    from ml_assets_tests.integration.test_pipeline import run_everything

    home = demo_instance_home(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setattr(platform, "GRACE_SECONDS", 0)
    with dg.DagsterInstance.get() as instance:
        run_everything(build_definitions(), instance, "2026-09-01", "2026-09-19")
    control = tmp_path / "faults"
    control.mkdir()
    env = with_fault_hook(dict(os.environ), control)
    command = materialize_command(",".join(sorted(DAILY_ASSETS)), "--partition", "2026-09-20")
    defs = build_definitions()
    for stage in STAGES:
        before = duckdb_fingerprints(example_env / "warehouse.duckdb")
        (control / "pause").write_text(stage)
        table = kill_when_paused(command, env, control, f"a {stage} write")
        # the table killed in its transaction is as it was (its earlier days included), and
        # the file opens: stages before it in the run committed their own writes, whole
        after = duckdb_fingerprints(example_env / "warehouse.duckdb")
        assert table in before and after[table] == before[table], (stage, table)
        with (
            dg.DagsterInstance.get() as instance,
            dg.build_sensor_context(instance=instance) as context,
        ):
            defs.resolve_sensor_def("dead_runs")(context)
            stuck = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
            assert stuck == [], stage
    with dg.DagsterInstance.get() as instance:
        assert materialize(
            defs, " or ".join(f"key:{a}" for a in DAILY_ASSETS), instance, "2026-09-20"
        ).success
    assert_day_stored_once(example_env, "2026-09-20")
