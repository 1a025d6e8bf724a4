"""Per-partition freshness: is each recent day materialized, and in time?

No Dagster here. Dagster's freshness policy looks at the newest materialization of any partition,
so backfilling an old day makes a daily asset look fresh even when today's day is missing
(dagster-io/dagster discussion 34023). This looks at each of the last days instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from ml_assets.spec import PartitionFreshness


@dataclass
class FreshnessOutcome:
    status: str  # "pass", "warn" or "fail"
    description: str
    late: list[str] = field(default_factory=list)  # the newest day, missing past its deadline
    gaps: list[str] = field(default_factory=list)  # older days of the lookback, missing
    checked_days: list[str] = field(default_factory=list)


def ended_days(start: date, end: date | None, timezone: str, now: datetime) -> list[date]:
    """The partition days that exist at `now`: a day exists once it has ended."""
    tz = ZoneInfo(timezone)
    last = (now.astimezone(tz) - timedelta(days=1)).date()
    if end is not None:
        last = min(last, end - timedelta(days=1))
    return [start + timedelta(days=i) for i in range((last - start).days + 1)]


def partition_freshness(
    days: list[date],
    materialized: set[str],
    now: datetime,
    timezone: str,
    policy: PartitionFreshness,
) -> FreshnessOutcome:
    """Check the last `policy.lookback_days` of `days` (the partitions that exist at `now`).

    A day not materialized `warn_after_hours` after it ended warns, after `fail_after_hours`
    fails; the newest such day is reported as late, older ones as gaps.
    """
    recent = days[-policy.lookback_days :]
    if not recent:
        return FreshnessOutcome("pass", "no partition has ended yet")
    tz = ZoneInfo(timezone)
    status, late, gaps = "pass", [], []
    for day in recent:
        if day.isoformat() in materialized:
            continue
        ended = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
        if now < ended + timedelta(hours=policy.warn_after_hours):
            continue  # not due yet
        overdue = now >= ended + timedelta(hours=policy.fail_after_hours)
        (late if day == recent[-1] else gaps).append(day.isoformat())
        if overdue:
            status = "fail"
        elif status == "pass":
            status = "warn"
    checked = [d.isoformat() for d in recent]
    if status == "pass":
        description = f"every day of {checked[0]} .. {checked[-1]} is materialized or not due yet"
    else:
        parts = []
        if late:
            parts.append(f"the newest day {late[0]} is late")
        if gaps:
            parts.append(f"{len(gaps)} missing day(s) in the last {len(recent)}: {', '.join(gaps)}")
        description = (
            "; ".join(parts)
            + f" (a day is due {policy.warn_after_hours:g} h after it ends, overdue after "
            f"{policy.fail_after_hours:g} h). Fix: drop the missing files, or materialize the days"
        )
    return FreshnessOutcome(status, description, late, gaps, checked)
