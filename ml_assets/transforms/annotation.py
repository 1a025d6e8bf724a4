"""Active learning: which events are most worth a person's time, and the batch files to label them.

No Dagster here. Uncertainty sampling: the events whose model score is closest to the decision
threshold, where a label changes the model most. A diversity guard keeps one entity (a customer
on a bad day) from filling the batch; a daily budget caps a person's work.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

LABEL_VALUES = ("positive", "negative")


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
    `label` and an `annotator` name. Label Studio: one task per event, its columns under `data`,
    the event id and score under `meta`; export the annotations as CSV with the same columns.
    """
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = folder / f"{name}.csv", folder / f"{name}.json"
    table = batch.select("event_id", *shown, "score").with_columns(
        label=pl.lit("", pl.String), annotator=pl.lit("", pl.String)
    )
    table.with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%d %H:%M:%S")).write_csv(csv_path)
    tasks = [
        {
            "id": i + 1,
            "data": {k: v for k, v in row.items() if k in shown},
            "meta": {"event_id": row["event_id"], "score": row["score"]},
        }
        for i, row in enumerate(
            batch.with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%d %H:%M:%S")).iter_rows(
                named=True
            )
        )
    ]
    json_path.write_text(json.dumps(tasks, indent=1, default=str))
    return csv_path, json_path
