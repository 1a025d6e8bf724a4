"""Late labels: positive when reported, negative only after maturity, unlabelled before."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import duckdb
import numpy as np
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


def test_precedence_ground_truth_then_manual_then_weak_with_source_confidence_and_version():
    from datetime import date

    from ml_assets.transforms.labels import LABEL_SCHEMA, resolve_sources

    t0, t1 = datetime(2026, 1, 1, 10), datetime(2026, 1, 2, 10)
    ids = ["gt_pos", "gt_neg", "manual", "tie", "weak_only", "no_vote", "weak_low"]
    truth = pl.DataFrame(
        {
            "event_id": ids,
            "event_time": [t0, t0, t1, t1, t1, t1, t1],
            "label": [1, 0, None, None, None, None, None],
            "label_status": ["positive", "negative"] + ["unlabelled"] * 5,
            "reported_at": [t0] + [None] * 6,
            "label_delay_days": [0.0] + [None] * 6,
        },
        schema=LABEL_SCHEMA,
    )
    manual = pl.DataFrame(
        {
            "event_id": ["gt_neg", "manual", "tie"],
            "label": [1, 0, None],  # gt_neg: an annotator said positive, the ground truth wins
            "agreement": [1.0, 2 / 3, 0.5],
        },
        schema_overrides={"label": pl.Int8},
    )
    weak = pl.DataFrame(
        {
            "event_id": ids,
            "votes": [2, 1, 1, 1, 1, 0, 1],
            "probability": [0.1, 0.9, 0.9, 0.6, 0.8, 0.02, 0.3],
        },
        schema_overrides={"votes": pl.Int16},
    )
    versions = pl.DataFrame(
        {
            "label_source": ["ground_truth", "manual", "weak", "weak"],
            "day": [date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 1), date(2026, 1, 2)],
            "source_version": ["run-gt-1", "run-manual-2", "run-weak-1", "run-weak-2"],
        }
    )
    out = {
        r["event_id"]: r
        for r in resolve_sources(truth, manual, weak, versions).iter_rows(named=True)
    }
    # ground truth wins even where an annotator or the weak label disagrees
    assert (out["gt_pos"]["label"], out["gt_pos"]["label_source"]) == (1, "ground_truth")
    assert (out["gt_neg"]["label"], out["gt_neg"]["confidence"]) == (0, 1.0)
    assert out["gt_neg"]["manual_label"] == 1  # kept beside, for the contradiction check
    assert out["gt_pos"]["source_version"] == "run-gt-1"
    # a manual label beats the weak one; its confidence is the annotators' agreement
    assert (out["manual"]["label"], out["manual"]["label_source"]) == (0, "manual")
    assert out["manual"]["confidence"] == pytest.approx(2 / 3)
    assert out["manual"]["source_version"] == "run-manual-2"
    assert out["manual"]["weak_probability"] == pytest.approx(0.9)
    # an annotators' tie is no manual label: the weak label stands
    assert (out["tie"]["label"], out["tie"]["label_source"]) == (1, "weak")
    assert (out["weak_only"]["label"], out["weak_only"]["label_source"]) == (1, "weak")
    assert out["weak_only"]["confidence"] == pytest.approx(0.8)
    assert out["weak_only"]["source_version"] == "run-weak-2"
    assert (out["weak_low"]["label"], out["weak_low"]["confidence"]) == (0, pytest.approx(0.7))
    # no function voted: no label, whatever the prior-only probability says
    assert out["no_vote"]["label"] is None and out["no_vote"]["label_source"] is None
    assert out["no_vote"]["source_version"] is None
    # the ground truth's status is kept, so training still sees which days have matured
    assert out["weak_only"]["label_status"] == "unlabelled"
    only_truth = resolve_sources(truth)
    assert only_truth["label_source"].to_list() == ["ground_truth"] * 2 + [None] * 5


def resolved_day(day: int, n: int, **columns) -> pl.DataFrame:
    """n resolved label rows of 2026-01-<day> (RESOLVED_SCHEMA), ground truth matured."""
    from ml_assets.transforms.labels import RESOLVED_SCHEMA

    base = {
        "event_id": [f"d{day}-{i}" for i in range(n)],
        "event_time": [datetime(2026, 1, day, 12)] * n,
        "label": [0] * n,
        "label_status": ["negative"] * n,
        "reported_at": [None] * n,
        "label_delay_days": [None] * n,
        "label_source": ["ground_truth"] * n,
        "confidence": [1.0] * n,
        "manual_label": [None] * n,
        "weak_probability": [None] * n,
        "source_version": ["run"] * n,
    }
    return pl.DataFrame({**base, **columns}, schema=RESOLVED_SCHEMA)


NO_PAIRS = pl.DataFrame(schema={"truth": pl.Int8, "weak": pl.Int8, "n": pl.Int64})
NO_MANUAL = pl.DataFrame(schema={"event_id": pl.String, "label": pl.Int8, "manual_label": pl.Int8})


def outcomes_of(frame=None, weak_pairs=NO_PAIRS, manual_pairs=NO_MANUAL, **quality):
    from ml_assets.spec import LabelQuality
    from ml_assets.transforms.labels import label_checks

    frame = resolved_day(1, 10) if frame is None else frame
    return {
        o.name: o for o in label_checks(frame, weak_pairs, manual_pairs, LabelQuality(**quality))
    }


def test_label_checks_coverage_and_class_balance_name_the_days_that_fail():
    n = 100
    good = resolved_day(
        1, n, label=[1] * 5 + [0] * 95, label_status=["positive"] * 5 + ["negative"] * 95
    )
    # day 2: only 30 of 100 events labelled (weak), none of them positive
    thin = resolved_day(
        2,
        n,
        label=[0] * 30 + [None] * 70,
        label_status=["unlabelled"] * n,
        label_source=["weak"] * 30 + [None] * 70,
    )
    out = outcomes_of(pl.concat([good, thin]), min_coverage=0.5, min_positive_rate=0.01)
    assert (
        not out["label_coverage"].passed and "2026-01-02 30.0%" in out["label_coverage"].description
    )
    assert "2026-01-01" not in out["label_coverage"].description
    assert (
        not out["class_balance"].passed and "2026-01-02 0.00%" in out["class_balance"].description
    )
    assert out["class_balance"].metadata["positive_rate_by_day"]["2026-01-01"] == 0.05
    fine = outcomes_of(good, min_coverage=0.5, min_positive_rate=0.01, max_positive_rate=0.1)
    assert fine["label_coverage"].passed and fine["class_balance"].passed
    too_many = outcomes_of(good, max_positive_rate=0.04)
    assert not too_many["class_balance"].passed


def pairs(truth: list[int], weak: list[int]) -> pl.DataFrame:
    frame = pl.DataFrame({"truth": truth, "weak": weak}, schema={"truth": pl.Int8, "weak": pl.Int8})
    return frame.group_by("truth", "weak").agg(n=pl.len().cast(pl.Int64))


def test_weak_labels_agreement_with_ground_truth_is_cohens_kappa_from_the_counts():
    from sklearn.metrics import cohen_kappa_score

    from ml_assets.transforms.labels import kappa_from_counts

    rng = np.random.default_rng(4)
    truth = (rng.random(500) < 0.1).astype(int)
    weak = np.where(rng.random(500) < 0.8, truth, 1 - truth)
    kappa, accuracy = kappa_from_counts(pairs(truth.tolist(), weak.tolist()))
    assert kappa == pytest.approx(cohen_kappa_score(truth, weak))
    assert accuracy == pytest.approx((truth == weak).mean())

    good = outcomes_of(weak_pairs=pairs(truth.tolist(), truth.tolist()), min_weak_kappa=0.5)
    check = good["weak_agrees_with_ground_truth"]
    assert check.passed and check.metadata == {"compared": 500, "kappa": 1.0, "accuracy": 1.0}
    blind = rng.integers(0, 2, 500).tolist()  # a coin: agreement by chance only
    bad = outcomes_of(weak_pairs=pairs(truth.tolist(), blind), min_weak_kappa=0.5)
    assert not bad["weak_agrees_with_ground_truth"].passed
    assert "below label_quality.min_weak_kappa" in bad["weak_agrees_with_ground_truth"].description
    # nothing matured yet, or one class only: nothing to judge
    one_class = outcomes_of(weak_pairs=pairs([0] * 50, [1] * 50), min_weak_kappa=0.5)
    assert one_class["weak_agrees_with_ground_truth"].passed
    assert "too few" in one_class["weak_agrees_with_ground_truth"].description


def test_annotations_contradicting_ground_truth_are_counted_and_a_query_lists_them():
    compared = pl.DataFrame(
        {"event_id": ["a", "b", "c", "d"], "label": [1, 0, 0, 1], "manual_label": [1, 1, 0, 0]},
        schema_overrides={"label": pl.Int8, "manual_label": pl.Int8},
    )
    out = outcomes_of(manual_pairs=compared, max_manual_contradiction_rate=0.25)[
        "annotations_agree_with_ground_truth"
    ]
    assert not out.passed and out.description.startswith("2 of 4 manually labelled events")
    assert out.metadata["contradictions"] == 2
    # the events are listed by a query on the labels table, never by id in the event log
    assert not {"a", "b", "c", "d"} & set(str(out.metadata).replace("'", " ").split())
    assert "manual_label <> label" in out.metadata["list_them"]
    assert outcomes_of(manual_pairs=compared, max_manual_contradiction_rate=0.5)[
        "annotations_agree_with_ground_truth"
    ].passed
    none_yet = outcomes_of()["annotations_agree_with_ground_truth"]
    assert none_yet.passed and "no manually labelled event" in none_yet.description
