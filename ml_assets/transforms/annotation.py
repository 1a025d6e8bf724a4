"""Active learning: which events are most worth a person's time, and the batch files to label them.

No Dagster here. Uncertainty sampling: the events whose model score is closest to the decision
threshold, where a label changes the model most. A diversity guard keeps one entity (a customer
on a bad day) from filling the batch; a daily budget caps a person's work.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

LABEL_VALUES = ("positive", "negative")
# OWASP's CSV-injection rule: a cell starting with one of these is a formula to a spreadsheet
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """Text cells that a spreadsheet would run as a formula, prefixed with a single quote."""
    text = [c for c, t in frame.schema.items() if t == pl.String]
    return frame.with_columns(
        pl.when(pl.any_horizontal(pl.col(c).str.starts_with(s) for s in FORMULA_STARTS))
        .then(pl.lit("'") + pl.col(c))
        .otherwise(pl.col(c))
        .alias(c)
        for c in text
    )


def from_spreadsheet(values: pl.Expr) -> pl.Expr:
    """The value as exported before `spreadsheet_safe`: a leading quote before a formula
    character is removed (and nothing else), so ids round-trip."""
    quoted = pl.any_horizontal(values.str.starts_with("'" + s) for s in FORMULA_STARTS)
    return pl.when(quoted).then(values.str.slice(1)).otherwise(values)


def select_for_annotation(
    candidates: pl.DataFrame,
    threshold: float,
    budget: int,
    entity_column: str | None,
    per_entity: int,
) -> pl.DataFrame:
    """The `budget` most uncertain candidates, at most `per_entity` per entity.

    candidates: event_id, score, and the entity column when there is one. Uncertainty is
    1 - |score - threshold| / max(threshold, 1 - threshold): 1 at the threshold, 0 at the far end.
    Ties break by event id, so the same day gives the same batch.
    """
    span = max(threshold, 1 - threshold)
    ranked = candidates.with_columns(
        uncertainty=1 - (pl.col("score") - threshold).abs() / span
    ).sort(["uncertainty", "event_id"], descending=[True, False])
    if entity_column is not None:
        ranked = ranked.filter(pl.int_range(pl.len()).over(entity_column) < per_entity)
    return ranked.head(budget).with_columns(rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int32))


def write_batch(
    batch: pl.DataFrame, shown: list[str], folder: Path, name: str
) -> tuple[Path, Path]:
    """The batch as a CSV to fill in (an empty `label` column) and as Label Studio tasks (JSON).

    CSV: event_id, the shown columns, score, label; a person writes positive or negative in
    `label` and an `annotator` name. Label Studio: one task per event, the event id and its
    columns under `data` (exported back with the annotations), the event id and score under
    `meta`; export the annotations as CSV and name the choice column `label`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = folder / f"{name}.csv", folder / f"{name}.json"
    table = batch.select("event_id", *shown, "score").with_columns(
        label=pl.lit("", pl.String), annotator=pl.lit("", pl.String)
    )
    # written through the path (a local file, or an object in the cluster profile)
    csv_path.write_text(
        spreadsheet_safe(
            table.with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%d %H:%M:%S"))
        ).write_csv()
    )
    # Label Studio exports `data` as CSV too: its values are made safe the same way; `meta`
    # keeps the id as it is for programs
    tasks = [
        {
            "id": i + 1,
            # the id is in `data` too: Label Studio's CSV export carries `data`, not `meta`
            "data": {k: v for k, v in row.items() if k in shown or k == "event_id"},
            "meta": {"event_id": raw, "score": row["score"]},
        }
        for i, (row, raw) in enumerate(
            zip(
                spreadsheet_safe(
                    batch.with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%d %H:%M:%S"))
                ).iter_rows(named=True),
                batch["event_id"].to_list(),
                strict=True,
            )
        )
    ]
    json_path.write_text(json.dumps(tasks, indent=1, default=str))
    return csv_path, json_path


ANNOTATION_SCHEMA = {
    "event_id": pl.String,
    "annotator": pl.String,
    "label": pl.Int8,
    "source_file": pl.String,
}
ANNOTATION_REJECT_SCHEMA = {
    "source_file": pl.String,
    "event_id": pl.String,
    "annotator": pl.String,
    "label": pl.String,
    "reason": pl.String,
}


def validate_annotations(
    rows: pl.DataFrame,
    known_ids: pl.Series,
    keep: tuple[str, ...] = (),
    annotators: list[str] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split completed batch lines into valid annotations and rejected lines with their reason.

    rows: event_id, label, annotator, source_file (as read from the CSVs). A line whose label is
    empty was not annotated and is skipped silently. Rejected, first reason that applies:
    - the event id is not one of `known_ids` (the events of the day its event time says);
    - a label other than positive/negative (case and surrounding spaces do not matter);
    - no annotator;
    - an annotator not in `annotators` (the spec's `annotation.annotators`; None: anyone);
    - the same annotator labelled the event more than once: with the same label the first line
      counts and the repeats are rejected as repeats; with different labels every line of that
      annotator for that event is rejected (which one is meant cannot be known).
    Nothing is dropped without a row in the rejects. Columns named in `keep` are passed through
    to both outputs.
    """
    text = rows.select(
        *keep,
        event_id=from_spreadsheet(pl.col("event_id").cast(pl.String).str.strip_chars()),
        annotator=pl.col("annotator").cast(pl.String).str.strip_chars(),
        label=pl.col("label").cast(pl.String),
        label_text=pl.col("label").cast(pl.String).str.strip_chars().str.to_lowercase(),
        source_file=pl.col("source_file").cast(pl.String),
    ).filter(pl.col("label_text").fill_null("") != "")
    allowed = (
        pl.col("annotator").is_in(annotators) if annotators is not None else pl.lit(True)
    ).fill_null(False)
    # one key per (event, annotator) among the otherwise valid lines
    plausible = (
        pl.col("event_id").is_in(known_ids.implode())
        & pl.col("label_text").is_in(list(LABEL_VALUES))
        & (pl.col("annotator").fill_null("") != "")
        & allowed
    )
    pair = ["event_id", "annotator"]
    text = text.with_columns(_ok=plausible).with_columns(
        _labels=pl.col("label_text").filter("_ok").n_unique().over(pair),
        _nth=pl.int_range(pl.len()).over([*pair, "_ok"], order_by="source_file"),
    )
    reason = (
        pl.when(~pl.col("event_id").is_in(known_ids.implode()))
        .then(
            pl.lit(
                "unknown event id: no event of the day of this line's event time has it "
                "(keep the event_id and event time columns of the batch as exported)"
            )
        )
        .when(~pl.col("label_text").is_in(list(LABEL_VALUES)))
        .then(pl.format("label '{}' is not one of positive, negative", pl.col("label_text")))
        .when(pl.col("annotator").fill_null("") == "")
        .then(pl.lit("no annotator: fill in the annotator column"))
        .when(~allowed)
        .then(
            pl.lit(
                "the annotator is not one of annotation.annotators in the spec: its label does "
                'not count (add the person to the spec, README "Label your data", or correct '
                "the name)"
            )
        )
        .when(pl.col("_labels") > 1)
        .then(
            pl.format(
                "{} gave this event both labels: correct the wrong line; none of them counts until then",
                pl.col("annotator"),
            )
        )
        .when(pl.col("_nth") > 0)
        .then(pl.format("a repeat of {}'s label for this event: counted once", pl.col("annotator")))
        .otherwise(None)
    )
    checked = text.with_columns(reason=reason)
    valid = checked.filter(pl.col("reason").is_null()).select(
        "event_id",
        "annotator",
        (pl.col("label_text") == "positive").cast(pl.Int8).alias("label"),
        "source_file",
        *keep,
    )
    rejects = checked.filter(pl.col("reason").is_not_null()).select(
        *ANNOTATION_REJECT_SCHEMA, *keep
    )
    return valid, rejects


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa of an (items, categories) table of how many raters chose each category.

    Items may have different numbers of raters (at least 2 each); None when undefined (one
    category only, or no item with two ratings).
    """
    counts = np.asarray(counts, dtype=float)
    n = counts.sum(axis=1)
    counts, n = counts[n >= 2], n[n >= 2]
    if not len(counts):
        return None
    p_item = ((counts * (counts - 1)).sum(axis=1) / (n * (n - 1))).mean()
    shares = counts.sum(axis=0) / counts.sum()
    p_chance = (shares**2).sum()
    if p_chance >= 1:
        return None
    return float((p_item - p_chance) / (1 - p_chance))


def agreement(valid: pl.DataFrame) -> dict:
    """How much annotators agree on the events several of them labelled.

    Cohen's kappa for each pair of annotators over the events both labelled (at least 2), and
    Fleiss' kappa over all events with two or more labels.
    """
    from sklearn.metrics import cohen_kappa_score

    multi = valid.filter(pl.len().over("event_id") >= 2)
    pairs = {}
    annotators = sorted(valid["annotator"].unique().to_list())
    for i, a in enumerate(annotators):
        for b in annotators[i + 1 :]:
            both = (
                valid.filter(pl.col("annotator") == a)
                .join(valid.filter(pl.col("annotator") == b), on="event_id")
                .select("label", "label_right")
            )
            if len(both) >= 2:
                kappa = cohen_kappa_score(both["label"], both["label_right"])
                pairs[f"{a} / {b}"] = None if np.isnan(kappa) else float(kappa)
    table = (
        multi.group_by("event_id")
        .agg(negative=(pl.col("label") == 0).sum(), positive=(pl.col("label") == 1).sum())
        .select("negative", "positive")
        .to_numpy()
    )
    return {
        "events_with_several_labels": int(multi["event_id"].n_unique()),
        "cohen_kappa": pairs,
        "fleiss_kappa": fleiss_kappa(table) if len(table) else None,
    }


def resolve_annotations(valid: pl.DataFrame) -> pl.DataFrame:
    """One manual label per event: the majority of its annotators; a tie is a conflict, no label.

    Returns event_id, label (null on a tie), annotators, agreement (share behind the label),
    conflict.
    """
    per_event = valid.group_by("event_id").agg(
        positive=(pl.col("label") == 1).sum(),
        annotators=pl.len(),
    )
    return per_event.select(
        "event_id",
        label=pl.when(pl.col("positive") * 2 > pl.col("annotators"))
        .then(1)
        .when(pl.col("positive") * 2 < pl.col("annotators"))
        .then(0)
        .otherwise(None)
        .cast(pl.Int8),
        annotators=pl.col("annotators").cast(pl.Int32),
        agreement=pl.max_horizontal("positive", pl.col("annotators") - pl.col("positive"))
        / pl.col("annotators"),
        conflict=pl.col("positive") * 2 == pl.col("annotators"),
    ).sort("event_id")
