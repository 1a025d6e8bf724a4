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
