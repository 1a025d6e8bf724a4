"""Late labels: positive when reported, negative only after maturity, unlabelled before."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import duckdb
import polars as pl
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.transforms.labels import resolve_labels
from ml_assets_tests.conftest import materialize

EVENTS = pl.DataFrame(
    {
        "event_id": ["a", "b", "c"],
        "event_time": [datetime(2026, 1, 1, 10), datetime(2026, 1, 1, 11), datetime(2026, 1, 5, 9)],
    }
)


def rows(*items):
    return pl.DataFrame(
        [{"event_id": e, "reported_at": r, "label": 1} for e, r in items],
        schema={"event_id": pl.String, "reported_at": pl.Datetime("us"), "label": pl.Int8},
    )


def test_positive_negative_and_unlabelled():
    out, stats = resolve_labels(
        EVENTS,
        rows(("a", datetime(2026, 1, 3))),
        maturity_days=3,
        observed_until=datetime(2026, 1, 6),
    )
    status = dict(zip(out["event_id"], out["label_status"], strict=True))
    assert status == {"a": "positive", "b": "negative", "c": "unlabelled"}
    assert out.filter(pl.col("event_id") == "c")["label"][0] is None
    assert out.filter(pl.col("event_id") == "a")["label_delay_days"][0] == pytest.approx(
        14 / 24 + 1
    )
    assert stats == {
        "events": 3,
        "positive": 1,
        "negative": 1,
        "unlabelled": 1,
        "labels_for_unknown_events": 0,
        "labels_reported_before_event": 0,
    }


def test_nothing_observed_means_nothing_negative():
    out, _ = resolve_labels(EVENTS, rows(), maturity_days=3, observed_until=None)
    assert set(out["label_status"]) == {"unlabelled"}


def test_reports_before_the_event_and_unknown_ids_are_counted_not_used():
    out, stats = resolve_labels(
        EVENTS,
        rows(("c", datetime(2026, 1, 4)), ("zzz", datetime(2026, 1, 4))),
        maturity_days=1,
        observed_until=datetime(2026, 1, 9),
    )
    assert dict(zip(out["event_id"], out["label_status"], strict=True))["c"] == "negative"
    assert stats["labels_reported_before_event"] == 1 and stats["labels_for_unknown_events"] == 1


@pytest.mark.integration
def test_late_label_file_updates_an_earlier_partition(example_env):
    defs = build_definitions()
    chargebacks = example_env / "landing/chargebacks"
    held_back = {p.name: p.read_bytes() for p in chargebacks.glob("chargebacks_2026-09-0[4-9].csv")}
    for name in held_back:
        (chargebacks / name).unlink()
    with dg.DagsterInstance.ephemeral() as instance:
        materialize(defs, "group:ingest or group:clean", instance, "2026-09-01", "2026-09-03")
        materialize(defs, "key:ground_truth_labels", instance, "2026-09-01")
        con = duckdb.connect(str(example_env / "warehouse.duckdb"), read_only=True)
        early = con.sql(
            "SELECT label_status, count(*) FROM labels.transactions_ground_truth GROUP BY 1"
        ).fetchall()
        con.close()
        # chargebacks of days 4..9 arrive late: day 1 now has its full maturity window (5 days)
        for name, body in held_back.items():
            (chargebacks / name).write_bytes(body)
        materialize(defs, "raw_chargebacks", instance, "2026-09-04", "2026-09-09")
        materialize(defs, "key:ground_truth_labels", instance, "2026-09-01")
    con = duckdb.connect(str(example_env / "warehouse.duckdb"), read_only=True)
    late = dict(
        con.sql(
            "SELECT label_status, count(*) FROM labels.transactions_ground_truth GROUP BY 1"
        ).fetchall()
    )
    con.close()
    assert set(dict(early)) <= {"positive", "unlabelled"}  # nothing negative before maturity
    assert late.get("unlabelled", 0) == 0 and late["negative"] > 0
    assert late["positive"] > dict(early).get("positive", 0)


def test_precedence_ground_truth_then_weak_with_source_and_confidence():
    from ml_assets.transforms.labels import LABEL_SCHEMA, resolve_sources

    t0 = datetime(2026, 1, 1)
    truth = pl.DataFrame(
        {
            "event_id": ["gt_pos", "gt_neg", "weak_only", "no_vote", "weak_low"],
            "event_time": [t0] * 5,
            "label": [1, 0, None, None, None],
            "label_status": ["positive", "negative", "unlabelled", "unlabelled", "unlabelled"],
            "reported_at": [t0, None, None, None, None],
            "label_delay_days": [0.0, None, None, None, None],
        },
        schema=LABEL_SCHEMA,
    )
    weak = pl.DataFrame(
        {
            "event_id": ["gt_pos", "gt_neg", "weak_only", "no_vote", "weak_low"],
            "votes": [2, 1, 1, 0, 1],
            "probability": [0.1, 0.9, 0.8, 0.02, 0.3],
        },
        schema_overrides={"votes": pl.Int16},
    )
    out = {r["event_id"]: r for r in resolve_sources(truth, weak).iter_rows(named=True)}
    # ground truth wins even where the weak label disagrees
    assert (out["gt_pos"]["label"], out["gt_pos"]["label_source"]) == (1, "ground_truth")
    assert (out["gt_neg"]["label"], out["gt_neg"]["confidence"]) == (0, 1.0)
    assert (out["weak_only"]["label"], out["weak_only"]["label_source"]) == (1, "weak")
    assert out["weak_only"]["confidence"] == pytest.approx(0.8)
    assert (out["weak_low"]["label"], out["weak_low"]["confidence"]) == (0, pytest.approx(0.7))
    # no function voted: no label, whatever the prior-only probability says
    assert out["no_vote"]["label"] is None and out["no_vote"]["label_source"] is None
    # the ground truth's status is kept, so training still sees which days have matured
    assert out["weak_only"]["label_status"] == "unlabelled"
    without_weak = resolve_sources(truth, None)
    assert without_weak["label_source"].to_list() == [
        "ground_truth",
        "ground_truth",
        None,
        None,
        None,
    ]
