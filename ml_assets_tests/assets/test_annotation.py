"""The active-learning queue: the most uncertain events, a diversity guard, a budget, batch files."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.example_data import simulate_annotators
from ml_assets.partitions import latest_materialization
from ml_assets.transforms.annotation import (
    FORMULA_STARTS,
    agreement,
    fleiss_kappa,
    resolve_annotations,
    select_for_annotation,
    validate_annotations,
    write_batch,
)
from ml_assets_tests.conftest import Daemon, materialize, requested_days


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


def newest_check(instance, asset: str, check: str):
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey(asset), check)]
    )[dg.AssetCheckKey(dg.AssetKey(asset), check)]
    return record.event.dagster_event.event_specific_data


@pytest.mark.integration
def test_annotation_round_trip_from_queue_to_labels(example_env):
    """Export a batch, three people annotate it, the file sensor picks the completed batches up,
    manual_labels validates and resolves them, labels takes them by precedence, the queue refills."""
    defs, instance = build_definitions(), dg.DagsterInstance.ephemeral()
    before_model = "group:ingest or group:clean or group:labels or group:features"
    materialize(defs, before_model, instance, "2026-09-01", "2026-09-20")
    materialize(defs, "group:models", instance)
    materialize(defs, "group:predict", instance, "2026-09-18", "2026-09-20")
    materialize(defs, "key:annotation_queue", instance, "2026-09-18", "2026-09-20")

    # 1. the exported batch: a CSV to fill in and Label Studio tasks, no personal data
    folder = example_env / "annotation/batches"
    [batch_csv] = folder.glob("batch_2026-09-20_*.csv")
    rows = pl.read_csv(batch_csv)
    assert 0 < len(rows) <= 50 and rows["label"].fill_null("").eq("").all()  # to fill in
    assert {"event_id", "amount", "merchant_category", "score", "label", "annotator"} <= set(
        rows.columns
    )
    assert not {"customer_name", "customer_email", "card_number"} & set(rows.columns)
    tasks = json.loads(batch_csv.with_suffix(".json").read_text())
    assert [t["meta"]["event_id"] for t in tasks] == rows["event_id"].to_list()
    assert "amount" in tasks[0]["data"]
    assert [t["data"]["event_id"] for t in tasks] == rows["event_id"].to_list()
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

    # 2. three annotators fill in the batches of 09-19 and 09-20; one more file has bad lines
    fraud = set(pl.read_csv(example_env / "example_truth/frauds.csv")["transaction_id"])
    completed = example_env / "annotation/completed"
    completed.mkdir(parents=True)
    batches = {
        p.stem: pl.read_csv(p)
        for d in ("19", "20")
        for p in folder.glob(f"batch_2026-09-{d}_*.csv")
    }
    for stem, batch in batches.items():
        people = simulate_annotators(
            batch, fraud, {"ann": 1.0, "ben": 0.9, "cho": 0.8}, 0.8, seed=3
        )
        for who, filled in people.items():
            filled.write_csv(completed / f"{stem}_{who}.csv")
    first = rows.row(0, named=True)
    bad = pl.DataFrame(
        [
            {**first, "event_id": "T-NOT-AN-EVENT", "label": "positive", "annotator": "dan"},
            {**first, "label": "fraud", "annotator": "dan"},
            {**first, "label": "negative", "annotator": ""},
        ]
    )
    bad.write_csv(completed / "batch_2026-09-20_typos_dan.csv")
    # someone who can write to the folder but is not an annotator tries to outvote them: three
    # invented names each label the same events the other way round
    some = next(iter(batches.values())).head(4)
    forged = pl.concat(
        [
            some.with_columns(label=pl.lit("positive"), annotator=pl.lit(name))
            for name in ("mallory", "trent", "eve")
        ]
    )
    forged.write_csv(completed / "batch_2026-09-19_forged.csv")

    # 3. the file sensor of the annotation landing area requests the days of the annotated events
    daemon = Daemon(defs, instance, "raw_annotations_files")
    result = daemon.settle()
    assert requested_days(result) == ["2026-09-19", "2026-09-20"]
    assert [r.asset_selection for r in result.run_requests] == [[dg.AssetKey("raw_annotations")]]
    labels_then = "key:raw_annotations or key:manual_labels or key:labels or key:annotation_queue"
    run = materialize(defs, labels_then, instance, "2026-09-19", "2026-09-20")

    manual = next(
        e.materialization
        for e in run.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("manual_labels")
    ).metadata
    # the forged lines are rejected: not one of annotation.annotators
    assert manual["rejected_lines"].value == 3 + len(forged) and manual["annotators"].value == 3
    assert manual["events_with_several_annotators"].value > 0
    assert set(manual["cohen_kappa_per_pair"].value) == {"ann / ben", "ann / cho", "ben / cho"}
    assert 0 < manual["fleiss_kappa"].value <= 1
    # labels of two recent days only, yet weak labels are judged on every matured day there is
    weak_check = newest_check(instance, "labels", "weak_agrees_with_ground_truth")
    assert weak_check.metadata["compared"].value > 1000, weak_check.description
    valid_check = newest_check(instance, "manual_labels", "annotations_valid")
    assert not valid_check.passed and "batch_2026-09-19_forged.csv" in valid_check.description

    con = duckdb.connect(str(example_env / "warehouse.duckdb"), read_only=True)
    try:
        labels = con.sql(
            """SELECT event_id, label, label_source, confidence, manual_label, source_version
               FROM labels.transactions WHERE event_time >= '2026-09-19'"""
        ).pl()
        rejected = con.sql("SELECT reason FROM labels.transactions_annotations_rejected").pl()
        requeued = con.sql(
            """SELECT count(*) FROM labels.transactions_annotation_queue q
               JOIN labels.transactions l USING (event_id) WHERE l.label_source = 'manual'"""
        ).fetchall()[0][0]
    finally:
        con.close()
    by_manual = labels.filter(pl.col("label_source") == "manual")
    assert len(by_manual) > 0
    not_annotators = rejected.filter(pl.col("reason").str.contains("annotation.annotators"))
    assert len(not_annotators) == len(forged)
    # the majority of ann (always right), ben and cho is mostly the truth
    right = by_manual.with_columns(truth=pl.col("event_id").is_in(list(fraud)).cast(pl.Int8))
    assert (right["label"] == right["truth"]).mean() > 0.9
    manual_run = latest_materialization(instance, "manual_labels", "2026-09-20").run_id
    assert set(by_manual["source_version"]) == {manual_run}
    assert by_manual["confidence"].is_between(0.5, 1.0).all()
    reasons = rejected.filter(~pl.col("reason").str.contains("annotation.annotators"))
    assert sorted(reasons["reason"].str.slice(0, 14).to_list()) == [
        "label 'fraud' ",
        "no annotator: ",
        "unknown event ",
    ]
    # 4. the refilled queue offers none of the events people labelled
    assert requeued == 0
    assert len(list(folder.glob("batch_2026-09-20_*.csv"))) == 2  # the first batch is kept


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
            {"event_id": e, "label": lab, "annotator": who, "source_file": f}
            for e, lab, who, f in rows
        ]
    )


def test_every_validation_case_is_rejected_with_its_reason_and_the_rest_is_kept():
    rows = annotated(
        ("e1", "positive", "ann", "a.csv"),
        ("e2", " Negative ", "ann", "a.csv"),  # case and spaces do not matter
        ("nope", "positive", "ann", "a.csv"),  # unknown id
        ("e3", "fraud", "ann", "a.csv"),  # not a label value
        ("e4", "negative", "", "a.csv"),  # no annotator
        ("e5", "", "ann", "a.csv"),  # not annotated: skipped, not an error
        ("e6", "positive", "ann", "b.csv"),  # the same label twice (a second file): counted once
        ("e6", "POSITIVE", "ann", "a.csv"),
        ("e7", "positive", "ann", "a.csv"),  # both labels from one annotator: neither counts
        ("e7", "negative", "ann", "b.csv"),
        ("e7", "negative", "ben", "a.csv"),  # ...but another annotator's label does
        ("e1", "maybe", "ann", "b.csv"),  # a bad line does not make e1 a contradiction
    )
    valid, rejects = validate_annotations(rows, pl.Series([f"e{i}" for i in range(1, 8)]))
    assert sorted(valid.select("event_id", "annotator", "label").rows()) == [
        ("e1", "ann", 1),
        ("e2", "ann", 0),
        ("e6", "ann", 1),
        ("e7", "ben", 0),
    ]
    assert valid.filter(pl.col("event_id") == "e6")["source_file"].to_list() == ["a.csv"]
    reasons = {(r["event_id"], r["source_file"]): r["reason"] for r in rejects.to_dicts()}
    assert len(rejects) == len(reasons) == 7  # every bad line, once
    assert "unknown event id" in reasons[("nope", "a.csv")]
    assert reasons[("e3", "a.csv")] == "label 'fraud' is not one of positive, negative"
    assert "no annotator" in reasons[("e4", "a.csv")]
    assert "repeat of ann's label" in reasons[("e6", "b.csv")]
    assert "ann gave this event both labels" in reasons[("e7", "a.csv")]
    assert "ann gave this event both labels" in reasons[("e7", "b.csv")]
    assert "is not one of" in reasons[("e1", "b.csv")]
    assert rejects["label"].to_list()[:2] == ["positive", "fraud"]  # the line as written
    # a column to keep (the line's event time) goes through to both sides
    timed = rows.with_columns(t=pl.int_range(pl.len()))
    kept_valid, kept_rejects = validate_annotations(timed, pl.Series(["e1"]), keep=("t",))
    assert kept_valid["t"].to_list() == [0] and "t" in kept_rejects.columns


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


def test_exports_neutralise_formulas_and_the_ids_still_round_trip(tmp_path):
    # OWASP: a cell starting with = + - @ tab or CR runs as a formula in a spreadsheet
    ids = ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "\tT1", "\rT2", "T3"]
    batch = pl.DataFrame(
        {
            "event_id": ids,
            "merchant_category": ["=cmd|' /C calc'!A0", "grocery", "-x", "", "+", "@", "ok"],
            "score": [0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.6],
        }
    )
    csv_path, json_path = write_batch(batch, ["merchant_category"], tmp_path, "batch_x")
    exported = pl.read_csv(csv_path, infer_schema=False)
    cells = [v for c in ("event_id", "merchant_category") for v in exported[c].drop_nulls()]
    assert not [v for v in cells if v.startswith(FORMULA_STARTS)]
    tasks = json.loads(json_path.read_text())
    shown = [v for t in tasks for v in t["data"].values() if isinstance(v, str)]
    assert not [v for v in shown if v.startswith(FORMULA_STARTS)]
    assert [t["meta"]["event_id"] for t in tasks] == ids  # for programs: as it is
    # a person labels the exported file; reading it back finds the original events
    filled = exported.with_columns(
        label=pl.lit("positive"), annotator=pl.lit("ann"), source_file=pl.lit("b.csv")
    )
    valid, rejects = validate_annotations(filled, pl.Series(ids))
    assert rejects.is_empty() and sorted(valid["event_id"].to_list()) == sorted(ids)


def test_a_name_outside_the_spec_s_annotators_does_not_count():
    rows = annotated(
        ("e1", "positive", "ann", "a.csv"),
        ("e1", "negative", "mallory", "x.csv"),
        ("e1", "negative", "trent", "x.csv"),
    )
    valid, rejects = validate_annotations(rows, pl.Series(["e1"]), annotators=["ann", "ben"])
    assert valid.select("annotator", "label").rows() == [("ann", 1)]
    assert sorted(rejects["annotator"].to_list()) == ["mallory", "trent"]
    assert rejects["reason"].str.contains("not one of annotation.annotators").all()
    # unset, anyone counts (the asset warns)
    assert len(validate_annotations(rows, pl.Series(["e1"]))[0]) == 3
