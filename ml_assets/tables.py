"""Where each asset's rows live in the warehouse: one schema per lifecycle stage."""

from __future__ import annotations

from dataclasses import dataclass

from ml_assets.spec import Column, DatasetSpec, LandingFiles


class Tables:
    def __init__(self, spec: DatasetSpec):
        n, lab = spec.name, spec.labels.name
        self.raw = f"raw.{n}"
        self.raw_files = f"raw.{n}_files"
        self.raw_rejected = f"raw.{n}_rejected_rows"
        self.raw_labels = f"raw.{lab}"
        self.raw_labels_files = f"raw.{lab}_files"
        self.raw_labels_rejected = f"raw.{lab}_rejected_rows"
        self.cleaned = f"cleaned.{n}"
        self.ground_truth = f"labels.{n}_ground_truth"
        self.labels = f"labels.{n}"
        self.weak_votes = f"labels.{n}_weak_votes"
        self.annotation_queue = f"labels.{n}_annotation_queue"
        self.raw_annotations = f"raw.{n}_annotations"
        self.raw_annotations_files = f"raw.{n}_annotations_files"
        self.raw_annotations_rejected = f"raw.{n}_annotations_rejected_rows"
        self.annotations = f"labels.{n}_annotations"
        self.annotations_rejected = f"labels.{n}_annotations_rejected"
        self.manual_labels = f"labels.{n}_manual"
        self.features = f"features.{n}"
        self.training_set = "models.training_set"
        self.predictions = f"predictions.{n}"
        self.drift_columns = "monitor.drift_columns"
        self.drift_days = "monitor.drift_days"
        self.performance_days = "monitor.performance_days"
        self.performance_slices = "monitor.performance_slices"
        self.monitoring_trend = "monitor.trend"


@dataclass(frozen=True)
class LandingArea:
    """One landing folder, the raw asset that ingests it, and where its rows go."""

    asset_name: str
    dataset: str
    landing: LandingFiles
    columns: list[Column]
    time_column: str
    id_column: str | None
    table: str
    files_table: str
    rejected_table: str
    # columns that are empty on many lines by design (a line nobody annotated): no null-rate limit
    mostly_empty: tuple[str, ...] = ()


# the columns a completed annotation batch must keep (the others of the batch are read past)
ANNOTATION_ID_COLUMN = "event_id"


def annotation_columns(spec: DatasetSpec) -> list[Column]:
    """event_id, the event's time (the day it belongs to), label and annotator."""
    time_col = spec.column(spec.event_time_column)
    return [
        Column(name=ANNOTATION_ID_COLUMN, type="string", role="attribute", nullable=False),
        Column(name=time_col.name, type=time_col.type, role="event_time", nullable=False),
        Column(name="label", type="string", role="attribute"),
        Column(name="annotator", type="string", role="attribute"),
    ]


RAW_ANNOTATIONS_ASSET = "raw_annotations"


def landing_areas(spec: DatasetSpec) -> list[LandingArea]:
    """The events' landing area, the label files' (partitioned by when a label was reported) and the
    completed annotation batches' (partitioned by the time of the events they label)."""
    t, lab = Tables(spec), spec.labels
    return [
        LandingArea(
            spec.raw_asset,
            spec.name,
            spec.landing,
            spec.columns,
            spec.event_time_column,
            spec.id_column,
            t.raw,
            t.raw_files,
            t.raw_rejected,
        ),
        LandingArea(
            spec.raw_labels_asset,
            lab.name,
            lab.landing,
            lab.columns,
            lab.reported_time_column,
            next((c.name for c in lab.columns if c.role == "id"), None),
            t.raw_labels,
            t.raw_labels_files,
            t.raw_labels_rejected,
        ),
        LandingArea(
            RAW_ANNOTATIONS_ASSET,
            "annotations",
            spec.annotation.landing,
            annotation_columns(spec),
            spec.event_time_column,
            # several annotators may label one event: no column is unique
            None,
            t.raw_annotations,
            t.raw_annotations_files,
            t.raw_annotations_rejected,
            mostly_empty=("label", "annotator"),
        ),
    ]
