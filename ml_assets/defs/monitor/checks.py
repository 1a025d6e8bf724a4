"""Per-partition freshness checks on every daily asset: run with each materialization of the asset
and by a schedule every 10 minutes (a day can become late without anything running)."""

from datetime import UTC, datetime

import dagster as dg

from ml_assets.names import instigator
from ml_assets.spec import DatasetSpec
from ml_assets.transforms.freshness import ended_days, partition_freshness

CHECK_NAME = "partitions_fresh"
CHECK_CRON = "*/10 * * * *"


def now() -> datetime:
    """The check's clock (tests freeze it)."""
    return datetime.now(UTC)


def freshness_check(spec: DatasetSpec, asset: dg.AssetKey) -> dg.AssetChecksDefinition:
    policy, p = spec.freshness, spec.partitions

    @dg.asset_check(
        asset=asset,
        name=CHECK_NAME,
        description=(
            f"Each of the last {policy.lookback_days} days is materialized: a day not materialized "
            f"{policy.warn_after_hours:g} h after it ended warns, after {policy.fail_after_hours:g} h fails. Unlike "
            "the freshness policy (newest materialization of any day), a backfilled old day does not hide a "
            "missing new one. Runs with every materialization of the asset and every 10 minutes."
        ),
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        materialized = context.instance.get_materialized_partitions(asset)
        at = now()
        outcome = partition_freshness(
            ended_days(p.start, p.end, p.timezone, at), set(materialized), at, p.timezone, policy
        )
        return dg.AssetCheckResult(
            passed=outcome.status == "pass",
            severity=dg.AssetCheckSeverity.ERROR
            if outcome.status == "fail"
            else dg.AssetCheckSeverity.WARN,
            description=outcome.description,
            metadata={
                "status": outcome.status,
                "late": dg.MetadataValue.json(outcome.late),
                "gaps": dg.MetadataValue.json(outcome.gaps),
                "checked_days": f"{outcome.checked_days[0]} .. {outcome.checked_days[-1]}"
                if outcome.checked_days
                else "none",
                "evaluated_at": at.isoformat(timespec="seconds"),
            },
        )

    return _check


def build(spec: DatasetSpec, daily: list[dg.AssetKey]) -> dg.Definitions:
    """The freshness checks of `daily`: every daily asset of the dataset's graph that expects
    each day (definitions.py derives the list from the graph)."""
    checks = [freshness_check(spec, asset) for asset in daily]
    # A schedule rather than an automation condition on the checks: a check with its own condition
    # no longer rides along with its asset's runs, and each evaluation would be one more run.
    job = dg.define_asset_job(
        instigator(spec, "partition_freshness_checks"),
        selection=dg.AssetSelection.checks(*checks),
        description="Every daily asset's partitions_fresh check.",
    )
    schedule = dg.ScheduleDefinition(
        name=instigator(spec, "partition_freshness_every_10_minutes"),
        job=job,
        cron_schedule=CHECK_CRON,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Re-evaluates the per-partition freshness checks: a day becomes late with nothing running.",
    )
    return dg.Definitions(asset_checks=checks, jobs=[job], schedules=[schedule])
