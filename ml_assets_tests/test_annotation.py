"""The active-learning queue: the most uncertain events, a diversity guard, a budget, batch files."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import polars as pl
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.transforms.annotation import select_for_annotation
from ml_assets_tests.conftest import materialize


def test_the_batch_takes_the_scores_nearest_the_threshold_within_budget_and_guard():
    candidates = pl.DataFrame(
        {
            "event_id": ["a", "b", "c", "d", "e", "f"],
            "score": [0.21, 0.19, 0.9, 0.02, 0.2, 0.25],
            "customer": ["x", "y", "z", "w", "x", "v"],
        }
    )
    batch = select_for_annotation(
        candidates, threshold=0.2, budget=3, entity_column="customer", per_entity=1
    )
    # e (exactly at the threshold) first; a is customer x again, so the guard skips it
    assert batch["event_id"].to_list() == ["e", "b", "f"]
    assert batch["rank"].to_list() == [1, 2, 3]
    assert batch["uncertainty"][0] == pytest.approx(1.0)
    unguarded = select_for_annotation(candidates, 0.2, 3, "customer", per_entity=2)
    assert unguarded["event_id"].to_list() == ["e", "a", "b"]
    assert select_for_annotation(candidates, 0.2, 0, None, 1).is_empty()


@pytest.mark.integration
def test_the_queue_asset_writes_csv_and_label_studio_batches_of_unlabelled_events(example_env):
    defs, instance = build_definitions(), dg.DagsterInstance.ephemeral()
    before_model = "group:ingest or group:clean or group:labels or group:features"
    materialize(defs, before_model, instance, "2026-09-01", "2026-09-20")
    materialize(defs, "group:models", instance)
    materialize(defs, "group:predict", instance, "2026-09-18", "2026-09-20")
    materialize(defs, "key:annotation_queue", instance, "2026-09-18", "2026-09-20")
    folder = example_env / "annotation/batches"
    rows = pl.read_csv(folder / "batch_2026-09-20.csv")
    assert 0 < len(rows) <= 50 and rows["label"].fill_null("").eq("").all()  # to fill in
    assert {"event_id", "amount", "merchant_category", "score", "label", "annotator"} <= set(
        rows.columns
    )
    assert not {"customer_name", "customer_email", "card_number"} & set(
        rows.columns
    )  # no personal data
    tasks = json.loads((folder / "batch_2026-09-20.json").read_text())
    assert [t["meta"]["event_id"] for t in tasks] == rows["event_id"].to_list()
    assert "amount" in tasks[0]["data"]
    con = duckdb.connect(str(example_env / "warehouse.duckdb"), read_only=True)
    try:
        queued_with_truth = con.sql(
            """SELECT count(*) FROM labels.transactions_annotation_queue q
               JOIN labels.transactions l USING (event_id) WHERE l.label_source = 'ground_truth'"""
        ).fetchall()[0][0]
        per_customer = con.sql(
            """SELECT max(n) FROM (SELECT count(*) AS n FROM labels.transactions_annotation_queue q
               JOIN cleaned.transactions c ON c.transaction_id = q.event_id
               GROUP BY CAST(q.event_time AS DATE), c.customer_id)"""
        ).fetchall()[0][0]
    finally:
        con.close()
    assert queued_with_truth == 0, "events with ground truth are never offered"
    assert per_customer == 1, "the diversity guard: one event per customer per batch"
