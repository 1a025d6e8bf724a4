"""The active-learning queue: the most uncertain events, a diversity guard, a budget, batch files."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.transforms.annotation import (
    agreement,
    fleiss_kappa,
    resolve_annotations,
    select_for_annotation,
    validate_annotations,
)
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


def test_fleiss_kappa_matches_the_textbook_example():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories, kappa 0.210
    table = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa(table) == pytest.approx(0.210, abs=0.001)
    assert fleiss_kappa(np.array([[2, 0], [2, 0]])) is None  # one category only: undefined
    assert fleiss_kappa(np.array([[1, 0]])) is None  # nobody rated twice


def annotated(*rows):
    return pl.DataFrame(
        [
            {"event_id": e, "label": lab, "annotator": who, "line": i + 2}
            for i, (e, lab, who) in enumerate(rows)
        ]
    )


def test_every_validation_case_is_rejected_with_its_reason_and_the_rest_is_kept():
    rows = annotated(
        ("e1", "positive", "ann"),
        ("e2", " Negative ", "ann"),  # case and spaces do not matter
        ("nope", "positive", "ann"),  # unknown id
        ("e3", "fraud", "ann"),  # not a label value
        ("e4", "negative", ""),  # no annotator
        ("e5", "", "ann"),  # not annotated: skipped, not an error
        ("e1", "negative", "ann"),  # the same annotator again: the last line wins
    )
    valid, rejects = validate_annotations(
        rows, pl.Series(["e1", "e2", "e3", "e4", "e5"]), "batch_2026-09-20.csv"
    )
    assert sorted(valid.select("event_id", "label").rows()) == [("e1", 0), ("e2", 0)]
    reasons = dict(zip(rejects["line"], rejects["reason"], strict=True))
    assert set(reasons) == {2, 4, 5, 6}
    assert "again further down" in reasons[2]
    assert "unknown event id" in reasons[4]
    assert reasons[5] == "label fraud is not one of positive, negative"
    assert "no annotator" in reasons[6]
    assert rejects["source_file"].unique().to_list() == ["batch_2026-09-20.csv"]


def test_several_annotators_agreement_and_the_majority_rule():
    valid = pl.DataFrame(
        {
            "event_id": ["a", "a", "a", "b", "b", "c", "c", "d", "d"],
            "annotator": ["x", "y", "z", "x", "y", "x", "y", "x", "y"],
            "label": [1, 1, 0, 0, 1, 1, 1, 0, 0],
        },
        schema_overrides={"label": pl.Int8},
    )
    resolved = {r["event_id"]: r for r in resolve_annotations(valid).iter_rows(named=True)}
    assert (resolved["a"]["label"], resolved["a"]["agreement"]) == (1, pytest.approx(2 / 3))
    assert resolved["b"]["label"] is None and resolved["b"]["conflict"] is True  # a tie
    assert (resolved["c"]["label"], resolved["d"]["label"]) == (1, 0)
    stats = agreement(valid)
    assert stats["events_with_several_labels"] == 4
    # x and y agree on a, c, d and not on b: observed 0.75, expected 0.5 -> kappa 0.5
    assert stats["cohen_kappa"]["x / y"] == pytest.approx(0.5)
    assert -1 <= stats["fleiss_kappa"] <= 1
