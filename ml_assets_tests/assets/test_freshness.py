"""Per-partition freshness, with frozen time: late days and gaps that Dagster's policy cannot see."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.defs.monitor import checks
from ml_assets.spec import PartitionFreshness
from ml_assets.transforms.freshness import ended_days, partition_freshness
from ml_assets_tests.conftest import materialize

POLICY = PartitionFreshness(warn_after_hours=2, fail_after_hours=6, lookback_days=7)
START = date(2026, 9, 1)


def at(day: str, hour: float) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(hours=hour)


def check(materialized: set[str], now: datetime, end: date | None = None):
    days = ended_days(START, end, "UTC", now)
    return partition_freshness(days, materialized, now, "UTC", POLICY)


def all_until(last: str) -> set[str]:
    n = (date.fromisoformat(last) - START).days + 1
    return {(START + timedelta(days=i)).isoformat() for i in range(n)}


def test_a_day_is_due_a_few_hours_after_it_ends():
    have = all_until("2026-09-19")  # 09-20 ended at midnight of the 21st
    assert check(have, at("2026-09-21", 1)).status == "pass"
    warned = check(have, at("2026-09-21", 3))
    assert (warned.status, warned.late) == ("warn", ["2026-09-20"])
    failed = check(have, at("2026-09-21", 7))
    assert (failed.status, failed.late) == ("fail", ["2026-09-20"])
    assert "the newest day 2026-09-20 is late" in failed.description
    assert check(have | {"2026-09-20"}, at("2026-09-21", 7)).status == "pass"


def test_a_backfilled_old_day_does_not_hide_a_missing_new_one():
    # Dagster's freshness policy sees a materialization a minute old and says fresh; per day it is not
    have = all_until("2026-09-19") - {"2026-09-20"}
    outcome = check(have, at("2026-09-22", 7))
    assert outcome.status == "fail" and outcome.late == ["2026-09-21"]
    assert outcome.gaps == ["2026-09-20"]


def test_a_gap_in_the_lookback_fails_and_one_older_is_out_of_sight():
    have = all_until("2026-09-20") - {"2026-09-16"}
    gap = check(have, at("2026-09-21", 1))
    assert (gap.status, gap.gaps) == ("fail", ["2026-09-16"])
    old = all_until("2026-09-20") - {"2026-09-10"}
    assert check(old, at("2026-09-21", 1)).status == "pass"


def test_partitions_with_an_end_are_checked_up_to_their_last_day():
    end = date(2026, 10, 31)
    outcome = check(all_until("2026-10-30"), at("2026-11-23", 12), end=end)
    assert outcome.status == "pass" and outcome.checked_days[-1] == "2026-10-30"
    assert check(all_until("2026-10-29"), at("2026-11-23", 12), end=end).late == ["2026-10-30"]


@pytest.mark.integration
def test_the_check_runs_with_the_asset_and_reports_the_late_day(example_env, monkeypatch):
    monkeypatch.setattr(checks, "now", lambda: at("2026-09-20", 7))  # 09-19 ended 7 h ago
    defs, instance = build_definitions(), dg.DagsterInstance.ephemeral()
    # the daemon runs the check after each update (its automation condition); here, in the same run
    raw = dg.AssetSelection.assets("raw_transactions")
    raw_and_checks = raw | dg.AssetSelection.checks_for_assets("raw_transactions")
    result = materialize(defs, raw_and_checks, instance, "2026-09-01", "2026-09-18")
    (evaluation,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == checks.CHECK_NAME
    ]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["late"].data == ["2026-09-19"]
    result = materialize(defs, raw_and_checks, instance, "2026-09-19")
    (evaluation,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == checks.CHECK_NAME
    ]
    assert evaluation.passed, evaluation.description
