"""Joining late ground truth to the events it refers to. No Dagster here.

An event is `positive` once a label row reports it, `negative` once `maturity_days` have passed
since the event with no positive report (label data observed that far), and `unlabelled`
before: an immature event is never counted as a negative.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

LABEL_SCHEMA = {
    "event_id": pl.String,
    "event_time": pl.Datetime("us"),
    "label": pl.Int8,
    "label_status": pl.String,
    "reported_at": pl.Datetime("us"),
    "label_delay_days": pl.Float64,
}


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
PRECEDENCE = ("ground_truth", "manual", "weak")

RESOLVED_SCHEMA = {
    **LABEL_SCHEMA,
    "label_source": pl.String,
    "confidence": pl.Float64,
    "weak_probability": pl.Float64,
}


def resolve_sources(ground_truth: pl.DataFrame, weak: pl.DataFrame | None) -> pl.DataFrame:
    """One label per event: the ground truth where it has matured, else the weak label.

    ground_truth: LABEL_SCHEMA rows (label null while unlabelled). weak: event_id, votes,
    probability (or None when no labelling functions are declared). A weak label exists only
    where at least one function voted; it is 1 when the label model's probability is at least
    0.5, with confidence max(p, 1 - p). Ground truth has confidence 1. `label_status` stays the
    ground truth's (training picks fully matured days by it).
    """
    frame = ground_truth
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
    has_weak = pl.col("votes").fill_null(0) > 0
    p = pl.col("weak_probability")
    return frame.with_columns(
        label_source=pl.when(pl.col("label").is_not_null())
        .then(pl.lit("ground_truth"))
        .when(has_weak)
        .then(pl.lit("weak"))
        .otherwise(pl.lit(None, pl.String)),
        confidence=pl.when(pl.col("label").is_not_null())
        .then(pl.lit(1.0))
        .when(has_weak)
        .then(pl.max_horizontal(p, 1 - p))
        .otherwise(pl.lit(None, pl.Float64)),
        label=pl.when(pl.col("label").is_not_null())
        .then(pl.col("label"))
        .when(has_weak)
        .then((p >= 0.5).cast(pl.Int8))
        .otherwise(pl.lit(None, pl.Int8))
        .cast(pl.Int8),
        weak_probability=pl.when(has_weak).then(p).otherwise(pl.lit(None, pl.Float64)),
    ).select(list(RESOLVED_SCHEMA))
