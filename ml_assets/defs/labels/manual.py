"""Labels: manual annotations, the completed batches validated and resolved to one label per event."""

import dagster as dg
import polars as pl

from ml_assets.metadata import (
    check_results,
    check_specs,
    checked_write,
    markdown_table,
    table_metadata,
)
from ml_assets.names import (
    ANNOTATION_ID_COLUMN,
    MANUAL_LABELS_ASSET,
    RAW_ANNOTATIONS_ASSET,
    Tables,
    asset_key,
    key_prefix,
)
from ml_assets.partitions import time_window
from ml_assets.policies import daily_asset_args, follow_parents
from ml_assets.queries import window_events
from ml_assets.settings import Settings
from ml_assets.spec import DatasetSpec
from ml_assets.storage.interfaces import Warehouse
from ml_assets.transforms.annotation import (
    agreement,
    resolve_annotations,
    validate_annotations,
)
from ml_assets.transforms.ingest import SOURCE_FILE_COLUMN
from ml_assets.transforms.quality import table_checks

MANUAL_SCHEMA = {
    "event_id": pl.String,
    "event_time": pl.Datetime("us"),
    "label": pl.Int8,
    "annotators": pl.Int32,
    "agreement": pl.Float64,
    "conflict": pl.Boolean,
    "source_files": pl.String,
}
VALID_CHECK = "annotations_valid"


LINE_SCHEMA = {
    "event_id": pl.String,
    "label": pl.String,
    "annotator": pl.String,
    "source_file": pl.String,
    "event_time": pl.Datetime("us"),
}


def annotation_lines(warehouse: Warehouse, table: str, time_col: str, start, end) -> pl.DataFrame:
    """The annotated lines of the completed batches for the events of [start, end)."""
    lines = warehouse.read_if_exists(
        table,
        f"SELECT {ANNOTATION_ID_COLUMN} AS event_id, label, annotator, {SOURCE_FILE_COLUMN} AS source_file, "
        f"CAST({time_col} AS TIMESTAMP) AS event_time FROM {table} "
        f"WHERE {time_col} >= ? AND {time_col} < ?",
        [start, end],
    )
    return pl.DataFrame(schema=LINE_SCHEMA) if lines is None else lines


def resolve_per_event(valid: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """One label per event of the window by majority of its annotators, with the files it came from."""
    return (
        resolve_annotations(valid)
        .join(events, on="event_id", how="inner")
        .join(
            valid.group_by("event_id").agg(
                source_files=pl.col("source_file").unique().sort().str.join(",")
            ),
            on="event_id",
            how="left",
        )
        .select(list(MANUAL_SCHEMA))
        .cast(MANUAL_SCHEMA)
    )


def agreement_metadata(valid: pl.DataFrame, rejects: pl.DataFrame, resolved: pl.DataFrame) -> dict:
    """Lines, annotators, labels, conflicts and agreement between annotators (kappas)."""
    stats = agreement(valid)
    return {
        "annotated_lines": dg.MetadataValue.int(len(valid) + len(rejects)),
        "valid_annotations": dg.MetadataValue.int(len(valid)),
        "rejected_lines": dg.MetadataValue.int(len(rejects)),
        "annotators": dg.MetadataValue.int(valid["annotator"].n_unique()),
        "labelled_events": dg.MetadataValue.int(int(resolved["label"].is_not_null().sum())),
        "positive": dg.MetadataValue.int(int((resolved["label"] == 1).sum())),
        "conflicts": dg.MetadataValue.int(int(resolved["conflict"].sum())),
        "events_with_several_annotators": dg.MetadataValue.int(stats["events_with_several_labels"]),
        "fleiss_kappa": dg.MetadataValue.float(stats["fleiss_kappa"])
        if stats["fleiss_kappa"] is not None
        else None,
        "cohen_kappa_per_pair": dg.MetadataValue.json(stats["cohen_kappa"]),
        "conflict_rule": "majority of the event's annotators; a tie gives no label",
    }


def validity_result(rejects: pl.DataFrame, folder: str) -> dg.AssetCheckResult:
    """The annotations_valid check: a warning naming the first rejected lines and the fix."""
    reasons = (
        rejects.with_columns(reason=pl.col("reason").str.replace(r"^(\w+) gave", "annotator gave"))
        .group_by("reason")
        .len()
        .sort("len", descending=True)
    )
    return dg.AssetCheckResult(
        check_name=VALID_CHECK,
        passed=rejects.is_empty(),
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "every annotated line is valid"
            if rejects.is_empty()
            else f"{len(rejects)} annotated line(s) rejected, e.g. "
            + "; ".join(
                f"{r['source_file']} event {r['event_id']}: {r['reason']}"
                for r in rejects.head(3).iter_rows(named=True)
            )
            + f". Fix the lines and drop the corrected file into data/{folder} under the same name"
        ),
        metadata={
            "rejected_lines": len(rejects),
            "reasons": dg.MetadataValue.md(markdown_table(reasons)),
        },
    )


def build(spec: DatasetSpec, settings: Settings) -> dg.Definitions:
    t = Tables(spec)
    time_col = spec.event_time_column
    folder = spec.annotation.landing.path

    @dg.asset(
        name=MANUAL_LABELS_ASSET,
        description=(
            f"Manual labels: the completed annotation batches of {RAW_ANNOTATIONS_ASSET} validated against the events of "
            f"{spec.cleaned_asset} (unknown event ids, labels other than positive/negative, lines without annotator, "
            "an annotator labelling an event twice: each rejected line is kept with its reason), then one label per "
            "event by majority of its annotators. A tie is a conflict and gives no label (the event goes back to the "
            "queue for another annotator). Agreement between annotators (Cohen's kappa per pair, Fleiss' kappa) is "
            "metadata; `agreement` per event is the share of its annotators behind the label."
        ),
        group_name="labels",
        key_prefix=key_prefix(spec),
        kinds={"duckdb", "polars"},
        **daily_asset_args(spec, settings),
        deps=[asset_key(spec, RAW_ANNOTATIONS_ASSET), asset_key(spec, spec.cleaned_asset)],
        # a day nobody annotated has no raw_annotations partition: that must not hold it back
        automation_condition=follow_parents(
            ignore_missing_of=(asset_key(spec, RAW_ANNOTATIONS_ASSET),)
        ),
        check_specs=[
            *check_specs(asset_key(spec, MANUAL_LABELS_ASSET)),
            dg.AssetCheckSpec(
                name=VALID_CHECK,
                asset=asset_key(spec, MANUAL_LABELS_ASSET),
                description=(
                    "Every annotated line of the completed batches is valid; a failure lists the rejected lines "
                    f"with their reason (all of them in {t.annotations_rejected})."
                ),
            ),
        ],
        metadata={"table": t.manual_labels, "annotations_table": t.annotations},
    )
    def manual_labels(
        context: dg.AssetExecutionContext, warehouse: dg.ResourceParam[Warehouse]
    ) -> dg.MaterializeResult:
        start, end = time_window(context)
        events = window_events(warehouse, spec, start, end)
        lines = annotation_lines(warehouse, t.raw_annotations, time_col, start, end)
        # both keep the event time their line gave, so a re-run of the day replaces them
        valid, rejects = validate_annotations(
            lines, events["event_id"], keep=("event_time",), annotators=spec.annotation.annotators
        )
        if spec.annotation.annotators is None and len(lines):
            context.log.warning(
                "annotation.annotators is not set in the spec: any name in a completed batch "
                "counts as an annotator; list who may annotate to reject the others"
            )
        resolved = resolve_per_event(valid, events)
        outcomes = table_checks(
            resolved,
            MANUAL_SCHEMA,
            {"event_id": 0.0, "event_time": 0.0},
            "event_id",
            {"label": (0, 1), "agreement": (0.0, 1.0)},
        )
        checked_write(
            warehouse,
            MANUAL_LABELS_ASSET,
            outcomes,
            [
                (t.manual_labels, resolved, "event_time", start, end),
                (t.annotations, valid, "event_time", start, end),
                (t.annotations_rejected, rejects, "event_time", start, end),
            ],
        )
        return dg.MaterializeResult(
            metadata=table_metadata(
                resolved,
                hide=spec.identifying_columns,
                **agreement_metadata(valid, rejects, resolved),
            ),
            check_results=[*check_results(outcomes), validity_result(rejects, folder)],
        )

    return dg.Definitions(assets=[manual_labels])
