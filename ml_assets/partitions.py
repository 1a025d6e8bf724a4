"""Partitions, defined once from the spec and imported by every stage."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import dagster as dg

from ml_assets.spec import DatasetSpec


def daily_partitions(spec: DatasetSpec) -> dg.DailyPartitionsDefinition:
    p = spec.partitions
    return dg.DailyPartitionsDefinition(
        start_date=p.start.isoformat(),
        end_date=p.end.isoformat() if p.end else None,
        timezone=p.timezone,
    )


def previous_days(days: int) -> dg.TimeWindowPartitionMapping:
    """Day D reads days D-`days` .. D (the first days simply have less history)."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-days, end_offset=0, allow_nonexistent_upstream_partitions=True
    )


def following_days(days: int) -> dg.TimeWindowPartitionMapping:
    """Day D reads days D .. D+`days` (late labels reported after the event)."""
    return dg.TimeWindowPartitionMapping(
        start_offset=0, end_offset=days, allow_nonexistent_upstream_partitions=True
    )


def latest_materialization(
    instance: dg.DagsterInstance, asset: dg.AssetKey | str, partition_key: str
):
    """The newest materialization record of one partition of `asset`, or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey.from_coercible(asset), asset_partitions=[partition_key]
        ),
        limit=1,
    ).records
    return records[0] if records else None


def time_window(context: dg.AssetExecutionContext) -> tuple[datetime, datetime]:
    """The [start, end) of the partitions this run covers, as naive UTC datetimes.

    A single-run backfill covers many days: use the window, never `context.partition_key`.
    """
    window = context.partition_time_window
    return window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)


def days_in(start: datetime, end: datetime) -> list[date]:
    out, day = [], start.date()
    while datetime.combine(day, datetime.min.time()) < end:
        out.append(day)
        day += timedelta(days=1)
    return out


def day_start(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())
