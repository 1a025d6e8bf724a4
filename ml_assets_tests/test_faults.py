"""Faults under the real `dagster dev`: a run worker killed with SIGKILL in the middle of its
write transaction, and what the platform does by itself afterwards.

The fault hook (fixtures/fault_hook/sitecustomize.py, on PYTHONPATH of `dagster dev` only) makes
a run worker pause inside the write transaction of a chosen table, so the test can kill it there.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import duckdb
import pytest

from ml_assets.devserver import DagsterDev
from ml_assets_tests.test_daemon import drop, seeded  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAULT_HOOK = Path(__file__).parent / "fixtures/fault_hook"
RECOVERY_TIMEOUT = 240


def paused_pids(control: Path) -> list[int]:
    return [int(p.name.split(".")[1]) for p in control.glob("paused.*")]


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


def test_a_run_killed_in_its_write_recovers_by_itself(seeded, tmp_path):  # noqa: F811
    data, staging, home, env = seeded
    landing = data / "landing"
    control = tmp_path / "faults"
    control.mkdir()
    env = {
        **env,
        "ML_ASSETS_FAULT_DIR": str(control),
        "PYTHONPATH": os.pathsep.join([str(FAULT_HOOK), os.environ.get("PYTHONPATH", "")]),
    }
    dev = DagsterDev(home, env, tmp_path / "dagster_dev.log")
    try:
        dev.start()
        (control / "pause").write_text("raw.transactions")
        drop(staging, landing, "transactions", "2026-09-13")
        pids = dev.wait_for(
            lambda: paused_pids(control), 120, "the ingest run to reach its write transaction"
        )
        # SIGKILL inside the transaction: no handler runs, the pool slot stays claimed
        os.kill(pids[0], signal.SIGKILL)
        killed_at = time.monotonic()
        (control / "pause").unlink()
        # a new file while the dead run still holds the slot: its run must not wait for ever
        drop(staging, landing, "transactions", "2026-09-14")
        dev.wait_for(
            lambda: (
                {"2026-09-13", "2026-09-14"} <= set(dev.materialized_partitions("drift_report"))
            ),
            RECOVERY_TIMEOUT,
            "the retried run and the next sensor run to carry both days to drift_report",
        )
        dev.wait_for(dev.quiet, RECOVERY_TIMEOUT, "every run and backfill to end")
        recovered_in = time.monotonic() - killed_at
        statuses = [r["status"] for r in dev.runs()]
        assert "STARTED" not in statuses and "QUEUED" not in statuses
        assert statuses.count("FAILURE") == 1, statuses  # the killed run only
        for day in ("2026-09-13", "2026-09-14"):
            assert_day_stored_once(data, day)
        print(f"recovered {recovered_in:.0f} s after the kill")
    except Exception:
        print(dev.log_tail(8000))
        raise
    finally:
        (control / "pause").unlink(missing_ok=True)
        dev.stop()
