"""Joining late ground truth to the events it refers to. No Dagster here.

An event is `positive` once a label row reports it, `negative` once `maturity_days` have passed
since the event with no positive report (label data observed that far), and `unlabelled`
before: an immature event is never counted as a negative.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from ml_assets.spec import LabelQuality
from ml_assets.transforms.quality import CheckOutcome

LABEL_SCHEMA = {
    "event_id": pl.String,
    "event_time": pl.Datetime("us"),
    "label": pl.Int8,
    "label_status": pl.String,
    "reported_at": pl.Datetime("us"),
    "label_delay_days": pl.Float64,
}


# {labels}: the labels table; the contradicting events, listed where they live
CONTRADICTIONS_SQL = (
    "SELECT event_id, event_time, label, manual_label FROM {labels} "
    "WHERE label_source = 'ground_truth' AND manual_label IS NOT NULL AND manual_label <> label"
)


def resolve_labels(
    events: pl.DataFrame,
    label_rows: pl.DataFrame,
    maturity_days: int,
    observed_until: datetime | None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """events: event_id, event_time. label_rows: event_id, reported_at, label (1/0).

    `observed_until` is how far the label files have been read (exclusive); None when none were.
    """
    valid = label_rows.join(events.select("event_id", "event_time"), on="event_id", how="inner")
    # a report dated before its event is an error in the source, not a label
    early = valid.filter(pl.col("reported_at") < pl.col("event_time"))
    valid = valid.filter(pl.col("reported_at") >= pl.col("event_time"))
    per_event = valid.group_by("event_id").agg(
        label=pl.col("label").max().cast(pl.Int8),
        reported_at=pl.col("reported_at").filter(pl.col("label") == pl.col("label").max()).min(),
    )
    maturity = timedelta(days=maturity_days)
    matured = (
        pl.col("event_time") + maturity <= pl.lit(observed_until, pl.Datetime("us"))
        if observed_until is not None
        else pl.lit(False)
    )
    out = events.join(per_event, on="event_id", how="left").with_columns(
        label_status=pl.when(pl.col("label") == 1)
        .then(pl.lit("positive"))
        .when(pl.col("label") == 0)
        .then(pl.lit("negative"))
        .when(matured)
        .then(pl.lit("negative"))
        .otherwise(pl.lit("unlabelled")),
    )
    out = out.with_columns(
        label=pl.when(pl.col("label_status") == "positive")
        .then(1)
        .when(pl.col("label_status") == "negative")
        .then(0)
        .otherwise(None)
        .cast(pl.Int8),
        label_delay_days=(
            (pl.col("reported_at") - pl.col("event_time")).dt.total_seconds() / 86400.0
        ),
    ).select(list(LABEL_SCHEMA))
    stats = {
        "events": len(out),
        "positive": int((out["label_status"] == "positive").sum()),
        "negative": int((out["label_status"] == "negative").sum()),
        "unlabelled": int((out["label_status"] == "unlabelled").sum()),
        "labels_for_unknown_events": len(label_rows)
        - len(label_rows.join(events.select("event_id"), on="event_id", how="semi")),
        "labels_reported_before_event": len(early),
    }
    return out, stats


# Which source wins when several label an event: the first one in this order that has a label.
# Ground truth is what happened; a person who looked at the event beats the labelling rules.
PRECEDENCE = ("ground_truth", "manual", "weak")

RESOLVED_SCHEMA = {
    **LABEL_SCHEMA,
    "label_source": pl.String,
    "confidence": pl.Float64,
    "manual_label": pl.Int8,
    "weak_probability": pl.Float64,
    "source_version": pl.String,
}


def resolve_sources(
    ground_truth: pl.DataFrame,
    manual: pl.DataFrame | None = None,
    weak: pl.DataFrame | None = None,
    versions: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One label per event, the first source in PRECEDENCE that has one.

    ground_truth: LABEL_SCHEMA rows (label null while unlabelled); confidence 1.
    manual: event_id, label (null on an annotators' tie), agreement; confidence = agreement,
    the share of the event's annotators behind the label.
    weak: event_id, votes, probability; a weak label exists only where at least one function
    voted, 1 when the label model's probability is at least 0.5, confidence max(p, 1 - p).
    versions: label_source, day (Date), source_version: what produced each source's rows of a
    day (the run that materialized it); joined per event to the source that won.
    `label_status` stays the ground truth's (training picks fully matured days by it), and the
    manual label and weak probability are kept beside the winner, so the checks can compare
    sources where several exist.
    """
    frame = ground_truth
    if manual is not None:
        frame = frame.join(
            manual.select("event_id", manual_label="label", manual_agreement="agreement"),
            on="event_id",
            how="left",
        )
    else:
        frame = frame.with_columns(
            manual_label=pl.lit(None, pl.Int8), manual_agreement=pl.lit(None, pl.Float64)
        )
    if weak is not None:
        frame = frame.join(
            weak.select("event_id", "votes", weak_probability=pl.col("probability")),
            on="event_id",
            how="left",
        )
    else:
        frame = frame.with_columns(
            votes=pl.lit(None, pl.Int16), weak_probability=pl.lit(None, pl.Float64)
        )
    has_truth = pl.col("label").is_not_null()
    has_manual = pl.col("manual_label").is_not_null()
    p = pl.col("weak_probability")
    # no probability while the label model waits for a class balance: no weak label
    has_weak = (pl.col("votes").fill_null(0) > 0) & p.is_not_null()
    resolved = frame.with_columns(
        label_source=pl.when(has_truth)
        .then(pl.lit("ground_truth"))
        .when(has_manual)
        .then(pl.lit("manual"))
        .when(has_weak)
        .then(pl.lit("weak"))
        .otherwise(pl.lit(None, pl.String)),
        confidence=pl.when(has_truth)
        .then(pl.lit(1.0))
        .when(has_manual)
        .then(pl.col("manual_agreement"))
        .when(has_weak)
        .then(pl.max_horizontal(p, 1 - p))
        .otherwise(pl.lit(None, pl.Float64)),
        label=pl.when(has_truth)
        .then(pl.col("label"))
        .when(has_manual)
        .then(pl.col("manual_label"))
        .when(has_weak)
        .then((p >= 0.5).cast(pl.Int8))
        .otherwise(pl.lit(None, pl.Int8))
        .cast(pl.Int8),
        weak_probability=pl.when(has_weak).then(p).otherwise(pl.lit(None, pl.Float64)),
        _day=pl.col("event_time").dt.date(),
    )
    if versions is not None:
        resolved = resolved.join(
            versions.select("label_source", _day="day", source_version="source_version"),
            on=["label_source", "_day"],
            how="left",
        )
    else:
        resolved = resolved.with_columns(source_version=pl.lit(None, pl.String))
    return resolved.select(list(RESOLVED_SCHEMA))


LABEL_CHECKS = {
    "label_coverage": "Each day, at least `label_quality.min_coverage` of the events have a label from some source.",
    "class_balance": "Each day, the positive share of the labelled events is within "
    "[`min_positive_rate`, `max_positive_rate`] of `label_quality`.",
    "weak_agrees_with_ground_truth": "On the recent days whose ground truth has matured (the last label maturity + "
    "`weak_labels.fit_days` days), the weak labels agree with it (Cohen's kappa at least `label_quality.min_weak_kappa`).",
    "annotations_agree_with_ground_truth": "Of the manually labelled events whose ground truth is known, at most "
    "`label_quality.max_manual_contradiction_rate` contradict it (each one listed).",
}
# fewer events than this with both labels: too few to judge an agreement
MIN_COMPARED = 20


def kappa_from_counts(pairs: pl.DataFrame) -> tuple[float, float]:
    """Cohen's kappa and accuracy of two 0/1 raters from counts: truth, weak, n (one row per pair)."""
    n = pairs["n"].sum()
    agree = pairs.filter(pl.col("truth") == pl.col("weak"))["n"].sum() / n
    chance = sum(
        pairs.filter(pl.col("truth") == c)["n"].sum() * pairs.filter(pl.col("weak") == c)["n"].sum()
        for c in (0, 1)
    ) / (n * n)
    kappa = (agree - chance) / (1 - chance) if chance < 1 else 0.0
    return float(kappa), float(agree)


def label_checks(
    frame: pl.DataFrame,
    weak_pairs: pl.DataFrame,
    manual_pairs: pl.DataFrame,
    quality: LabelQuality,
    labels_table: str = "labels",
) -> list[CheckOutcome]:
    """The label checks, as CheckOutcomes (nothing blocking: a label problem needs a person to
    look, not a stopped pipeline). `quality` is the spec's `label_quality` block.

    frame: the resolved labels (RESOLVED_SCHEMA) of the days just materialized: coverage and
    class balance per day. weak_pairs: truth, weak, n: how often each (ground truth, weak label)
    pair occurs over the recent events whose ground truth has matured. manual_pairs:
    event_id, label (ground truth), manual_label of every event with both, whole table.
    """
    per_day = (
        frame.group_by(day=pl.col("event_time").dt.date())
        .agg(
            events=pl.len(),
            labelled=pl.col("label").is_not_null().sum(),
            positive=(pl.col("label") == 1).sum(),
        )
        .with_columns(
            coverage=pl.col("labelled") / pl.col("events"),
            positive_rate=pl.col("positive") / pl.col("labelled"),
        )
        .sort("day")
    )
    out = []

    low = per_day.filter(pl.col("coverage") < quality.min_coverage)
    out.append(
        CheckOutcome(
            "label_coverage",
            low.is_empty(),
            "every day has labels for at least "
            f"{quality.min_coverage:.0%} of its events (lowest {per_day['coverage'].min():.1%})"
            if low.is_empty() and len(per_day)
            else "no events in the run's days: nothing to label"
            if per_day.is_empty()
            else f"{len(low)} day(s) below {quality.min_coverage:.0%} labelled: "
            + ", ".join(f"{d} {c:.1%}" for d, c in low.select("day", "coverage").head(10).rows())
            + ". Fix: annotate more of those days, add labelling functions, or lower label_quality.min_coverage",
            {
                "coverage_by_day": {
                    str(d): round(c, 4) for d, c in per_day.select("day", "coverage").rows()
                }
            },
        )
    )

    rated = per_day.filter(pl.col("labelled") > 0)
    off = rated.filter(
        (pl.col("positive_rate") < quality.min_positive_rate)
        | (pl.col("positive_rate") > quality.max_positive_rate)
    )
    out.append(
        CheckOutcome(
            "class_balance",
            off.is_empty(),
            f"the positive share is within [{quality.min_positive_rate:.2%}, {quality.max_positive_rate:.2%}] every day"
            if off.is_empty()
            else f"{len(off)} day(s) with a positive share outside [{quality.min_positive_rate:.2%}, "
            f"{quality.max_positive_rate:.2%}]: "
            + ", ".join(
                f"{d} {r:.2%}" for d, r in off.select("day", "positive_rate").head(10).rows()
            )
            + ". A labelling function or an annotator may be voting one way too often",
            {
                "positive_rate_by_day": {
                    str(d): round(r, 5) for d, r in rated.select("day", "positive_rate").rows()
                }
            },
        )
    )

    compared = int(weak_pairs["n"].sum())
    truth_classes = weak_pairs.filter(pl.col("n") > 0)["truth"].n_unique()
    if compared < MIN_COMPARED or truth_classes < 2:
        out.append(
            CheckOutcome(
                "weak_agrees_with_ground_truth",
                True,
                f"{compared} weakly labelled event(s) with matured ground truth: too few (or one class only) to compare yet",
                {"compared": compared},
            )
        )
    else:
        kappa, accuracy = kappa_from_counts(weak_pairs)
        out.append(
            CheckOutcome(
                "weak_agrees_with_ground_truth",
                kappa >= quality.min_weak_kappa,
                f"weak labels vs matured ground truth on {compared} events: kappa {kappa:.3f}, accuracy {accuracy:.1%}"
                + (
                    ""
                    if kappa >= quality.min_weak_kappa
                    else f", below label_quality.min_weak_kappa {quality.min_weak_kappa}. Fix: check the labelling "
                    "functions' empirical accuracy in the weak_labels metadata"
                ),
                {"compared": compared, "kappa": round(kappa, 4), "accuracy": round(accuracy, 4)},
            )
        )

    checked = manual_pairs
    wrong = checked.filter(pl.col("manual_label") != pl.col("label"))
    rate = len(wrong) / len(checked) if len(checked) else 0.0
    out.append(
        CheckOutcome(
            "annotations_agree_with_ground_truth",
            rate <= quality.max_manual_contradiction_rate,
            (
                f"{len(wrong)} of {len(checked)} manually labelled events contradict their ground truth ({rate:.1%})"
                if len(checked)
                else "no manually labelled event has ground truth yet"
            )
            + (
                ""
                if rate <= quality.max_manual_contradiction_rate
                else f", more than label_quality.max_manual_contradiction_rate {quality.max_manual_contradiction_rate:.0%}. "
                "Fix: review the annotation guidelines with the annotators of these events (manual_labels.source_files)"
            ),
            {
                "compared": len(checked),
                "contradictions": len(wrong),
                # the events themselves are read from the table, not kept in the event log: an
                # id in metadata outlives the person's erasure
                "list_them": CONTRADICTIONS_SQL.format(labels=labels_table),
            },
        )
    )
    return out
