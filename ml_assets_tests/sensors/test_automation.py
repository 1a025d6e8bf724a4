"""Declarative automation: a new or late raw day flows to the drift report and the realised
performance, and nothing else runs."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import duckdb
import polars as pl
import pytest

from ml_assets.definitions import build_definitions
from ml_assets_tests.conftest import materialize

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RAW = "key:raw_transactions or key:raw_chargebacks"


def ranges(keys: set[str]) -> list[tuple[str, str]]:
    """Contiguous day ranges of a set of partition keys."""
    days = sorted(date.fromisoformat(k) for k in keys)
    out, first, prev = [], days[0], days[0]
    for d in days[1:]:
        if d != prev + timedelta(days=1):
            out.append((first.isoformat(), prev.isoformat()))
            first = d
        prev = d
    out.append((first.isoformat(), prev.isoformat()))
    return out


class Automation:
    """The daemon's automation sensor, played in the test: evaluate, run what was requested, repeat."""

    def __init__(self, defs, instance):
        self.defs, self.instance, self.cursor = defs, instance, None
        self.evaluate()  # the first evaluation only records the starting state

    def evaluate(self):
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.cursor
        )
        self.cursor = result.cursor
        return result

    def run_until_quiet(self, max_ticks: int = 12) -> dict[str, set[str]]:
        """Every (asset, partition) the conditions requested until they request nothing more."""
        ran: dict[str, set[str]] = {}
        for _ in range(max_ticks):
            result = self.evaluate()
            if not result.total_requested:
                return ran
            # one tick may request a parent and its child: run them in the graph's order
            graph = self.defs.resolve_asset_graph()
            for key in graph.toposorted_asset_keys:
                asset = graph.get(key)
                requested = result.get_requested_partitions(key)
                if not result.get_num_requested(key):
                    continue
                name = key.to_user_string()
                if asset.partitions_def is None:
                    materialize(self.defs, f"key:{name}", self.instance)
                    ran.setdefault(name, set()).add("(all)")
                    continue
                for first, last in ranges(set(requested)):
                    materialize(self.defs, f"key:{name}", self.instance, first, last)
                ran.setdefault(name, set()).update(requested)
        raise AssertionError(f"automation still requesting after {max_ticks} ticks: {ran}")


def days(first: str, last: str) -> set[str]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return {(a + timedelta(days=i)).isoformat() for i in range((b - a).days + 1)}


def test_new_days_flow_to_the_drift_report_and_a_late_file_reruns_only_what_reads_its_day(
    example_env,
):
    defs, instance = build_definitions(), dg.DagsterInstance.ephemeral()
    automation = Automation(defs, instance)
    all_days = days("2026-09-01", "2026-09-20")

    # the file sensors ingested every day: cleaning, labels and features follow by themselves
    materialize(defs, RAW, instance, "2026-09-01", "2026-09-20")
    ran = automation.run_until_quiet()
    assert ran == {
        "cleaned_transactions": all_days,
        "ground_truth_labels": all_days,
        "labels": all_days,
        "manual_labels": all_days,  # nobody annotated yet: empty days, not missing ones
        "features": all_days,
        "weak_labels": all_days,
    }, "predictions wait for a model; training is the retraining sensor's call"

    materialize(defs, "group:models", instance)
    ran = automation.run_until_quiet()
    assert ran == {
        "predictions": all_days,
        "drift_report": all_days,
        "model_performance": all_days,
        "monitoring_trend": {"(all)"},
        "annotation_queue": all_days,
    }
    assert automation.run_until_quiet() == {}

    # a late file for 09-10: the day, and the days whose 7-day features read it, nothing else
    materialize(defs, "key:raw_transactions", instance, "2026-09-10")
    ran = automation.run_until_quiet()
    reads_day = days("2026-09-10", "2026-09-17")
    assert ran == {
        "cleaned_transactions": {"2026-09-10"},
        "ground_truth_labels": {"2026-09-10"},
        "manual_labels": {"2026-09-10"},
        "labels": reads_day,
        "features": reads_day,
        "weak_labels": reads_day,
        "predictions": reads_day,
        "drift_report": reads_day,
        "model_performance": reads_day,
        "monitoring_trend": {"(all)"},
        "annotation_queue": reads_day,
    }

    # late chargebacks reported on 09-15 re-open the labels of the events they may refer to
    materialize(defs, "key:raw_chargebacks", instance, "2026-09-15")
    ran = automation.run_until_quiet()
    reopened = days("2026-09-10", "2026-09-15")
    assert ran == {
        "ground_truth_labels": reopened,
        "weak_labels": reopened,
        "labels": reopened,
        "annotation_queue": reopened,  # events that gained ground truth leave the queue
        "model_performance": reopened,  # judged on the ground truth known now
        "monitoring_trend": {"(all)"},
    }

    # a completed annotation batch re-opens the days of the events it labels, up to the queue
    con = duckdb.connect(str(example_env / "warehouse.duckdb"), read_only=True)
    try:
        events = con.sql(
            "SELECT transaction_id AS event_id, event_time FROM cleaned.transactions "
            "WHERE CAST(event_time AS DATE) = '2026-09-12' LIMIT 5"
        ).pl()
    finally:
        con.close()
    completed = example_env / "annotation/completed"
    completed.mkdir(parents=True)
    events.with_columns(
        pl.col("event_time").dt.strftime("%Y-%m-%d %H:%M:%S"),  # as the batch was exported
        label=pl.lit("positive"),
        annotator=pl.lit("ann"),
    ).write_csv(completed / "batch_2026-09-12_ann.csv")
    materialize(defs, "key:raw_annotations", instance, "2026-09-12")
    ran = automation.run_until_quiet()
    assert ran == {
        "manual_labels": {"2026-09-12"},
        "labels": {"2026-09-12"},
        "annotation_queue": {"2026-09-12"},  # the batch refills with events nobody labelled
        # it follows labels (its ground truth did not change, the figures stay the same)
        "model_performance": {"2026-09-12"},
        "monitoring_trend": {"(all)"},
    }, "a manual label changes no feature, prediction or drift report"

    # a retrained model scores what comes next; it does not rewrite every old day
    materialize(defs, "group:models", instance)
    assert automation.run_until_quiet() == {}
