"""What a range run leaves in the event log does not grow with its length.

Dagster copies a run's metadata onto the materialization event of each of its days, so a
metadata entry listing every day of the run would make a backfill's event log grow with the
square of its length (bench/bench_event_log.py measures the bytes per day).
"""

from __future__ import annotations

import dagster as dg
import pytest
from dagster._serdes import serialize_value

from ml_assets.definitions import build_definitions
from ml_assets_tests.conftest import materialize

pytestmark = pytest.mark.integration

DAILY = "group:ingest or group:clean or group:labels or group:features"


def event_bytes(instance, asset: str, run_id: str) -> list[int]:
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
    return [len(serialize_value(r.event_log_entry)) for r in records if r.run_id == run_id]


def test_a_range_runs_events_do_not_grow_with_its_days(example_env):
    defs = build_definitions()
    with dg.instance_for_test() as instance:
        # the weak labels' class balance needs matured ground truth: the long run comes first
        long = materialize(defs, DAILY, instance, "2026-09-01", "2026-09-15")
        short = materialize(defs, DAILY, instance, "2026-09-16", "2026-09-18")
        day = materialize(defs, DAILY, instance, "2026-09-19")
        for asset in ("raw_transactions", "cleaned_transactions", "features", "labels"):
            three = event_bytes(instance, asset, short.run_id)
            fifteen = event_bytes(instance, asset, long.run_id)
            (one,) = event_bytes(instance, asset, day.run_id)
            assert len(three) == 3 and len(fifteen) == 15
            # the same size per day whether the run held 3 days or 15
            assert max(fifteen) < 1.15 * max(three) + 200, (asset, three, fifteen)
            assert max(fifteen) < 8_000, (asset, fifteen)
            # a one-day run carries the schema and preview that a range leaves out
            assert one > max(fifteen), (asset, one, fifteen)
        metadata = instance.get_latest_materialization_event(
            dg.AssetKey("features")
        ).asset_materialization.metadata
        assert "dagster/column_schema" in metadata and "preview" in metadata
