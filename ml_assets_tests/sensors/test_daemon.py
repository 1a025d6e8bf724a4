"""The lifecycle runs itself: the real `dagster dev` (webserver + daemon) ingests dropped files and
automation carries them to the drift report; a bad file is quarantined; a restart loses nothing.

Everything is read back over Dagster's GraphQL API, as the UI would show it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ml_assets.definitions import build_definitions
from ml_assets.defs.monitor.checks import CHECK_NAME as FRESHNESS_CHECK
from ml_assets.demo import run_graph
from ml_assets.devserver import DagsterDev
from ml_assets.names import QUARANTINE_CHECK
from ml_assets_tests.conftest import demo_instance_home

# `make test` runs two pytest workers (pytest-xdist, --dist loadgroup): this module's tests stay
# on one worker, one after the other, while the fault tests run on the other one
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("daemon")]

SEEDED_DAYS = [f"2026-09-{d:02d}" for d in range(1, 13)]
DAILY = ["raw_transactions", "cleaned_transactions", "features", "predictions", "drift_report"]
FLOW_TIMEOUT = 240


def daemon_spec(tmp_path: Path) -> Path:
    """The small test spec, with a settle time a test can catch and no retraining during the test."""
    spec = tmp_path / "transactions_small.yaml"
    raw = yaml.safe_load(spec.read_text())
    raw["landing"]["settle_seconds"] = 3
    raw["labels"]["landing"]["settle_seconds"] = 3
    raw["retraining"] = {"cooldown_hours": 6}
    out = tmp_path / "transactions_daemon.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def drop(staging: Path, landing: Path, kind: str, day: str) -> None:
    """Copy a file in the way writers should: to a hidden name, then rename into place."""
    name = f"{kind}_{day}.csv"
    tmp = landing / kind / f".{name}.part"
    shutil.copy(staging / kind / name, tmp)
    tmp.rename(landing / kind / name)


def sensor_runs(dev: DagsterDev) -> list[dict]:
    """Runs a sensor launched (the file sensors, retraining, automation), not the seeding ones."""
    return [r for r in dev.runs() if any(t["key"] == "dagster/sensor_name" for t in r["tags"])]


@pytest.fixture
def seeded(example_env, tmp_path, monkeypatch):
    """Twelve days already through the whole graph (as after `make demo`), eight more held back."""
    data = example_env
    spec = daemon_spec(tmp_path)
    monkeypatch.setenv("ML_ASSETS_SPEC", str(spec))
    staging = tmp_path / "staging"
    for kind in ("transactions", "chargebacks"):
        (staging / kind).mkdir(parents=True)
        for path in (data / "landing" / kind).iterdir():
            if not any(day in path.name for day in SEEDED_DAYS):
                path.rename(staging / kind / path.name)
    home = demo_instance_home(tmp_path)
    defs = build_definitions()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        results = run_graph(defs, instance, SEEDED_DAYS[0], SEEDED_DAYS[-1], log=lambda _: None)
        assert all(r.success for r in results)
    env = {
        "ML_ASSETS_SPEC": str(spec),
        "ML_ASSETS_DATA_DIR": str(data),
        "ML_ASSETS_SENSOR_INTERVAL_SECONDS": "2",
    }
    return data, staging, home, env


def test_dropped_files_flow_to_the_drift_report_through_the_daemon(seeded, tmp_path):
    data, staging, home, env = seeded
    landing = data / "landing"
    dev = DagsterDev(home, env, tmp_path / "dagster_dev.log")
    try:
        dev.start()
        # the sensors' first ticks find only files that were ingested already (same checksums).
        # Decided files stay in the cursor for about a minute, then the watermark passes them: on
        # a loaded machine the first look may come after that, so either counts.
        newest = max(
            max(p.stat().st_mtime_ns, p.stat().st_ctime_ns)
            for p in (landing / "transactions").iterdir()
        )

        def seeded_files_decided() -> bool:
            cursor = dev.sensor_cursor("raw_transactions_files")
            if not cursor:
                return False
            state = json.loads(cursor)
            return bool(state["decided"]) or state["watermark_ns"] >= newest

        dev.wait_for(
            seeded_files_decided, 120, "the transactions sensor to decide the seeded files"
        )
        assert sensor_runs(dev) == [], "files already ingested were requested again"

        # --- a new day, and a bad file in the same tick ---------------------------------------
        bad = landing / "transactions/transactions_2026-09-13_extra.csv"
        bad.write_text("id,when\n1,2026-09-13 10:00:00\n")
        drop(staging, landing, "transactions", "2026-09-13")
        drop(staging, landing, "chargebacks", "2026-09-13")
        dev.wait_for(
            lambda: "2026-09-13" in dev.materialized_partitions("drift_report"),
            FLOW_TIMEOUT,
            "2026-09-13 to reach drift_report",
        )
        assert not bad.exists(), "the bad file should have been moved out of the landing folder"
        quarantined = data / "quarantine/transactions" / bad.name
        reason = json.loads(quarantined.with_name(bad.name + ".reason.json").read_text())
        assert "missing column(s)" in reason["reason"] and reason["moved"] is True
        evaluations = [
            e["evaluation"]
            for e in dev.check_executions("raw_transactions", QUARANTINE_CHECK)
            if e["evaluation"] is not None
        ]
        assert evaluations and evaluations[0]["success"] is False
        assert bad.name in evaluations[0]["description"]

        # --- a restart while a file is settling; more files land while it is down -------------
        # the day's last steps are the realised performance, then the trend over all days: the
        # flow is over when the trend is newer than the day's performance and nothing is queued
        dev.wait_for(
            lambda: "2026-09-13" in dev.materialized_partitions("model_performance"),
            FLOW_TIMEOUT,
            "2026-09-13 to reach model_performance",
        )
        dev.wait_for(
            lambda: (
                dev.newest_materialization_ms("monitoring_trend")
                >= dev.newest_materialization_ms("model_performance")
                and dev.quiet()
            ),
            FLOW_TIMEOUT,
            "the runs and backfills of 2026-09-13 to end",
        )
        drop(staging, landing, "transactions", "2026-09-14")
        dev.wait_for(
            lambda: (
                "transactions_2026-09-14.csv"
                in json.loads(dev.sensor_cursor("raw_transactions_files"))["settling"]
            ),
            30,
            "the sensor to see the 2026-09-14 file",
            every=0.1,
        )
        dev.stop()
        drop(staging, landing, "chargebacks", "2026-09-14")
        for kind in ("transactions", "chargebacks"):
            drop(staging, landing, kind, "2026-09-15")
        dev.start()
        dev.wait_for(
            lambda: (
                {"2026-09-14", "2026-09-15"} <= set(dev.materialized_partitions("drift_report"))
            ),
            FLOW_TIMEOUT,
            "2026-09-14 and 2026-09-15 to reach drift_report after the restart",
        )

        # --- every file exactly once, every day through the graph ------------------------------
        expected = {day: 1 for day in [*SEEDED_DAYS, "2026-09-13", "2026-09-14", "2026-09-15"]}
        dev.wait_for(
            lambda: dev.materialized_partitions("raw_chargebacks") == expected,
            FLOW_TIMEOUT,
            "each chargebacks file ingested exactly once",
        )
        assert dev.materialized_partitions("raw_transactions") == expected
        for asset in DAILY:
            assert set(dev.materialized_partitions(asset)) == set(expected), asset
        run_keys = [
            t["value"] for r in sensor_runs(dev) for t in r["tags"] if t["key"] == "dagster/run_key"
        ]
        assert len(run_keys) == len(set(run_keys)), "a run key was launched twice"
        failed = dev.runs(["FAILURE"])
        assert not failed, f"failed runs: {failed}"

        # --- what the UI shows: freshness by Dagster's policy and per partition -----------------
        nodes = dev.wait_for(
            lambda: (
                n
                if (n := dev.asset_nodes())["drift_report"]["freshnessStatusInfo"][
                    "freshnessStatus"
                ]
                == "HEALTHY"
                else None
            ),
            90,
            "drift_report's freshness to be HEALTHY",
        )
        assert nodes["raw_transactions"]["partitionStats"]["numMaterialized"] == 15
        # the newest materialization is minutes old, so the policy says fresh; per partition, the
        # spec's last days (16..20) never arrived, and the check says so
        # (the schedule may be running the check right now: take the newest finished evaluation)
        latest = next(
            e["evaluation"]
            for e in dev.check_executions("raw_transactions", FRESHNESS_CHECK)
            if e["evaluation"] is not None
        )
        assert latest["success"] is False and "2026-09-20 is late" in latest["description"]
    except Exception:
        print(dev.log_tail(6000))
        raise
    finally:
        dev.stop()
