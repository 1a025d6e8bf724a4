"""Labels: the active-learning queue, the events of each day most worth a person's time."""

import hashlib
from datetime import timedelta

import dagster as dg
import polars as pl

from ml_assets.metadata import (
    check_results,
    check_specs,
    checked_write,
    newest_days_markdown,
    table_metadata,
)
from ml_assets.names import (
    ANNOTATION_QUEUE_ASSET,
    LABELS_ASSET,
    PREDICTIONS_ASSET,
    Tables,
    asset_key,
    key_prefix,
)
from ml_assets.partitions import day_start, days_in, time_window
from ml_assets.policies import daily_asset_args, follow_parents
from ml_assets.settings import Settings
from ml_assets.spec import DatasetSpec
from ml_assets.storage.interfaces import FileStore, ModelRegistry, Warehouse
from ml_assets.transforms.annotation import select_for_annotation, write_batch
from ml_assets.transforms.quality import table_checks


def batch_name(day, event_ids: pl.Series) -> str:
    digest = hashlib.sha256("\n".join(sorted(event_ids.to_list())).encode()).hexdigest()[:8]
    return f"batch_{day.isoformat()}_{digest}"


def write_batches(
    candidates: pl.DataFrame,
    start,
    end,
    threshold: float,
    version: str,
    cfg,
    entity: str | None,
    shown: list[str],
    files: FileStore,
) -> tuple[pl.DataFrame, list[dict]]:
    """Each day's batch of the most uncertain candidates, written as CSV and Label Studio tasks;
    returns the queue rows of all days and what was written."""
    batches, written = [], []
    for day in days_in(start, end):
        of_day = candidates.filter(
            pl.col("event_time").is_between(
                day_start(day), day_start(day) + timedelta(days=1), closed="left"
            )
        )
        batch = select_for_annotation(of_day, threshold, cfg.daily_budget, entity, cfg.per_entity)
        # named by its events: a re-run that picks the same events rewrites the same file, a new
        # pick is a new file, so a completed batch dropped back never overwrites an earlier one
        name = batch_name(day, batch["event_id"])
        csv_path, json_path = write_batch(
            batch, shown, files.folder(*cfg.batch_folder.split("/")), name
        )
        written.append(
            {
                "day": day.isoformat(),
                "events": len(batch),
                "csv": str(csv_path),
                "label_studio": str(json_path),
            }
        )
        batches.append(
            batch.select(
                "event_id",
                "event_time",
                "score",
                "uncertainty",
                "rank",
                batch_file=pl.lit(csv_path.name),
                model_version=pl.lit(version),
            )
        )
    return pl.concat(batches), written  # days_in gives at least one day


def build(spec: DatasetSpec, settings: Settings) -> dg.Definitions:
    t, cfg = Tables(spec), spec.annotation
    if cfg.daily_budget == 0:
        # no queue: no asset and no batch files (completed annotations are still read)
        return dg.Definitions()
    entity = spec.entity_column
    shown = [spec.event_time_column, *spec.model_inputs]

    @dg.asset(
        name=ANNOTATION_QUEUE_ASSET,
        description=(
            f"Each day, the {cfg.daily_budget} events without ground truth or a manual label whose score from the current model is "
            "closest to its alert threshold (uncertainty sampling: where a label teaches the model most), at most "
            f"{cfg.per_entity} per {entity or 'event'} (a diversity guard). Written as an annotation batch under "
            f"data/{cfg.batch_folder} as batch_<day>_<digest of its events>: a CSV to fill in (label = positive or negative, annotator) and the same "
            "events as Label Studio tasks (JSON). Completed batches go back into "
            f"data/{cfg.landing.path} (README: 'Label your data'); once their labels are in, the day's batch is "
            "refilled with the next events. Budget and guard: `annotation` in the spec."
        ),
        group_name="annotation",
        key_prefix=key_prefix(spec),
        kinds={"duckdb", "polars", "csv"},
        **daily_asset_args(spec, settings),
        deps=[
            asset_key(spec, PREDICTIONS_ASSET),
            asset_key(spec, LABELS_ASSET),
            asset_key(spec, spec.cleaned_asset),
        ],
        automation_condition=follow_parents(),
        check_specs=check_specs(asset_key(spec, ANNOTATION_QUEUE_ASSET)),
        metadata={"table": t.annotation_queue, "batch_folder": cfg.batch_folder},
    )
    def annotation_queue(
        context: dg.AssetExecutionContext,
        warehouse: dg.ResourceParam[Warehouse],
        files: dg.ResourceParam[FileStore],
        registry: dg.ResourceParam[ModelRegistry],
    ) -> dg.MaterializeResult:
        start, end = time_window(context)
        models = registry.for_dataset(spec)
        version = models.current_version()
        threshold = float(models.load_card(version)["metrics"]["threshold"])
        entity_select = f", CAST(c.{entity} AS VARCHAR) AS {entity}" if entity else ""
        shown_select = ", ".join(f"c.{col}" for col in shown)
        candidates = warehouse.read(
            f"""SELECT p.event_id, p.event_time, p.score{entity_select}, {shown_select}
                FROM {t.predictions} p
                JOIN {t.labels} l ON l.event_id = p.event_id
                JOIN {t.cleaned} c ON CAST(c.{spec.id_column} AS VARCHAR) = p.event_id
                WHERE p.event_time >= ? AND p.event_time < ?
                  -- ground truth or annotators' labels already: not worth a person's time again
                  AND coalesce(l.label_source, 'none') NOT IN ('ground_truth', 'manual')""",
            [start, end],
        )
        frame, written = write_batches(
            candidates, start, end, threshold, version, cfg, entity, shown, files
        )
        outcomes = table_checks(
            frame,
            {"event_id": pl.String, "uncertainty": pl.Float64},
            {"event_id": 0.0},
            "event_id",
            {"uncertainty": (0.0, 1.0)},
        )
        checked_write(
            warehouse,
            ANNOTATION_QUEUE_ASSET,
            outcomes,
            [(t.annotation_queue, frame, "event_time", start, end)],
        )
        return dg.MaterializeResult(
            metadata=table_metadata(
                frame,
                hide=spec.identifying_columns,
                threshold=dg.MetadataValue.float(threshold),
                model_version=version,
                batches=dg.MetadataValue.md(
                    newest_days_markdown(pl.DataFrame(written), cfg.batch_folder)
                    if written
                    else "(no batch)"
                ),
                candidates=dg.MetadataValue.int(len(candidates)),
            ),
            check_results=check_results(outcomes),
        )

    return dg.Definitions(assets=[annotation_queue])
